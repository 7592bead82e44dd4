"""The meeting cycle: what is due, decided from (plan, state record, now).

Pure and fast; no I/O. For each meeting the cycle is:

    brief_host -> invite -> send_template -> [meeting]
    -> (minutes arrive by mail: filed and distributed by the intake)
    -> chase_host -> escalate            (only while no minutes are filed)

plus ``update_invitation`` / ``cancel_invitation`` when the plan changed after
an invitation went out. ``send_template`` is the host's reminder and the Word
template in one mail (a host gets the brief, this mail, and a chase only while
the minutes are missing). Records of meetings cycled before that may hold a
settled ``remind_host`` step; it is no longer planned. A meeting whose date the
coordinator set may have a save-the-date out already (``InvitationSnapshot.stage``,
sent by ``kcg_mail.services.meeting_dates``, which also keeps it up to date): the
invitation is then the update of that same calendar event. Each kind has its
own lead times (``kind_lead``). The rules:

- Lead times count Swedish working days (``kcg_mail.core.plan``); nothing is
  due on a weekend or a public holiday.
- Go-live: meetings held before the go-live date are history ("före start"):
  nothing is sent for them, except the template for a meeting held at most
  ``late_template`` working days before go-live. Steps whose day fell before
  go-live but still make sense (the meeting is ahead) are due on go-live.
- Spacing: a chase is due ``chase_host`` working days after the meeting and
  at least ``spacing`` working days after the template actually went out; an
  escalation ``escalate`` working days after the meeting and at least
  ``spacing`` after the chase actually went out. No chase without a template
  that went out, no escalation without a chase.
- One mail a day per person and meeting: when several of the host's steps are
  due on one run, only the latest goes out and the earlier ones are settled as
  replaced by it; a host step waits a day when another one went out today.
  (The calendar invitation goes to everyone and is not counted as a mail.)
- Each step has a window: it expires when it stops making sense (no "meeting
  soon" reminder after the meeting). A step whose window passed is returned
  as a Skip so the record shows why it never went out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from kcg_mail.core.config_model import LeadTimes
from kcg_mail.core.plan import Meeting, add_working_days, is_working_day, working_day_on_or_after

STEPS = ("brief_host", "invite", "send_template", "chase_host", "escalate")
#: the stage of a calendar event that only holds the date (no place, no programme yet)
SAVE_THE_DATE = "save_the_date"


@dataclass(frozen=True)
class InvitationSnapshot:
    """What an invitation said when it went out; a difference means an update."""

    uid: str
    sequence: int
    start: str
    end: str
    location: str
    attendees: tuple[str, ...]
    host: str
    cancelled: bool = False
    #: "invite" (the invitation) or SAVE_THE_DATE (the date only, the invitation follows)
    stage: str = "invite"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"uid": self.uid, "sequence": self.sequence, "start": self.start, "end": self.end,
                                  "location": self.location, "attendees": list(self.attendees), "host": self.host,
                                  "cancelled": self.cancelled}
        if self.stage != "invite":
            out["stage"] = self.stage
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> InvitationSnapshot:
        return cls(uid=str(d["uid"]), sequence=int(str(d["sequence"])), start=str(d["start"]), end=str(d["end"]),
                   location=str(d.get("location", "")), attendees=tuple(d.get("attendees", ())),  # type: ignore[arg-type]
                   host=str(d.get("host", "")), cancelled=bool(d.get("cancelled", False)),
                   stage=str(d.get("stage", "invite")))


@dataclass(frozen=True)
class MeetingState:
    """What the state record says about one meeting."""

    settled: frozenset[str] = frozenset()  # steps done or skipped
    invitation: InvitationSnapshot | None = None
    minutes_filed: bool = False
    #: the day each step actually went out (steps done, not skipped)
    sent_on: Mapping[str, date] = field(default_factory=dict)


@dataclass(frozen=True)
class StepDecision:
    """What ``decide`` says about one step of a meeting's cycle, and why."""

    meeting_id: str
    action: str
    reason: str


class Due(StepDecision):
    """A step to take now."""


class Skip(StepDecision):
    """A step passed over (settled without sending)."""


@dataclass(frozen=True)
class Decisions:
    due: list[Due] = field(default_factory=list)
    skip: list[Skip] = field(default_factory=list)


def location_of(m: Meeting) -> str:
    return " – ".join(x for x in (m.place, m.link) if x)


def invitation_snapshot(m: Meeting, attendees: Iterable[str], uid: str, sequence: int) -> InvitationSnapshot:
    return InvitationSnapshot(uid=uid, sequence=sequence, start=m.start.isoformat(), end=m.end.isoformat(),
                              location=location_of(m), attendees=tuple(sorted(attendees)), host=m.host.email)


def _changed(snap: InvitationSnapshot, m: Meeting, attendees: Iterable[str]) -> list[str]:
    cur = invitation_snapshot(m, attendees, snap.uid, snap.sequence)
    return [name for name in ("start", "end", "location", "attendees", "host") if getattr(cur, name) != getattr(snap, name)]


HOST_STEPS = ("brief_host", "send_template", "chase_host")
HISTORY = "mötet hölls före start"


def is_history(m: Meeting, go_live: date | None) -> bool:
    """Held before the go-live date: shown as "före start", nothing sent."""
    return go_live is not None and m.date < go_live


def member_mail_days(meetings: Iterable[Meeting], extra: frozenset[date] = frozenset()) -> frozenset[date]:
    """The days the members already get a mail that always goes out, or should get
    none but it: each confirmed meeting's day and the working day after it (its
    minutes)."""
    return frozenset(d for m in meetings if not m.tentative for d in (m.date, add_working_days(m.date, 1, extra)))


def invite_days(meetings: Iterable[Meeting], lead_for: Callable[[Meeting], LeadTimes],
                extra: frozenset[date] = frozenset()) -> dict[str, date]:
    """The day of each meeting's invitation: ``invite`` working days before it, moved
    earlier past the days the members already get a mail that always goes out (a
    meeting's day, its minutes the day after: ``member_mail_days``) and past the
    invitation of an earlier meeting, so that no member gets two of them on one
    day (the member caps of ``core.pacing``)."""
    ordered = sorted(meetings, key=lambda m: m.date)
    busy = set(member_mail_days(ordered, extra))
    out: dict[str, date] = {}
    for m in ordered:
        day = add_working_days(m.date, -lead_for(m).invite, extra)
        while day in busy and day > m.date - timedelta(days=366):
            day = add_working_days(day, -1, extra)
        out[m.id] = day
        busy.add(day)
    return out


def due_dates(m: Meeting, lead: LeadTimes, extra: frozenset[date] = frozenset(),
              invite: date | None = None) -> dict[str, date]:
    """The planned day of each step, in working days from the meeting date
    (before go-live and spacing are taken into account: see ``step_dates``);
    ``invite``: the invitation's day when ``invite_days`` moved it."""
    d = m.date
    return {
        "brief_host": add_working_days(d, -lead.brief_host, extra),
        "invite": invite or add_working_days(d, -lead.invite, extra),
        "send_template": add_working_days(d, -lead.send_template, extra),
        "chase_host": add_working_days(d, lead.chase_host, extra),
        "escalate": add_working_days(d, lead.escalate, extra),
    }


def step_dates(m: Meeting, st: MeetingState, lead: LeadTimes, go_live: date | None = None,
               extra: frozenset[date] = frozenset(), invite: date | None = None) -> dict[str, date | None]:
    """When each step becomes due given what already went out: ``None`` while
    it waits for the step before it (a chase for the template, an escalation
    for the chase)."""
    planned = due_dates(m, lead, extra, invite)
    out: dict[str, date | None] = dict(planned)
    if go_live is not None:
        start = working_day_on_or_after(go_live, extra)
        for step in ("brief_host", "invite", "send_template"):
            out[step] = max(planned[step], start)
    tpl_on = st.sent_on.get("send_template")
    out["chase_host"] = None if tpl_on is None else max(planned["chase_host"], add_working_days(tpl_on, lead.spacing, extra))
    chase_on = st.sent_on.get("chase_host")
    out["escalate"] = None if chase_on is None else max(planned["escalate"], add_working_days(chase_on, lead.spacing, extra))
    return out


def _window(m: Meeting, step: str, st: MeetingState, now: datetime, lead: LeadTimes, go_live: date | None,
            extra: frozenset[date]) -> tuple[bool, str]:
    """(still meaningful?, reason if not)."""
    if step in ("chase_host", "escalate", "send_template") and st.minutes_filed:
        return False, "protokollet har redan kommit in"
    if is_history(m, go_live):
        assert go_live is not None
        late_ok = m.date >= add_working_days(go_live, -lead.late_template, extra)
        if not (late_ok and not m.tentative and step in ("send_template", "chase_host", "escalate")):
            return False, f"{HISTORY} ({go_live.isoformat()})"
    if step == "chase_host" and "send_template" in st.settled and "send_template" not in st.sent_on:
        return False, "mallen skickades aldrig"
    if step == "escalate" and "chase_host" in st.settled and "chase_host" not in st.sent_on:
        return False, "ingen påminnelse skickades"
    if m.tentative and step != "brief_host":
        if now < m.start:
            return True, ""  # wait: the date may still be confirmed
        return False, "datumet bekräftades aldrig (preliminärt)"
    if step in ("brief_host", "invite") and now >= m.start:
        return False, "mötet har redan börjat"
    return True, ""


def decide(
    meetings: Iterable[Meeting],
    states: Mapping[str, MeetingState],
    now: datetime,
    lead: LeadTimes,
    attendees: Mapping[str, tuple[str, ...]],
    orphans: Mapping[str, InvitationSnapshot] | None = None,
    *,
    go_live: date | None = None,
    extra: frozenset[date] = frozenset(),
    kind_lead: Mapping[str, LeadTimes] | None = None,
) -> Decisions:
    """What to do now. ``attendees`` maps meeting id to the invitation's
    attendee emails; ``orphans`` are invitations already sent for meetings
    that are no longer in the plan (to be cancelled); ``go_live`` is the day
    the network started using kcg-mail; ``extra`` are more days off;
    ``kind_lead``: a kind's own lead times (``lead`` for the others)."""
    out = Decisions()
    today = now.date()
    if not is_working_day(today, extra):
        return out  # no mail on weekends and public holidays
    default_lead = lead
    meetings = list(meetings)
    invites = invite_days(meetings, lambda x: (kind_lead or {}).get(x.kind, default_lead), extra)
    for m in meetings:
        lead = (kind_lead or {}).get(m.kind, default_lead)
        st = states.get(m.id, MeetingState())
        dates = step_dates(m, st, lead, go_live, extra, invites[m.id])
        host_due: list[Due] = []
        for step in STEPS:
            when = dates[step]
            if step in st.settled:
                continue
            meaningful, why = _window(m, step, st, now, lead, go_live, extra)
            if not meaningful:
                # a step is recorded as skipped once its day came, or at once
                # for a meeting that is history
                planned = when or due_dates(m, lead, extra, invites[m.id])[step]
                if today >= planned or is_history(m, go_live):
                    out.skip.append(Skip(m.id, step, why))
                continue
            if when is None or today < when:
                continue
            if step == "invite" and st.invitation is not None and st.invitation.stage != SAVE_THE_DATE:
                # sent, but the run stopped before settling the step
                out.skip.append(Skip(m.id, step, "inbjudan redan skickad"))
                continue
            if m.tentative and step != "brief_host":
                continue
            due = Due(m.id, step, f"{step} due {when.isoformat()}")
            (host_due if step in HOST_STEPS else out.due).append(due)
        if host_due:
            if any(st.sent_on.get(s) == today for s in HOST_STEPS):
                pass  # the host already got a mail about this meeting today: the rest waits a day
            else:
                latest = host_due[-1]
                out.due.append(latest)
                for d in host_due[:-1]:
                    out.skip.append(Skip(m.id, d.action, f"ersatt av {latest.action} samma dag"))
        inv = st.invitation
        if inv is not None and inv.cancelled and not m.tentative and now < m.start:
            out.due.append(Due(m.id, "update_invitation", "datumet är bekräftat igen"))
        elif inv is not None and not inv.cancelled and now < m.end:
            if m.tentative:
                out.due.append(Due(m.id, "cancel_invitation", "datumet är inte längre bekräftat"))
            elif inv.stage != SAVE_THE_DATE:  # a save-the-date's updates: services/meeting_dates
                changed = _changed(inv, m, attendees.get(m.id, ()))
                if changed:
                    out.due.append(Due(m.id, "update_invitation", "ändrat: " + ", ".join(changed)))
    for mid, inv in (orphans or {}).items():
        if not inv.cancelled and datetime.fromisoformat(inv.start) > now:
            out.due.append(Due(mid, "cancel_invitation", "mötet är borttaget ur planen"))
    order = {a: i for i, a in enumerate(("cancel_invitation", "update_invitation") + STEPS)}
    out.due.sort(key=lambda d: (order.get(d.action, 99), d.meeting_id))
    return out


def next_due_date(meetings: Iterable[Meeting], states: Mapping[str, MeetingState], after: date, lead: LeadTimes,
                  *, go_live: date | None = None, extra: frozenset[date] = frozenset(),
                  kind_lead: Mapping[str, LeadTimes] | None = None) -> date | None:
    """The first day after ``after`` on which some step becomes due (for
    simulations and for telling the coordinator what comes next). A step
    waiting for the one before it counts from when that one goes out, so a
    simulation steps to it after the earlier step settled."""
    best: date | None = None
    default_lead = lead
    meetings = list(meetings)
    invites = invite_days(meetings, lambda x: (kind_lead or {}).get(x.kind, default_lead), extra)
    for m in meetings:
        lead = (kind_lead or {}).get(m.kind, default_lead)
        st = states.get(m.id, MeetingState())
        if go_live is not None and is_history(m, go_live) and \
                m.date < add_working_days(go_live, -lead.late_template, extra):
            continue
        for step, d in step_dates(m, st, lead, go_live, extra, invites[m.id]).items():
            if d is None or step in st.settled:
                continue
            if step in ("chase_host", "escalate", "send_template") and st.minutes_filed:
                continue
            if d <= after:
                held_back = step in HOST_STEPS and any(st.sent_on.get(s) == after for s in HOST_STEPS)
                if not held_back:
                    continue  # was due already: the run on that day settled it or is waiting for it
                d = after + timedelta(days=1)  # one mail a day per person: goes out the next working day
            d = working_day_on_or_after(d, extra)
            if best is None or d < best:
                best = d
    return best
