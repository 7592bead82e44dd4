"""The year plan resolved into concrete meetings: calendar rules, times,
places, people. Pure: config in, meetings out.

Calendar rules: a meeting is on the first Monday of its month; if that day is
a Swedish public holiday (or a configured extra day off) the holiday policy
moves it (default: next working day). A ``date:`` in the plan overrides the
rule. A tentative meeting keeps its proposed date but is marked tentative.

A kind whose date the coordinator decides (``meetings.yaml`` ``kinds.<kind>.date_by:
coordinator``: the physical meetings, the study trip, the open meeting) has no
automatic date: until his decision (a ``DateDecision``, kept in the state record
and passed in here) the meeting is tentative and ``awaiting`` says what he is
asked. A tentative date in the plan is a question too (``confirm_date``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from kcg_mail.core.config_model import Config, Person, PlannedMeeting
from kcg_mail.core.naming import render_name, safe_path

MONTHS_SV = ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
             "september", "oktober", "november", "december"]
WEEKDAYS_SV = ["måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"]


@lru_cache(maxsize=64)
def _swedish_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("SE", years=year).keys())


def is_working_day(d: date, extra: frozenset[date] = frozenset()) -> bool:
    return d.weekday() < 5 and d not in _swedish_holidays(d.year) and d not in extra


@lru_cache(maxsize=8192)
def add_working_days(d: date, n: int, extra: frozenset[date] = frozenset()) -> date:
    """The ``n``-th working day after ``d`` (before it when ``n`` is negative);
    ``n == 0`` is ``d`` itself moved forward to a working day. Weekends,
    Swedish public holidays and ``extra`` days do not count."""
    if n == 0:
        return working_day_on_or_after(d, extra)
    step = timedelta(days=1 if n > 0 else -1)
    left = abs(n)
    while left:
        d += step
        if is_working_day(d, extra):
            left -= 1
    return d


def working_day_on_or_after(d: date, extra: frozenset[date] = frozenset()) -> date:
    while not is_working_day(d, extra):
        d += timedelta(days=1)
    return d


def first_monday(year: int, month: int) -> date:
    d = date(year, month, 1)
    return d + timedelta(days=(7 - d.weekday()) % 7)


def apply_holiday_policy(d: date, policy: str, extra: frozenset[date] = frozenset()) -> date:
    if policy == "keep":
        return d
    step = timedelta(days=1 if policy == "next_working_day" else -1)
    while not is_working_day(d, extra):
        d += step
    return d


def date_text(d: date) -> str:
    """Swedish long date: 'måndag 6 februari 2023'."""
    return f"{WEEKDAYS_SV[d.weekday()]} {d.day} {MONTHS_SV[d.month - 1]} {d.year}"


#: the place shown until the coordinator sets it (a kind with ``needs_place``)
PLACE_LATER = "Plats meddelas senare"


@dataclass(frozen=True)
class DateDecision:
    """The coordinator's decision about a meeting's date (by reply or form): a new
    date and times, a place, or his yes to the proposed date. Empty fields keep
    what the plan says."""

    date: date | None = None
    start: time | None = None
    end: time | None = None
    place: str = ""
    confirmed: bool = False

    @property
    def fixes_date(self) -> bool:
        return self.date is not None or self.confirmed

    def merged(self, newer: DateDecision) -> DateDecision:
        """This decision with a later answer over it (a place sent after the date, a moved date)."""
        moved = newer.date is not None and newer.date != self.date
        return DateDecision(
            date=newer.date or self.date,
            start=newer.start or (None if moved else self.start),
            end=newer.end or (None if moved else self.end),
            place=newer.place or self.place,
            confirmed=self.confirmed or newer.confirmed or newer.date is not None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date.isoformat() if self.date else None,
                "start": self.start.strftime("%H:%M") if self.start else None,
                "end": self.end.strftime("%H:%M") if self.end else None,
                "place": self.place, "confirmed": self.confirmed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DateDecision:
        def hm(v: Any) -> time | None:
            return time.fromisoformat(str(v)) if v else None

        return cls(date=date.fromisoformat(str(d["date"])) if d.get("date") else None, start=hm(d.get("start")),
                   end=hm(d.get("end")), place=str(d.get("place") or ""), confirmed=bool(d.get("confirmed")))


@dataclass(frozen=True)
class Meeting:
    id: str
    month: str
    kind: str
    kind_label: str
    theme_no: int | None
    theme: str
    host: Person
    backup_host: Person | None
    comment: str
    guests: tuple[Person, ...]
    date: date
    start: datetime
    end: datetime
    tentative: bool
    proposed: str | None
    place: str
    link: str
    network_short: str
    #: who decides the date: "rule" (the calendar rule) or "coordinator"
    date_by: str = "rule"
    #: what the coordinator is asked while the date (or place) is open:
    #: "set_meeting", "confirm_date", "set_place" or "" (nothing)
    awaiting: str = ""
    #: the kind's programme (replaces the standing agenda when set)
    programme: tuple[str, ...] = ()
    #: the wider audience invited as guests are (their own invitation)
    audience: tuple[Person, ...] = ()

    @property
    def token(self) -> str:
        return f"[{self.network_short}-{self.id}]"

    @property
    def theme_label(self) -> str:
        return f"Tema {self.theme_no} {self.theme}" if self.theme_no else self.theme

    @property
    def title(self) -> str:
        return f"{self.network_short} {self.kind_label}: {self.theme_label}"

    def date_text(self) -> str:
        return date_text(self.date)

    def hosts(self) -> tuple[Person, ...]:
        return (self.host,) + ((self.backup_host,) if self.backup_host else ())


def resolve_meeting(cfg: Config, pm: PlannedMeeting, decision: DateDecision | None = None) -> Meeting:
    """The meeting as it will be held; ``decision`` is the coordinator's (the state
    record's) answer about its date, times and place, if any."""
    rules = cfg.meetings
    kr = rules.kind(pm.kind)
    tz = ZoneInfo(rules.timezone)
    extra = frozenset(rules.extra_non_working_days)
    year, month = (int(x) for x in pm.month.split("-"))
    d = decision or DateDecision()
    day = d.date or pm.date or apply_holiday_policy(first_monday(year, month), rules.holiday_policy, extra)
    times = rules.times[pm.kind]
    start_t, end_t = d.start or pm.start or times.start, d.end or pm.end or times.end
    by_coordinator = kr.date_by == "coordinator"
    fixed = d.fixes_date or (pm.date is not None and not pm.tentative) or not (by_coordinator or pm.tentative)
    place_set = bool(d.place or pm.place) or not kr.needs_place
    place = d.place or pm.place or (rules.places.get(pm.kind, "") if place_set else PLACE_LATER)
    if not fixed:
        awaiting = "confirm_date" if pm.tentative else "set_meeting"
    else:
        awaiting = "" if place_set else "set_place"
    net = cfg.network
    return Meeting(
        id=pm.meeting_id,
        month=pm.month,
        kind=pm.kind,
        kind_label=rules.kind_labels.get(pm.kind, pm.kind),
        theme_no=pm.theme_no,
        theme=pm.theme,
        host=net.person(pm.host),
        backup_host=net.person(pm.backup_host) if pm.backup_host else None,
        comment=pm.comment,
        guests=tuple(net.person(g) for g in pm.guests),
        date=day,
        start=datetime.combine(day, start_t, tzinfo=tz),
        end=datetime.combine(day, end_t, tzinfo=tz),
        tentative=not fixed,
        proposed=pm.proposed if pm.tentative and not fixed else None,
        place=place,
        link=pm.link if pm.link is not None else (rules.link if pm.kind == "digital" else ""),
        network_short=net.short,
        date_by="coordinator" if by_coordinator else "rule",
        awaiting=awaiting,
        programme=tuple(rules.programmes.get(pm.kind, ())),
        audience=tuple(p for name in kr.audience for p in net.audiences.get(name, ())),
    )


def resolve_plan(cfg: Config, year: int | None = None,
                 decisions: Mapping[str, DateDecision] | None = None) -> list[Meeting]:
    """All meetings of every plan file, not cancelled, sorted by date (each
    run acts on the meetings around its own date, whichever file holds them);
    ``year`` selects one plan file (``plan-YYYY.yaml``, which may end with
    the January meeting of the next year); ``decisions``: the coordinator's
    decisions about dates, by meeting id (from the state record)."""
    decided = decisions or {}
    out = [
        resolve_meeting(cfg, pm, decided.get(pm.meeting_id))
        for plan in cfg.plans
        if year is None or plan.year == year
        for pm in plan.meetings
        if not pm.cancelled
    ]
    return sorted(out, key=lambda m: m.start)


def next_meeting(meetings: list[Meeting], meeting: Meeting) -> Meeting | None:
    later = [m for m in meetings if m.start > meeting.start]
    return later[0] if later else None


def naming_values(cfg: Config, m: Meeting) -> dict[str, object]:
    return {
        "date": m.date.isoformat(), "short": cfg.network.short, "doc": cfg.meetings.naming.get("doc", "Beslutsprotokoll"),
        "theme_no": m.theme_no or "", "theme": m.theme, "theme_label": m.theme_label, "host": m.host.name,
        "city": m.host.city, "year": m.date.year, "month": f"{m.date.month:02d}", "kind": m.kind_label,
    }


def protocol_filename(cfg: Config, m: Meeting) -> str:
    return render_name(cfg.meetings.naming["file"], naming_values(cfg, m)) + ".docx"


def archive_folder(cfg: Config, m: Meeting) -> str:
    return safe_path(cfg.meetings.naming["folder"].format(**naming_values(cfg, m)))


def as_json(m: Meeting) -> dict[str, object]:
    return {
        "id": m.id, "date": m.date.isoformat(), "start": m.start.isoformat(), "end": m.end.isoformat(),
        "kind": m.kind, "kind_label": m.kind_label, "theme_no": m.theme_no, "theme": m.theme,
        "host": m.host.name, "backup_host": m.backup_host.name if m.backup_host else None,
        "tentative": m.tentative, "proposed": m.proposed, "comment": m.comment,
        "guests": [g.name for g in m.guests], "place": m.place, "link": m.link,
    }
