"""Generate ``templates/protocol.docx``, the KCG "beslutsprotokoll" Word template.

Run ``python templates/make_protocol_template.py`` after changing this script and commit
both files. The output is byte-for-byte reproducible (fixed zip timestamps and core
properties), so ``tests/core/test_protocol.py`` can check that the committed binary matches.

The template uses docxtpl/Jinja syntax. Every Jinja tag sits inside a single run, so Word
keeps it intact; the coordinator can open the file in Word and edit the wording freely.
Row and paragraph loops use docxtpl's ``{%tr ... %}`` / ``{%p ... %}`` tags, which must
each stand alone in their own row / paragraph. The context keys are documented in
``kcg_mail/documents/render.py``; ``kcg_mail.documents.template_check.check_template`` validates an edited copy.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from datetime import datetime
from pathlib import Path

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt, RGBColor

OUTPUT = Path(__file__).with_name("protocol.docx")
FIXED_TIME = datetime(2023, 1, 1, 0, 0, 0)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
GREY = RGBColor(0x59, 0x59, 0x59)
ACCENT = RGBColor(0x1F, 0x4E, 0x79)


def _set_cell_shading(cell, fill: str) -> None:
    tc_pr = cell._tc.get_or_add_tcPr()
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    tc_pr.append(shd)


def _repeat_header(row) -> None:
    tr_pr = row._tr.get_or_add_trPr()
    el = OxmlElement("w:tblHeader")
    tr_pr.append(el)


def _set_widths(table, widths) -> None:
    """Column widths in the grid (LibreOffice reads these) and on every cell (Word)."""
    table.autofit = False
    for col, w in zip(table.columns, widths):
        col.width = w
    for row in table.rows:
        for cell, w in zip(row.cells, widths):
            cell.width = w


def _min_row_height(row, mm: float) -> None:
    row.height = Mm(mm)


def _cell_text(cell, text: str, *, bold: bool = False, size: float | None = None) -> None:
    """Put ``text`` in one run of the cell's first paragraph (keeps Jinja tags in one run)."""
    p = cell.paragraphs[0]
    run = p.add_run(text)
    run.bold = bold
    if size:
        run.font.size = Pt(size)


def _header_table(doc, headers: tuple[str, ...]):
    """A grid table with one shaded header row (repeated on every page)."""
    table = doc.add_table(rows=1, cols=len(headers))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, headers):
        _cell_text(cell, text, bold=True)
        _set_cell_shading(cell, "DEEAF6")
    _repeat_header(table.rows[0])
    return table


def _label_table(doc, rows, *, align_left: bool = False):
    """A two-column grid table: a shaded label, then its value, per row."""
    table = doc.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    if align_left:
        table.alignment = WD_TABLE_ALIGNMENT.LEFT
    for label, value in rows:
        cells = table.add_row().cells
        _cell_text(cells[0], label, bold=True)
        _set_cell_shading(cells[0], "DEEAF6")
        _cell_text(cells[1], value)
    _set_widths(table, (Mm(40), Mm(130)))
    return table


def _row_texts(table, texts: tuple[str, ...], *, size: float | None = None) -> None:
    """A new row of ``table`` with one text per cell."""
    for cell, text in zip(table.add_row().cells, texts):
        _cell_text(cell, text, size=size)


def _tag_row(table, tag: str) -> None:
    """A row holding only a docxtpl ``{%tr ... %}`` tag (removed on render)."""
    table.add_row().cells[0].paragraphs[0].add_run(tag)


def _fine_print(paragraph, text: str):
    """A small grey run (the footer, the reference line)."""
    run = paragraph.add_run(text)
    run.font.size = Pt(8)
    run.font.color.rgb = GREY
    return run


def _tag_paragraph(doc, tag: str) -> None:
    """A paragraph holding only a docxtpl ``{%p ... %}`` tag (removed on render)."""
    doc.add_paragraph().add_run(tag)


def _swedish_language(doc) -> None:
    styles = doc.styles.element
    rpr = styles.find(qn("w:docDefaults") + "/" + qn("w:rPrDefault") + "/" + qn("w:rPr"))
    if rpr is None:  # pragma: no cover - python-docx's default template has it
        return
    for old in rpr.findall(qn("w:lang")):
        rpr.remove(old)
    lang = OxmlElement("w:lang")
    lang.set(qn("w:val"), "sv-SE")
    lang.set(qn("w:eastAsia"), "en-US")
    lang.set(qn("w:bidi"), "ar-SA")
    rpr.append(lang)


def _followup(doc) -> None:
    """Under the report-back point: the open decisions of earlier meetings (the host
    marks each one in the column Läge) and the project groups' status lines. The
    header ``Ref | Öppet beslut | Ansvarig | Datum | Läge`` is what the intake reads
    back (``kcg_mail.documents.minutes``); it deliberately differs from the
    decisions table's header."""
    _tag_paragraph(doc, "{%p if followup.decisions %}")
    note = doc.add_paragraph(
        "Öppna beslut från tidigare möten. Skriv klar, fortsätter eller struken i kolumnen Läge "
        "(tomt = fortsätter)."
    )
    note.runs[0].font.color.rgb = GREY
    tbl = _header_table(doc, ("Ref", "Öppet beslut", "Ansvarig", "Datum", "Läge"))
    _tag_row(tbl, "{%tr for d in followup.decisions %}")
    _row_texts(tbl, ("{{ d.ref }}", "{{ d.decision }}", "{{ d.owner }}", "{{ d.due }}", ""), size=9)
    _tag_row(tbl, "{%tr endfor %}")
    _set_widths(tbl, (Mm(26), Mm(62), Mm(36), Mm(24), Mm(22)))
    _tag_paragraph(doc, "{%p else %}")
    doc.add_paragraph("Inga öppna beslut från tidigare möten.").runs[0].font.color.rgb = GREY
    _tag_paragraph(doc, "{%p endif %}")
    _tag_paragraph(doc, "{%p for g in followup.projects %}")
    p = doc.add_paragraph(style="List Bullet")
    p.add_run("Projektgrupp {{ g.name }}").bold = True
    p.add_run(" ({{ g.lead }}): {{ g.status if g.status else 'ingen statusrad har kommit in' }}"
              "{% if g.when %} ({{ g.when }}){% endif %}")
    _tag_paragraph(doc, "{%p endfor %}")


def _grid(doc, header, loop: str, cells, widths) -> None:
    """A table with a shaded header row and one docxtpl row loop."""
    tbl = _header_table(doc, header)
    _tag_row(tbl, "{%tr for x in " + loop + " %}")
    _row_texts(tbl, cells, size=9)
    _tag_row(tbl, "{%tr endfor %}")
    _set_widths(tbl, widths)


def _plan_section(doc) -> None:
    """The January meeting adopts the year's Handlingsplan: focus areas, the year plan
    (themes, hosts and backup hosts per month) and who does what by when, prefilled
    with the draft. The headers are what the intake reads back
    (``kcg_mail.core.plan_adoption``: PLAN_HEADER, FOCUS_HEADER, TASKS_HEADER)."""
    _tag_paragraph(doc, "{%p if plan %}")
    doc.add_heading("Handlingsplan {{ plan.year }}", level=1)
    note = doc.add_paragraph(
        "Fyll i det mötet beslutar. Tabellerna är förifyllda med utkastet: ändra, stryk eller lägg till rader. "
        "Skriv värdarna med för- och efternamn. Samordnaren får planen som en fråga innan den gäller."
    )
    note.runs[0].font.color.rgb = GREY
    doc.add_heading("Fokusområden", level=2)
    _grid(doc, ("Område", "Fokusområde", "Röster"), "plan.focus", ("{{ x.area }}", "{{ x.topic }}", "{{ x.votes }}"),
          (Mm(55), Mm(95), Mm(20)))
    doc.add_heading("Teman och värdar per månad", level=2)
    _grid(doc, ("Månad", "Datum", "Tema", "Värd", "Reservvärd", "Typ"), "plan.rows",
          ("{{ x.month }}", "{{ x.date }}", "{{ x.theme }}", "{{ x.host }}", "{{ x.backup_host }}", "{{ x.kind }}"),
          (Mm(22), Mm(30), Mm(44), Mm(26), Mm(26), Mm(22)))
    doc.add_heading("Vem gör vad och när", level=2)
    _grid(doc, ("Vad", "Vem", "När"), "plan.tasks", ("{{ x.what }}", "{{ x.who }}", "{{ x.when }}"),
          (Mm(90), Mm(45), Mm(35)))
    _tag_paragraph(doc, "{%p endif %}")


def build_document():
    doc = Document()
    _swedish_language(doc)

    normal = doc.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(10.5)
    for name in ("Heading 1", "Heading 2", "Title"):
        doc.styles[name].font.color.rgb = ACCENT

    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.left_margin = section.right_margin = Mm(20)
    section.top_margin, section.bottom_margin = Mm(20), Mm(18)
    section.header_distance = section.footer_distance = Mm(10)

    # --- page header --------------------------------------------------------------
    header_p = section.header.paragraphs[0]
    run = header_p.add_run("{{ network.short }} – {{ network.name }}")
    run.bold = True
    run.font.color.rgb = ACCENT
    # The Header style has a centre and a right tab stop: two tabs put the title on the right.
    header_p.add_run("\t\tBeslutsprotokoll").font.color.rgb = GREY

    # --- page footer: the game rules ----------------------------------------------
    footer = section.footer
    fp = footer.paragraphs[0]
    fp.alignment = WD_ALIGN_PARAGRAPH.CENTER
    r = fp.add_run("Spelregler: ")
    r.bold = True
    r.font.size = Pt(8)
    _fine_print(fp, "{% for rule in rules %}{{ loop.index }}. {{ rule }}{% if not loop.last %}  ·  {% endif %}{% endfor %}")

    # --- title ----------------------------------------------------------------------
    doc.add_paragraph("KCG – Key Cities Group", style="Subtitle")
    doc.add_paragraph("Beslutsprotokoll", style="Title")
    p = doc.add_paragraph()
    p.add_run("{{ meeting.kind_label }} {{ meeting.date_text }}").bold = True
    p.add_run(
        "{% if meeting.theme_no is not none %} – Tema {{ meeting.theme_no }}: {{ meeting.theme }}"
        "{% elif meeting.theme %} – {{ meeting.theme }}{% endif %}"
    )

    # --- meeting facts ----------------------------------------------------------------
    doc.add_heading("Mötet", level=1)
    facts = [
        ("Datum", "{{ meeting.date_text }}"),
        ("Tid", "{{ meeting.start_time }}–{{ meeting.end_time }}"),
        (
            "Plats / länk",
            "{% if meeting.place %}{{ meeting.place }}{% endif %}"
            "{% if meeting.place and meeting.link %}, {% endif %}"
            "{% if meeting.link %}{{ meeting.link }}{% endif %}"
            "{% if not meeting.place and not meeting.link %}–{% endif %}",
        ),
        ("Typ av möte", "{{ meeting.kind_label }}"),
        (
            "Värd",
            "{{ meeting.host.name }}{% if meeting.host.organisation %}, "
            "{{ meeting.host.organisation }}{% endif %}",
        ),
        (
            "Reservvärd",
            "{% if meeting.backup_host %}{{ meeting.backup_host.name }}"
            "{% if meeting.backup_host.organisation %}, {{ meeting.backup_host.organisation }}"
            "{% endif %}{% else %}–{% endif %}",
        ),
        (
            "Tema",
            "{% if meeting.theme_no is not none %}Tema {{ meeting.theme_no }}: {% endif %}"
            "{{ meeting.theme or '–' }}",
        ),
        ("Gäster", "{{ meeting.guests | join(', ') if meeting.guests else '–' }}"),
        ("Kommentar", "{{ meeting.comment or '–' }}"),
    ]
    _label_table(doc, facts, align_left=True)

    # --- attendance -----------------------------------------------------------------------
    doc.add_heading("Närvaro", level=1)
    doc.add_paragraph("Fyll i Ja eller Nej i kolumnen Närvarande.").runs[0].font.color.rgb = GREY
    att = _header_table(doc, ("Stad", "Namn", "Organisation", "Närvarande"))
    _tag_row(att, "{%tr for m in members | sort(attribute='city') %}")
    _row_texts(att, ("{{ m.city }}", "{{ m.name }}", "{{ m.organisation }}", "{{ m.attendance }}"))
    _tag_row(att, "{%tr endfor %}")
    _tag_row(att, "{%tr for g in meeting.guests %}")
    _row_texts(att, ("Gäst", "{{ g }}", "", "Ja"))
    _tag_row(att, "{%tr endfor %}")
    _set_widths(att, (Mm(30), Mm(48), Mm(62), Mm(30)))

    # --- standing agenda -----------------------------------------------------------------
    doc.add_heading("Dagordning och anteckningar", level=1)
    _tag_paragraph(doc, "{%p for point in agenda %}")
    doc.add_heading("{{ loop.index }}. {{ point }}", level=2)
    _tag_paragraph(doc, "{%p if loop.index == followup.point %}")
    _followup(doc)
    _tag_paragraph(doc, "{%p endif %}")
    doc.add_paragraph("")
    _tag_paragraph(doc, "{%p endfor %}")

    # --- decisions ---------------------------------------------------------------------------
    doc.add_heading("Beslut", level=1)
    note = doc.add_paragraph(
        "Skriv ett beslut per rad. Lägg till rader vid behov (Tabb i sista cellen)."
    )
    note.runs[0].font.color.rgb = GREY
    dec = _header_table(doc, ("Beslut", "Ansvarig", "Klart till"))
    _tag_row(dec, "{%tr for _ in range(decision_rows) %}")
    _min_row_height(dec.add_row(), 9)
    _tag_row(dec, "{%tr endfor %}")
    _set_widths(dec, (Mm(100), Mm(45), Mm(25)))

    _plan_section(doc)

    # --- next meeting ----------------------------------------------------------------------
    doc.add_heading("Nästa möte", level=1)
    _label_table(doc, (
        ("Datum", "{{ next_meeting.date_text if next_meeting else '' }}"),
        ("Värd", "{{ next_meeting.host_name if next_meeting else '' }}"),
        ("Tema", "{{ next_meeting.theme if next_meeting else '' }}"),
    ))

    # --- values and reference --------------------------------------------------------------
    doc.add_heading("Vår värdegrund – bästa möjliga möte", level=1)
    p = doc.add_paragraph()
    p.add_run("{{ values | join(' · ') }}").italic = True

    p = doc.add_paragraph()
    p.paragraph_format.space_before = Pt(18)
    _fine_print(p, "Protokollet skickas tillbaka till samordnaren som Word-dokument eller PDF. "
                   "Mötesreferens: {{ meeting.id }} / {{ meeting.token }} (låt stå kvar).")

    cp = doc.core_properties
    cp.title = "Beslutsprotokoll"
    cp.subject = "KCG – Key Cities Group"
    cp.author = "kcg-mail"
    cp.last_modified_by = "kcg-mail"
    cp.language = "sv-SE"
    cp.comments = ""
    cp.keywords = "KCG; beslutsprotokoll"
    cp.revision = 1
    cp.created = FIXED_TIME
    cp.modified = FIXED_TIME
    cp.last_printed = FIXED_TIME
    return doc


def build_bytes() -> bytes:
    """The template as bytes, with fixed zip timestamps so the output is reproducible."""
    raw = io.BytesIO()
    build_document().save(raw)
    raw.seek(0)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename == "docProps/thumbnail.jpeg":
                continue  # python-docx's stock thumbnail shows an unrelated document
            data = zin.read(info.filename)
            if info.filename == "_rels/.rels":
                data = re.sub(rb"<Relationship [^>]*metadata/thumbnail[^>]*/>", b"", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            fixed.create_system = 3
            zout.writestr(fixed, data)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else OUTPUT
    target.write_bytes(build_bytes())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
