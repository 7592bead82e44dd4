"""Flows the coordinator starts by hand from the Prefect UI ("Run" -> form).

- ``kcg-onboard-member``: welcome a new member (logic in ``kcg_mail.onboarding``);
- ``kcg-resend``: send a meeting's invitation (as an update, SEQUENCE + 1, to
  everyone) or its protocol template again;
- ``kcg-refile``: after looking at a quarantined message, file it anyway: it is
  moved back to the inbox and approved, and the next intake files it as the
  minutes of the given meeting.

The parameters are typed (str, Literal, optional str) so the UI renders a form
with a dropdown for ``what``. Each flow publishes a markdown artifact saying
what it did and what is left to do. They have no schedule and no failure
mail: the coordinator is looking at the run.

Every resend is keyed by the flow run id: the same run retried sends nothing
twice, a new click in the UI sends again (and both are in the state record).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from prefect import flow, runtime
from prefect.artifacts import create_markdown_artifact

from flows.common import make_app, when
from kcg_mail.service import App

ONBOARDING_KEY = "kcg-onboarding"
MANUAL_KEY = "kcg-manual"


class ManualProblem(ValueError):
    """The request cannot be done as asked; the message says why and what to do."""


def _request_id() -> str:
    return str(runtime.flow_run.id or uuid.uuid4())


def _publish(key: str, md: str, description: str) -> None:
    if runtime.flow_run.id:
        create_markdown_artifact(markdown=md, key=key, description=description)


# ------------------------------------------------------------------ resend


def resend_meeting(app: App, meeting_id: str, what: Literal["invitation", "template"], request_id: str,
                   now: datetime) -> dict:
    """Send a meeting's invitation or template again (logic; the flow wires it)."""
    from kcg_mail.daily import _send_invitation, render_protocol

    m = app.meeting(meeting_id)
    if m is None:
        raise ManualProblem(f"mötet {meeting_id!r} finns inte i årsplanen; ange ett id som 2023-05 (se kcg-year-plan)")
    marker = f"{meeting_id}:resend:{what}:{request_id}"
    done = app.state.action(marker)
    if done is not None and done.status == "done":
        return {"meeting": meeting_id, "what": what, **done.detail, "outcome": "already"}
    if what == "invitation":
        prev = app.invitation(meeting_id)
        if prev is None:
            raise ManualProblem(f"ingen inbjudan har skickats för {meeting_id} än; den dagliga körningen skickar "
                                f"den {app.cfg.meetings.lead_days.invite} dagar före mötet")
        if prev.cancelled:
            raise ManualProblem(f"inbjudan till {meeting_id} är inställd; ändra planen i stället (den dagliga "
                                f"körningen skickar en ny inbjudan när mötet är bekräftat igen)")
        outcome = _send_invitation(app, m, now, cancel=False)
        seq = app.invitation(meeting_id).sequence
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


def _find_record(app: App, message: str):
    message = message.strip()
    if re.fullmatch(r"[0-9a-f]{40}", message):
        rec = app.state.message(message)
        if rec is not None:
            return rec
    hits = [r for r in app.state.messages() if r.ref == message or r.ref.rpartition("/")[2] == message]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ManualProblem(f"{message!r} matchar {len(hits)} meddelanden; ange meddelandets nyckel (msg_key)")
    raise ManualProblem(f"inget meddelande med nyckel eller referens {message!r} i tillståndsregistret; "
                        f"se 'Behöver en människa' i kcg-run-summary för nyckeln")


def _maildir_back_to_inbox(app: App, key: str) -> str:
    from kcg_mail.intake import msg_key

    root = Path(app.mail.root)
    for sub in ("cur", "new"):
        folder = root / "quarantine" / sub
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            if p.is_file() and msg_key(p.read_bytes()) == key:
                os.replace(p, root / "inbox" / "cur" / p.name)
                return f"flyttat tillbaka från karantän till inkorgen ({p.name})"
    for sub in ("cur", "new"):
        folder = root / "inbox" / sub
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            if p.is_file() and msg_key(p.read_bytes()) == key:
                return "ligger redan i inkorgen"
    raise ManualProblem(f"meddelandet {key} finns inte i {root}/quarantine; det kan redan vara arkiverat")


def refile_message(app: App, message: str, meeting_id: str | None = None) -> Refiled:
    """Approve a quarantined message as minutes of ``meeting_id`` and put it
    back in the inbox. Maildir: moved from quarantine/ back to inbox/cur/.
    Other transports (IMAP, Exchange, Graph) have no 'back to inbox' in the
    port: the coordinator drags the message from the quarantine folder to the
    inbox in the mail program; the approval is stored either way."""
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.intake import FOLDER
    from kcg_mail.ports import MessageRecord

    rec = _find_record(app, message)
    mid = meeting_id or rec.meeting_id
    if not mid:
        raise ManualProblem("meddelandet matchade inget möte; ange meeting_id (t.ex. 2023-05)")
    if app.meeting(mid) is None:
        raise ManualProblem(f"mötet {mid!r} finns inte i årsplanen")
    if rec.status == "done" and FOLDER.get(rec.outcome, "quarantine") != "quarantine":
        raise ManualProblem(f"meddelandet är inte i karantän (utfall {rec.outcome}: {rec.reason})")
    app.state.put(f"approved:{rec.msg_key}", mid)
    if isinstance(app.mail, MaildirTransport):
        moved = _maildir_back_to_inbox(app, rec.msg_key)
    else:
        moved = ("flytta meddelandet från karantänmappen till inkorgen i e-postprogrammet (Outlook: dra det till "
                 "Inkorgen); godkännandet är sparat")
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, "approved",
                                           f"godkänd av samordnaren för {mid}; väntar på intaget",
                                           rec.sender, rec.subject, "seen"))
    return Refiled(rec.msg_key, mid, rec.sender, rec.subject, moved)


# ------------------------------------------------------------------- flows


@flow(name="kcg-onboard-member", flow_run_name="välkommen {name}", log_prints=False)
def onboard_member(name: str, organisation: str, city: str, email: str, workdir: str = "var",
                   config_dir: str | None = None, date: str | None = None) -> dict:
    """Welcome a new member: welcome mail with the year plan (.ics), access to the
    protocol folder, and a checklist of what stays manual.

    Args:
        name: Full name, e.g. "Åsa Öberg".
        organisation: The city-centre organisation, e.g. "Umeå City".
        city: The city, e.g. "Umeå".
        email: The new member's email address.
        workdir: kcg-mail's working directory (state, Maildir, local archive).
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
        date: Only for tests: pretend today is this day (YYYY-MM-DD).
    """
    from kcg_mail.onboarding import onboard

    app = make_app(workdir, config_dir)
    result = onboard(app, name, organisation, city, email, when(app, date))
    _publish(ONBOARDING_KEY, result.markdown(), f"Onboarding av {result.person.name}")
    return {"email": result.person.email, "mail": result.mail, "meetings": len(result.meetings),
            "archive": result.archive, "manual_steps": result.manual_steps}


@flow(name="kcg-resend", flow_run_name="skicka om {what} {meeting_id}", log_prints=False)
def resend(meeting_id: str, what: Literal["invitation", "template"] = "invitation", workdir: str = "var",
           config_dir: str | None = None, date: str | None = None) -> dict:
    """Send a meeting's invitation (as an update to everyone) or its protocol template again.

    Args:
        meeting_id: The meeting, e.g. "2023-05" (see the kcg-year-plan artifact).
        what: "invitation" or "template".
        workdir: kcg-mail's working directory.
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
        date: Only for tests: pretend today is this day (YYYY-MM-DD).
    """
    app = make_app(workdir, config_dir)
    out = resend_meeting(app, meeting_id, what, _request_id(), when(app, date))
    label = {"invitation": "Inbjudan", "template": "Protokollmallen"}[what]
    state = {"sent": "skickad igen", "already": "var redan omskickad i den här körningen"}.get(out["outcome"], out["outcome"])
    _publish(MANUAL_KEY, f"# {label} till {meeting_id} {state}\n\n- Till: {', '.join(out.get('to', []))}\n"
             f"- Nyckel i tillståndsregistret: `{out.get('key', '')}`\n", f"Skicka om {what} {meeting_id}")
    return out


@flow(name="kcg-refile", flow_run_name="återarkivera {message}", log_prints=False)
def refile(message: str, meeting_id: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict:
    """File a quarantined message anyway, as the minutes of a meeting.

    Args:
        message: The message key (msg_key, 40 hex characters) or its reference (file name) from the run summary.
        meeting_id: The meeting the minutes belong to, e.g. "2023-05"; empty = the meeting the message matched.
        workdir: kcg-mail's working directory.
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
    """
    app = make_app(workdir, config_dir)
    r = refile_message(app, message, meeting_id)
    _publish(MANUAL_KEY, r.markdown(), f"Återarkivering {r.meeting_id}")
    return {"msg_key": r.msg_key, "meeting_id": r.meeting_id, "moved": r.moved}
