"""File it, distribute it: what happens to an accepted version of the minutes.

``accept_version`` files a version under the naming convention and mails it to
every member, or keeps it in the held area (``kcg_mail.services.held``) when it
may not go out by itself; ``release_held_version`` files and distributes an
approved one. Every step is idempotent (keyed by content hash and version), so
a rerun after a crash finishes what was begun and sends nothing twice. The
intake (a host's reply) and the approval (the coordinator's yes) both come here.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, replace
from datetime import datetime

from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.plan import Meeting, archive_folder, protocol_filename
from kcg_mail.ports import Attachment, FilingRecord, MessageRecord
from kcg_mail.services import followup, plan_adoption
from kcg_mail.services.app import App
from kcg_mail.services.compose import folder_words
from kcg_mail.services.held import SENDER_CAUSES, Prepared, held_area, reason_text
from kcg_mail.services.ledger import HeldVersion, HoldCause

log = logging.getLogger(__name__)

MIME_BY_KIND = {"docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "pdf": "application/pdf", "odt": "application/vnd.oasis.opendocument.text"}


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
    plan: str = ""  # what the January meeting's protocol did with next year's plan (``minutes_filed``)


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
    digest = content_hash(data)
    for f in app.state.filings(m.id):
        if f.content_hash == digest and hold is not None:
            return Accepted("held_filed", f)  # nothing to do for a sender we could not confirm
        if f.content_hash == digest:
            # Already filed. Either a crash stopped this message's own handling
            # half-way (finish the idempotent rest), or someone sent the same
            # minutes again (a no-op: everything below is already done).
            if f.source_msg_key == source:
                return _finish_filed(app, m, f, data, kind, decisions, now, followups)
            if not _withheld(app, m, f):
                distribute(app, m, f, data, kind, decisions)  # a no-op unless it never went out
            return Accepted("duplicate", f)
    held = app.ledger.held_version(m.id, digest)
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
        name = held_area(app).keep(m.id, digest, kind, data)  # the file first, then the record
        held = HeldVersion(meeting_id=m.id, content_hash=digest, kind=kind, filename=name,
                           source_msg_key=source, cause=cause, why=why, dated=dated.isoformat(),
                           decisions=decisions, followups=[list(x) for x in followups or []])
        app.ledger.put_held_version(held)
        return Accepted("held", None, held, why)
    filing = _file(app, m, data, kind, source, dated)
    if held is not None:  # the same file waited for another message's sender: it is out now
        app.ledger.put_held_version(replace(held, state="released", version=filing.version))
    return _finish_filed(app, m, filing, data, kind, decisions, now, followups)


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
    others = [d for f in app.state.filings(m.id) if (d := app.ledger.filed_dates.get(m.id, f.version)) is not None]
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
    app.ledger.filed_dates.put(m.id, version, dated)  # before the filing: a rerun gives it the same number
    app.state.record_filing(filing)
    return filing


def _withheld(app: App, m: Meeting, f: FilingRecord) -> bool:
    """A filed late copy, or a filed version whose distribution waits or was
    refused (state records from before the held area): never distributed by a duplicate."""
    return app.ledger.late_copies.get(m.id, f.version) is not None or \
        app.ledger.distribution_holds.get(m.id, f.version) in ("held", "rejected")


def _finish_filed(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str,
                  decisions: list[dict[str, str]], now: datetime,
                  followups: list[tuple[str, str]] | None = None) -> Accepted:
    """After filing: decisions, distribution, the day's count, what the protocol
    starts (each idempotent)."""
    if app.ledger.late_copies.get(m.id, filing.version) is not None:
        return Accepted("late_copy", filing)
    if app.ledger.distribution_holds.get(m.id, filing.version) in ("held", "rejected"):
        return Accepted("held", filing)
    record_and_distribute(app, m, filing, data, kind, decisions)
    app.ledger.mark_distributed(m.id, now.date(), filing.version)
    return Accepted("filed", filing, plan=minutes_filed(app, m, data, kind, followups, now))


def minutes_filed(app: App, m: Meeting, data: bytes, kind: str, followups: list[tuple[str, str]] | None,
                  now: datetime) -> str:
    """What a filed and distributed protocol starts, whether it went out by itself or
    on the coordinator's yes: the project groups it names (``followup``) and, from the
    January meeting's, next year's plan put to the coordinator (``plan_adoption``).
    Returns what became of the plan ("" when the protocol has none)."""
    if followups:
        followup.minutes_filed(app, m, followups)
    return plan_adoption.from_protocol(app, m, f"protokoll.{kind}", data, now)


def record_and_distribute(app: App, m: Meeting, filing: FilingRecord, data: bytes, kind: str,
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
    if content_hash(data) != held.content_hash:
        raise ValueError(f"held file {held.filename} of {held.meeting_id} does not match its record")
    filing = next((f for f in app.state.filings(m.id) if f.content_hash == held.content_hash), None) \
        or _file(app, m, data, held.kind, held.source_msg_key, datetime.fromisoformat(held.dated))
    if app.ledger.distribution_holds.get(m.id, filing.version) != "approved":
        app.ledger.distribution_holds.put(m.id, filing.version, "approved")
    if held.cause == "late":  # an older copy goes out, but the decisions stay those of the newer version
        distribute(app, m, filing, data, held.kind, held.decisions)
    else:
        record_and_distribute(app, m, filing, data, held.kind, held.decisions)
        minutes_filed(app, m, data, held.kind, [(str(a), str(b)) for a, b in held.followups], now)
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


def content_hash(data: bytes) -> str:
    """The archive's content hash (Dropbox's; the local folder uses the same)."""
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
         "link": link, "decisions": decisions, "attached": attach,
         "folder": folder_words(filing.path.rpartition("/")[0])},
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
