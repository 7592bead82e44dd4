"""What the coordinator does by hand from the Prefect UI (``flows/manual.py``
wires these): resend a meeting's invitation or template, and re-file a
quarantined message after looking at it. Onboarding is ``kcg_mail.services.onboarding``.

Every resend is keyed by a request id (the flow run id): the same request
retried sends nothing twice, a new request sends again; both are recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kcg_mail.core.inbound.outcome import Outcome, folder_of
from kcg_mail.ports import MessageRecord
from kcg_mail.services.app import App


class ManualProblem(ValueError):
    """The request cannot be done as asked; the message says why and what to do."""


# ------------------------------------------------------------------ resend


def resend_meeting(app: App, meeting_id: str, what: Literal["invitation", "template"], request_id: str,
                   now: datetime) -> dict[str, Any]:
    """Send a meeting's invitation or template again (logic; the flow wires it)."""
    from kcg_mail.services.daily import invite_members, render_protocol

    m = app.meeting(meeting_id)
    if m is None:
        raise ManualProblem(f"mötet {meeting_id!r} finns inte i årsplanen; ange ett id som 2023-05 (se översikten)")
    marker = f"{meeting_id}:resend:{what}:{request_id}"
    app.outbox.now = now  # the texts speak of the meeting as ahead or held as of now
    done = app.state.action(marker)
    if done is not None and done.status == "done":
        return {"meeting": meeting_id, "what": what, **done.detail, "outcome": "already"}
    if what == "invitation":
        prev = app.invitation(meeting_id)
        if prev is None:
            raise ManualProblem(f"ingen inbjudan har skickats för {meeting_id} än; den dagliga körningen skickar "
                                f"den {app.cfg.meetings.lead_days.invite} arbetsdagar före mötet")
        if prev.cancelled:
            raise ManualProblem(f"inbjudan till {meeting_id} är inställd; ändra planen i stället (den dagliga "
                                f"körningen skickar en ny inbjudan när mötet är bekräftat igen)")
        outcome = invite_members(app, m, now, cancel=False)
        sent = app.invitation(meeting_id)
        seq = (sent or prev).sequence
        detail = {"key": f"{meeting_id}:invite:members:s{seq}", "sequence": seq,
                  "to": [p.email for p in app.attendees(m)]}
    elif what == "template":
        att = render_protocol(app, m)
        key = f"{m.id}:send_template:{m.host.email}:resend:{request_id}"
        msg = app.composer.message(
            "send_template", key, m, [m.host],
            {"meeting": app.composer.meeting_ctx(m, app.meetings), "filename": att.filename},
            cc=[m.backup_host] if m.backup_host else [], attachments=(att,),
        )
        outcome = app.outbox.send(msg)
        detail = {"key": key, "to": [a.email for a in msg.recipients]}
    else:
        raise ManualProblem(f"what must be 'invitation' or 'template', not {what!r}")
    app.state.record_action(marker, meeting_id, f"resend_{what}", "done", {"outcome": outcome, **detail})
    return {"meeting": meeting_id, "what": what, "outcome": outcome, **detail}


# ------------------------------------------------------------------ refile


@dataclass
class Refiled:
    msg_key: str
    meeting_id: str
    sender: str
    subject: str
    moved: str  # what happened to the message itself

    def markdown(self) -> str:
        return (f"# Återarkivering godkänd: {self.meeting_id}\n\n"
                f"- Meddelande från {self.sender}: {self.subject!r} (nyckel `{self.msg_key}`)\n"
                f"- {self.moved}\n"
                f"- Nästa intag (inom fem minuter) arkiverar bifogat protokoll som protokollet från "
                f"{self.meeting_id} och skickar ut det, trots att avsändaren inte är värd.\n")


def find_record(app: App, message: str) -> MessageRecord:
    message = message.strip()
    if re.fullmatch(r"[0-9a-f]{40}", message):
        rec = app.state.message(message)
        if rec is not None:
            return rec
    short = re.fullmatch(r"[0-9a-f]{8,39}", message) is not None  # the overview shows 12 characters
    hits = [r for r in app.state.messages() if r.ref == message or r.ref.rpartition("/")[2] == message
            or (short and r.msg_key.startswith(message))]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ManualProblem(f"{message!r} matchar {len(hits)} meddelanden; ange meddelandets nyckel (msg_key)")
    raise ManualProblem(f"inget meddelande med nyckel eller referens {message!r} i tillståndsregistret; "
                        f"se listan 'Behöver en människa' i översikten för referensen")


def refile_message(app: App, message: str, meeting_id: str | None = None) -> Refiled:
    """Approve a quarantined message as minutes of ``meeting_id`` and put it
    back in the inbox. Maildir: moved from quarantine/ back to inbox/cur/.
    Other transports (IMAP, Exchange, Graph) have no 'back to inbox' in the
    port: the coordinator drags the message from the quarantine folder to the
    inbox in the mail program; the approval is stored either way."""
    rec = find_record(app, message)
    mid = meeting_id or rec.meeting_id
    if not mid:
        raise ManualProblem("meddelandet matchade inget möte; ange meeting_id (t.ex. 2023-05)")
    if app.meeting(mid) is None:
        raise ManualProblem(f"mötet {mid!r} finns inte i årsplanen")
    if rec.status == "done" and folder_of(rec.outcome) != "quarantine":
        raise ManualProblem(f"meddelandet är inte i karantän (utfall {rec.outcome}: {rec.reason})")
    restored = release_from_quarantine(app, rec, mid, f"godkänd av samordnaren för {mid}; väntar på intaget",
                                       "det kan redan vara arkiverat")
    moved = ("flyttat tillbaka från karantän till inkorgen" if restored else
             "flytta meddelandet från karantänmappen till inkorgen i e-postprogrammet (Outlook: dra det till "
             "Inkorgen); godkännandet är sparat")
    return Refiled(rec.msg_key, mid, rec.sender, rec.subject, moved)


def release_from_quarantine(app: App, rec: MessageRecord, mid: str, reason: str, missing_hint: str) -> bool:
    """Approve a quarantined message for meeting ``mid`` (the next intake files it):
    record the approval, move it back to the inbox where the transport can (True),
    or leave that to the coordinator's mail program (False: IMAP, EWS, Graph)."""
    from kcg_mail.core.inbound.message import msg_key

    app.ledger.approved_for.put(rec.msg_key, mid)
    restored = app.mail.restore("quarantine", lambda raw: msg_key(raw) == rec.msg_key)
    if restored is False:
        raise ManualProblem(f"meddelandet {rec.msg_key} finns inte i karantänen; {missing_hint}")
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, Outcome.APPROVED, reason, rec.sender, rec.subject, "seen"))
    return restored is True
