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
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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
from kcg_mail.services.lock import intake_lock, lock_dir
from kcg_mail.services.originals import accept_document

log = logging.getLogger(__name__)

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


def file_minutes(app: App, m: Meeting, data: bytes, kind: str, decisions: list[dict[str, str]], source: str,
                 now: datetime, dated: datetime | None = None) -> tuple[str, FilingRecord]:
    """File into the archive under the naming convention and distribute.
    Returns ("filed"|"duplicate"|"late_copy"|"held", filing). ``dated``: the
    version's date (earlier of its Date header and our receipt; default ``now``)."""
    dated = dated or now
    for f in app.state.filings(m.id):
        if f.content_hash == _hash(app, data):
            # Already filed. Either a crash stopped this message's own handling
            # half-way (finish the idempotent rest), or someone sent the same
            # minutes again (a no-op: everything below is already done).
            if f.source_msg_key == source:
                return _settle(app, m, f, data, kind, decisions, dated, now), f
            if not _withheld(app, m, f):
                distribute(app, m, f, data, kind, decisions)  # a no-op unless it never went out
            return "duplicate", f
    name = protocol_filename(app.cfg, m).removesuffix(".docx") + "." + kind
    stored = app.archive.store(f"{archive_folder(app.cfg, m)}/{name}", data)
    version = len({f.content_hash for f in app.state.filings(m.id)}) + 1
    link = app.archive.shared_link(stored.path)
    filing = FilingRecord(meeting_id=m.id, version=version, path=stored.path, rev=stored.rev,
                          content_hash=stored.content_hash, link=link, source_msg_key=source)
    app.state.record_filing(filing)
    return _settle(app, m, filing, data, kind, decisions, dated, now), filing


def _withheld(app: App, m: Meeting, f: FilingRecord) -> bool:
    """A late copy, or a version waiting for approval: never distributed by a duplicate."""
    return bool(app.state.get(f"late:{m.id}:v{f.version}")) or \
        app.state.get(f"held-distribution:{m.id}:v{f.version}") in ("held", "rejected")


def distributed_on(app: App, meeting_id: str, day: str) -> list[int]:
    raw = app.state.get(f"distributed:{meeting_id}:{day}")
    return json.loads(raw) if raw else []


def mark_distributed(app: App, meeting_id: str, day: str, version: int) -> None:
    done = distributed_on(app, meeting_id, day)
    if version not in done:
        app.state.put(f"distributed:{meeting_id}:{day}", json.dumps(done + [version]))


def _settle(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str, decisions: list[dict[str, str]],
            dated: datetime, now: datetime) -> str:
    """After filing: a late copy stays filed only; beyond the day's allowance the
    version waits for approval; otherwise decisions and distribution."""
    from kcg_mail.core.inbound.versions import is_late_copy, over_daily_limit

    app.state.put(f"filed-date:{m.id}:v{filing.version}", dated.isoformat())
    others = []
    for f in app.state.filings(m.id):
        if f.version != filing.version:
            d = app.state.get(f"filed-date:{m.id}:v{f.version}")
            if d:
                others.append(datetime.fromisoformat(d))
    if app.state.get(f"late:{m.id}:v{filing.version}") or is_late_copy(dated, others):
        app.state.put(f"late:{m.id}:v{filing.version}", dated.isoformat())
        return "late_copy"
    held = app.state.get(f"held-distribution:{m.id}:v{filing.version}")
    if held in ("held", "rejected"):
        return "held"
    day = now.date().isoformat()
    if held != "approved" and over_daily_limit(distributed_on(app, m.id, day), filing.version,
                                               app.cfg.transport.distribution.max_per_meeting_per_day):
        app.state.put(f"held-distribution:{m.id}:v{filing.version}", "held")
        return "held"
    _record_and_distribute(app, m, filing, data, kind, decisions)
    mark_distributed(app, m.id, day, filing.version)
    return "filed"


def _record_and_distribute(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str,
                           decisions: list[dict[str, str]]) -> None:
    app.state.replace_decisions(m.id, decisions)
    update_decision_log(app, m.date.year)
    distribute(app, m, filing, data, kind, decisions)


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
                   received: datetime | None = None) -> tuple[str, str]:
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.documents.ooxml import MinutesRejected

    m = app.meeting(v.meeting_id)
    problems = []
    for att in v.attachments:
        try:
            read_minutes(att.filename, att.data)  # second layer: the deny-list checks answer the host
            # What is filed, distributed and read for the decision log is the REBUILT file;
            # the host's original stays in local quarantine storage for the coordinator.
            data, kind = accept_document(app, m.id, key, att.filename, att.data)
            minutes = read_minutes(f"protokoll.{kind}", data)
        except MinutesRejected as rej:
            problems.append(rej)
            continue
        decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
        from kcg_mail.core.inbound.versions import effective_date

        dated = effective_date(mail.date, received or now)
        outcome, filing = file_minutes(app, m, data, minutes.kind, decisions, key, now, dated)
        _followup_marks(app, m, minutes, outcome)
        if outcome == "duplicate":
            return Outcome.DUPLICATE, f"samma protokoll som version {filing.version} – inget nytt"
        if outcome == "late_copy":
            return Outcome.LATE_COPY, (f"arkiverat som {filing.path} (version {filing.version}), äldre än det arkiverade: "
                                 f"inte utskickat, besluten oförändrade")
        if outcome == "held":
            limit = app.cfg.transport.distribution.max_per_meeting_per_day
            why = f"fler än {limit} utskick för {m.id} i dag: väntar på godkännande"
            hold_note(app, key, mail, m.id, "distribution", why, [att.filename], filing.version)
            return Outcome.HELD, f"arkiverat som {filing.path} (version {filing.version}); {why}"
        return Outcome.MINUTES, f"arkiverat som {filing.path} (version {filing.version})"
    first = problems[0]
    sent = _reply_problem(app, mail, m, first.message_sv, now)
    return Outcome.BAD_MINUTES, f"{first.code}: {first.detail} (svar: {sent})"


def hold_note(app: App, key: str, mail: inbound.ParsedMail, meeting_id: str | None, kind: str, why: str,
              files: list[str], version: int | None = None) -> None:
    """What the coordinator sees for a held message ("väntar på godkännande")."""
    app.state.put(f"held:{key}", json.dumps({
        "kind": kind, "meeting_id": meeting_id, "sender": mail.sender or ", ".join(mail.from_addresses) or "(ingen)",
        "subject": mail.subject[:300], "files": files, "why": why, "version": version,
    }, ensure_ascii=False))


TOO_LARGE_SV = ("Ditt mejl var för stort för att tas emot (över {mb} MB), så protokollet kom inte fram. "
                "Skicka gärna protokollet igen som en mindre fil, till exempel utan inklistrade bilder.")


# ------------------------------------------------ between meetings
# The minutes' follow-up table closes or carries open decisions; a reply to a
# project-status request is stored as the group's status (routed in _handle_one
# after the trust rules; logic in kcg_mail.services.followup).


def _followup_marks(app: App, m: Meeting, minutes, outcome: str) -> None:
    if outcome == "filed":
        from kcg_mail.services.followup import minutes_filed

        minutes_filed(app, m, minutes.followups)


#: (app, mail, verdict, message key, now, received) -> (outcome, reason)
Handler = Callable[[App, inbound.ParsedMail, inbound.Verdict, str, datetime, datetime | None], tuple[str, str]]


def _minutes(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
             received: datetime | None) -> tuple[str, str]:
    return handle_minutes(app, mail, v, key, now, received)


def _no_minutes(app: App, mail: inbound.ParsedMail, v: inbound.Verdict, key: str, now: datetime,
                received: datetime | None) -> tuple[str, str]:
    m = app.meeting(v.meeting_id)
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
    cursor = app.state.get("mail:cursor")
    batch = app.mail.fetch_new(cursor)
    ctx = match_context(app, now)
    for item in batch.messages:
        try:
            report.handled.append(handle_one(app, item, ctx, now))
        except Exception as exc:  # one bad message never stops the rest
            log.exception("message %s failed", item.ref)
            report.errors.append(f"{item.ref}: {type(exc).__name__}: {exc}")
    if batch.cursor is not None and not report.errors:
        app.state.put("mail:cursor", batch.cursor)
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
    approved = app.state.get(f"approved:{key}")  # released by the coordinator (kcg approve / refile)
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
        why = f"{decision.rule}: {decision.reason}"
        held_for = f"planning:{planning.year}" if planning else verdict.meeting_id
        hold_note(app, key, mail, held_for, "message", why, [a.filename for a in docs])
        outcome, reason = Outcome.HELD, f"väntar på godkännande ({why})"
    elif decision.action == "discard":
        outcome, reason = Outcome.DISCARDED, f"{verdict.kind} ej godtaget ({decision.rule}: {decision.reason}); inget svar"
    else:
        outcome, reason = handle(app, mail, verdict, key, now, item.received_at)
    app.state.record_message(MessageRecord(key, item.ref, verdict.meeting_id, outcome, reason, mail.sender,
                                           mail.subject[:300], "done"))
    app.mail.move(item.ref, folder_of(outcome))
    return Handled(item.ref, outcome, verdict.meeting_id, reason, mail.sender, mail.subject)
