"""The Word document "Handlingsplan YYYY", with the structure of the
network's own plan: purpose, values and game rules, members, the prioritised
topics with their votes, the focus of the year, the year plan table (month,
theme, host (backup), comment), the standing agenda, the project groups and
the workshop groups."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from docx import Document
from docx.shared import Pt


@dataclass(frozen=True)
class PlanRow:
    month: str  # "Februari 2024"
    theme: str  # "Tema 1: Trygghet"
    host: str  # "Isabel (Aljoša)"
    comment: str = ""


@dataclass(frozen=True)
class TopicVotes:
    number: int
    text: str
    votes: int
    focus: bool


@dataclass(frozen=True)
class ActionPlan:
    year: int
    network: str
    short: str
    purpose: str
    values: list[str]
    rules: list[str]
    members: list[tuple[str, str]]  # (name, organisation)
    areas: dict[str, list[TopicVotes]]  # area -> sorted topics
    plan: list[PlanRow]
    agenda: list[str]
    groups: list[list[str]] = field(default_factory=list)
    ballots: int = 0
    notes: list[str] = field(default_factory=list)  # ties, late ballots
    projects: list[str] = field(default_factory=list)


def _bold_line(doc, text: str, votes: int | None, bold: bool) -> None:  # type: ignore[no-untyped-def]
    p = doc.add_paragraph(style="List Bullet")
    run = p.add_run(text + (f" {votes}" if votes else ""))
    run.bold = bold


def render_action_plan(ap: ActionPlan) -> bytes:
    doc = Document()
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(11)
    doc.add_heading(f"Handlingsplan {ap.year}", level=0)
    doc.add_paragraph(f"Nätverket {ap.network} ({ap.short})")

    doc.add_heading(f"Syftet med {ap.short}", level=1)
    doc.add_paragraph(ap.purpose)
    if ap.values:
        doc.add_heading("Vår värdegrund", level=1)
        for v in ap.values:
            doc.add_paragraph(v, style="List Bullet")
    if ap.rules:
        doc.add_heading("Spelregler", level=1)
        for i, r in enumerate(ap.rules, 1):
            doc.add_paragraph(f"{i}. {r}")

    doc.add_heading("Deltagare", level=1)
    t = doc.add_table(rows=1, cols=2)
    t.style = "Table Grid"
    t.rows[0].cells[0].text, t.rows[0].cells[1].text = "Namn", "Organisation"
    for name, org in ap.members:
        row = t.add_row().cells
        row[0].text, row[1].text = name, org

    doc.add_heading("Identifiering och prioritering av möjliga samverkansområden", level=1)
    doc.add_paragraph(f"Varje medlem delade ut högst tio röster; {ap.ballots} röstsedlar räknades. "
                      f"Fetstil: årets fokusområden.")
    for area, topics in ap.areas.items():
        doc.add_heading(area, level=2)
        for tv in topics:
            _bold_line(doc, tv.text, tv.votes, tv.focus)
    for n in ap.notes:
        doc.add_paragraph(n)

    doc.add_heading(f"Fokus år {ap.year}", level=1)
    for area, topics in ap.areas.items():
        focus = [tv for tv in topics if tv.focus]
        doc.add_heading(area, level=2)
        if not focus:
            doc.add_paragraph("Inget fokusområde i år.")
        for tv in focus:
            _bold_line(doc, tv.text, tv.votes, True)

    doc.add_heading(f"Årets teman & träffar {ap.year}", level=1)
    t = doc.add_table(rows=1, cols=4)
    t.style = "Table Grid"
    for cell, text in zip(t.rows[0].cells, ("Månad", "Tema", "Värd (reserv)", "Kommentar")):
        cell.text = text
    for r in ap.plan:
        row = t.add_row().cells
        row[0].text, row[1].text, row[2].text, row[3].text = r.month, r.theme, r.host, r.comment

    doc.add_heading("Stående dagordning för månadsmöten", level=1)
    for i, item in enumerate(ap.agenda, 1):
        doc.add_paragraph(f"{i}. {item}")

    doc.add_heading("Projekt", level=1)
    if ap.projects:
        for p in ap.projects:
            doc.add_paragraph(p, style="List Bullet")
    else:
        doc.add_paragraph(f"För år {ap.year} har inga beslut fattats om att genomföra projekt. "
                          f"Projektgrupper kan tillkomma successivt.")

    if ap.groups:
        doc.add_heading("Gruppindelning vid det fysiska mötet", level=1)
        for i, g in enumerate(ap.groups, 1):
            doc.add_paragraph(f"Grupp {i}: " + ", ".join(g))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
