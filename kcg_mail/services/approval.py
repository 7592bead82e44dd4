"""Held mail: "väntar på godkännande".

The intake holds what it may not act on by itself (``kcg_mail.core.inbound.rules``):

- a *message*: minutes not proven to come from an allowed filer (not
  authenticated by our receiving server, From not an allowed filer, several
  From addresses, no valid reply key where one is required). Nothing was
  filed; the mail waits in quarantine.
- a *distribution*: a new version beyond ``distribution.max_per_meeting_per_day``.
  It is filed; only the mail-out waits.

The coordinator sees them (``pending``: sender, subject, file name and why) and
releases one with ``approve(app, ref)`` (``kcg approve REF`` or the Prefect
manual flow ``kcg-approve``) or refuses it with ``reject(app, ref)``.
``ref`` is the message's key (msg_key, 40 hex digits) or its transport reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kcg_mail.ports import MessageRecord
from kcg_mail.services import guests
from kcg_mail.services.app import App
from kcg_mail.services.manual import ManualProblem, _find_record, release_from_quarantine


@dataclass
class Pending:
    msg_key: str
    ref: str
    kind: str  # "message" | "distribution"
    meeting_id: str | None
    sender: str
    subject: str
    files: list[str]
    why: str
    version: int | None = None

    def line(self) -> str:
        files = ", ".join(self.files) or "(ingen fil)"
        what = f"version {self.version} av {self.meeting_id} väntar på utskick" if self.kind == "distribution" \
            else f"möte {self.meeting_id or '?'}"
        return (f"{self.sender}: {self.subject!r} – {files} – {what} – varför: {self.why} "
                f"(kcg approve {self.msg_key} / kcg reject {self.msg_key})")


def _note(app: App, msg_key: str) -> dict[str, Any]:
    raw = app.state.get(f"held:{msg_key}")
    return json.loads(raw) if raw else {}


def pending(app: App) -> list[Pending]:
    """Everything held and not yet approved or rejected, oldest first."""
    out = []
    for rec in app.state.messages("held"):
        if rec.status != "done":
            continue
        n = _note(app, rec.msg_key)
        out.append(Pending(rec.msg_key, rec.ref, n.get("kind", "message"), n.get("meeting_id", rec.meeting_id),
                           n.get("sender", rec.sender), n.get("subject", rec.subject), list(n.get("files", [])),
                           n.get("why", rec.reason), n.get("version")))
    return out


def pending_markdown(app: App) -> str:
    items = pending(app)
    if not items:
        return "## Väntar på godkännande\n\nInget väntar.\n"
    lines = ["## Väntar på godkännande", ""]
    lines += [f"- {p.line()}" for p in items]
    return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    msg_key: str
    action: str  # approved | rejected
    detail: str

    def markdown(self) -> str:
        word = "Godkänt" if self.action == "approved" else "Avvisat"
        return f"# {word}: `{self.msg_key}`\n\n{self.detail}\n"


def _held(app: App, ref: str) -> MessageRecord:
    rec = _find_record(app, ref)
    if rec.outcome != "held":
        raise ManualProblem(f"meddelandet {rec.msg_key} väntar inte på godkännande (utfall {rec.outcome}: {rec.reason})")
    return rec


def approve(app: App, ref: str, now: datetime | None = None) -> Outcome:
    """Release a held message (it is filed and distributed by the next intake)
    or a held distribution (sent now)."""
    rec = _held(app, ref)
    note = _note(app, rec.msg_key)
    if note.get("kind") == "distribution":
        detail = _release_distribution(app, rec, note, now)
    elif note.get("kind") == guests.KIND:
        from kcg_mail.services.app import now_local

        detail = guests.release(app, rec, note, now_local(app.cfg, now))
    else:
        mid = note.get("meeting_id") or rec.meeting_id
        planning = bool(mid) and str(mid).startswith("planning:")  # a member's answer to the planning round
        if not mid or (app.meeting(mid) is None and not planning):
            raise ManualProblem("meddelandet matchade inget möte i årsplanen; använd kcg-refile med ett möte (t.ex. 2023-05)")
        restored = release_from_quarantine(app, rec, mid, f"godkänt av samordnaren för {mid}; väntar på intaget",
                                           "det kan redan vara arkiverat")
        detail = ("flyttat tillbaka från karantän till inkorgen; nästa intag arkiverar och skickar ut det" if restored
                  else "flytta meddelandet från karantänmappen till inkorgen i e-postprogrammet; godkännandet är "
                  "sparat och nästa intag arkiverar och skickar ut det")
    return Outcome(rec.msg_key, "approved", detail)


def _release_distribution(app: App, rec: MessageRecord, note: dict[str, Any], now: datetime | None) -> str:
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.services.app import now_local
    from kcg_mail.services.intake import _record_and_distribute, mark_distributed

    mid, version = note["meeting_id"], int(note["version"])
    m = app.meeting(mid)
    filing = next((f for f in app.state.filings(mid) if f.version == version), None)
    if m is None or filing is None:
        raise ManualProblem(f"version {version} av {mid} finns inte i arkivet")
    data = app.archive.read(filing.path)
    minutes = read_minutes(filing.path.rpartition("/")[2], data)
    decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
    app.state.put(f"held-distribution:{mid}:v{version}", "approved")
    now = now_local(app.cfg, now)
    app.outbox.now = now
    _record_and_distribute(app, m, filing, data, minutes.kind, decisions)
    mark_distributed(app, mid, now.date().isoformat(), version)
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, "minutes",
                                           f"version {version} godkänd av samordnaren och utskickad ({filing.path})",
                                           rec.sender, rec.subject, "done"))
    return f"version {version} av {mid} är utskickad till medlemmarna"


def reject(app: App, ref: str) -> Outcome:
    """Refuse a held message or distribution: nothing is filed or sent; the
    mail stays in quarantine with the decision recorded."""
    rec = _held(app, ref)
    note = _note(app, rec.msg_key)
    if note.get("kind") == guests.KIND:
        return Outcome(rec.msg_key, "rejected", guests.refuse(app, rec, note))
    if note.get("kind") == "distribution":
        app.state.put(f"held-distribution:{note['meeting_id']}:v{note['version']}", "rejected")
        detail = f"version {note['version']} av {note['meeting_id']} skickas inte ut (den ligger kvar i arkivet)"
    else:
        detail = "inget arkiveras eller skickas; meddelandet ligger kvar i karantänen"
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, rec.meeting_id, "rejected",
                                           f"avvisat av samordnaren ({note.get('why', rec.reason)})",
                                           rec.sender, rec.subject, "done"))
    return Outcome(rec.msg_key, "rejected", detail)
