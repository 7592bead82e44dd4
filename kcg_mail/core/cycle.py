"""The meeting cycle: what is due, decided from (plan, state record, now).

Pure and fast; no I/O. For each meeting the cycle is:

    brief_host -> invite -> remind_host -> send_template -> [meeting]
    -> (minutes arrive by mail: filed and distributed by the intake)
    -> chase_host -> escalate            (only while no minutes are filed)

plus ``update_invitation`` / ``cancel_invitation`` when the plan changed after
an invitation went out. Each step has a window: it becomes due ``lead_days``
from the meeting date and expires when it stops making sense (no "meeting
soon" reminder after the meeting). A step whose window passed while no run
happened is returned as a Skip so the record shows why it never went out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping

from kcg_mail.core.config import LeadTimes
from kcg_mail.core.plan import Meeting

STEPS = ("brief_host", "invite", "remind_host", "send_template", "chase_host", "escalate")


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

    def to_dict(self) -> dict[str, object]:
        return {"uid": self.uid, "sequence": self.sequence, "start": self.start, "end": self.end,
                "location": self.location, "attendees": list(self.attendees), "host": self.host,
                "cancelled": self.cancelled}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "InvitationSnapshot":
        return cls(uid=str(d["uid"]), sequence=int(str(d["sequence"])), start=str(d["start"]), end=str(d["end"]),
                   location=str(d.get("location", "")), attendees=tuple(d.get("attendees", ())),  # type: ignore[arg-type]
                   host=str(d.get("host", "")), cancelled=bool(d.get("cancelled", False)))


@dataclass(frozen=True)
class MeetingState:
    """What the state record says about one meeting."""

    settled: frozenset[str] = frozenset()  # steps done or skipped
    invitation: InvitationSnapshot | None = None
    minutes_filed: bool = False


@dataclass(frozen=True)
class Due:
    meeting_id: str
    action: str
    reason: str


@dataclass(frozen=True)
class Skip:
    meeting_id: str
    action: str
    reason: str


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


def due_dates(m: Meeting, lead: LeadTimes) -> dict[str, date]:
    d = m.date
    return {
        "brief_host": d - timedelta(days=lead.brief_host),
        "invite": d - timedelta(days=lead.invite),
        "remind_host": d - timedelta(days=lead.remind_host),
        "send_template": d - timedelta(days=lead.send_template),
        "chase_host": d + timedelta(days=lead.chase_host),
        "escalate": d + timedelta(days=lead.escalate),
    }


def _window(m: Meeting, step: str, st: MeetingState, now: datetime) -> tuple[bool, str]:
    """(still meaningful?, reason if not)."""
    if step in ("chase_host", "escalate", "send_template") and st.minutes_filed:
        return False, "protokollet har redan kommit in"
    if m.tentative and step != "brief_host":
        if now < m.start:
            return True, ""  # wait: the date may still be confirmed
        return False, "datumet bekräftades aldrig (preliminärt)"
    if step in ("brief_host", "invite", "remind_host") and now >= m.start:
        return False, "mötet har redan börjat"
    return True, ""


def decide(
    meetings: Iterable[Meeting],
    states: Mapping[str, MeetingState],
    now: datetime,
    lead: LeadTimes,
    attendees: Mapping[str, tuple[str, ...]],
    orphans: Mapping[str, InvitationSnapshot] | None = None,
) -> Decisions:
    """What to do now. ``attendees`` maps meeting id to the invitation's
    attendee emails; ``orphans`` are invitations already sent for meetings
    that are no longer in the plan (to be cancelled)."""
    out = Decisions()
    today = now.date()
    for m in meetings:
        st = states.get(m.id, MeetingState())
        dates = due_dates(m, lead)
        for step in STEPS:
            if step in st.settled or today < dates[step]:
                continue
            if step == "invite" and st.invitation is not None:
                # sent, but the run stopped before settling the step
                out.skip.append(Skip(m.id, step, "inbjudan redan skickad"))
                continue
            meaningful, why = _window(m, step, st, now)
            if not meaningful:
                out.skip.append(Skip(m.id, step, why))
            elif m.tentative and step != "brief_host":
                continue
            else:
                out.due.append(Due(m.id, step, f"{step} due {dates[step].isoformat()}"))
        inv = st.invitation
        if inv is not None and inv.cancelled and not m.tentative and now < m.start:
            out.due.append(Due(m.id, "update_invitation", "datumet är bekräftat igen"))
        elif inv is not None and not inv.cancelled and now < m.end:
            if m.tentative:
                out.due.append(Due(m.id, "cancel_invitation", "datumet är inte längre bekräftat"))
            else:
                changed = _changed(inv, m, attendees.get(m.id, ()))
                if changed:
                    out.due.append(Due(m.id, "update_invitation", "ändrat: " + ", ".join(changed)))
    for mid, inv in (orphans or {}).items():
        if not inv.cancelled and datetime.fromisoformat(inv.start) > now:
            out.due.append(Due(mid, "cancel_invitation", "mötet är borttaget ur planen"))
    order = {a: i for i, a in enumerate(("cancel_invitation", "update_invitation") + STEPS)}
    out.due.sort(key=lambda d: (order.get(d.action, 99), d.meeting_id))
    return out


def next_due_date(meetings: Iterable[Meeting], states: Mapping[str, MeetingState], after: date, lead: LeadTimes) -> date | None:
    """The first day after ``after`` on which some step becomes due (for
    simulations and for telling the coordinator what comes next)."""
    best: date | None = None
    for m in meetings:
        st = states.get(m.id, MeetingState())
        for step, d in due_dates(m, lead).items():
            if d > after and step not in st.settled and (best is None or d < best):
                if step in ("chase_host", "escalate") and st.minutes_filed:
                    continue
                best = d
    return best
