"""Fair and quiet: when a mail to members may go out (pure).

The rules (``meetings.yaml`` ``member_caps``):

* at most ``per_day`` mails a day and ``per_week`` a calendar week (Monday to
  Sunday) reach a member;
* on a meeting's day only the invitation and the minutes go out.

Every mail falls in one of four classes, by its kind (the template's name):

``always``
    The invitation (and its updates and cancellations) and the minutes: what the
    members need. They count toward the cap but are never held back, also on a
    meeting's day.
``host_task``
    The host's own mails about their meeting (brief, reminder, template, chase,
    a changed plan): they count and are never held back by the cap (they must
    arrive in time: optional mails move around them), but on another meeting's
    day they move to the next working day.
``free``
    Answers to a person's own mail (receipts, a polite "we did not understand")
    and the coordinator's own work (questions, escalations, alerts): they neither
    count nor wait. A mail to the coordinator alone is his work, except the
    planning round's mails, which he gets as every member does.
``paced``
    Everything else (the planning round's needs, ballot, reminders and result,
    decision reminders, project status requests, …): it goes out on the first
    day that keeps the caps for every member it is addressed to and is no
    meeting's day; today when today fits, else the first working day that does.

``send_on`` answers for one candidate mail, given the mails each member already
has on each day (sent, and booked by mails that wait).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from kcg_mail.core.config_model import LeadTimes, MemberCaps
from kcg_mail.core.cycle import invite_days
from kcg_mail.core.plan import Meeting, add_working_days, is_working_day


class Pace(StrEnum):
    ALWAYS = "always"
    HOST_TASK = "host_task"
    FREE = "free"
    PACED = "paced"


#: the invitation and the minutes: they count but always go out
ALWAYS = frozenset({"invite", "update_invitation", "cancel_invitation", "distribute", "save_the_date"})
#: the host's own task mails about their meeting
HOST_TASKS = frozenset({"brief_host", "remind_host", "send_template", "chase_host", "plan_change"})
#: answers to a person's own mail, and the coordinator's work
FREE = frozenset({"planning_receipt", "planning_problem", "coordinator_receipt", "reply_problem", "alert", "alert_operator",
                  "escalate", "guest_approval", "planning_candidates"})
#: mails every member gets, the coordinator too
MEMBER_WIDE = frozenset({"planning_needs", "planning_ballot", "planning_result"})
MEETING_DAY = "en mötesdag: bara inbjudan och protokoll går ut då"
#: how many working days a host's task may move off a meeting's day to find room
HOST_TASK_DAYS = 3
#: how far ahead a waiting mail looks for a day (a bound, never reached with caps >= 1)
HORIZON_DAYS = 120


def pace_of(kind: str, recipients: Collection[str], coordinator: str) -> Pace:
    """The class of a mail of ``kind`` to ``recipients`` (addresses, any case)."""
    if kind in ALWAYS:
        return Pace.ALWAYS
    if kind in HOST_TASKS:
        return Pace.HOST_TASK
    if kind in FREE:
        return Pace.FREE
    people = {r.lower() for r in recipients}
    if people == {coordinator.lower()} and kind not in MEMBER_WIDE:
        return Pace.FREE
    return Pace.PACED


def counts(pace: Pace) -> bool:
    """Does a mail of this class count toward the cap?"""
    return pace is not Pace.FREE


@dataclass(frozen=True)
class Verdict:
    """When the mail goes out: ``on`` (today: send now) and why it waits."""

    on: date
    reason: str = ""

    def waits(self, today: date) -> bool:
        return self.on > today


def week_of(d: date) -> date:
    """The Monday of ``d``'s calendar week."""
    return d - timedelta(days=d.weekday())


def _fits(day: date, people: Collection[str], booked: Mapping[str, Mapping[date, int]], caps: MemberCaps) -> str:
    """Why ``day`` does not fit (empty: it fits)."""
    monday = week_of(day)
    for person in people:
        mine = booked.get(person, {})
        if mine.get(day, 0) >= caps.per_day:
            return f"högst {caps.per_day} utskick om dagen till en medlem"
        week = sum(n for d, n in mine.items() if week_of(d) == monday)
        if week >= caps.per_week:
            return f"högst {caps.per_week} utskick i veckan till en medlem"
    return ""


def send_on(pace: Pace, members: Collection[str], today: date, booked: Mapping[str, Mapping[date, int]],
            meeting_days: Collection[date], caps: MemberCaps, extra: frozenset[date] = frozenset(),
            own_meeting: date | None = None) -> Verdict:
    """The day a mail of class ``pace`` to ``members`` (the members among its
    recipients, lower case) goes out, candidate day ``today``. ``booked``: per
    member and day, the counted mails sent or waiting for that day (this one not
    among them). ``own_meeting``: the day of the meeting the mail is about; a
    host's task about the meeting held today (a late template) goes today."""
    if pace in (Pace.ALWAYS, Pace.FREE) or not members:
        return Verdict(today)
    meetings = frozenset(meeting_days)
    if pace is Pace.HOST_TASK:
        if today not in meetings or today == own_meeting:
            return Verdict(today)
        # the next working day that is no meeting's day, one with room that day when
        # there is one within HOST_TASK_DAYS (the host's tasks must arrive in time)
        days: list[date] = []
        day = today + timedelta(days=1)
        while len(days) < HOST_TASK_DAYS:
            if is_working_day(day, extra) and day not in meetings:
                days.append(day)
            day += timedelta(days=1)
        roomy = [d for d in days if all(booked.get(p, {}).get(d, 0) < caps.per_day for p in members)]
        return Verdict((roomy or days)[0], MEETING_DAY)
    first_reason = ""
    day = today
    for _ in range(HORIZON_DAYS):
        if day in meetings:
            why = MEETING_DAY
        elif day != today and not is_working_day(day, extra):
            why = "inte en arbetsdag"
        else:
            why = _fits(day, sorted(members), booked, caps)
        if not why:
            return Verdict(day, first_reason)
        first_reason = first_reason or why
        day += timedelta(days=1)
    return Verdict(day, first_reason)  # not reached: caps are at least one a day and a week


def expected(meetings: Iterable[Meeting], members: Collection[str], lead: LeadTimes,
             extra: frozenset[date] = frozenset(), kind_lead: Mapping[str, LeadTimes] | None = None,
             ) -> dict[str, set[date]]:
    """The days a counted mail is expected for each member although it is not sent
    yet: the invitation (``lead.invite`` working days before a confirmed meeting),
    the minutes (the working day after it) and the host's brief and the
    template (with the reminder). A mail that may wait keeps off them, whoever runs first that day."""
    out: dict[str, set[date]] = {p.lower(): set() for p in members}
    meetings = list(meetings)
    invites = invite_days(meetings, lambda x: (kind_lead or {}).get(x.kind, lead), extra)
    for m in meetings:
        if m.tentative:
            continue
        everyone = {invites[m.id], add_working_days(m.date, 1, extra)}
        for p in out:
            out[p] |= everyone
        own = (kind_lead or {}).get(m.kind, lead)
        host_days = {add_working_days(m.date, -n, extra) for n in (own.brief_host, own.send_template)}
        for person in (m.host, m.backup_host):
            if person is not None and person.email.lower() in out:
                out[person.email.lower()] |= host_days
    return out


def with_expected(booked: Mapping[str, Mapping[date, int]], expected_days: Mapping[str, Collection[date]],
                  today: date) -> dict[str, dict[date, int]]:
    """``booked`` with at least one mail on every expected day from ``today`` on."""
    out = {p: dict(days) for p, days in booked.items()}
    for p, days in expected_days.items():
        mine = out.setdefault(p, {})
        for d in days:
            if d >= today:
                mine[d] = max(mine.get(d, 0), 1)
    return out


# ------------------------------------------------------------------ what reached the members


@dataclass(frozen=True)
class SentMail:
    """One mail as it went out: its key, kind, day and recipients."""

    key: str
    kind: str
    day: date
    to: tuple[str, ...]


@dataclass(frozen=True)
class CapCheck:
    """How the caps held over a set of sent mails: the most counted mails one
    member got in a day and in a week, and every break (none when they held)."""

    caps: MemberCaps
    max_day: int
    max_week: int
    over_day: tuple[tuple[str, date, int], ...]
    over_week: tuple[tuple[str, date, int], ...]
    on_meeting_days: tuple[tuple[str, date, str], ...]
    #: counted mails per (member, day) and per (member, Monday of the week)
    days: Mapping[tuple[str, date], int] = field(default_factory=dict)
    weeks: Mapping[tuple[str, date], int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return not (self.over_day or self.over_week or self.on_meeting_days)

    def most(self, month: str) -> tuple[int, int]:
        """The most counted mails a member got in a day of ``month`` (YYYY-MM) and
        in a week with a day in it."""
        day = max((n for (_, d), n in self.days.items() if d.isoformat()[:7] == month), default=0)
        week = max((n for (_, d), n in self.weeks.items()
                    if month in (d.isoformat()[:7], (d + timedelta(days=6)).isoformat()[:7])), default=0)
        return day, week


def check_caps(mails: Iterable[SentMail], members: Collection[str], coordinator: str,
               meeting_days: Collection[date], caps: MemberCaps) -> CapCheck:
    """Count what reached each member (the counted classes only) per day and
    calendar week, and list the mails other than the invitation and the minutes
    that went out on a meeting's day."""
    people = {m.lower() for m in members}
    meetings = frozenset(meeting_days)
    per_day: dict[tuple[str, date], int] = {}
    bad_days: list[tuple[str, date, str]] = []
    for m in mails:
        pace = pace_of(m.kind, m.to, coordinator)
        if not counts(pace):
            continue
        for person in sorted({t.lower() for t in m.to} & people):
            per_day[(person, m.day)] = per_day.get((person, m.day), 0) + 1
            if m.day in meetings and pace is not Pace.ALWAYS:
                bad_days.append((person, m.day, m.key))
    per_week: dict[tuple[str, date], int] = {}
    for (person, day), n in per_day.items():
        per_week[(person, week_of(day))] = per_week.get((person, week_of(day)), 0) + n
    return CapCheck(
        caps, max(per_day.values(), default=0), max(per_week.values(), default=0),
        tuple(sorted((p, d, n) for (p, d), n in per_day.items() if n > caps.per_day)),
        tuple(sorted((p, d, n) for (p, d), n in per_week.items() if n > caps.per_week)),
        tuple(sorted(bad_days)), per_day, per_week)
