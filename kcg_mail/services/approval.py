"""Held mail: "väntar på godkännande".

The intake holds what it may not act on by itself, and nothing held is in the
shared archive (``kcg_mail.services.held``):

- a *message*: minutes not proven to come from an allowed filer (not
  authenticated by our receiving server, From not an allowed filer, several
  From addresses, no valid reply key where one is required). Nothing was
  read or filed; the mail waits in quarantine.
- a *version*: minutes from an allowed filer that may not go out by themselves:
  beyond ``distribution.max_per_meeting_per_day``, a late copy (older than the
  version already sent), or a file in which something unsafe was found. The
  file that would be filed and distributed waits in the held area under the
  work directory; approving it files and distributes exactly that file.
- a *distribution* (state records from before the held area): a filed version
  whose mail-out waits.

The coordinator sees them (``pending``: sender, subject, file, why in Swedish)
and releases one with ``approve(app, ref)`` (``kcg approve REF`` or the Prefect
manual flow ``kcg-approve``) or refuses it with ``reject(app, ref)``.
``ref`` is the message's key (msg_key, 40 hex digits) or its transport reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from kcg_mail.ports import MessageRecord
from kcg_mail.services import guests, questions
from kcg_mail.services.app import App
from kcg_mail.services.held import SENDER_CAUSES, held_area
from kcg_mail.services.ledger import HeldNote, HeldVersion
from kcg_mail.services.manual import ManualProblem, find_record, release_from_quarantine


@dataclass(frozen=True, kw_only=True)
class Pending(HeldNote):
    """A held message as the coordinator sees it: its note (what the record says where
    the note is silent) and the message it is about."""

    msg_key: str
    ref: str
    #: the file an approval files and distributes (held area, relative to the work directory)
    sends: str = ""

    def line(self) -> str:
        files = ", ".join(self.files) or "(ingen fil)"
        if self.kind == "distribution":
            what = f"version {self.version} av {self.meeting_id} väntar på utskick"
        elif self.kind == "version":
            what = f"en ny version av protokollet från {self.meeting_id} väntar; godkänns den arkiveras " \
                   f"{self.sends} och skickas ut till medlemmarna"
        else:
            what = f"möte {self.meeting_id or '?'}"
        return (f"{self.sender}: {self.subject!r} – {files} – {what} – varför: {self.why} "
                f"(kcg approve {self.msg_key} / kcg reject {self.msg_key})")


#: the question kind of held minutes (``services.questions``; the ref is the message's key)
HELD = "held"


def _note(app: App, msg_key: str) -> HeldNote | None:
    return app.ledger.held_notes.get(msg_key)


def _held_version(app: App, note: HeldNote) -> HeldVersion | None:
    if note.kind != "version" or not note.meeting_id or not note.content_hash:
        return None
    return app.ledger.held_version(note.meeting_id, note.content_hash)


def pending(app: App) -> list[Pending]:
    """Everything held and not yet approved or rejected, oldest first."""
    out = []
    for rec in app.state.messages("held"):
        if rec.status != "done":
            continue
        # a message held before anything was read has no note: the record says it all
        n = _note(app, rec.msg_key) or HeldNote("message", None, "", "", [], "")
        hv = _held_version(app, n)
        note = replace(n, meeting_id=n.meeting_id or rec.meeting_id, sender=n.sender or rec.sender,
                       subject=n.subject or rec.subject, files=list(n.files), why=n.why or rec.reason)
        out.append(Pending(**vars(note), msg_key=rec.msg_key, ref=rec.ref,
                           sends=f"filen {held_area(app).relative(hv)}" if hv is not None else ""))
    return out


def reasons(app: App) -> dict[str, str]:
    """msg_key -> the Swedish reason of everything held (for the overview)."""
    return {p.msg_key: p.why for p in pending(app)}


def pending_markdown(app: App) -> str:
    items = pending(app)
    if not items:
        return "## Väntar på godkännande\n\nInget väntar.\n"
    lines = ["## Väntar på godkännande", ""]
    lines += [f"- {p.line()}" for p in items]
    return "\n".join(lines) + "\n"


def _question(app: App, p: Pending) -> questions.Question:
    m = app.meeting(p.meeting_id or "")
    what = f"Protokollet från mötet {m.date_text()}" if m is not None else "Ett svar till nätverket"
    why = re.sub(r"\s*\([a-z-]+: .*\)$", "", p.why)  # the rule's technical note is for the log
    details = [f"Från: {p.sender}", f"Ämne: {p.subject}"] + ([f"Fil: {', '.join(p.files)}"] if p.files else [])
    if p.kind == "distribution":
        what = f"Version {p.version} av protokollet från mötet {m.date_text() if m else p.meeting_id}"
        return questions.Question(f"{what} väntar på ditt ja", f"{what} är arkiverad men inte utskickad, "
                                  f"eftersom {why}.", "skicka ut den till medlemmarna", "stoppa utskicket")
    return questions.Question(f"{what} väntar på ditt ja", f"{what} har kommit in men väntar, eftersom {why}.",
                              "arkivera det och skicka ut det till medlemmarna",
                              "stoppa det (inget arkiveras eller skickas)", tuple(details))


def ask_waiting(app: App, now: datetime) -> list[str]:
    """Ask the coordinator about every held version of minutes from a confirmed filer (over the
    day's allowance, a late copy, something unsafe taken out) not yet asked about, once each.
    What waits because its sender could not be confirmed is not mailed about: anybody can send
    such mail, and a question per forged mail would let a stranger flood the coordinator; it
    stays on the approval list of the overview and in the forms. Guests ask themselves."""
    out = []
    for p in pending(app):
        if p.kind in ("version", "distribution") and (p.cause or "") not in SENDER_CAUSES:
            m = app.meeting(p.meeting_id or "")
            app.outbox.now = now
            if questions.ask(app, HELD, p.msg_key, m, _question(app, p)) != "already":
                out.append(p.msg_key)
    return out


@dataclass
class Outcome:
    msg_key: str
    action: str  # approved | rejected
    detail: str

    def markdown(self) -> str:
        word = "Godkänt" if self.action == "approved" else "Avvisat"
        return f"# {word}: `{self.msg_key}`\n\n{self.detail}\n"


def _held(app: App, ref: str) -> MessageRecord:
    rec = find_record(app, ref)
    if rec.outcome != "held":
        raise ManualProblem(f"meddelandet {rec.msg_key} väntar inte på godkännande (utfall {rec.outcome}: {rec.reason})")
    return rec


def approve(app: App, ref: str, now: datetime | None = None) -> Outcome:
    """Release a held message (it is filed and distributed by the next intake),
    a held version (filed and sent now) or a held distribution (sent now)."""
    from kcg_mail.services.app import now_local

    rec = _held(app, ref)
    note = _note(app, rec.msg_key)
    if note is not None and note.kind == "version":
        hv = _held_version(app, note)
        if hv is None:
            raise ManualProblem(f"den väntande versionen av {note.meeting_id} finns inte i tillståndsregistret")
        detail = _release_version(app, hv, rec, now_local(app.cfg, now))
    elif note is not None and note.kind == "distribution":
        detail = _release_distribution(app, rec, note, now)
    elif note is not None and note.kind == guests.KIND:
        detail = guests.release(app, rec, note, now_local(app.cfg, now))
    else:
        mid = (note.meeting_id if note else None) or rec.meeting_id
        planning = bool(mid) and str(mid).startswith("planning:")  # a member's answer to the planning round
        if not mid or (app.meeting(mid) is None and not planning):
            raise ManualProblem("meddelandet matchade inget möte i årsplanen; ange mötet i formuläret (t.ex. 2023-05)")
        restored = release_from_quarantine(app, rec, mid, f"godkänt av samordnaren för {mid}; väntar på intaget",
                                           "det kan redan vara arkiverat")
        detail = ("flyttat tillbaka från karantän till inkorgen; nästa intag arkiverar och skickar ut det" if restored
                  else "flytta meddelandet från karantänmappen till inkorgen i e-postprogrammet; godkännandet är "
                  "sparat och nästa intag arkiverar och skickar ut det")
    why = note.why if note else rec.reason
    return Outcome(rec.msg_key, "approved", f"{detail}\n\nVarför det väntade: {why}")


def _release_version(app: App, hv: HeldVersion, rec: MessageRecord, now: datetime) -> str:
    from kcg_mail.services.filing import release_held_version

    app.outbox.now = now
    if hv.state == "rejected":  # refused with another message; this approval says otherwise
        hv = replace(hv, state="held")
    filing = release_held_version(app, hv, now, msg_key=rec.msg_key)
    return f"version {filing.version} av {hv.meeting_id} är arkiverad som {filing.path} och utskickad till medlemmarna"


def _release_distribution(app: App, rec: MessageRecord, note: HeldNote, now: datetime | None) -> str:
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.services.app import now_local
    from kcg_mail.services.filing import minutes_filed, record_and_distribute

    mid, version = note.meeting_id or "", int(note.version or 0)
    m = app.meeting(mid)
    filing = next((f for f in app.state.filings(mid) if f.version == version), None)
    if m is None or filing is None:
        raise ManualProblem(f"version {version} av {mid} finns inte i arkivet")
    data = app.archive.read(filing.path)
    minutes = read_minutes(filing.path.rpartition("/")[2], data)
    decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
    app.ledger.distribution_holds.put(mid, version, "approved")
    now = now_local(app.cfg, now)
    app.outbox.now = now
    record_and_distribute(app, m, filing, data, minutes.kind, decisions)
    app.ledger.mark_distributed(mid, now.date(), version)
    minutes_filed(app, m, data, minutes.kind, list(minutes.followups), now)
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, "minutes",
                                           f"version {version} godkänd av samordnaren och utskickad ({filing.path})",
                                           rec.sender, rec.subject, "done"))
    return f"version {version} av {mid} är utskickad till medlemmarna"


def reject(app: App, ref: str) -> Outcome:
    """Refuse a held message, version or distribution: nothing is filed or sent;
    the mail stays in quarantine (a held version's file in the held area) with
    the decision recorded."""
    rec = _held(app, ref)
    note = _note(app, rec.msg_key)
    if note is not None and note.kind == guests.KIND:
        return Outcome(rec.msg_key, "rejected", guests.refuse(app, rec, note))
    if note is not None and note.kind == "version":
        hv = _held_version(app, note)
        others = [p for p in pending(app) if p.msg_key != rec.msg_key and p.kind == "version"
                  and _held_version(app, _note(app, p.msg_key) or note) == hv]
        if hv is not None and hv.state == "held" and not others:  # refused unless another message still waits with it
            app.ledger.put_held_version(replace(hv, state="rejected"))
        detail = f"versionen av {note.meeting_id} arkiveras inte och skickas inte ut"
    elif note is not None and note.kind == "distribution":
        app.ledger.distribution_holds.put(note.meeting_id or "", int(note.version or 0), "rejected")
        detail = f"version {note.version} av {note.meeting_id} skickas inte ut (den ligger kvar i arkivet)"
    else:
        detail = "inget arkiveras eller skickas; meddelandet ligger kvar i karantänen"
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, rec.meeting_id, "rejected",
                                           f"avvisat av samordnaren ({note.why if note else rec.reason})",
                                           rec.sender, rec.subject, "done"))
    return Outcome(rec.msg_key, "rejected", detail)
