"""The intake run: every incoming message gets a defined outcome.

For each new message (one bad message never stops the rest):

1. already ``done`` in the state record -> just make sure it left the inbox;
2. ``inbound.parse`` + ``inbound.classify`` (pure) decide what it is, and the
   rule chain (``inbound.rules.decide``) whether we may act on it: mail not
   proven to come from an allowed filer is held for the coordinator
   (``kcg_mail.services.approval``) or discarded without an answer;
3. one small handler per kind (``HANDLERS``) does what that kind needs,
   through the state record (filing and distribution are idempotent, keyed by
   content hash and version);
4. the message is recorded ``done`` and only then moved out of the inbox.

A crash anywhere leaves the message in the inbox; the rerun repeats the
idempotent steps and finishes. The transport cursor is stored only after the
whole batch is handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kcg_mail.core import inbound
from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.message import msg_key
from kcg_mail.core.inbound.outcome import Outcome, folder_of
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import IncomingMessage, MessageRecord
from kcg_mail.services import answers, followup
from kcg_mail.services import round as planning_round
from kcg_mail.services.app import App
from kcg_mail.services.compose import person_ctx
from kcg_mail.services.filing import accept_version, release_held_version, resume_approved
from kcg_mail.services.held import RULE_CAUSE, prepare_version, reason_text
from kcg_mail.services.ledger import HeldNote, HoldCause, NoteKind
from kcg_mail.services.lock import intake_lock, lock_dir

log = logging.getLogger(__name__)

#: handle_minutes for a held message found no file to keep (none readable, or already filed):
#: the message itself waits; never recorded
NO_DOCUMENT = "no_document"



@dataclass
class Handled:
    ref: str
    outcome: str
    meeting_id: str | None
    reason: str
    sender: str = ""
    subject: str = ""


@dataclass
class IntakeReport:
    handled: list[Handled] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for h in self.handled if h.outcome == outcome)


def match_context(app: App, now: datetime) -> inbound.MatchContext:
    from kcg_mail.services.compose import meeting_uid

    net = app.cfg.network
    extra = {e.lower() for e in net.filers} | {net.coordinator.email}
    refs = tuple(
        inbound.MeetingRef(
            meeting_id=m.id, token=m.token, date=m.date,
            filers=frozenset({p.email for p in m.hosts()} | extra),
            invitation_uid=meeting_uid(app.cfg, m.id),
        )
        for m in app.meetings
    )
    actions = app.state.actions()
    sent_ids = {
        r.detail["message_id"]: r.meeting_id
        for r in actions
        if r.meeting_id and r.detail.get("message_id") and r.status == "done"
    }
    trust = app.cfg.transport.inbound
    return inbound.MatchContext(
        meetings=refs, sent_ids=sent_ids,
        members=frozenset(p.email for p in net.members),
        own_addresses=frozenset({net.mailbox.email}), today=now.date(), tag=net.short,
        trusted_authserv_ids=frozenset(trust.trusted_authserv_ids), reply_secret=app.reply_secret,
        dmarc_pass_without_header_from=frozenset(trust.dmarc_pass_without_header_from),
        require_reply_key=trust.require_reply_key,
        round_ids=planning_round.mail_ids(actions), status_request_ids=followup.request_ids(actions),
        question_ids=answers.question_ids(app, actions), coordinator=net.coordinator.email.lower(),
    )


# ------------------------------------------------------------------ handlers


def _reply_problem(app: App, mail: inbound.ParsedMail, m: Meeting | None, problem: str, now: datetime) -> str:
    """One short polite Swedish answer, at most once per meeting, sender and day."""
    person = next((p for p in app.cfg.network.members if p.email == mail.sender), None)
    if person is None:
        return "no reply (sender not in network)"
    key = f"{m.id if m else '-'}:reply_problem:{person.email}:{now.date().isoformat()}"
    msg = app.composer.message(
        "reply_problem", key, m, [person],
        {"meeting": app.composer.meeting_ctx(m, app.meetings) if m else None, "person": person_ctx(person),
         "problem": problem, "subject": mail.subject.removeprefix("SV: ").removeprefix("Re: ")[:150] or "Protokoll"},
        in_reply_to=mail.message_id,
    )
    return app.outbox.send(msg)


def handle_minutes(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                   received: datetime | None = None, hold: tuple[HoldCause, str] | None = None) -> tuple[str, str]:
    """File (or hold) the first readable protocol of the mail. ``hold``: the mail
    itself is held (a sender we could not confirm): its version waits in the held
    area; when no file can be read or it is already filed, nobody is answered and
    the outcome is ``no_document`` (the message itself waits in quarantine)."""
    from kcg_mail.core.inbound.versions import effective_date
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.documents.ooxml import MinutesRejected

    m = app.meeting(v.meeting_id or "")
    if m is None:  # classify gives minutes only for a meeting of the plan
        return Outcome.UNMATCHED, "protokoll till ett möte som inte finns i årsplanen"
    problems = []
    for att in v.attachments:
        try:
            read_minutes(att.filename, att.data)  # second layer: the deny-list checks answer the host
            # What is filed, distributed and read for the decision log is the REBUILT file
            # (the one call site of the rebuild); the host's original stays in local quarantine.
            prepared = prepare_version(app, m.id, key, att.filename, att.data)
            minutes = read_minutes(f"protokoll.{prepared.kind}", prepared.data)
        except MinutesRejected as rej:
            problems.append(rej)
            continue
        decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
        dated = effective_date(mail.date, received or now)
        a = accept_version(app, m, prepared, decisions, key, now, dated, list(minutes.followups), hold)
        filing, held = a.filing, a.held
        if a.outcome == "held_filed" and filing is not None:  # the message itself waits (nothing new in it)
            return NO_DOCUMENT, f"samma protokoll som version {filing.version}"
        if a.outcome == "duplicate" and filing is not None:
            return Outcome.DUPLICATE, f"samma protokoll som version {filing.version} – inget nytt"
        if a.outcome == "held_duplicate" and held is not None:
            state = "avvisats" if held.state == "rejected" else "väntar på godkännande"
            return Outcome.DUPLICATE, f"samma protokoll som en version som {state} – inget nytt"
        if a.outcome == "late_copy" and filing is not None:  # a state record from before the held area
            return Outcome.LATE_COPY, (f"arkiverat som {filing.path} (version {filing.version}), äldre än det arkiverade: "
                                 f"inte utskickat, besluten oförändrade")
        if a.outcome == "held" and held is not None:
            why = a.why or held.why
            hold_note(app, key, mail, m.id, "version", why, [att.filename], cause=hold[0] if hold else held.cause,
                      content_hash=held.content_hash)
            return Outcome.HELD, f"väntar på godkännande: {why} (inte arkiverat, inte utskickat)"
        if a.outcome == "held" and filing is not None:  # a state record from before the held area
            return Outcome.HELD, f"arkiverat som {filing.path} (version {filing.version}); väntar på godkännande"
        assert filing is not None
        return Outcome.MINUTES, f"arkiverat som {filing.path} (version {filing.version})" + (
            f"; årsplanen: {a.plan}" if a.plan else "")
    first = problems[0]
    if hold is not None:
        return NO_DOCUMENT, f"{first.code}: {first.detail}"
    sent = _reply_problem(app, mail, m, first.message_sv, now)
    return Outcome.BAD_MINUTES, f"{first.code}: {first.detail} (svar: {sent})"


def hold_note(app: App, key: str, mail: inbound.ParsedMail, meeting_id: str | None, kind: NoteKind, why: str,
              files: list[str], version: int | None = None, *, cause: HoldCause | None = None,
              content_hash: str | None = None) -> None:
    """What the coordinator sees for a held message ("väntar på godkännande")."""
    app.ledger.held_notes.put(key, HeldNote(
        kind=kind, meeting_id=meeting_id, sender=mail.sender or ", ".join(mail.from_addresses) or "(ingen)",
        subject=mail.subject[:300], files=files, why=why, version=version, cause=cause, content_hash=content_hash))


TOO_LARGE_SV = ("Ditt mejl var för stort för att tas emot (över {mb} MB), så protokollet kom inte fram. "
                "Skicka gärna protokollet igen som en mindre fil, till exempel utan inklistrade bilder.")


# ------------------------------------------------ between meetings
# The minutes' follow-up table closes or carries open decisions; a reply to a
# project-status request is stored as the group's status (routed in handle_message
# after the trust rules; logic in kcg_mail.services.followup).


@dataclass(frozen=True)
class Incoming:
    """One accepted mail as the handlers get it: the mail, what ``inbound.classify`` made of it,
    its message key (``msg_key``), the run's time and when the server received it."""

    app: App
    mail: inbound.ParsedMail
    verdict: inbound.Verdict
    key: str
    now: datetime
    received: datetime | None = None


#: an accepted mail -> (outcome, reason)
Handler = Callable[[Incoming], tuple[str, str]]


def _minutes(i: Incoming) -> tuple[str, str]:
    return handle_minutes(i.app, i.mail, i.verdict, i.key, i.now, i.received)


def _no_minutes(i: Incoming) -> tuple[str, str]:
    m = i.app.meeting(i.verdict.meeting_id or "")
    if i.mail.oversize:
        from kcg_mail.adapters.maildir import MAX_INCOMING

        sent = _reply_problem(i.app, i.mail, m, TOO_LARGE_SV.format(mb=MAX_INCOMING // (1024 * 1024)), i.now)
        return Outcome.TOO_LARGE, f"för stort meddelande, bara rubrikerna lästa (svar: {sent})"
    sent = _reply_problem(i.app, i.mail, m, "Vi hittade inget bifogat protokoll i ditt mejl.", i.now)
    return Outcome.NO_MINUTES, f"{i.verdict.reason} (svar: {sent})"


def _calendar_response(i: Incoming) -> tuple[str, str]:
    cr, meeting_id = i.verdict.calendar_reply, i.verdict.meeting_id
    if cr is None or not meeting_id:
        return Outcome.UNMATCHED, "svar på en kallelse vi inte känner igen"
    i.app.state.record_attendance(meeting_id, cr.attendee_email or i.mail.sender, cr.partstat)
    return Outcome.CALENDAR_RESPONSE, f"{cr.attendee_email or i.mail.sender}: {cr.partstat}"


def _round_reply(i: Incoming) -> tuple[str, str]:
    assert i.verdict.round_reply is not None  # classify sets it for every PLANNING verdict
    return planning_round.handle_reply(i.app, i.mail, i.verdict.round_reply, i.key, i.now)


def _status_reply(i: Incoming) -> tuple[str, str]:
    assert i.verdict.status_request is not None  # classify sets it for every PROJECT_STATUS verdict
    return followup.status_reply(i.app, i.mail, i.verdict.status_request, i.now)


def _coordinator_answer(i: Incoming) -> tuple[str, str]:
    assert i.verdict.question is not None  # classify sets it for every COORDINATOR_ANSWER verdict
    return answers.handle_answer(i.app, i.mail, i.verdict.question, i.key, i.now)


def _recorded(i: Incoming) -> tuple[str, str]:
    return i.verdict.kind, i.verdict.reason


#: per kind of mail (``inbound.classify``; its rule chain is ``rules.GATES``): who handles it.
#: A kind not here (automatic, own, not_allowed, unmatched) is recorded and moved by its kind.
HANDLERS: dict[Outcome, Handler] = {
    Outcome.MINUTES: _minutes,
    Outcome.NO_MINUTES: _no_minutes,
    Outcome.CALENDAR_RESPONSE: _calendar_response,
    Outcome.PLANNING: _round_reply,  # the planning round's needs and ballots
    Outcome.PROJECT_STATUS: _status_reply,  # a project group's status line
    Outcome.COORDINATOR_ANSWER: _coordinator_answer,  # the coordinator's yes or no to our question
    Outcome.COORDINATOR_REQUEST: lambda i: answers.handle_request(i.app, i.mail, i.key, i.now),
}


def handle(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
           received: datetime | None = None) -> tuple[str, str]:
    return HANDLERS.get(v.kind, _recorded)(Incoming(app, mail, v, key, now, received))


def run_intake(app: App, now: datetime, handle_one: Callable[..., Handled] | None = None) -> IntakeReport:
    """Handle every new message. ``handle_one`` lets the flow run each as a task."""
    handle_one = handle_one or handle_message
    with intake_lock(lock_dir(app)):  # a scheduled run and the push listener never overlap
        return _run_intake(app, now, handle_one)


def _run_intake(app: App, now: datetime, handle_one: Callable[..., Handled]) -> IntakeReport:
    report = IntakeReport()
    app.outbox.now = now
    report.errors += resume_approved(app, now)  # an approval a crash interrupted is finished first
    cursor = app.ledger.intake_cursor.get()
    batch = app.mail.fetch_new(cursor)
    ctx = match_context(app, now)
    for item in batch.messages:
        try:
            report.handled.append(handle_one(app, item, ctx, now))
        except Exception as exc:  # one bad message never stops the rest
            log.exception("message %s failed", item.ref)
            report.errors.append(f"{item.ref}: {type(exc).__name__}: {exc}")
    if batch.cursor is not None and not report.errors:
        app.ledger.intake_cursor.put(batch.cursor)
    answers.ask_waiting(app, now)  # what now waits for the coordinator gets its question (once)
    return report


def handle_message(app: App, item: IncomingMessage, ctx: inbound.MatchContext, now: datetime) -> Handled:
    key = msg_key(item.raw)
    rec = app.state.message(key)
    if rec is not None and rec.status == "done":
        app.mail.move(item.ref, folder_of(rec.outcome))
        return Handled(item.ref, Outcome.ALREADY_HANDLED, rec.meeting_id, rec.reason, rec.sender, rec.subject)
    mail = inbound.parse(item.raw)
    verdict = inbound.classify(mail, ctx)
    planning = verdict.round_reply
    docs = tuple(a for a in mail.attachments if inbound.is_document_candidate(a))
    approved = app.ledger.approved_for.get(key)  # released by the coordinator (kcg approve / refile)
    note = app.ledger.held_notes.get(key) if approved else None
    hv = app.ledger.held_version(note.meeting_id, note.content_hash) \
        if note is not None and note.meeting_id and note.content_hash else None
    if hv is not None and hv.meeting_id == approved and hv.state != "rejected":  # its version waits: release it
        filing = release_held_version(app, hv, now, msg_key=key)
        reason = f"godkänd av samordnaren: arkiverad som {filing.path} (version {filing.version}) och utskickad"
        app.state.record_message(MessageRecord(key, item.ref, hv.meeting_id, Outcome.MINUTES, reason,
                                               rec.sender if rec else "", rec.subject if rec else "", "done"))
        app.mail.move(item.ref, folder_of(Outcome.MINUTES))
        return Handled(item.ref, Outcome.MINUTES, hv.meeting_id, reason, rec.sender if rec else "", rec.subject if rec else "")
    if approved and planning:
        decision = rules.Decision("accept", "", "approved by the coordinator")
    elif approved and app.meeting(approved) is not None:
        if docs and verdict.kind in (Outcome.NOT_ALLOWED, Outcome.UNMATCHED, Outcome.MINUTES):
            verdict = inbound.Verdict(Outcome.MINUTES, approved, f"godkänt av samordnaren ({verdict.reason})", attachments=docs)
        decision = rules.Decision("accept", "", "approved by the coordinator")
    else:
        decision = rules.decide(mail, verdict, ctx, has_documents=bool(docs))
    seen = MessageRecord(key, item.ref, verdict.meeting_id, verdict.kind, verdict.reason, mail.sender,
                         mail.subject[:300], "seen")
    app.state.record_message(seen)
    if decision.action == "hold":
        cause = RULE_CAUSE.get(decision.rule, "sender")
        why = f"{reason_text(cause)} ({decision.rule}: {decision.reason})"
        outcome = ""
        if verdict.kind in (Outcome.MINUTES, Outcome.NOT_ALLOWED) and docs and verdict.meeting_id \
                and app.meeting(verdict.meeting_id):
            # minutes for a meeting: the version that an approval files and sends waits in the held area
            v = inbound.Verdict(Outcome.MINUTES, verdict.meeting_id, verdict.reason, attachments=docs)
            outcome, reason = handle_minutes(app, mail, v, key, now, item.received_at, (cause, why))
        if outcome in ("", NO_DOCUMENT):  # nothing readable: the message itself waits in quarantine
            held_for = f"planning:{planning.year}" if planning else verdict.meeting_id
            hold_note(app, key, mail, held_for, "message", why, [a.filename for a in docs], cause=cause)
            outcome, reason = Outcome.HELD, f"väntar på godkännande: {why}"
    elif decision.action == "discard":
        outcome, reason = Outcome.DISCARDED, f"{verdict.kind} ej godtaget ({decision.rule}: {decision.reason}); inget svar"
    else:
        outcome, reason = handle(app, mail, verdict, key, now, item.received_at)
    app.state.record_message(MessageRecord(key, item.ref, verdict.meeting_id, outcome, reason, mail.sender,
                                           mail.subject[:300], "done"))
    app.mail.move(item.ref, folder_of(outcome))
    return Handled(item.ref, outcome, verdict.meeting_id, reason, mail.sender, mail.subject)
