"""A draft year plan (``plan-YYYY.yaml``) that follows the network's rules. Pure.

- one meeting a month on the first Monday, moved past Swedish public holidays
  by the configured policy (``kcg_mail.core.plan``); July off;
- the physical meeting in January (unless an earlier plan already has it, as
  ``plan-2023.yaml`` has January 2024) and the next January's physical meeting
  at the end, where next year's plan is adopted;
- the study trip in the month of the last plan's trip, tentative and without a
  date (last year's proposed week is not copied: the coordinator sets it);
- the kind of each month as in the latest earlier plan (August "Möte för alla");
- themes from the planning round's focus topics in vote order (a topic with
  "studieresa" goes to the trip), otherwise placeholders;
- hosts rotated fairly: the member who hosted least recently (never is least
  recently, then roster order) hosts next, so nobody hosts twice before every
  other member has hosted once since. The backup host is a different member,
  by the same rule over earlier backups; the coordinator hosts only if earlier
  plans had them host, and is backup only in the calendar months where earlier
  plans had them as backup.

The coordinator edits the draft before it takes effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from kcg_mail.core.config_model import Person, Plan
from kcg_mail.core.plan import MONTHS_SV, apply_holiday_policy, date_text, first_monday


@dataclass(frozen=True)
class DraftMeeting:
    month: str
    kind: str
    theme: str
    host: str
    backup_host: str | None
    theme_no: int | None = None
    comment: str = ""
    date: date | None = None
    tentative: bool = False
    proposed: str | None = None
    note: str = ""  # the YAML comment: resolved date, holiday move


@dataclass(frozen=True)
class DraftPlan:
    year: int
    meetings: tuple[DraftMeeting, ...]
    months_without_meeting: tuple[str, ...]
    note: str

    def as_dict(self) -> dict[str, object]:
        ms: list[dict[str, object]] = []
        for m in self.meetings:
            d: dict[str, object] = {"month": m.month, "kind": m.kind}
            if m.theme_no is not None:
                d["theme_no"] = m.theme_no
            d["theme"] = m.theme
            d["host"] = m.host
            if m.backup_host:
                d["backup_host"] = m.backup_host
            if m.comment:
                d["comment"] = m.comment
            if m.date is not None:
                d["date"] = m.date.isoformat()
            if m.tentative:
                d["tentative"] = True
            if m.proposed:
                d["proposed"] = m.proposed
            ms.append(d)
        return {"year": self.year, "note": self.note, "months_without_meeting": list(self.months_without_meeting),
                "meetings": ms}

    def to_yaml(self) -> str:
        """The file the coordinator reviews: valid YAML, one block per meeting,
        the resolved date as a comment."""
        q = json.dumps  # a JSON string is a valid YAML scalar
        out = [
            f"# UTKAST till årsplan {self.year}. Årsplanen antas på januarimötet (protokollets avsnitt",
            "# om handlingsplanen) eller när samordnaren svarar ja på frågan om den; ingen kopierar filer.",
            f"year: {self.year}",
            f"note: {q(self.note, ensure_ascii=False)}",
            f"months_without_meeting: {q(list(self.months_without_meeting))}",
            "meetings:",
        ]
        for m, d in zip(self.meetings, self.as_dict()["meetings"]):  # type: ignore[call-overload]
            if m.note:
                out.append(f"  # {m.note}")
            first = True
            for k, v in d.items():
                val = "true" if v is True else (str(v) if isinstance(v, int) else q(v, ensure_ascii=False))
                out.append(f"  {'- ' if first else '  '}{k}: {val}")
                first = False
        return "\n".join(out) + "\n"


def _ym(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


class _Rotation:
    """Least-recently-served first; never served counts as longest ago."""

    def __init__(self, people: list[str], history: list[str]):
        self.people = people
        self.last = {p: -1 for p in people}
        self.clock = 0
        for p in history:
            self.serve(p)

    def serve(self, p: str) -> None:
        self.clock += 1
        if p in self.last:
            self.last[p] = self.clock

    def next(self, exclude: set[str]) -> str:
        free = [p for p in self.people if p not in exclude] or self.people
        return min(free, key=lambda p: (self.last[p], self.people.index(p)))


def draft_plan(year: int, members: list[Person], earlier: list[Plan], *, holiday_policy: str = "next_working_day",
               extra_days: frozenset[date] = frozenset(), themes: list[str] | None = None) -> DraftPlan:
    active = [p for p in members if p.active]
    coordinator = next((p.id for p in active if p.role == "coordinator"), None)
    history = sorted((pm for plan in earlier for pm in plan.meetings if not pm.cancelled), key=lambda m: m.month)
    first_month = _ym(year, 1)
    taken = {pm.month for pm in history}
    past = [pm for pm in history if pm.month < _ym(year + 1, 1)]
    coord_hosted = any(pm.host == coordinator for pm in past)
    hosts = [p.id for p in active if p.id != coordinator or coord_hosted]
    host_rot = _Rotation(hosts, [pm.host for pm in past if pm.month not in ("",)])
    backups = [p.id for p in active if p.id != coordinator]
    backup_rot = _Rotation(backups, [pm.backup_host for pm in past if pm.backup_host])
    coord_backup_months = {pm.month[5:] for pm in past if pm.backup_host == coordinator and coordinator}
    kind_by_month: dict[str, str] = {}
    trip_month = 10
    for pm in past:  # later plans override earlier ones
        if pm.kind in ("digital", "all_members"):
            kind_by_month[pm.month[5:]] = pm.kind
        if pm.kind == "study_trip":
            trip_month = int(pm.month[5:])  # the month only: last year's proposed week is not this year's

    pending = list(themes or [])
    trip_theme = next((t for t in pending if "studieresa" in t.casefold()), None)
    if trip_theme is not None:
        pending.remove(trip_theme)

    slots: list[tuple[str, str]] = []  # (month, kind)
    if first_month not in taken:
        slots.append((first_month, "physical"))
    for mo in range(2, 13):
        if mo == 7:
            continue
        kind = "study_trip" if mo == trip_month else kind_by_month.get(f"{mo:02d}", "digital")
        slots.append((_ym(year, mo), kind))
    if _ym(year + 1, 1) not in taken:
        slots.append((_ym(year + 1, 1), "physical"))

    out: list[DraftMeeting] = []
    no = 0
    for month, kind in slots:
        y, mo = int(month[:4]), int(month[5:])
        host = host_rot.next(set())
        host_rot.serve(host)
        if coordinator and f"{mo:02d}" in coord_backup_months and host != coordinator:
            backup = coordinator
        else:
            backup = backup_rot.next({host})
            backup_rot.serve(backup)
        rule_day = first_monday(y, mo)
        day = apply_holiday_policy(rule_day, holiday_policy, extra_days)
        note = date_text(day) + ("" if day == rule_day else f" (första måndagen {rule_day.isoformat()} är helgdag)")
        theme_no: int | None = None
        comment, proposed, when, tentative = "", None, None, False
        if kind == "physical":
            theme = f"Fysiskt möte {y} – handlingsplan {y}"
            comment = f"Handlingsplan för {y}"
        else:
            no += 1
            theme_no = no
            if kind == "study_trip":
                theme = trip_theme or "Studieresa"
                tentative = True  # no date yet: the coordinator sets the dates and the programme
                note = "studieresa, datum bestäms av samordnaren"
            else:
                theme = pending.pop(0) if pending else f"Tema {no} – att bestämma"
        out.append(DraftMeeting(month=month, kind=kind, theme=theme, host=host, backup_host=backup,
                                theme_no=theme_no, comment=comment, date=when, tentative=tentative,
                                proposed=proposed, note=f"{MONTHS_SV[mo - 1]} {y}: {note}"))
    return DraftPlan(year, tuple(out), (_ym(year, 7),), f"Utkast till handlingsplan {year} – granskas av samordnaren.")
