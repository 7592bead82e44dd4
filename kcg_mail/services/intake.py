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

import csv
import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from kcg_mail.core import inbound
from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.outcome import Outcome, folder_of
from kcg_mail.core.plan import Meeting, archive_folder, protocol_filename
from kcg_mail.ports import Attachment, FilingRecord, IncomingMessage, MessageRecord
from kcg_mail.services import followup
from kcg_mail.services import round as planning_round
from kcg_mail.services.app import App
from kcg_mail.services.compose import person_ctx
from kcg_mail.services.held import RULE_CAUSE, SENDER_CAUSES, Prepared, held_area, prepare_version, reason_text
from kcg_mail.services.ledger import HeldNote, HeldVersion, HoldCause, NoteKind
from kcg_mail.services.lock import intake_lock, lock_dir

log = logging.getLogger(__name__)

#: handle_minutes for a held message found no file to keep (none readable, or already filed):
#: the message itself waits; never recorded
NO_DOCUMENT = "no_document"

MIME_BY_KIND = {"docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "pdf": "application/pdf", "odt": "application/vnd.oasis.opendocument.text"}


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


def msg_key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:40]


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


@dataclass
class Accepted:
    """What became of an accepted version: ``filed`` (and distributed),
    ``duplicate`` (already filed), ``held`` (kept in the held area, out of the
    archive, until approved), ``held_duplicate`` (the same file already waits or was refused),
    ``held_filed`` (a held sender's file that is already filed: nothing to keep),
    and for state records written before the held area ``late_copy``."""

    outcome: str
    filing: FilingRecord | None = None
    held: HeldVersion | None = None
    why: str = ""  # why this message's version waits (held)


def accept_version(app: App, m: Meeting, prepared: Prepared, decisions: list[dict[str, str]],
                   source: str, now: datetime, dated: datetime | None = None,
                   followups: list[tuple[str, str]] | None = None,
                   hold: tuple[HoldCause, str] | None = None) -> Accepted:
    """File a version of the minutes under the naming convention and distribute
    it, or keep it in the held area when it may not go out by itself (``hold``: a
    sender we could not confirm; something unsafe found in the file; a late copy;
    over the day's allowance). ``dated``: the version's date (earlier of its Date
    header and our receipt; default ``now``)."""
    dated = dated or now
    data, kind = prepared.data, prepared.kind  # the bytes that are filed and distributed
    content_hash = _hash(app, data)
    for f in app.state.filings(m.id):
        if f.content_hash == content_hash and hold is not None:
            return Accepted("held_filed", f)  # nothing to do for a sender we could not confirm
        if f.content_hash == content_hash:
            # Already filed. Either a crash stopped this message's own handling
            # half-way (finish the idempotent rest), or someone sent the same
            # minutes again (a no-op: everything below is already done).
            if f.source_msg_key == source:
                return Accepted(_finish_filed(app, m, f, data, kind, decisions, now, followups), f)
            if not _withheld(app, m, f):
                distribute(app, m, f, data, kind, decisions)  # a no-op unless it never went out
            return Accepted("duplicate", f)
    held = app.ledger.held_version(m.id, content_hash)
    if held is not None:
        if held.state in ("approved", "released"):  # approved: finish what the approval started
            filing = release_held_version(app, held, now, msg_key=None)
            return Accepted("duplicate", filing, held)
        if held.source_msg_key == source:
            return Accepted("held", None, held, held.why)
        if hold is not None and held.state == "held":  # this message waits too (each held message is listed)
            return Accepted("held", None, held, _with_findings(hold[1], prepared))
        if hold is None and held.cause not in SENDER_CAUSES:
            return Accepted("held_duplicate", None, held)  # the same file again: it waits, or was refused
        # held for another message's sender (or refused for it): this message is judged on its own
    cause, why = hold or _hold_cause(app, m, prepared, dated, now)
    if hold is not None:
        why = _with_findings(why, prepared)
    if cause is not None:
        name = held_area(app).keep(m.id, content_hash, kind, data)  # the file first, then the record
        held = HeldVersion(meeting_id=m.id, content_hash=content_hash, kind=kind, filename=name,
                           source_msg_key=source, cause=cause, why=why, dated=dated.isoformat(),
                           decisions=decisions, followups=[list(x) for x in followups or []])
        app.ledger.put_held_version(held)
        return Accepted("held", None, held, why)
    filing = _file(app, m, data, kind, source, dated)
    if held is not None:  # the same file waited for another message's sender: it is out now
        app.ledger.put_held_version(replace(held, state="released", version=filing.version))
    return Accepted(_finish_filed(app, m, filing, data, kind, decisions, now, followups), filing)


def _with_findings(why: str, prepared: Prepared) -> str:
    """A sender's reason and what was found in the file: both said, each in its own words."""
    if not prepared.findings:
        return why
    return f"{why}; {reason_text('safety', findings=prepared.findings, removed=prepared.removed)}"


def _hold_cause(app: App, m: Meeting, prepared: Prepared, dated: datetime,
                now: datetime) -> tuple[HoldCause | None, str]:
    """Why a new version may not go out by itself, or (None, "")."""
    from kcg_mail.core.inbound.versions import is_late_copy, over_daily_limit

    if prepared.findings:
        return "safety", reason_text("safety", findings=prepared.findings, removed=prepared.removed)
    others = [d for f in app.state.filings(m.id) if (d := app.ledger.filed_date(m.id, f.version)) is not None]
    if is_late_copy(dated, others):
        return "late", reason_text("late")
    done = app.ledger.distributed_on(m.id, now.date())
    limit = app.cfg.transport.distribution.max_per_meeting_per_day
    if over_daily_limit(done, 0, limit):
        return "cap", reason_text("cap", nth_today=len(set(done)) + 1, limit=limit)
    return None, ""


def _file(app: App, m: Meeting, data: bytes, kind: str, source: str, dated: datetime) -> FilingRecord:
    """Store in the archive (idempotent by content hash) and record the filing."""
    name = protocol_filename(app.cfg, m).removesuffix(".docx") + "." + kind
    stored = app.archive.store(f"{archive_folder(app.cfg, m)}/{name}", data)
    existing = next((f for f in app.state.filings(m.id) if f.content_hash == stored.content_hash), None)
    if existing is not None:
        return existing
    version = len({f.content_hash for f in app.state.filings(m.id)}) + 1
    link = app.archive.shared_link(stored.path)
    filing = FilingRecord(meeting_id=m.id, version=version, path=stored.path, rev=stored.rev,
                          content_hash=stored.content_hash, link=link, source_msg_key=source)
    app.ledger.set_filed_date(m.id, version, dated)  # before the filing: a rerun gives it the same number
    app.state.record_filing(filing)
    return filing


def _withheld(app: App, m: Meeting, f: FilingRecord) -> bool:
    """A filed late copy, or a filed version whose distribution waits or was
    refused (state records from before the held area): never distributed by a duplicate."""
    return app.ledger.late_copy(m.id, f.version) is not None or \
        app.ledger.distribution_hold(m.id, f.version) in ("held", "rejected")


def _finish_filed(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str,
                  decisions: list[dict[str, str]], now: datetime,
                  followups: list[tuple[str, str]] | None = None) -> str:
    """After filing: decisions, distribution, the day's count (each idempotent)."""
    if app.ledger.late_copy(m.id, filing.version) is not None:
        return "late_copy"
    if app.ledger.distribution_hold(m.id, filing.version) in ("held", "rejected"):
        return "held"
    _record_and_distribute(app, m, filing, data, kind, decisions)
    app.ledger.mark_distributed(m.id, now.date(), filing.version)
    if followups:
        followup.minutes_filed(app, m, followups)
    return "filed"


def _record_and_distribute(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str,
                           decisions: list[dict[str, str]]) -> None:
    app.state.replace_decisions(m.id, decisions)
    update_decision_log(app, m.date.year)
    distribute(app, m, filing, data, kind, decisions)


def release_held_version(app: App, held: HeldVersion, now: datetime, msg_key: str | None = "") -> FilingRecord:
    """File and distribute an approved held version: each step idempotent, so an
    approval interrupted by a crash is finished by the next approval or intake
    (``resume_approved``) without filing or sending anything twice. ``msg_key``:
    the approved message (default: the one the version came with; None: none)."""
    m = app.meeting(held.meeting_id)
    if m is None:
        raise ValueError(f"held version of unknown meeting {held.meeting_id}")
    if held.state == "released":  # everything below is done (it is recorded last)
        filing = next(f for f in app.state.filings(m.id) if f.content_hash == held.content_hash)
        _approved_message(app, held, filing, msg_key)
        return filing
    if held.state == "held":
        held = replace(held, state="approved")
        app.ledger.put_held_version(held)  # the intent, before anything is filed
    data = held_area(app).read(held)
    if _hash(app, data) != held.content_hash:
        raise ValueError(f"held file {held.filename} of {held.meeting_id} does not match its record")
    filing = next((f for f in app.state.filings(m.id) if f.content_hash == held.content_hash), None) \
        or _file(app, m, data, held.kind, held.source_msg_key, datetime.fromisoformat(held.dated))
    if app.ledger.distribution_hold(m.id, filing.version) != "approved":
        app.ledger.set_distribution_hold(m.id, filing.version, "approved")
    if held.cause == "late":  # an older copy goes out, but the decisions stay those of the newer version
        distribute(app, m, filing, data, held.kind, held.decisions)
    else:
        _record_and_distribute(app, m, filing, data, held.kind, held.decisions)
        if held.followups:
            followup.minutes_filed(app, m, [(str(a), str(b)) for a, b in held.followups])
    app.ledger.mark_distributed(m.id, now.date(), filing.version)
    app.ledger.put_held_version(replace(held, state="released", version=filing.version))
    _approved_message(app, held, filing, msg_key)
    return filing


def _approved_message(app: App, held: HeldVersion, filing: FilingRecord, msg_key: str | None) -> None:
    rec = app.state.message(held.source_msg_key if msg_key == "" else msg_key) if msg_key is not None else None
    if rec is not None and rec.outcome in (Outcome.HELD, Outcome.APPROVED):
        app.state.record_message(MessageRecord(
            rec.msg_key, rec.ref, held.meeting_id, Outcome.MINUTES,
            f"godkänd av samordnaren: arkiverad som {filing.path} (version {filing.version}) och utskickad",
            rec.sender, rec.subject, "done"))


def resume_approved(app: App, now: datetime) -> list[str]:
    """Finish approvals a crash interrupted (approved, not yet released); returns
    the errors (one failing version never stops the intake)."""
    errors = []
    for held in app.ledger.held_versions():
        if held.state == "approved":
            try:
                release_held_version(app, held, now)
            except Exception as exc:
                log.exception("approved version %s of %s failed", held.content_hash[:12], held.meeting_id)
                errors.append(f"godkänd version av {held.meeting_id} ({held.filename}): {type(exc).__name__}: {exc}")
    return errors


def _hash(app: App, data: bytes) -> str:
    from kcg_mail.adapters.content_hash import dropbox_content_hash

    return dropbox_content_hash(data)


def distribute(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str, decisions: list[dict[str, str]]) -> str:
    from kcg_mail.core.outreach import distribution_content

    # never a file:// link: without a shareable link (local archive) the file is attached
    attach, link = distribution_content(app.cfg.meetings.distribution, filing.link)
    filename = filing.path.rpartition("/")[2]
    atts = (Attachment(filename, MIME_BY_KIND.get(kind, "application/octet-stream"), data),) if attach else ()
    msg = app.composer.message(
        "distribute", f"{m.id}:distribute:members:v{filing.version}", m, app.cfg.network.active_members,
        {"meeting": app.composer.meeting_ctx(m, app.meetings), "version": filing.version, "filename": filename,
         "link": link, "decisions": decisions, "attached": attach},
        attachments=atts,
    )
    return app.outbox.send(msg)


def update_decision_log(app: App, year: int) -> None:
    """The running decision log of the year (CSV that Excel opens), rewritten
    explicitly from the state record on each filing."""
    ids = {m.id: m for m in app.meetings if m.date.year == year}
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(["Möte", "Datum", "Tema", "Värd", "Beslut", "Ansvarig", "Klart till"])
    for d in app.state.decisions():
        m = ids.get(d["meeting_id"])
        if m is not None:
            w.writerow([m.id, m.date.isoformat(), m.theme_label, m.host.name, d["decision"], d["owner"], d["due"]])
    folder = f"/{app.cfg.network.short}/Protokoll/{year}"
    app.archive.store(f"{folder}/{year} {app.cfg.network.short} Beslutslogg.csv",
                      ("\ufeff" + buf.getvalue()).encode("utf-8"), overwrite=True)


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
        return Outcome.MINUTES, f"arkiverat som {filing.path} (version {filing.version})"
    first = problems[0]
    if hold is not None:
        return NO_DOCUMENT, f"{first.code}: {first.detail}"
    sent = _reply_problem(app, mail, m, first.message_sv, now)
    return Outcome.BAD_MINUTES, f"{first.code}: {first.detail} (svar: {sent})"


def hold_note(app: App, key: str, mail: inbound.ParsedMail, meeting_id: str | None, kind: NoteKind, why: str,
              files: list[str], version: int | None = None, *, cause: HoldCause | None = None,
              content_hash: str | None = None) -> None:
    """What the coordinator sees for a held message ("väntar på godkännande")."""
    app.ledger.put_held_note(key, HeldNote(
        kind=kind, meeting_id=meeting_id, sender=mail.sender or ", ".join(mail.from_addresses) or "(ingen)",
        subject=mail.subject[:300], files=files, why=why, version=version, cause=cause, content_hash=content_hash))


TOO_LARGE_SV = ("Ditt mejl var för stort för att tas emot (över {mb} MB), så protokollet kom inte fram. "
                "Skicka gärna protokollet igen som en mindre fil, till exempel utan inklistrade bilder.")


# ------------------------------------------------ between meetings
# The minutes' follow-up table closes or carries open decisions; a reply to a
# project-status request is stored as the group's status (routed in _handle_one
# after the trust rules; logic in kcg_mail.services.followup).


#: (app, mail, verdict, message key, now, received) -> (outcome, reason)
Handler = Callable[[App, inbound.ParsedMail, inbound.Verdict, str, datetime, datetime | None], tuple[str, str]]


def _minutes(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
             received: datetime | None) -> tuple[str, str]:
    return handle_minutes(app, mail, v, key, now, received)


def _no_minutes(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                received: datetime | None) -> tuple[str, str]:
    m = app.meeting(v.meeting_id or "")
    if mail.oversize:
        from kcg_mail.adapters.maildir import MAX_INCOMING

        sent = _reply_problem(app, mail, m, TOO_LARGE_SV.format(mb=MAX_INCOMING // (1024 * 1024)), now)
        return Outcome.TOO_LARGE, f"för stort meddelande, bara rubrikerna lästa (svar: {sent})"
    sent = _reply_problem(app, mail, m, "Vi hittade inget bifogat protokoll i ditt mejl.", now)
    return Outcome.NO_MINUTES, f"{v.reason} (svar: {sent})"


def _calendar_response(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                       received: datetime | None) -> tuple[str, str]:
    cr = v.calendar_reply
    if cr is None or not v.meeting_id:
        return Outcome.UNMATCHED, "svar på en kallelse vi inte känner igen"
    app.state.record_attendance(v.meeting_id, cr.attendee_email or mail.sender, cr.partstat)
    return Outcome.CALENDAR_RESPONSE, f"{cr.attendee_email or mail.sender}: {cr.partstat}"


def _round_reply(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                 received: datetime | None) -> tuple[str, str]:
    assert v.round_reply is not None  # classify sets it for every PLANNING verdict
    return planning_round.handle_reply(app, mail, v.round_reply, key, now)


def _status_reply(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                  received: datetime | None) -> tuple[str, str]:
    assert v.status_request is not None  # classify sets it for every PROJECT_STATUS verdict
    return followup.status_reply(app, mail, v.status_request, now)


def _recorded(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
              received: datetime | None) -> tuple[str, str]:
    return v.kind, v.reason


#: per kind of mail (``inbound.classify``; its rule chain is ``rules.GATES``): who handles it.
#: A kind not here (automatic, own, not_allowed, unmatched) is recorded and moved by its kind.
HANDLERS: dict[Outcome, Handler] = {
    Outcome.MINUTES: _minutes,
    Outcome.NO_MINUTES: _no_minutes,
    Outcome.CALENDAR_RESPONSE: _calendar_response,
    Outcome.PLANNING: _round_reply,  # the planning round's needs and ballots
    Outcome.PROJECT_STATUS: _status_reply,  # a project group's status line
}


def handle(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
           received: datetime | None = None) -> tuple[str, str]:
    return HANDLERS.get(v.kind, _recorded)(app, mail, v, key, now, received)


def run_intake(app: App, now: datetime, handle_one: Callable[..., Handled] | None = None) -> IntakeReport:
    """Handle every new message. ``handle_one`` lets the flow run each as a task."""
    handle_one = handle_one or _handle_one
    with intake_lock(lock_dir(app)):  # a scheduled run and the push listener never overlap
        return _run_intake(app, now, handle_one)


def _run_intake(app: App, now: datetime, handle_one: Callable[..., Handled]) -> IntakeReport:
    report = IntakeReport()
    app.outbox.now = now
    report.errors += resume_approved(app, now)  # an approval a crash interrupted is finished first
    cursor = app.ledger.intake_cursor()
    batch = app.mail.fetch_new(cursor)
    ctx = match_context(app, now)
    for item in batch.messages:
        try:
            report.handled.append(handle_one(app, item, ctx, now))
        except Exception as exc:  # one bad message never stops the rest
            log.exception("message %s failed", item.ref)
            report.errors.append(f"{item.ref}: {type(exc).__name__}: {exc}")
    if batch.cursor is not None and not report.errors:
        app.ledger.set_intake_cursor(batch.cursor)
    return report


def _handle_one(app: App, item: IncomingMessage, ctx: inbound.MatchContext, now: datetime) -> Handled:
    key = msg_key(item.raw)
    rec = app.state.message(key)
    if rec is not None and rec.status == "done":
        app.mail.move(item.ref, folder_of(rec.outcome))
        return Handled(item.ref, Outcome.ALREADY_HANDLED, rec.meeting_id, rec.reason, rec.sender, rec.subject)
    mail = inbound.parse(item.raw)
    verdict = inbound.classify(mail, ctx)
    planning = verdict.round_reply
    docs = tuple(a for a in mail.attachments if inbound.is_document_candidate(a))
    approved = app.ledger.approved_for(key)  # released by the coordinator (kcg approve / refile)
    note = app.ledger.held_note(key) if approved else None
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
