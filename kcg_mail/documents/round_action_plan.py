"""The Word document "Handlingsplan YYYY", with the structure of the network's
own plan (the seed's "Så upprättar vi årets handlingsplan"): purpose, values
and game rules, members; 1. Nuläge & behov per collaboration area; 2. Målbild
& prioriteringar (the vote table and the focus of the year); 3. Handlingsplan:
the year's themes and hosts, vem gör vad och när, the project groups, the
standing agenda and the workshop groups.

A4 like the protocol, with columns sized for it; marked "Utkast" on every page
and in the title until the network has adopted it. Everything here reaches
every member: no plan comments (they are notes for the host and the
coordinator), no names next to votes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Mm, Pt, RGBColor

from kcg_mail.core.plan_adoption import TASKS_HEADER, Task

GREY = RGBColor(0x55, 0x55, 0x55)
RED = RGBColor(0xB0, 0x1E, 0x1E)


@dataclass(frozen=True)
class PlanRow:
    month: str  # "Februari 2024"
    date: str  # "måndag 5 februari" or "bestäms av samordnaren"
    kind: str  # "Månadsmöte (digitalt)"
    theme: str  # "Tema 1: Trygghet"
    host: str  # "Isabel (Aljoša)"


@dataclass(frozen=True)
class TopicVotes:
    number: int
    text: str
    votes: int
    focus: bool


@dataclass(frozen=True)
class AreaNeeds:
    """Nuläge & behov of one collaboration area: what it is for, the questions
    asked, and how many proposals came in."""

    description: str = ""
    questions: tuple[str, ...] = ()
    proposals: int = 0


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
    notes: list[str] = field(default_factory=list)  # ties (never a name)
    projects: list[str] = field(default_factory=list)  # "Trygghet i stadskärnan – pågår sedan ... (ledare ...)"
    needs: dict[str, AreaNeeds] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)
    #: until adopted: marked "Utkast" in the title and on every page
    draft: bool = True
    #: where and when it is to be adopted ("vid det fysiska mötet tisdag 2 januari 2024")
    adopt_at: str = ""
    votes_per_member: int = 10
    min_share: float = 0.0


def _widths(table: Any, *mm: float) -> None:
    table.autofit = False
    for col, w in zip(table.columns, mm):
        col.width = Mm(w)
    for row in table.rows:
        for cell, w in zip(row.cells, mm):
            cell.width = Mm(w)


def _table(doc: Any, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], widths: tuple[float, ...],
           bold_rows: frozenset[int] | set[int] = frozenset()) -> Any:
    t = doc.add_table(rows=1, cols=len(header))
    t.style = "Table Grid"
    for cell, text in zip(t.rows[0].cells, header):
        cell.text = ""
        run = cell.paragraphs[0].add_run(text)
        run.bold, run.font.size = True, Pt(10)
    for i, values in enumerate(rows):
        cells = t.add_row().cells
        for cell, text in zip(cells, values):
            cell.text = ""
            run = cell.paragraphs[0].add_run(text)
            run.bold, run.font.size = i in bold_rows, Pt(10)
    _widths(t, *widths)
    doc.add_paragraph()
    return t


def _a4(doc: Any) -> None:
    for s in doc.sections:
        s.page_width, s.page_height = Mm(210), Mm(297)
        s.left_margin = s.right_margin = Mm(20)
        s.top_margin, s.bottom_margin = Mm(20), Mm(18)
        s.header_distance = s.footer_distance = Mm(10)


def _draft_mark(doc: Any, ap: ActionPlan) -> None:
    header = doc.sections[0].header.paragraphs[0]
    header.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    run = header.add_run(f"UTKAST – Handlingsplan {ap.year}")
    run.bold, run.font.color.rgb, run.font.size = True, RED, Pt(9)


def render_action_plan(ap: ActionPlan) -> bytes:
    doc = Document()
    _a4(doc)
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(11)
    title = f"Handlingsplan {ap.year}" + (" – utkast" if ap.draft else "")
    doc.add_heading(title, level=0)
    doc.add_paragraph(f"Nätverket {ap.network} ({ap.short})")
    if ap.draft:
        _draft_mark(doc, ap)
        p = doc.add_paragraph()
        run = p.add_run("Utkast. Planen diskuteras och antas " + (ap.adopt_at or "vid det fysiska mötet i januari") +
                        "; ändringar görs där.")
        run.italic, run.font.color.rgb = True, GREY

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
    _table(doc, ("Namn", "Organisation"), list(ap.members), (70, 100))

    doc.add_heading("1. Nuläge & behov", level=1)
    doc.add_paragraph("Inför planeringen svarade medlemmarna på frågorna för varje samverkansområde; "
                      "förslagen blev röstlistan.")
    for area in ap.areas:
        needs = ap.needs.get(area, AreaNeeds())
        doc.add_heading(area, level=2)
        if needs.description:
            doc.add_paragraph(needs.description)
        for q in needs.questions:
            doc.add_paragraph(q, style="List Bullet")
        n = len(ap.areas[area])
        doc.add_paragraph(f"{n} förslag på röstlistan.").runs[0].font.color.rgb = GREY

    doc.add_heading("2. Målbild & prioriteringar", level=1)
    share = f" och minst {round(ap.min_share * 100)} procent av alla röster" if ap.min_share else ""
    doc.add_paragraph(f"Varje medlem delade ut högst {ap.votes_per_member} röster; {ap.ballots} röstsedlar räknades. "
                      f"Ett fokusområde har flest röster i sitt samverkansområde{share}; vid lika röster vid gränsen "
                      f"avgör samordnaren, inte listans ordning. Fetstil: förslag till årets fokusområden.")
    for area, topics in ap.areas.items():
        doc.add_heading(area, level=2)
        rows = [(str(tv.number), tv.text, str(tv.votes), "fokus" if tv.focus else "") for tv in topics]
        bold = {i for i, tv in enumerate(topics) if tv.focus}
        _table(doc, ("Nr", "Samverkansområde", "Röster", ""), rows, (12, 118, 20, 20), bold)
    for note in ap.notes:
        doc.add_paragraph(note)

    doc.add_heading(f"Målbild för {ap.year}", level=2)
    any_focus = False
    for area, topics in ap.areas.items():
        focus = [tv for tv in topics if tv.focus]
        if focus:
            any_focus = True
            doc.add_paragraph(f"{area}: " + ", ".join(tv.text for tv in focus), style="List Bullet")
    if not any_focus:
        doc.add_paragraph("Inga fokusområden ännu: rösterna räcker inte till något.")
    if ap.draft:
        doc.add_paragraph("Målbilden formuleras och fastställs vid det fysiska mötet.").runs[0].font.color.rgb = GREY

    doc.add_heading("3. Handlingsplan", level=1)
    doc.add_heading(f"Årets teman & träffar {ap.year}", level=2)
    _table(doc, ("Månad", "Datum", "Möte", "Tema", "Värd (reserv)"),
           [(r.month, r.date, r.kind, r.theme, r.host) for r in ap.plan], (29, 31, 27, 53, 30))

    doc.add_heading("Vem gör vad och när", level=2)
    _table(doc, TASKS_HEADER, ap.tasks, (82, 44, 44))

    doc.add_heading("Projektgrupper", level=2)
    if ap.projects:
        for project in ap.projects:
            doc.add_paragraph(project, style="List Bullet")
    else:
        doc.add_paragraph(f"Inga projektgrupper är igång eller föreslagna inför {ap.year}. "
                          f"Projektgrupper kan tillkomma under året.")

    doc.add_heading("Stående dagordning för månadsmöten", level=2)
    for i, item in enumerate(ap.agenda, 1):
        doc.add_paragraph(f"{i}. {item}")

    if ap.groups:
        doc.add_heading("Gruppindelning vid det fysiska mötet", level=2)
        for i, g in enumerate(ap.groups, 1):
            doc.add_paragraph(f"Grupp {i}: " + ", ".join(g))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
