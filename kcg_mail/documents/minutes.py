"""What decisions does a returned protocol hold? ``read_minutes(filename, data)``
vets the file (``safety``), then reads its text and the rows of the decisions
table (header ``Beslut | Ansvarig | Klart till``) from .docx, .odt or .pdf.
Nothing in a returned file is ever fetched from outside."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kcg_mail.documents.inflate import Package
from kcg_mail.documents.ooxml import WORDML_NS, MinutesRejected, rejection, safe_parse
from kcg_mail.documents.safety import MAX_PDF_PAGES, MAX_TEXT_CHARS, vet_file


@dataclass
class Decision:
    decision: str
    owner: str
    due: str


@dataclass
class Minutes:
    filename: str
    kind: str  # "docx" | "pdf" | "odt"
    text: str
    decisions: list[Decision] = field(default_factory=list)
    #: the follow-up table (open decisions of earlier meetings): (ref, what the host wrote under "Läge")
    followups: list[tuple[str, str]] = field(default_factory=list)


WORDML = f"{{{WORDML_NS}}}"


_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


_SKIP_W = {WORDML + t for t in ("delText", "instrText", "delInstrText", "moveFrom", "del", "rPr", "pPr", "tblPr", "trPr", "tcPr", "sectPr")}


def _docx_text(el: Any) -> str:
    """Visible text of an element: keeps tracked insertions (w:ins), drops deletions."""
    out: list[str] = []

    def walk(e: Any) -> None:
        tag = e.tag
        if not isinstance(tag, str) or tag in _SKIP_W or tag == _MC_FALLBACK:
            return
        if tag == WORDML + "tbl":
            for row in docx_rows(e):
                out.append("\t".join(c.replace("\n", " / ") for c in row).rstrip() + "\n")
            return
        if tag == WORDML + "t":
            out.append(e.text or "")
        elif tag == WORDML + "tab":
            out.append("\t")
        elif tag in (WORDML + "br", WORDML + "cr"):
            out.append("\n")
        elif tag == WORDML + "noBreakHyphen":
            out.append("-")
        for child in e:
            walk(child)
        if tag == WORDML + "p":
            out.append("\n")

    walk(el)
    return "".join(out)


def _own(el: Any, tag: str, owner_tag: str) -> list[Any]:
    """Descendants ``tag`` of ``el`` whose nearest ``owner_tag`` ancestor is ``el`` itself
    (rows of this table, not of a nested one; cells wrapped in w:sdt still count)."""
    return [x for x in el.iter(tag) if next(x.iterancestors(owner_tag), None) is el]


def docx_rows(tbl: Any) -> list[list[str]]:
    return [
        [_docx_cell_text(tc) for tc in _own(tr, WORDML + "tc", WORDML + "tr")]
        for tr in _own(tbl, WORDML + "tr", WORDML + "tbl")
    ]


def _docx_cell_text(tc: Any) -> str:
    paras = [_docx_text(p).strip() for p in tc.iter(WORDML + "p")]
    return "\n".join(p for p in paras if p).strip()


def _norm(s: str) -> str:
    return re.sub(r"[^a-zåäöéü ]", "", " ".join(s.lower().split())).strip()


def _is_decision_header(cells: list[str]) -> bool:
    if len(cells) < 3:
        return False
    a, b, c = (_norm(x) for x in cells[:3])
    return a.startswith("beslut") and b.startswith("ansvar") and (c.startswith("klart") or "datum" in c or c.startswith("deadline"))


def _decisions_from_rows(rows: list[list[str]]) -> list[Decision] | None:
    for i, cells in enumerate(rows[:3]):
        if _is_decision_header(cells):
            out = []
            for r in rows[i + 1 :]:
                r = (r + ["", "", ""])[:3]
                if not any(x.strip() for x in r):
                    continue
                if _is_decision_header(r):  # repeated header row
                    continue
                out.append(Decision(r[0].strip(), r[1].strip(), r[2].strip()))
            return out
    return None


def _is_followup_header(cells: list[str]) -> bool:
    return len(cells) >= 3 and _norm(cells[0]) == "ref" and _norm(cells[1]).startswith("öppet beslut")


def _followups_from_rows(rows: list[list[str]]) -> list[tuple[str, str]]:
    """The follow-up table (``Ref | Öppet beslut | Ansvarig | Datum | Läge``): (ref, mark)."""
    for i, cells in enumerate(rows[:3]):
        if _is_followup_header(cells):
            return [(r[0].strip(), r[-1].strip() if len(r) >= 5 else "") for r in rows[i + 1:]
                    if r and r[0].strip() and not _is_followup_header(r)]
    return []


def _read_docx(pkg: Package, main: str) -> tuple[str, list[Decision], list[tuple[str, str]]]:
    root = safe_parse(pkg.get(main) or b"", main)
    body = root.find(WORDML + "body")
    if body is None:
        raise rejection("corrupt", f"{main} has no w:body")
    text = _docx_text(body)
    # Headers/footers add no decisions, but their text helps a human reader of the log.
    return (text, *_from_tables(docx_rows(tbl) for tbl in body.iter(WORDML + "tbl")))


def _from_tables(tables: Iterable[list[list[str]]]) -> tuple[list[Decision], list[tuple[str, str]]]:
    """The decisions (the first table with the decisions header and rows) and the
    follow-up marks (the first follow-up table) of a document's tables."""
    decisions: list[Decision] = []
    followups: list[tuple[str, str]] = []
    for rows in tables:
        if not followups:
            followups = _followups_from_rows(rows)
        if not decisions:
            decisions = _decisions_from_rows(rows) or []
    return decisions, followups


_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"


_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


_T = f"{{{_TEXT_NS}}}"


_TB = f"{{{_TABLE_NS}}}"


_ODT_SKIP = {_T + "tracked-changes", _T + "note-citation", _T + "sequence-decls"}


def _odt_text(el: Any) -> str:
    out: list[str] = []

    def walk(e: Any) -> None:
        tag = e.tag
        if not isinstance(tag, str) or tag in _ODT_SKIP:
            return
        if tag == _TB + "table":
            for row in _odt_rows(e):
                out.append("\t".join(c.replace("\n", " / ") for c in row).rstrip() + "\n")
            return
        if e.text and tag.startswith(_T):
            out.append(e.text)
        if tag == _T + "s":
            out.append(" " * int(e.get(_T + "c", "1") or 1))
        elif tag == _T + "tab":
            out.append("\t")
        elif tag == _T + "line-break":
            out.append("\n")
        for child in e:
            walk(child)
            if child.tail and tag.startswith(_T):
                out.append(child.tail)
        if tag in (_T + "p", _T + "h"):
            out.append("\n")

    walk(el)
    return "".join(out)


def _odt_rows(tbl: Any) -> list[list[str]]:
    rows = []
    for tr in _own(tbl, _TB + "table-row", _TB + "table"):
        cells = []
        for tc in _own(tr, _TB + "table-cell", _TB + "table-row"):
            paras = [_odt_text(p).strip() for p in tc.iter(_T + "p", _T + "h")]
            cells.append("\n".join(p for p in paras if p))
        rows.append(cells)
    return rows


def _read_odt(pkg: Package) -> tuple[str, list[Decision], list[tuple[str, str]]]:
    root = safe_parse(pkg.get("content.xml") or b"", "content.xml")
    return (_odt_text(root), *_from_tables(_odt_rows(tbl) for tbl in root.iter(_TB + "table")))


_PDF_HEADER = re.compile(r"Beslut\s{2,}Ansvarig\s{2,}Klart till", re.I)


def _join_wrapped(head: str, tail: str) -> str:
    if not tail:
        return head
    if not head:
        return tail
    return head + tail if head.endswith("-") else f"{head} {tail}"


def _pdf_table(layout_pages: Iterable[str], header: re.Pattern[str]) -> tuple[re.Match[str], str, list[str]] | None:
    """The first table in layout text whose header line matches ``header``: the match, that
    line (its column positions) and the lines below it; None when no page has one."""
    for page in layout_pages:
        lines = page.splitlines()
        for i, line in enumerate(lines):
            m = header.search(line)
            if m:
                return m, line, lines[i + 1 :]
    return None


def _pdf_decisions(layout_pages: Iterable[str]) -> list[Decision]:
    """Best effort: find the 'Beslut  Ansvarig  Klart till' header in layout text and cut
    the following lines at the header's column positions. A line with a decision and an
    owner (or a due date) starts a new row; other lines continue the cells of the row above
    (wrapped text). A row with neither owner nor due date is therefore merged upwards."""
    found = _pdf_table(layout_pages, _PDF_HEADER)
    if found is None:
        return []
    m, line, below = found
    c0 = m.start()
    c1 = line.lower().index("ansvarig", c0)
    c2 = line.lower().index("klart till", c1)
    out: list[Decision] = []
    blank = 0
    for row in below:
        if not row.strip():
            blank += 1
            if blank > 8 and out:
                break
            continue
        stripped_start = len(row) - len(row.lstrip())
        a, b, c = row[:c1].strip(), row[c1:c2].strip(), row[c2:].strip()
        if stripped_start < c0 - 2 or (a and not b and not c and blank):
            break  # text outside the table: the next heading
        prev = out[-1] if out and not blank else None
        new_row = prev is None or (a and (b or (c and not prev.due.endswith("-"))))
        if new_row or prev is None:
            out.append(Decision(a, b, c))
        else:  # a wrapped line of the previous row's cells
            prev.decision = _join_wrapped(prev.decision, a)
            prev.owner = _join_wrapped(prev.owner, b)
            prev.due = _join_wrapped(prev.due, c)
        blank = 0
    return [d for d in out if d.decision or d.owner or d.due]


_PDF_FOLLOWUP = re.compile(r"Ref\s{2,}Öppet beslut\s{2,}Ansvarig\s{2,}Datum\s{2,}Läge", re.I)
_PDF_REF = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_-]*/\d{1,3})(?=\s|$)")
_PDF_REF_HEAD = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_]*-)(?=\s)")
_PDF_REF_TAIL = re.compile(r"^\s*([A-Za-z0-9_-]*/\d{1,3})(?=\s|$)")


def pdf_followups(layout_pages: Iterable[str]) -> list[tuple[str, str]]:
    """Best effort, like ``_pdf_decisions``: lines under the follow-up header that start
    with a reference (``2023-02/1``); the mark is what stands in the "Läge" column."""
    out: list[tuple[str, str]] = []
    found = _pdf_table(layout_pages, _PDF_FOLLOWUP)
    if found is None:
        return out
    m, line, rest = found
    c0, c4 = m.start(), line.lower().index("läge", m.start())
    consumed = -1
    for j, row in enumerate(rest):
        if not row.strip() or j == consumed:
            continue
        r = _PDF_REF.match(row)
        head = _PDF_REF_HEAD.match(row)
        if r is None and head is not None and j + 1 < len(rest):
            # a reference wrapped in a narrow column: "2023-" / "02/1"
            tail = _PDF_REF_TAIL.match(rest[j + 1])
            if tail is not None:
                r = _PDF_REF.match(head[1] + tail[1])
                consumed = j + 1
        if r is None:
            if len(row) - len(row.lstrip()) < c0 - 2 or _PDF_HEADER.search(row):
                break  # the next heading: the table has ended
            continue  # a wrapped line of a decision's text
        cols = list(re.finditer(r"\S+(?: \S+)*", row))
        last = cols[-1] if len(cols) > 1 else None
        out.append((r[1], last.group(0) if last is not None and last.start() >= c4 - 3 else ""))
    return out


def _read_pdf(data: bytes) -> tuple[str, list[Decision], list[tuple[str, str]]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - unsupported algorithm, bad data
                ok = False
            if not ok:
                raise rejection("encrypted", "password-protected PDF")
        n = len(reader.pages)
        if n > MAX_PDF_PAGES:
            raise rejection("too_large", f"{n} pages (limit {MAX_PDF_PAGES})")
        texts, layouts, size = [], [], 0
        for page in reader.pages:
            t = page.extract_text() or ""
            texts.append(t)
            size += len(t)
            if size > MAX_TEXT_CHARS:
                raise rejection("zip_bomb", "PDF text larger than expected for a protocol")
            try:
                layouts.append(page.extract_text(extraction_mode="layout") or "")
            except Exception:  # noqa: BLE001 - layout mode is best effort
                layouts.append("")
    except MinutesRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on broken input
        name = exc.__class__.__name__
        if name == "LimitReachedError":
            raise rejection("zip_bomb", f"PDF decompression limit reached: {exc}") from exc
        if isinstance(exc, (PdfReadError, ValueError, KeyError, TypeError, struct.error, OSError, IndexError, AttributeError, RecursionError)):
            raise rejection("corrupt", f"unreadable PDF: {name}: {exc}") from exc
        raise rejection("corrupt", f"unreadable PDF: {name}: {exc}") from exc
    return "\n".join(texts), _pdf_decisions(layouts), pdf_followups(layouts)


def read_minutes(filename: str, data: bytes, *, max_bytes: int = 20 * 1024 * 1024) -> Minutes:
    """Read a protocol a host mailed back. Raises :class:`MinutesRejected`.

    The kind is detected from the content; a known document extension that disagrees with
    the content is rejected as ``wrong_type`` (a name without a known extension is judged by
    content alone). The zip checks run on the central directory first; then every entry is
    inflated with a hard cap on the bytes produced, and the checked parts are what is read.
    Nothing in a returned file is ever fetched from outside.
    """
    kind, main, pkg = vet_file(filename, data, max_bytes=max_bytes)
    if kind == "pdf":
        text, decisions, followups = _read_pdf(data)
    else:
        # Read the parts the checks inflated (with their caps), never the zip again.
        assert pkg is not None
        text, decisions, followups = _read_docx(pkg, main) if kind == "docx" else _read_odt(pkg)
    return Minutes(filename=filename, kind=kind, text=text.strip(), decisions=decisions, followups=followups)


def document_tables(filename: str, data: bytes, *, max_bytes: int = 20 * 1024 * 1024) -> list[list[list[str]]]:
    """Every table of a .docx or .odt (rows of cell texts), after the same checks as
    :func:`read_minutes`; a PDF has none that can be read reliably. Raises
    :class:`MinutesRejected`."""
    kind, main, pkg = vet_file(filename, data, max_bytes=max_bytes)
    if kind == "pdf" or pkg is None:
        return []
    if kind == "docx":
        body = safe_parse(pkg.get(main) or b"", main).find(WORDML + "body")
        return [] if body is None else [docx_rows(tbl) for tbl in body.iter(WORDML + "tbl")]
    root = safe_parse(pkg.get("content.xml") or b"", "content.xml")
    return [_odt_rows(tbl) for tbl in root.iter(_TB + "table")]
