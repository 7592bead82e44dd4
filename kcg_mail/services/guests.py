"""Guests' invitations: each guest gets one of their own, after the coordinator says yes.

A guest (``network.yaml: guests``, named in a meeting's ``guests:``) never gets the
members' invitation. The open meeting's wider audience (``network.yaml: audiences``,
``meetings.yaml`` ``kinds.all_members.audience``) is invited the same way, without a
question per organisation (the kind's configuration is the decision). When the members' invitation has gone out, each guest's
invitation is *held* for the coordinator (the approval list, ``approval.pending``,
and a mail to the coordinator saying what will go out and how to approve it).
Once approved it goes out: a calendar request with only the network's mailbox as
organizer and the guest as attendee, in the guest's language (``language:``), with
no member addresses and no internal plan comment.

The guest's event has a UID of its own (``kcg-2023-12-guest-<id>@domain``), not
the members' UID: on Exchange (EWS) and Microsoft Graph an invitation is a real
event in the network mailbox found by its UID, so a guest-only request under the
members' UID would rewrite that event's attendee list (and send the members a
cancellation). A guest never receives the members' copy, so their calendar never
sees two UIDs for one meeting. Updates (time, place) and cancellations (meeting
cancelled, moved to a tentative date, removed from the plan, or the guest removed
from it) go to every guest who has the invitation, under that guest's UID, with
SEQUENCE raised each time.

State: ``guest_invitations:<meeting>`` holds, per guest address, what the guest's
last invitation said; ``held:<msg_key>`` (kind ``guest_invitation``) the request
waiting for the coordinator; ``guest_approval:<meeting>:<address>`` the answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

from kcg_mail.core.config_model import Person
from kcg_mail.core.cycle import location_of
from kcg_mail.core.inbound.verdict import QuestionRef
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import ActionRecord, MessageRecord
from kcg_mail.services import questions
from kcg_mail.services.app import App
from kcg_mail.services.ledger import HeldNote

KIND: Literal["guest_invitation"] = "guest_invitation"


@dataclass(frozen=True)
class GuestCopy:
    """What a guest's last invitation said."""

    uid: str
    sequence: int
    start: str
    end: str
    location: str
    cancelled: bool = False


def guest_uid(app: App, meeting_id: str, guest: Person) -> str:
    domain = app.cfg.network.mailbox.email.rpartition("@")[2]
    return f"{app.cfg.network.short.lower()}-{meeting_id}-guest-{guest.id}@{domain}"


def hold_key(meeting_id: str, email: str) -> str:
    """The approval record's key (40 hex digits, like an incoming message's)."""
    return hashlib.sha1(f"{KIND}:{meeting_id}:{email.lower()}".encode()).hexdigest()


def copies(app: App, meeting_id: str) -> dict[str, GuestCopy]:
    return {k: GuestCopy(**v) for k, v in app.ledger.guest_invitations.get(meeting_id).items()}


def _save(app: App, meeting_id: str, email: str, copy: GuestCopy) -> None:
    all_ = copies(app, meeting_id)
    all_[email] = copy
    app.ledger.guest_invitations.put(meeting_id, {k: asdict(v) for k, v in all_.items()})


def answer(app: App, meeting_id: str, email: str) -> str | None:
    """``approved``, ``rejected`` or None (not asked yet, or waiting)."""
    return app.ledger.guest_approval(meeting_id, email)


def _guest(app: App, email: str) -> Person | None:
    net = app.cfg.network
    return next((g for g in net.guests + net.audience_people if g.email == email.lower()), None)


def _members_invited(app: App, m: Meeting) -> bool:
    inv = app.invitation(m.id)
    return inv is not None and not inv.cancelled


# ------------------------------------------------------------------ sending


def send(app: App, m: Meeting, guest: Person, now: datetime, *, cancel: bool = False, withdrawn: bool = False) -> str:
    """The guest's own invitation (or its update / cancellation), exactly once per sequence."""
    prev = copies(app, m.id).get(guest.email)
    seq = 0 if prev is None else prev.sequence + 1
    uid = prev.uid if prev is not None else guest_uid(app, m.id, guest)
    inv = app.composer.guest_invitation(m, guest, seq, uid=uid, cancel=cancel, withdrawn=withdrawn, now=now)
    outcome = app.outbox.send_invitation(inv)
    _save(app, m.id, guest.email, GuestCopy(uid, seq, m.start.isoformat(), m.end.isoformat(), location_of(m),
                                            cancelled=cancel))
    return outcome


def request_approval(app: App, m: Meeting, guest: Person, now: datetime) -> str:
    """Hold the guest's invitation for the coordinator and tell the coordinator (once)."""
    key = hold_key(m.id, guest.email)
    coord = app.cfg.network.coordinator
    ref = key[:12]
    if app.state.message(key) is None:
        subject = f"Inbjudan till gästen {guest.name} ({m.date.isoformat()})"
        why = "gäster bjuds in först när samordnaren har sagt ja"
        app.ledger.held_notes.put(key, HeldNote(kind=KIND, meeting_id=m.id, sender=guest.email, subject=subject,
                                                files=[], why=why, guest=guest.email))
        app.state.record_message(MessageRecord(key, f"{KIND}:{m.id}:{guest.email}", m.id, "held", why, guest.email,
                                               subject, "done"))
    q = questions.Question(f"Gästinbjudan väntar på ditt ja: {guest.name}", "", "skicka inbjudan",
                           "låta bli att bjuda in gästen")
    guest_ctx = {"name": guest.name, "organisation": guest.organisation,
                 "language": "engelska" if guest.language == "en" else "svenska"}
    return questions.ask(app, KIND, key, m, q, template="guest_approval", extra={"guest": guest_ctx, "ref": ref},
                         key=f"{m.id}:guest_approval:{coord.email}:{guest.id}")


def question_ids(app: App, actions: list[ActionRecord]) -> dict[str, QuestionRef]:
    """Our questions to the coordinator about guests (the ``guest_approval`` mail, under a key of its
    own): the approval mail's Message-ID -> the held request (registered as the kind's ``ids``)."""
    by_id = {g.id: g for g in app.cfg.network.guests}

    def match(r: ActionRecord) -> QuestionRef | None:
        guest = by_id.get(r.key.rsplit(":", 1)[-1]) if r.action == "guest_approval" else None
        if guest is None or not r.meeting_id:
            return None
        return QuestionRef(hold_key(r.meeting_id, guest.email), r.meeting_id, KIND)
    return questions.ids_from_actions(actions, match)


def release(app: App, rec: MessageRecord, note: HeldNote, now: datetime) -> str:
    """The coordinator approved: the guest's invitation goes out now (if the meeting is ahead)."""
    mid, email = note.meeting_id or "", note.guest or ""
    app.ledger.set_guest_approval(mid, email, "approved")
    m, guest = app.meeting(mid), _guest(app, email)
    detail = f"inbjudan till {guest.name if guest else email} är godkänd"
    if m is None or guest is None or guest not in m.guests:
        detail += ", men gästen står inte längre med i planen för mötet; inget skickas"
    elif now >= m.start:
        detail += ", men mötet har redan börjat; inget skickas"
    elif m.tentative or not _members_invited(app, m):
        detail += "; den går ut tillsammans med medlemmarnas inbjudan när datumet är bekräftat"
    else:
        app.outbox.now = now
        live = copies(app, mid).get(guest.email)
        if live is None or live.cancelled:  # not yet sent (a rerun after a crash finds it sent)
            send(app, m, guest, now)
        detail += " och skickad"
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, KIND, detail, rec.sender, rec.subject, "done"))
    return detail


def refuse(app: App, rec: MessageRecord, note: HeldNote) -> str:
    mid, email = note.meeting_id or "", note.guest or ""
    app.ledger.set_guest_approval(mid, email, "rejected")
    detail = f"ingen inbjudan till {email} för mötet {mid}"
    app.state.record_message(MessageRecord(rec.msg_key, rec.ref, mid, "rejected", detail, rec.sender, rec.subject,
                                           "done"))
    return detail


# ------------------------------------------------------------------ the daily pass


def _planned(app: App, meeting_id: str) -> Meeting | None:
    """The meeting as the plan has it, cancelled ones included (None: gone from the plan)."""
    from kcg_mail.core.plan import resolve_meeting

    pm = next((p for p in app.cfg.all_meetings() if p.meeting_id == meeting_id), None)
    return None if pm is None else resolve_meeting(app.cfg, pm)


def sync(app: App, now: datetime) -> list[tuple[str, str, str]]:
    """Bring every guest's invitation in line with the plan: ask the coordinator about
    new guests, send approved ones, update or cancel those already out.
    Returns (meeting, what, outcome) for what it did. Like every step of the cycle,
    nothing goes out on a weekend or a public holiday."""
    from kcg_mail.core.plan import is_working_day

    out: list[tuple[str, str, str]] = []
    if not is_working_day(now.date(), app.extra_days):
        return out
    plan = {m.id: m for m in app.meetings}  # confirmed or tentative, not cancelled
    ids = list(plan) + [mid for mid in app.orphan_invitations() if mid not in plan]
    for mid in ids:
        m = plan.get(mid)
        sent = copies(app, mid)
        live = m is not None and now < m.start and not m.tentative and _members_invited(app, m)
        # the open meeting's wider audience (meetings.yaml kinds.<kind>.audience) is invited as
        # guests are, each with an invitation of their own; the plan's kind already says yes to it
        wanted = {g.email: g for g in m.audience + m.guests} if (m is not None and live) else {}
        for email, g in wanted.items():
            assert m is not None  # wanted is empty without the meeting
            copy = sent.get(email)
            if copy is not None and not copy.cancelled:
                if (copy.start, copy.end, copy.location) != (m.start.isoformat(), m.end.isoformat(), location_of(m)):
                    out.append((mid, f"guest_update {email}", send(app, m, g, now)))
                continue
            state = answer(app, mid, email) if g in m.guests else "approved"
            if state == "approved":
                out.append((mid, f"guest_invite {email}", send(app, m, g, now)))
            elif state is None:
                # idempotent: records the request once, mails the coordinator once (also after a
                # crash between the two)
                asked = request_approval(app, m, g, now)
                if asked != "already":
                    out.append((mid, f"guest_approval {email}", asked))
        for email, copy in sent.items():
            if copy.cancelled or email in wanted or datetime.fromisoformat(copy.start) <= now:
                continue
            guest = _guest(app, email)
            shown = m if m is not None else _planned(app, mid)
            if guest is None or shown is None:
                continue  # the guest left network.yaml or the meeting left every plan: nothing to address
            out.append((mid, f"guest_cancel {email}", send(app, shown, guest, now, cancel=True,
                                                          withdrawn=live and email not in wanted)))
    return out
