"""Rebuild the state record from what is outside it: the Sent folder and the archive.

``kcg state rebuild`` (a fresh state file) and ``kcg state restore`` (a backup, merged
with what happened after it) both end here, so that nothing already sent is sent again:

- every copy in Sent carries the ``X-KCG-Mail`` marker (its idempotency key): each key
  becomes a ``done`` action, and the daily step that sends it is settled, so the Outbox
  and the cycle see it as done; the newest invitation of a meeting gives back the
  invitation snapshot (uid, sequence, attendees);
- every protocol in the archive becomes a filing (version from its name, content hash
  from the archive), and the newest one's decisions are read again.

What cannot be rebuilt: which incoming messages were handled (they have left the inbox,
so they are not fetched again) and calendar responses (they arrive again when people
answer). See ``README.md`` "State that cannot silently reset".
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from typing import Any

from kcg_mail.core.cycle import invitation_snapshot
from kcg_mail.core.plan import Meeting, archive_folder, protocol_filename
from kcg_mail.ports import FilingRecord
from kcg_mail.services.app import App

#: Actions of the daily cycle whose step is settled when their mail is found in Sent.
DAILY_STEPS = ("brief_host", "invite", "remind_host", "send_template", "chase_host", "escalate")

_VERSION = re.compile(r"^(?P<stem>.*) \(v(?P<n>\d+)\)$")
_ATTENDEE = re.compile(r"^ATTENDEE[^:\r\n]*:mailto:([^\r\n]+)", re.I | re.M)


@dataclass
class RebuildReport:
    """What the rebuild added to the state record, named, so the operator's report says
    which meetings and files came back, not only how many."""

    #: the idempotency keys of the sent mails recorded as done
    actions: list[str] = field(default_factory=list)
    #: the daily cycle's steps settled, as (meeting id, step)
    steps: list[tuple[str, str]] = field(default_factory=list)
    #: the meetings whose invitation snapshot was restored
    invitations: list[str] = field(default_factory=list)
    #: the archive paths recorded as filings
    filings: list[str] = field(default_factory=list)
    #: how many decisions were read again from the newest protocol, per meeting
    decisions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        meetings = f" ({', '.join(self.invitations)})" if self.invitations else ""
        return [f"{len(self.actions)} sent mails recorded as done (from the Sent folder markers)",
                f"{len(self.steps)} cycle steps settled, {len(self.invitations)} invitation snapshots restored"
                + meetings,
                f"{len(self.filings)} filings and {sum(self.decisions.values())} decisions restored from the archive",
                *(f"  {path}" for path in self.filings),
                *self.problems]


def _parse_key(key: str, meetings: dict[str, Meeting]) -> tuple[str | None, str]:
    parts = key.split(":")
    if parts[0] == "alert":
        return None, "alert"
    meeting_id = parts[0] if parts[0] in meetings else None
    action = parts[1] if len(parts) > 1 else key
    if action == "cancel":
        action = "invite"
    return meeting_id, action


def _unfolded_ics(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=policy.default)
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            text = part.get_content()
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            return re.sub(r"\r?\n[ \t]", "", text)
    return ""


def _restore_invitation(app: App, m: Meeting, key: str, raw: bytes) -> bool:
    ics = _unfolded_ics(raw)
    uid = re.search(r"^UID:(.+)$", ics, re.M)
    seq = re.search(r":s(\d+)$", key)
    if not uid or not seq:
        return False
    attendees = [a.strip().lower() for a in _ATTENDEE.findall(ics)]
    snap = invitation_snapshot(m, attendees, uid.group(1).strip(), int(seq.group(1)))
    if key.split(":")[1] == "cancel":
        snap = type(snap)(**{**snap.__dict__, "cancelled": True})
    app.set_invitation(m.id, snap)
    return True


def rebuild_from_sent(app: App, report: RebuildReport) -> None:
    meetings = {m.id: m for m in app.meetings}
    newest_invite: dict[str, tuple[int, str, bytes]] = {}
    for key, raw in app.mail.sent_copies():
        meeting_id, action = _parse_key(key, meetings)
        rec = app.state.action(key)
        if rec is None or rec.status != "done":
            msg = email.message_from_bytes(raw, policy=policy.default)
            detail = {"rebuilt": True, "message_id": str(msg.get("Message-ID", "")).strip(),
                      "subject": str(msg.get("Subject", ""))}
            app.state.record_action(key, meeting_id, action, "done", detail)
            report.actions.append(key)
        if meeting_id and action in DAILY_STEPS:
            step = app.state.action(f"{meeting_id}:step:{action}")
            if step is None or step.status != "done":
                app.settle(meeting_id, action, "done", {"outcome": "rebuilt"})
                report.steps.append((meeting_id, action))
        seq = re.search(r":s(\d+)$", key)
        if meeting_id and action == "invite" and seq:
            n = int(seq.group(1))
            if meeting_id not in newest_invite or n >= newest_invite[meeting_id][0]:
                newest_invite[meeting_id] = (n, key, raw)
    for meeting_id, (n, key, raw) in newest_invite.items():
        current = app.invitation(meeting_id)
        if current is None or current.sequence < n:
            if _restore_invitation(app, meetings[meeting_id], key, raw):
                report.invitations.append(meeting_id)


def rebuild_from_archive(app: App, report: RebuildReport) -> None:
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.documents.ooxml import MinutesRejected

    listed: dict[str, list[Any]] = {}
    for m in app.meetings:
        folder = archive_folder(app.cfg, m)
        if folder not in listed:
            listed[folder] = app.archive.list(folder)
        stem = protocol_filename(app.cfg, m).rpartition(".")[0]
        found = []
        for f in listed[folder]:
            name = f.path.rpartition("/")[2]
            fstem, _, ext = name.rpartition(".")
            if ext.lower() not in ("docx", "pdf", "odt"):
                continue
            v = _VERSION.match(fstem)
            n = int(v.group("n")) if v else 1
            if (v.group("stem") if v else fstem) == stem:
                found.append((n, ext.lower(), f))
        if not found:
            continue
        known = {f.content_hash for f in app.state.filings(m.id)}
        version = len(known)
        for _n, _ext, f in sorted(found, key=lambda t: (t[0], t[1])):
            if f.content_hash in known:
                continue
            version += 1
            known.add(f.content_hash)
            app.state.record_filing(FilingRecord(meeting_id=m.id, version=version, path=f.path, rev=f.rev,
                                                 content_hash=f.content_hash, link=None, source_msg_key="rebuilt"))
            report.filings.append(f.path)
        if not app.state.decisions(m.id):
            newest = sorted(found, key=lambda t: (t[0], t[1]))[-1][2]
            try:
                minutes = read_minutes(newest.path.rpartition("/")[2], app.archive.read(newest.path))
            except MinutesRejected as exc:
                report.problems.append(f"{newest.path}: decisions not read again ({exc.code})")
                continue
            decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
            app.state.replace_decisions(m.id, decisions)
            report.decisions[m.id] = len(decisions)


def rebuild(app: App) -> RebuildReport:
    """Add to ``app.state`` everything Sent and the archive prove happened. Idempotent:
    records that are already there are left as they are."""
    report = RebuildReport()
    rebuild_from_sent(app, report)
    rebuild_from_archive(app, report)
    return report
