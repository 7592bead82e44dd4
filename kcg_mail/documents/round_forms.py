"""Word forms of the planning round: the needs form (one table per area) and
the ballot (numbered topics per area with a "Röster" column), and reading
them back when a member mails them filled in.

Reading goes through the same hardened checks as the minutes
(``kcg_mail.documents.safety``: size, zip bombs, macros, external links, safe
XML) and raises ``MinutesRejected`` with a Swedish message for a file we will
not read.
"""

from __future__ import annotations

import io
import zipfile

from docx import Document
from docx.shared import Pt

from kcg_mail.core.ballot import BallotLine, ParsedBallot, Topic, number_text
from kcg_mail.core.round import Area, Needs, clean_topic
from kcg_mail.documents.minutes import WORDML, docx_rows
from kcg_mail.documents.ooxml import rejection, safe_parse
from kcg_mail.documents.safety import sniff_and_vet

NEEDS_ROWS = 6
COMMENT_HEADER = "Kommentar (valfritt)"
VOTES_HEADER = "Röster"


def _save(doc) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _header(table, cells: list[str]) -> None:  # type: ignore[no-untyped-def]
    for cell, text in zip(table.rows[0].cells, cells):
        cell.text = ""
        run = cell.paragraphs[0].add_run(text)
        run.bold = True


def needs_form(network: str, year: int, areas: list[Area], carry_over: dict[str, list[str]]) -> bytes:
    """"Nuläge & behov": per area its questions and a table to write suggestions in."""
    doc = Document()
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(11)
    doc.add_heading(f"Nuläge & behov inför handlingsplan {year}", level=1)
    doc.add_paragraph(f"{network}. Skriv dina nya behov i tabellerna, ett per rad (lägg till rader vid behov), "
                      f"spara och skicka tillbaka dokumentet som svar på mejlet. Lämna tomt där du inte har något. "
                      f"Förra årets punkter som inte valdes står redan kvar på röstlistan.")
    for a in areas:
        doc.add_heading(a.name, level=2)
        if a.description:
            doc.add_paragraph(a.description)
        for q in a.questions:
            doc.add_paragraph(q, style="List Bullet")
        old = carry_over.get(a.name, [])
        if old:
            doc.add_paragraph("Står redan kvar på röstlistan från förra året (de behöver du inte skriva igen):")
            for t in old:
                doc.add_paragraph(t, style="List Bullet")
        table = doc.add_table(rows=1 + NEEDS_ROWS, cols=2)
        table.style = "Table Grid"
        _header(table, [a.name, COMMENT_HEADER])
    return _save(doc)


def ballot_form(network: str, year: int, areas: list[Area], topics: list[Topic], max_votes: int) -> bytes:
    """"Målbild & prioriteringar": the numbered list with an empty Röster column."""
    doc = Document()
    doc.styles["Normal"].font.name = "Calibri"
    doc.add_heading(f"Röstsedel – handlingsplan {year}", level=1)
    doc.add_paragraph(f"{network}. Du har {number_text(max_votes)} röster att fördela på de samverkansområden "
                      f"som är mest intressanta för dig. Skriv antalet röster i kolumnen {VOTES_HEADER} (en siffra, "
                      f"t.ex. 4) och lämna resten tomt. Spara och skicka tillbaka dokumentet som svar på mejlet.")
    for a in areas:
        mine = [t for t in topics if t.area == a.name]
        if not mine:
            continue
        doc.add_heading(a.name, level=2)
        table = doc.add_table(rows=1 + len(mine), cols=3)
        table.style = "Table Grid"
        _header(table, ["Nr", a.name, VOTES_HEADER])
        for row, t in zip(table.rows[1:], mine):
            row.cells[0].text = str(t.number)
            row.cells[1].text = t.text
    return _save(doc)


def _tables(filename: str, data: bytes) -> list[list[list[str]]]:
    kind, main = sniff_and_vet(filename, data, max_bytes=20 * 1024 * 1024)
    if kind != "docx":
        raise rejection("wrong_type", f"{kind} is not a Word form",
                      "Bilagan är inte ett Word-dokument (.docx). Fyll i formuläret i Word eller svara i "
                      "mejlets text.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            root = safe_parse(zf.read(main), main)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise rejection("corrupt", f"cannot read the docx package: {exc}") from exc
    body = root.find(WORDML + "body")
    if body is None:
        raise rejection("corrupt", f"{main} has no w:body")
    return [docx_rows(tbl) for tbl in body.iter(WORDML + "tbl")]


def _fold(s: str) -> str:
    return "".join(ch for ch in s.casefold() if ch.isalnum())


def read_needs_form(filename: str, data: bytes, areas: list[Area]) -> Needs:
    by_name = {_fold(a.name): a.name for a in areas}
    out: dict[str, list[str]] = {}
    for rows in _tables(filename, data):
        if not rows or not rows[0]:
            continue
        area = by_name.get(_fold(rows[0][0]))
        if area is None:
            continue
        for r in rows[1:]:
            cells = (r + ["", ""])[:2]
            topic = clean_topic(cells[0])
            if not topic:
                continue
            comment = clean_topic(cells[1])
            out.setdefault(area, []).append(f"{topic} ({comment})" if comment else topic)
    return Needs({k: tuple(v) for k, v in out.items()})


def _votes_columns(rows: list[list[str]]) -> tuple[int, int, int] | None:
    """(header row, Nr column, Röster column) of a ballot table, or None.
    The header is looked for in the first rows and the columns by name, so a
    table re-saved by Word or LibreOffice, with a row or column added, still reads."""
    for i, row in enumerate(rows[:3]):
        names = [_fold(c) for c in row]
        nr = next((j for j, c in enumerate(names) if c in ("nr", "nummer", "no")), None)
        votes = next((j for j, c in enumerate(names) if c.startswith("röst")), None)
        if nr is not None and votes is not None and nr != votes:
            return i, nr, votes
    return None


def read_ballot_form(filename: str, data: bytes) -> ParsedBallot:
    """The filled-in Röster column of every ballot table (empty cells skipped).
    The cell is read as written ("4", "fyra", "4 röster"); the core checks it."""
    lines: list[BallotLine] = []
    ignored: list[str] = []
    found = False
    for rows in _tables(filename, data):
        cols = _votes_columns(rows)
        if cols is None:
            continue
        found = True
        head, nr, col = cols
        for r in rows[head + 1:]:
            votes = " ".join(r[col].split()) if col < len(r) else ""
            if not votes:
                continue
            number = r[nr].strip().rstrip(".") if nr < len(r) else ""
            if number.isdigit():
                lines.append(BallotLine(int(number), votes))
            else:
                ignored.append(" | ".join(r)[:120])
    if not found:
        raise rejection("not_a_ballot", "no table with Nr | ... | Röster",
                      "Bilagan är inte röstsedeln (den saknar kolumnen Röster). Använd röstsedeln från mejlet, "
                      "eller skriv rösterna direkt i svaret, t.ex. ”3: 4, 12: 3”.")
    return ParsedBallot(tuple(lines), tuple(ignored))
