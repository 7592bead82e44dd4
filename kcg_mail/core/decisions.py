"""Open decisions between meetings: pure rules, no I/O.

Every filed protocol's decisions table (``Beslut | Ansvarig | Klart till``)
gives decisions. Each decision has a state:

- ``öppen``   (open: listed in the next meetings' templates under the
  report-back point until the host marks it done or struck),
- ``klar``    (done),
- ``struken`` (struck: dropped by the network).

A decision is identified by its meeting and its row: ``2023-02/1``. The
template lists it with that reference; the host writes ``klar``,
``fortsätter`` or ``struken`` in the last column, and the minutes that come
back close or carry it (:func:`apply_marks`).

An owner of an open decision that falls due before the next meeting gets one
short reminder a few working days before the date (:func:`reminders_due`).
``Alla`` (the whole network) is never mailed: such decisions are in the
meeting's template instead.

A decision whose text starts with ``Projektgrupp:`` proposes a project group
(:func:`project_proposal`); the coordinator approves it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from kcg_mail.core.config_model import Person
from kcg_mail.core.plan import MONTHS_SV, is_working_day
from kcg_mail.core.projects_model import slug  # noqa: F401  (re-exported)

State = Literal["öppen", "klar", "struken"]
OPEN: State = "öppen"
DONE: State = "klar"
STRUCK: State = "struken"
STATES: tuple[State, ...] = (OPEN, DONE, STRUCK)

#: Working days before the due date on which the owner is reminded.
REMIND_WORKING_DAYS = 3

#: What the host may write in the template's "Läge" column.
_MARKS: dict[str, State] = {
    "klar": DONE, "klart": DONE, "klara": DONE, "genomfört": DONE, "genomford": DONE, "genomfort": DONE,
    "utfört": DONE, "utfort": DONE, "ja": DONE, "x": DONE, "✓": DONE, "✔": DONE, "done": DONE,
    "fortsätter": OPEN, "fortsatter": OPEN, "fortsatt": OPEN, "pågår": OPEN, "pagar": OPEN, "öppen": OPEN,
    "oppen": OPEN, "kvar": OPEN, "ej klar": OPEN, "inte klar": OPEN, "nej": OPEN,
    "struken": STRUCK, "stryk": STRUCK, "stryks": STRUCK, "struket": STRUCK, "utgår": STRUCK, "utgar": STRUCK,
    "avskrivs": STRUCK, "avskriven": STRUCK, "avförs": STRUCK,
}

_EVERYONE = {"alla", "samtliga", "hela nätverket", "alla medlemmar", "nätverket", "alla i nätverket", "kcg"}

REF_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*/\s*(\d{1,3})\s*$")


@dataclass(frozen=True)
class Decision:
    """One row of a filed protocol's decisions table, with its follow-up state."""

    meeting_id: str
    index: int  # 1-based row number in that protocol's decisions table
    decision: str
    owner: str
    due: str  # as written by the host
    due_date: date | None
    state: State = OPEN
    #: meeting id of the minutes that set the state (``""`` while open from the start)
    settled_in: str = ""

    @property
    def ref(self) -> str:
        return f"{self.meeting_id}/{self.index}"

    @property
    def for_everyone(self) -> bool:
        return is_everyone(self.owner)


@dataclass(frozen=True)
class Mark:
    """What the host wrote about an open decision in the returned minutes."""

    ref: str
    state: State | None  # None: blank or not understood = carried on


@dataclass(frozen=True)
class Reminder:
    decision: Decision
    person: Person
    send_on: date

    @property
    def key_part(self) -> str:
        return f"{self.decision.ref}:{self.person.email}"


@dataclass(frozen=True)
class ProjectProposal:
    name: str
    purpose: str
    lead: str  # person id
    members: tuple[str, ...]  # person ids, lead included
    unknown: tuple[str, ...]  # owner names that match no member


# ------------------------------------------------------------------ parsing


def _fold(s: str) -> str:
    return " ".join(s.lower().split())


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def is_everyone(owner: str) -> bool:
    return _fold(owner).strip(" .!") in _EVERYONE


def parse_mark(text: str) -> State | None:
    """``klar`` / ``fortsätter`` / ``struken`` (and common variants) -> state; blank or
    anything else -> None (the decision is carried on)."""
    t = _fold(text).strip(" .!:;-")
    if not t:
        return None
    if t in _MARKS:
        return _MARKS[t]
    first = t.split(" ")[0].strip(",.;:")
    if first in _MARKS:
        return _MARKS[first]
    return _MARKS.get(_ascii(first))


_ISO = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*$")
_DM = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})(?:\s*[-/]\s*(\d{2,4}))?\s*$")
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})\s+([a-zåäö]+)\.?(?:\s+(\d{4}))?\s*$", re.I)
_MONTH_ONLY = re.compile(r"^\s*(?:(?:i|till|innan|före|senast|slutet av|början av)\s+)*([a-zåäö]+)\.?(?:\s+(\d{4}))?\s*$", re.I)


def _month(word: str) -> int | None:
    w = word.lower().rstrip(".")
    for i, name in enumerate(MONTHS_SV, start=1):
        if name == w or (len(w) >= 3 and name.startswith(w)):
            return i
    return None


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def parse_due(text: str, meeting_date: date) -> date | None:
    """The due date the host wrote: ``2023-03-08``, ``8/3``, ``8 mars (2023)``, ``mars``
    (the month's last day). A date without year that would lie before the meeting
    is taken in the following year. None when it is not a date (``löpande``)."""
    t = text.strip()
    if not t:
        return None
    m = _ISO.match(t)
    if m:
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))

    def in_year(day: int, month: int, year: str | None) -> date | None:
        if year:
            y = int(year)
            return _safe_date(y + 2000 if y < 100 else y, month, day)
        d = _safe_date(meeting_date.year, month, day)
        if d is not None and d < meeting_date:
            d = _safe_date(meeting_date.year + 1, month, day)
        return d

    m = _DM.match(t)
    if m:
        return in_year(int(m[1]), int(m[2]), m[3])
    m = _DAY_MONTH.match(t)
    if m and _month(m[2]):
        return in_year(int(m[1]), _month(m[2]) or 1, m[3])
    m = _MONTH_ONLY.match(t)
    if m and _month(m[1]):
        month = _month(m[1]) or 1
        year = int(m[2]) if m[2] else meeting_date.year + (1 if month < meeting_date.month else 0)
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        return nxt - timedelta(days=1)
    return None


def decisions_of(meeting_id: str, meeting_date: date, rows: Iterable[Mapping[str, str]],
                 states: Mapping[str, tuple[State, str]]) -> list[Decision]:
    """The decisions of one filed protocol (rows as the state store keeps them, in
    order) with their states (``ref -> (state, settled_in)``; missing = open)."""
    out = []
    for i, row in enumerate(rows, start=1):
        ref = f"{meeting_id}/{i}"
        state, settled_in = states.get(ref, (OPEN, ""))
        out.append(Decision(meeting_id, i, row.get("decision", "").strip(), row.get("owner", "").strip(),
                            row.get("due", "").strip(), parse_due(row.get("due", ""), meeting_date), state, settled_in))
    return out


# ---------------------------------------------------------- following up


def open_before(decisions: Iterable[Decision], meeting_dates: Mapping[str, date], before: date) -> list[Decision]:
    """Open decisions taken at meetings before ``before``, oldest first; project-group
    proposals are not listed (they become groups or nothing)."""
    out = [d for d in decisions
           if d.state == OPEN and d.meeting_id in meeting_dates and meeting_dates[d.meeting_id] < before
           and d.decision and project_name(d.decision) is None]
    return sorted(out, key=lambda d: (meeting_dates[d.meeting_id], d.index))


def apply_marks(decisions: Sequence[Decision], marks: Iterable[Mark], in_meeting: str) -> list[Decision]:
    """The decisions whose state the returned minutes of ``in_meeting`` change.
    A blank mark or ``fortsätter`` keeps a decision open (carried on)."""
    by_ref = {d.ref: d for d in decisions}
    changed: dict[str, Decision] = {}
    for mk in marks:
        d = by_ref.get(mk.ref)
        if d is None or mk.state is None or d.meeting_id == in_meeting:
            continue
        if mk.state != d.state:
            changed[d.ref] = replace(d, state=mk.state, settled_in=in_meeting)
    return list(changed.values())


def owners(owner: str, people: Sequence[Person]) -> tuple[list[Person], list[str]]:
    """The members an owner cell names (``Lisa Thörn``, ``Lisa``, ``Lisa och Pia``,
    ``Uppsala City``, an email), and the names that match nobody. ``Alla`` -> none."""
    if is_everyone(owner) or not owner.strip():
        return [], []
    parts = [p.strip(" .") for p in re.split(r",|;|/|&|\+|\boch\b|\n", owner) if p.strip(" .")]
    found: list[Person] = []
    unknown: list[str] = []
    for part in parts:
        part = re.sub(r"\s*\((?:lead|ledare|sammankallande|projektledare)\)\s*$", "", part, flags=re.I)
        key = _ascii(part)
        hits = [p for p in people if key in (_ascii(p.name), p.email.lower(), p.id)]
        if not hits:
            hits = [p for p in people if key and key in (_ascii(p.organisation), _ascii(p.city))]
        if not hits:
            hits = [p for p in people if _ascii(p.name).split(" ")[0] == key]
        if len(hits) == 1:
            if hits[0] not in found:
                found.append(hits[0])
        else:
            unknown.append(part)
    return found, unknown


def working_days_before(d: date, n: int, extra: frozenset[date] = frozenset()) -> date:
    out = d
    while n > 0:
        out -= timedelta(days=1)
        if is_working_day(out, extra):
            n -= 1
    return out


def reminders_due(open_decisions: Iterable[Decision], meeting_dates: Sequence[date], people: Sequence[Person],
                  today: date, *, working_days: int = REMIND_WORKING_DAYS,
                  extra: frozenset[date] = frozenset()) -> list[Reminder]:
    """Reminders to send ``today``: for each open decision with a due date that falls
    before the next meeting after it was taken (so no meeting reports on it first),
    one per named member, from ``working_days`` working days before the date up to
    the date itself. ``Alla`` and unknown owners get none."""
    out = []
    dates = sorted(meeting_dates)
    for d in open_decisions:
        if d.state != OPEN or d.due_date is None or d.for_everyone:
            continue
        send_on = working_days_before(d.due_date, working_days, extra)
        if not (send_on <= today <= d.due_date):
            continue
        upcoming = [m for m in dates if m >= send_on]
        if upcoming and upcoming[0] <= d.due_date:
            continue  # a meeting before the date: it is on that meeting's template
        found, _ = owners(d.owner, people)
        out += [Reminder(d, p, send_on) for p in found]
    return out


# ---------------------------------------------------------- project groups

_PROJECT = re.compile(r"^\s*projekt\s*grupp(?:en)?\s*[:\-–]\s*(.+)$", re.I | re.S)


def project_name(decision: str) -> str | None:
    m = _PROJECT.match(decision)
    if not m:
        return None
    return re.split(r"\s+[–—-]\s+|[.:\n]", m[1].strip(), maxsplit=1)[0].strip() or None


def project_proposal(d: Decision, people: Sequence[Person]) -> ProjectProposal | None:
    """``Projektgrupp: Trygghet i stadskärnan – kartlägga ...`` with owners ``Lisa, Pia``:
    a group named by the text before the dash, led by the first owner."""
    name = project_name(d.decision)
    if name is None:
        return None
    rest = _PROJECT.match(d.decision)[1].strip()  # type: ignore[index]
    purpose = rest[len(name):].strip(" –—-.:\n")
    found, unknown = owners(d.owner, people)
    ids = tuple(p.id for p in found)
    return ProjectProposal(name=name, purpose=purpose, lead=ids[0] if ids else "", members=ids, unknown=tuple(unknown))


def replace_state(d: Decision, state: State, settled_in: str) -> Decision:
    return replace(d, state=state, settled_in=settled_in)
