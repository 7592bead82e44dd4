"""Next year's plan as a Word table ("Årsplan 2024 – utkast.docx"), and reading
the plan back from a document: that table edited by the coordinator, or the
section "Handlingsplan YYYY" of the January meeting's protocol, as .docx or
.odt (also as LibreOffice writes them). Reading goes through the same checks as
the minutes (``kcg_mail.documents.minutes.document_tables``) and raises
``MinutesRejected`` with a Swedish message for a file we will not read.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt

from kcg_mail.core.plan_adoption import PLAN_HEADER, PlanDocument, read_tables
from kcg_mail.documents.minutes import document_tables

#: column widths of the year plan table (A4 landscape, 15 mm margins: 267 mm)
WIDTHS_MM = (30, 50, 85, 38, 38, 26)


def _shade(cell, fill: str) -> None:  # type: ignore[no-untyped-def]
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shd)


def render_plan_table(network: str, year: int, rows: Sequence[tuple[str, ...]], *, signed: str) -> bytes:
    """"Årsplan YYYY – utkast": one row per meeting, to edit in Word and mail back."""
    doc = Document()
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(10.5)
    sec = doc.sections[0]
    sec.orientation = WD_ORIENT.LANDSCAPE
    sec.page_width, sec.page_height = Mm(297), Mm(210)
    sec.left_margin = sec.right_margin = Mm(15)
    sec.top_margin = sec.bottom_margin = Mm(15)
    doc.add_heading(f"Årsplan {year} – utkast", level=1)
    doc.add_paragraph(
        f"{network}. Ändra direkt i tabellen: teman, värdar, reservvärdar och datum. Skriv värdarna med för- och "
        f"efternamn. Lämna datumet tomt för ett månadsmöte som ska ligga på första måndagen i månaden; för det "
        f"fysiska mötet och studieresan kan det stå ”bestäms av samordnaren”. Spara och skicka dokumentet som svar "
        f"på mejlet. Du får besked om vad som lästes innan något ändras.")
    table = doc.add_table(rows=1, cols=len(PLAN_HEADER))
    table.style = "Table Grid"
    table.autofit = False
    for cell, text in zip(table.rows[0].cells, PLAN_HEADER):
        cell.paragraphs[0].add_run(text).bold = True
        _shade(cell, "DEEAF6")
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values):
            cell.paragraphs[0].add_run(text)
    for row in table.rows:
        for cell, w in zip(row.cells, WIDTHS_MM):
            cell.width = Mm(w)
    for col, w in zip(table.columns, WIDTHS_MM):
        col.width = Mm(w)
    p = doc.add_paragraph()
    p.paragraph_format.space_before = Pt(12)
    p.add_run(signed).italic = True
    core = doc.core_properties
    core.title, core.author, core.language = f"Årsplan {year} – utkast", signed, "sv-SE"
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def read_plan_document(filename: str, data: bytes) -> PlanDocument | None:
    """The year plan in a .docx or .odt (the protocol's section or the edited table);
    None when the document has no year plan table."""
    return read_tables(document_tables(filename, data))
