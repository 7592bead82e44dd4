"""The daily run: execute what the core says is due, one small handler per step.

Each handler composes its mail(s), sends them through the exactly-once
outbox and then settles the step in the state record. Re-running a handler
after a crash re-composes the same keys, so nothing goes out twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kcg_mail.core.config_model import Person
from kcg_mail.core.cycle import SAVE_THE_DATE, Decisions, Due, decide, invitation_snapshot
from kcg_mail.core.plan import Meeting, protocol_filename
from kcg_mail.ports import Attachment
from kcg_mail.services import guests, meeting_dates
from kcg_mail.services.app import App
from kcg_mail.services.compose import DOCX, date_words, person_ctx


@dataclass
class StepResult:
    meeting_id: str
    action: str
    outcome: str  # sent | already | recovered | skipped | failed
    detail: str = ""


@dataclass
class DailyReport:
    now: str
    results: list[StepResult] = field(default_factory=list)
    skipped: list[StepResult] = field(default_factory=list)
    #: between meetings: decision reminders, project status requests, calendar feed
    between: list[StepResult] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(1 for r in self.results if r.outcome == "sent")


def protocol_context(app: App, m: Meeting) -> dict[str, Any]:
    """Everything the Word template needs, pre-filled from plan and state."""
    cfg = app.cfg
    att = app.state.attendance(m.id)
    yes = {"ACCEPTED": "Ja", "DECLINED": "Nej", "TENTATIVE": "Kanske"}
    members = sorted(cfg.network.active_members, key=lambda p: (p.city, p.name))
    nxt = app.composer.next_ahead(app.meetings, m)  # never a meeting already held
    mctx = app.composer.meeting_ctx(m, app.meetings)
    return {
        "network": {"name": cfg.network.name, "short": cfg.network.short},
        # the filled-in minutes go to every member: never the plan's comment (an instruction
        # for the host and the coordinator, in the host's brief); the row is the host's to fill
        "meeting": {**mctx, "guests": mctx["guests"], "comment": ""},
        "members": [{**person_ctx(p), "attendance": yes.get(att.get(p.email, ""), "")} for p in members],
        "agenda": list(m.programme or cfg.meetings.agenda),  # a kind's programme replaces the standing agenda
        "next_meeting": None if nxt is None else {"date_text": nxt.date_text(), "host_name": nxt.host.name,
                                                   "theme": nxt.theme_label},
        "rules": list(cfg.network.rules),
        "values": list(cfg.network.values),
        "decision_rows": cfg.meetings.decision_rows,
        "followup": _followup_context(app, m),
        "plan": _plan_section(app, m),
    }


def _plan_section(app: App, m: Meeting) -> dict[str, Any] | None:
    from kcg_mail.services.plan_adoption import protocol_section  # the January meeting adopts the plan

    return protocol_section(app, m)


def _followup_context(app: App, m: Meeting) -> dict[str, Any]:
    from kcg_mail.services.followup import followup_context  # open decisions, project groups

    return followup_context(app, m)


def render_protocol(app: App, m: Meeting) -> Attachment:
    data = app.renderer.render(protocol_context(app, m))
    return Attachment(protocol_filename(app.cfg, m), DOCX, data)


# ------------------------------------------------------------------ handlers


def brief_host(app: App, m: Meeting, now: datetime) -> str:
    msg = app.composer.message(
        "brief_host", f"{m.id}:brief_host:{m.host.email}", m, [m.host], {"meeting": app.composer.meeting_ctx(m, app.meetings)},
        cc=[m.backup_host] if m.backup_host else [],
    )
    return app.outbox.send(msg)


def member_attendees(app: App, m: Meeting) -> list[Person]:
    """Who is on the members' invitation: the active members. Guests get one of their
    own (``kcg_mail.services.guests``) and are never on this one."""
    return [p for p in app.attendees(m) if p.role != "guest"]


def invite_members(app: App, m: Meeting, now: datetime, *, cancel: bool) -> str:
    prev = app.invitation(m.id)
    seq = 0 if prev is None else prev.sequence + 1
    people = member_attendees(app, m)
    # after a save-the-date (services/meeting_dates) the invitation is the first one members read
    first = prev is None or (prev.stage == SAVE_THE_DATE and not prev.cancelled)
    inv = app.composer.invitation(m, app.meetings, people, seq, cancel=cancel, now=now, updated=not first)
    outcome = app.outbox.send_invitation(inv)
    snap = invitation_snapshot(m, [p.email for p in people], inv.uid, seq)
    if cancel:
        snap = type(snap)(**{**snap.__dict__, "cancelled": True})
    app.set_invitation(m.id, snap)
    return outcome


def invite(app: App, m: Meeting, now: datetime) -> str:
    return invite_members(app, m, now, cancel=False)


def update_invitation(app: App, m: Meeting, now: datetime, changes: list[str] | None = None) -> str:
    # The hosts' mails go first: the invitation's snapshot is what tells a
    # rerun that the plan changed, so once it is written after a crash the
    # plan_change mails would never be sent. Same keys on a rerun: no doubles.
    prev = app.invitation(m.id)
    seq = 0 if prev is None else prev.sequence + 1
    hosts = {p.email: p for p in m.hosts()}
    if prev is not None and prev.host and prev.host not in hosts:
        old = next((p for p in app.cfg.network.members if p.email == prev.host), None)
        if old is not None:
            hosts[old.email] = old
    for person in hosts.values():
        app.outbox.send(app.composer.message(
            "plan_change", f"{m.id}:plan_change:{person.email}:s{seq}", m, [person],
            {"meeting": app.composer.meeting_ctx(m, app.meetings), "person": person_ctx(person),
             "changes": changes or ["tid eller plats"]},
        ))
    return invite_members(app, m, now, cancel=False)


def cancel_invitation(app: App, m: Meeting, now: datetime) -> str:
    return invite_members(app, m, now, cancel=True)


def send_template(app: App, m: Meeting, now: datetime) -> str:
    """The host's reminder and the protocol template, one mail."""
    att = render_protocol(app, m)
    msg = app.composer.message(
        "send_template", f"{m.id}:send_template:{m.host.email}", m, [m.host],
        {"meeting": app.composer.meeting_ctx(m, app.meetings), "filename": att.filename},
        cc=[m.backup_host] if m.backup_host else [], attachments=(att,),
    )
    return app.outbox.send(msg)


def chase_host(app: App, m: Meeting, now: datetime) -> str:
    tpl = app.state.action(f"{m.id}:send_template:{m.host.email}")
    msg = app.composer.message(
        "chase_host", f"{m.id}:chase_host:{m.host.email}", m, [m.host], {"meeting": app.composer.meeting_ctx(m, app.meetings)},
        cc=[m.backup_host] if m.backup_host else [],
        in_reply_to=tpl.detail.get("message_id") if tpl else None,
    )
    return app.outbox.send(msg)


def escalate(app: App, m: Meeting, now: datetime) -> str:
    coord = app.cfg.network.coordinator
    msg = app.composer.message(
        "escalate", f"{m.id}:escalate:{coord.email}", m, [coord],
        {"meeting": app.composer.meeting_ctx(m, app.meetings), "days_late": (now.date() - m.date).days},
    )
    return app.outbox.send(msg)


HANDLERS: dict[str, Callable[..., str]] = {
    "brief_host": brief_host,
    "invite": invite,
    "send_template": send_template,
    "chase_host": chase_host,
    "escalate": escalate,
}


def plan_day(app: App, now: datetime) -> Decisions:
    states = app.meeting_states()
    attendees = {m.id: tuple(p.email for p in member_attendees(app, m)) for m in app.meetings}
    rules = app.cfg.meetings
    return decide(app.meetings, states, now, rules.lead_days, attendees, app.orphan_invitations(),
                  go_live=app.go_live(now), extra=app.extra_days,
                  kind_lead={m.kind: rules.lead_for(m.kind) for m in app.meetings})


def execute(app: App, due: Due, now: datetime) -> StepResult:
    m = app.meeting(due.meeting_id)
    if due.action == "cancel_invitation" and m is None:
        return StepResult(due.meeting_id, due.action, cancel_orphan(app, due.meeting_id, now), due.reason)
    if m is None:  # the core plans steps only for meetings of the plan
        raise LookupError(f"{due.action} for {due.meeting_id}, which is not in the plan")
    if due.action == "update_invitation":
        changes = due.reason.removeprefix("ändrat: ").split(", ")
        return StepResult(due.meeting_id, due.action, update_invitation(app, m, now, changes), due.reason)
    if due.action == "cancel_invitation":
        return StepResult(due.meeting_id, due.action, cancel_invitation(app, m, now), due.reason)
    outcome = HANDLERS[due.action](app, m, now)
    app.settle(m.id, due.action, "done", {"outcome": outcome, "on": now.date().isoformat()})
    return StepResult(due.meeting_id, due.action, outcome, due.reason)


def cancel_orphan(app: App, meeting_id: str, now: datetime) -> str:
    """Cancel an invitation for a meeting that was removed from the plan,
    from what the state record says was sent."""
    from kcg_mail.core import ical
    from kcg_mail.ports import Address, Invitation, OutgoingMessage
    from kcg_mail.services.compose import addr

    snap = app.invitation(meeting_id)
    if snap is None:  # the core cancels only invitations the state record holds
        raise LookupError(f"no invitation recorded for {meeting_id}")
    people = {p.email: p for p in app.cfg.network.members + app.cfg.network.guests}
    attendees = [addr(people[e]) if e in people else Address(e, e) for e in snap.attendees if e in people]
    start, end = datetime.fromisoformat(snap.start), datetime.fromisoformat(snap.end)
    seq = snap.sequence + 1
    sender = app.composer.sender
    coord = app.cfg.network.coordinator
    when = date_words(start.date(), now.date())
    text = (f"Hej alla!\n\nMötet {when} är inställt och borttaget ur årsplanen, och vi tar bort det ur "
            f"kalendern.\n\nVänliga hälsningar\n{coord.name}, {coord.organisation}\n")
    ev = ical.event(uid=snap.uid, sequence=seq, summary=f"Inställt: {app.cfg.network.short}-möte", description=text,
                    location=snap.location, start=start, end=end, organizer=sender, attendees=attendees, dtstamp=now,
                    status="CANCELLED")
    ics = ical.calendar([ev], method="CANCEL", tzid=app.cfg.meetings.timezone)
    msg = OutgoingMessage(key=f"{meeting_id}:cancel:members:s{seq}", action="cancel_invitation", meeting_id=meeting_id,
                          sender=sender, to=tuple(attendees), subject=f"Inställt: {app.cfg.network.short}-mötet "
                          f"{when} [{app.cfg.network.short}-{meeting_id}]", text=text,
                          auto_submitted=False)
    inv = Invitation(message=msg, uid=snap.uid, sequence=seq, method="CANCEL", summary=msg.subject, description=text,
                     location=snap.location, start=start, end=end, tzid=app.cfg.meetings.timezone, ics=ics)
    outcome = app.outbox.send_invitation(inv)
    app.set_invitation(meeting_id, replace(snap, sequence=seq, cancelled=True))
    return outcome


def run_daily(app: App, now: datetime, run_step: Callable[[App, Due, datetime], StepResult] = execute) -> DailyReport:
    """Everything due now. ``run_step`` lets the Prefect flow run each step as a task."""
    report = DailyReport(now=now.isoformat())
    app.outbox.now = now
    plan = plan_day(app, now)
    for s in plan.skip:
        app.settle(s.meeting_id, s.action, "skipped", {"reason": s.reason, "on": now.date().isoformat()})
        report.skipped.append(StepResult(s.meeting_id, s.action, "skipped", s.reason))
    for due in plan.due:
        report.results.append(run_step(app, due, now))
    # the dates the coordinator decides: questions, reminders, alerts, save-the-dates
    report.results += [StepResult(mid, what.split(" ")[0], outcome, what)
                       for mid, what, outcome in meeting_dates.sync(app, now)]
    # what waited for the member caps, after the host's tasks (they never wait) and before
    # the mails between meetings (they wait behind it)
    report.results += [StepResult(key.split(":", 1)[0], "waited", outcome, key)
                       for key, outcome in app.outbox.release(now)]
    report.results += [StepResult(mid, what.split(" ")[0], outcome, what) for mid, what, outcome in guests.sync(app, now)]
    report.between = _between_meetings(app, now)
    return report


def _between_meetings(app: App, now: datetime) -> list[StepResult]:
    """Between meetings: decision reminders, project status requests, the calendar feed."""
    from kcg_mail.services.followup import run_followups

    return [StepResult(what.split(" ")[1] if " " in what else "-", what.split(" ")[0], outcome, what)
            for what, outcome in run_followups(app, now)]
