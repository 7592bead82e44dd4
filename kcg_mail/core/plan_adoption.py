"""Next year's plan as people write it: a table in Word, read back and checked. Pure.

The same table ("Månad | Datum | Tema | Värd | Reservvärd | Typ") is in two
documents: the section "Handlingsplan YYYY" of the January meeting's protocol
(filled in at the workshop that adopts the plan) and "Årsplan YYYY – utkast.docx"
that the coordinator edits and mails back. ``read_tables`` finds the plan,
the focus areas and "vem gör vad och när" in a document's tables (rows of cell
texts, read by ``kcg_mail.documents``); ``check_rows`` turns the plan rows into
a :class:`~kcg_mail.core.config_model.Plan` or into Swedish problems that name
the row; ``table_rows`` writes a plan back as the same rows.

``group_tasks`` gives each workshop group its collaboration area(s) and a lead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple, Protocol

from pydantic import ValidationError

from kcg_mail.core.config_model import Person, Plan, PlannedMeeting
from kcg_mail.core.plan import MONTHS_SV, apply_holiday_policy, date_text, first_monday

#: the header of the year plan table, as written in both documents
PLAN_HEADER = ("Månad", "Datum", "Tema", "Värd", "Reservvärd", "Typ")
FOCUS_HEADER = ("Område", "Fokusområde", "Röster")
TASKS_HEADER = ("Vad", "Vem", "När")
#: what the date column says when the coordinator sets the date (physical meeting, study trip)
DATE_LATER = "bestäms av samordnaren"

KINDS = ("digital", "physical", "all_members", "study_trip")
_KIND_WORDS = (("studieres", "study_trip"), ("fysisk", "physical"), ("för alla", "all_members"),
               ("alla medlemmar", "all_members"), ("digital", "digital"), ("månadsmöte", "digital"),
               ("teams", "digital"))
_THEME_NO = re.compile(r"^\s*tema\s*(\d{1,2})\s*[:.–-]\s*", re.IGNORECASE)
_ISO_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TEXT_DATE = re.compile(r"(\d{1,2})\s+([a-zåäö]+)\.?(?:\s+(\d{4}))?", re.IGNORECASE)


class _PlanLike(Protocol):
    @property
    def month(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def theme(self) -> str: ...
    @property
    def theme_no(self) -> int | None: ...
    @property
    def host(self) -> str: ...
    @property
    def backup_host(self) -> str | None: ...
    @property
    def date(self) -> date | None: ...
    @property
    def tentative(self) -> bool: ...


@dataclass(frozen=True)
class PlanRow:
    """One row of the year plan table, as written (cell texts)."""

    number: int  # 1-based, the first row under the header
    month: str
    date: str
    theme: str
    host: str
    backup_host: str
    kind: str


class Task(NamedTuple):
    """One row of "vem gör vad och när" (``TASKS_HEADER``): written into the action
    plan and the January protocol's plan section, read back from either."""

    what: str
    who: str
    when: str


@dataclass(frozen=True)
class PlanDocument:
    """What a document says about next year's plan."""

    rows: tuple[PlanRow, ...]
    focus: tuple[tuple[str, str], ...] = ()  # (area, focus topic)
    tasks: tuple[Task, ...] = ()


@dataclass(frozen=True)
class Checked:
    plan: Plan | None
    problems: tuple[str, ...]  # Swedish, each naming the row

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.problems


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-zåäöéü ]", " ", s.casefold()).split())


def _header_at(rows: list[list[str]], header: tuple[str, ...], width: int) -> int | None:
    want = [_norm(h) for h in header[:width]]
    for i, cells in enumerate(rows[:3]):
        got = [_norm(c) for c in cells[:width]]
        if len(got) == width and all(g.startswith(w) for g, w in zip(got, want)):
            return i
    return None


def _body(rows: list[list[str]], start: int, width: int) -> list[list[str]]:
    out = []
    for cells in rows[start + 1:]:
        cells = [c.strip() for c in (cells + [""] * width)[:width]]
        if any(cells):
            out.append(cells)
    return out


def read_tables(tables: Iterable[list[list[str]]]) -> PlanDocument | None:
    """The year plan (and the focus and task tables) in a document's tables; None
    when no table has the year plan's header."""
    plan: list[PlanRow] | None = None
    focus: list[tuple[str, str]] = []
    tasks: list[Task] = []
    for rows in tables:
        at = _header_at(rows, PLAN_HEADER, 6)
        if at is not None and plan is None:
            plan = [PlanRow(n, *cells) for n, cells in enumerate(_body(rows, at, 6), start=1)]
            continue
        at = _header_at(rows, FOCUS_HEADER, 2)
        if at is not None and not focus:
            focus = [(c[0], c[1]) for c in _body(rows, at, 2) if c[1]]
            continue
        at = _header_at(rows, TASKS_HEADER, 3)
        if at is not None and not tasks:
            tasks = [Task(*c) for c in _body(rows, at, 3) if c[0]]
    if plan is None:
        return None
    return PlanDocument(tuple(plan), tuple(focus), tuple(tasks))


# ------------------------------------------------------------------ reading cells


def _month_number(word: str) -> int | None:
    w = word.casefold().strip(" .")
    if len(w) < 3:
        return None
    hits = [i + 1 for i, name in enumerate(MONTHS_SV) if name.startswith(w) or w.startswith(name)]
    return hits[0] if len(hits) == 1 else None


def parse_month(text: str, year: int) -> str | None:
    """``"februari 2024"``, ``"Februari"``, ``"feb"``, ``"2024-02"`` -> ``"2024-02"``;
    without a year, the plan's year."""
    m = _ISO_MONTH.match(text)
    if m:
        iso = int(m.group(2))
        return f"{int(m.group(1)):04d}-{iso:02d}" if 1 <= iso <= 12 else None
    words = text.replace(",", " ").split()
    if not words or len(words) > 2:
        return None
    mo = _month_number(words[0])
    if mo is None:
        return None
    y = year
    if len(words) == 2:
        if not re.fullmatch(r"\d{4}", words[1]):
            return None
        y = int(words[1])
    return f"{y:04d}-{mo:02d}"


def parse_date(text: str, month: str) -> date | None | str:
    """The date column: a date (ISO or "måndag 5 februari [2024]"), None when the
    column is empty or leaves the date to the coordinator, or a Swedish problem."""
    s = text.strip().casefold()
    if not s or s in ("-", "–") or "bestäms" in s or "prelim" in s or "senare" in s:
        return None
    y = int(month[:4])
    m = _ISO_DATE.search(s)
    try:
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        t = _TEXT_DATE.search(s)
        if t:
            tm = _month_number(t.group(2))
            if tm is not None:
                return date(int(t.group(3)) if t.group(3) else y, tm, int(t.group(1)))
    except ValueError:
        return f"datumet ”{text.strip()}” finns inte i kalendern"
    return f"datumet ”{text.strip()}” känns inte igen – skriv t.ex. ”5 februari” eller lämna rutan tom"


def parse_kind(text: str, labels: dict[str, str]) -> str | None:
    s = text.strip().casefold()
    if not s:
        return None
    for kind, label in labels.items():
        if s == label.casefold() or s == kind:
            return kind
    return next((kind for word, kind in _KIND_WORDS if word in s), None)


def person_id(text: str, members: Sequence[Person]) -> str | None:
    """A member by id, full name or (unique) first name; ``"Maria Martinsson, Västerås City"`` works too."""
    s = text.split(",")[0].split("(")[0].strip().casefold()
    if not s:
        return None
    for p in members:
        if s in (p.id.casefold(), p.name.casefold()):
            return p.id
    firsts = [p.id for p in members if p.name.split()[0].casefold() == s]
    return firsts[0] if len(firsts) == 1 else None


def _theme(text: str) -> tuple[int | None, str]:
    m = _THEME_NO.match(text)
    if m:
        return int(m.group(1)), text[m.end():].strip()
    return None, text.strip()


def check_rows(rows: Sequence[PlanRow], year: int, members: Sequence[Person], labels: dict[str, str], *,
               note: str = "") -> Checked:
    """The rows as a plan for ``year``, checked as ``kcg check`` checks a plan file
    (valid months in the year or next January, each month once, hosts and backup
    hosts who are active members, a date in its month), or the problems, in
    Swedish, each naming the row."""
    active = [p for p in members if p.active]
    problems: list[str] = []
    meetings: list[PlannedMeeting] = []
    seen: dict[str, int] = {}
    if not rows:
        return Checked(None, ("Tabellen med årsplanen är tom – fyll i en rad per månad med möte.",))
    for r in rows:
        where = f"Rad {r.number}" + (f" ({r.month.strip()})" if r.month.strip() else "")
        month = parse_month(r.month, year)
        if month is None:
            problems.append(f"Rad {r.number}: månaden ”{r.month.strip()}” känns inte igen – skriv t.ex. ”februari {year}”.")
            continue
        if not (month.startswith(f"{year}-") or month == f"{year + 1}-01"):
            problems.append(f"{where}: {_month_text(month)} hör inte till årsplanen {year} "
                            f"(bara månaderna i {year} och januari {year + 1}).")
            continue
        if month in seen:
            problems.append(f"{where}: {_month_text(month)} står redan på rad {seen[month]} – ett möte per månad.")
            continue
        seen[month] = r.number
        kind = parse_kind(r.kind, labels)
        if kind is None:
            problems.append(f"{where}: typen ”{r.kind.strip()}” känns inte igen – skriv "
                            f"{', '.join(labels.get(k, k) for k in KINDS[:-1])} eller {labels.get(KINDS[-1], KINDS[-1])}.")
        host = person_id(r.host, active)
        if host is None:
            problems.append(f"{where}: värden ”{r.host.strip()}” är ingen av nätverkets medlemmar"
                            + (" – skriv för- och efternamn." if r.host.strip() else " – skriv vem som är värd."))
        backup = person_id(r.backup_host, active) if r.backup_host.strip() else None
        if r.backup_host.strip() and backup is None:
            problems.append(f"{where}: reservvärden ”{r.backup_host.strip()}” är ingen av nätverkets medlemmar "
                            f"– skriv för- och efternamn, eller lämna rutan tom.")
        if host is not None and backup == host:
            problems.append(f"{where}: värd och reservvärd är samma person – välj en annan reserv.")
        day = parse_date(r.date, month)
        if isinstance(day, str):
            problems.append(f"{where}: {day}.")
            continue
        if day is not None and day.strftime("%Y-%m") != month:
            problems.append(f"{where}: {date_text(day)} ligger inte i {_month_text(month)}.")
            continue
        theme_no, theme = _theme(r.theme)
        if not theme:
            problems.append(f"{where}: temat saknas – skriv månadens tema.")
        if problems or kind is None or host is None:
            continue
        later = day is None and kind in ("physical", "study_trip")
        meetings.append(PlannedMeeting.model_validate({
            "month": month, "kind": kind, "theme_no": theme_no, "theme": theme, "host": host,
            "backup_host": backup, "date": day, "tentative": later}))
    if problems:
        return Checked(None, tuple(problems))
    months = {m.month for m in meetings}
    without = [f"{year}-{mo:02d}" for mo in range(1, 13) if f"{year}-{mo:02d}" not in months and mo != 1]
    try:
        plan = Plan(year=year, note=note, meetings=sorted(meetings, key=lambda m: m.month),
                    months_without_meeting=without)
    except ValidationError as exc:  # the rows above are checked; this names what is left
        return Checked(None, tuple(f"Årsplanen: {e['msg']}" for e in exc.errors()))
    return Checked(plan, ())


def _month_text(month: str) -> str:
    return f"{MONTHS_SV[int(month[5:]) - 1]} {month[:4]}"


# ------------------------------------------------------------------ writing rows


def table_rows(meetings: Iterable[_PlanLike], names: dict[str, str], labels: dict[str, str], *,
               holiday_policy: str = "next_working_day", extra_days: frozenset[date] = frozenset()) -> list[tuple[str, ...]]:
    """The year plan as the table's rows (``PLAN_HEADER``), dates in words."""
    out: list[tuple[str, ...]] = []
    for pm in sorted(meetings, key=lambda m: m.month):
        y, mo = int(pm.month[:4]), int(pm.month[5:])
        if pm.date is not None and not pm.tentative:
            when = date_text(pm.date)
        elif pm.kind in ("physical", "study_trip") or pm.tentative:
            when = DATE_LATER
        else:
            when = date_text(apply_holiday_policy(first_monday(y, mo), holiday_policy, extra_days))
        theme = f"Tema {pm.theme_no}: {pm.theme}" if pm.theme_no else pm.theme
        out.append((f"{MONTHS_SV[mo - 1].capitalize()} {y}", when, theme, names.get(pm.host, pm.host),
                    names.get(pm.backup_host, pm.backup_host) if pm.backup_host else "", labels.get(pm.kind, pm.kind)))
    return out


def understood(plan: Plan, names: dict[str, str], labels: dict[str, str], *, holiday_policy: str = "next_working_day",
               extra_days: frozenset[date] = frozenset()) -> list[str]:
    """One Swedish line per month: what the product read (for the receipt)."""
    lines = []
    for month, when, theme, host, backup, kind in table_rows(plan.meetings, names, labels,
                                                              holiday_policy=holiday_policy, extra_days=extra_days):
        lines.append(f"{month} ({when}): {theme} – värd {host}" + (f", reserv {backup}" if backup else "")
                     + f" ({kind})")
    return lines


# ------------------------------------------------------------------ workshop groups


@dataclass(frozen=True)
class GroupTask:
    number: int
    members: tuple[str, ...]  # person ids
    lead: str  # person id
    areas: tuple[str, ...]  # collaboration area names


def group_tasks(groups: Sequence[Sequence[str]], areas: Sequence[str], coordinator: str | None) -> list[GroupTask]:
    """Each group its collaboration area(s), in turn (four areas over three groups:
    the first group takes the first and the fourth), and a lead: the group's first
    member who is not the coordinator (he runs the whole workshop)."""
    n = len(groups)
    out = []
    for i, g in enumerate(groups):
        mine = tuple(a for k, a in enumerate(areas) if n and k % n == i)
        lead = next((p for p in g if p != coordinator), g[0] if g else "")
        out.append(GroupTask(i + 1, tuple(g), lead, mine))
    return out


#: the group exercise of the plan's workshop ("Gruppövning" in Handlingsplan 2023)
WORKSHOP_QUESTIONS = (
    "Vilka möjliga samverkansområden ser ni i ert område? Utgå från behoven och rösterna nedan.",
    "Utgå från vad du själv skulle ha nytta av.",
    "Fundera gärna på de andra områdena också – är något extra intressant?",
    "Vilka fokusområden föreslår ni för året, och vem gör vad och när?",
)
#: the common question before the groups ("Målbild & Prioriteringar")
TARGET_QUESTION = "Vilka dimensioner ska vi fokusera på?"
