"""The application object and the exactly-once outbox.

``App`` holds the configuration, the resolved plan and the three adapters
(mail, archive, state) plus the composer and the protocol renderer; it is
built by ``kcg_mail.bootstrap``. ``Outbox`` is the only way mail leaves:

1. a record ``done`` for the key -> nothing to do;
2. an ``intent`` without ``done`` (we crashed around a send) -> ask the
   transport whether a message with our marker is in Sent; if so, record
   ``done`` and do not send again;
3. otherwise record ``intent``, send, record ``done``.

So a crash at any point neither loses a mail nor sends it twice.

Before a mail to members goes out the Outbox asks its ``Pacer`` (the member
caps, ``kcg_mail.services.pacing``): a mail that must wait is kept whole in the
state record and ``send`` answers ``waiting``; ``release`` (the daily run) sends
it when its day comes, through the same intent/done record.
"""

from __future__ import annotations

import contextlib
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from kcg_mail.core import replykey
from kcg_mail.core.config_model import Config, Person
from kcg_mail.core.cycle import InvitationSnapshot, MeetingState
from kcg_mail.core.plan import DateDecision, Meeting, resolve_plan
from kcg_mail.ports import Archive, Invitation, MailTransport, OutgoingMessage, StateStore
from kcg_mail.services.compose import Composer
from kcg_mail.services.ledger import Ledger
from kcg_mail.services.pacing import DROPPED, SENT, WAITING, Pacer, message_from_json


class RecipientNotAllowed(ValueError):
    pass


class Outbox:
    def __init__(self, state: StateStore, mail: MailTransport, allowed: set[str], *,
                 reply_secret: bytes = b"", reply_to_plus: bool = False):
        self.reply_secret = reply_secret
        self.reply_to_plus = reply_to_plus
        self.state = state
        self.mail = mail
        self.allowed = {a.lower() for a in allowed}
        self.sent: list[str] = []  # keys sent in this run (for reports)
        self.sleep: Callable[[float], None] = _time.sleep
        #: the run's "now", stamped as the Date of what is sent (None: the real time)
        self.now: datetime | None = None
        #: the member caps (None: every mail goes out at once)
        self.pacer: Pacer | None = None

    def _today(self) -> date:
        return (self.now or datetime.now().astimezone()).date()

    def _guard(self, msg: OutgoingMessage) -> None:
        stray = [a.email for a in msg.recipients if a.email.lower() not in self.allowed]
        if stray:
            raise RecipientNotAllowed(
                f"{msg.key}: {', '.join(stray)} is not in config/network.yaml; mail goes only to people of the network"
            )

    def _deliver(self, msg: OutgoingMessage, send: Callable[[], None]) -> str:
        rec = self.state.action(msg.key)
        if rec is not None and rec.status == "done":
            return "already"
        if rec is not None and rec.status == "intent" and self._went_out(msg.key, rec.at):
            self.state.record_action(msg.key, msg.meeting_id, msg.action, "done",
                                     {**rec.detail, "recovered": True})
            return "recovered"
        self._guard(msg)
        day = self._today()
        detail = {"message_id": msg.message_id, "to": [a.email for a in msg.recipients], "subject": msg.subject,
                  "on": day.isoformat()}
        self.state.record_action(msg.key, msg.meeting_id, msg.action, "intent", detail)
        if self.pacer is not None:
            self.pacer.sent(msg, day)
        send()
        self.state.record_action(msg.key, msg.meeting_id, msg.action, "done", detail)
        self.sent.append(msg.key)
        return "sent"

    def _went_out(self, key: str, intent_at: str) -> bool:
        """Did the interrupted send of ``key`` reach the server? A transport whose
        copy shows up a while after the send (``settle_seconds``: Graph's
        asynchronous sendMail, the SMTP own copy in delivery) gets that long,
        counted from the intent, before we decide it did not."""
        if self.mail.was_sent(key):
            return True
        settle = self.mail.settle_seconds
        try:
            age = (datetime.now(UTC) - datetime.fromisoformat(intent_at)).total_seconds()
        except (TypeError, ValueError):
            return False
        if settle <= 0 or age >= settle + 1:
            return False
        sleep = self.mail.settle_sleep or self.sleep  # the transport's clock (tests inject it)
        sleep(max(0.0, settle + 1 - age))  # +1: the intent's time is stored to the second
        return self.mail.was_sent(key)

    def _dated(self, msg: OutgoingMessage) -> OutgoingMessage:
        msg = replace(msg, date=self.now) if self.now is not None and msg.date is None else msg
        return self._keyed(msg)

    def _keyed(self, msg: OutgoingMessage) -> OutgoingMessage:
        """Our Message-ID carries the reply key (HMAC over meeting, action and
        recipient); with plus-addressing, Reply-To does too (``kcg+<key>@...``).
        Crash recovery finds sent mail by the marker header, not by the Message-ID."""
        if not self.reply_secret or msg.msgid:
            return msg
        domain = msg.sender.email.rpartition("@")[2]
        changes: dict[str, Any] = {"msgid": replykey.message_id(self.reply_secret, msg.key, domain)}
        if self.reply_to_plus and msg.reply_to is not None and msg.reply_to.email == msg.sender.email:
            meeting, action, recipient = replykey.split_key(msg.key)
            key = replykey.reply_key(self.reply_secret, meeting, action, recipient)
            changes["reply_to"] = replace(msg.reply_to, email=replykey.reply_address(msg.sender.email, key))
        return replace(msg, **changes)

    def send(self, msg: OutgoingMessage, *, moot_if: list[Any] | None = None) -> str:
        """Send ``msg`` once, or keep it until the member caps let it go (``waiting``).
        ``moot_if``: ``[year, what, member_id]`` of the planning round; a waiting
        reminder is dropped once that member's answer is in."""
        msg = self._dated(msg)
        if self._waits(msg, moot_if):
            return WAITING
        return self._deliver(msg, lambda: self.mail.send(msg))

    def _waits(self, msg: OutgoingMessage, moot_if: list[Any] | None) -> bool:
        if self.pacer is None:
            return False
        rec = self.state.action(msg.key)
        if rec is not None and rec.status in ("intent", "done"):
            return False  # begun or done: _deliver settles it
        if self.pacer.waits(msg.key):
            return True
        self._guard(msg)  # a mail to someone outside the network is refused now, not on its day
        today = self._today()
        verdict = self.pacer.verdict(msg, today)
        if not verdict.waits(today):
            return False
        self.pacer.hold(msg, verdict, today, moot_if)
        return True

    def release(self, now: datetime) -> list[tuple[str, str]]:
        """Send the mails whose day has come (first thing in the daily run): each
        is asked again (what went out since may fill the day), a reminder whose
        answer came in meanwhile is dropped. ``(key, outcome)`` per mail."""
        if self.pacer is None:
            return []
        self.now = now
        today = now.date()
        out = []
        for rec in self.pacer.due(today):
            begun = self.state.action(rec["key"])
            if begun is None and self.pacer.moot(rec):
                self.pacer.settle(rec, DROPPED, today)
                out.append((rec["key"], DROPPED))
                continue
            msg = self._dated(message_from_json(rec["message"]))
            if begun is None:
                verdict = self.pacer.recheck(rec, msg, today)
                if verdict.waits(today):
                    self.pacer.settle(rec, WAITING, today, verdict.on, verdict.reason)
                    out.append((rec["key"], f"{WAITING} {verdict.on.isoformat()}"))
                    continue
            outcome = self._deliver(msg, partial(self.mail.send, msg))
            self.pacer.settle(rec, SENT, today)
            out.append((rec["key"], outcome))
        return out

    def send_invitation(self, inv: Invitation) -> str:
        inv = replace(inv, message=self._dated(inv.message))
        return self._deliver(inv.message, lambda: self.mail.send_invitation(inv))


@dataclass
class App:
    cfg: Config
    state: StateStore
    mail: MailTransport
    archive: Archive
    composer: Composer
    renderer: Any  # kcg_mail.documents.render.ProtocolRenderer
    meetings: list[Meeting] = field(default_factory=list)
    #: made from state and mail when the App is made
    outbox: Outbox = field(init=False)
    #: a broken edited protocol template (the last good one is used meanwhile)
    template_problems: list[str] = field(default_factory=list)
    #: the HMAC secret of reply keys (kcg_mail.bootstrap loads it; empty: one for this process only)
    reply_secret: bytes = b""

    def __post_init__(self) -> None:
        import secrets as _secrets

        self.refresh_meetings()
        net = self.cfg.network
        if not self.reply_secret:
            self.reply_secret = _secrets.token_bytes(32)
        allowed = {p.email for p in net.members + net.guests + net.audience_people} | {net.mailbox.email} | set(net.filers)
        self.outbox = Outbox(self.state, self.mail, allowed, reply_secret=self.reply_secret,
                             reply_to_plus=self.cfg.transport.inbound.plus_address_reply_to)
        self.outbox.pacer = Pacer(self.state, self.cfg, self.meetings)
        self.composer.meeting_extras = self.meeting_extras
        self.composer.clock = lambda: self.outbox.now  # dates in words relative to the run's day
        # an own copy counts only with our Message-ID (HMAC), not just our marker and address
        self.mail.verify_own_copies(partial(replykey.is_our_message_id, self.reply_secret))

    def close(self) -> None:
        """Close the mail connection, the archive and the state record.

        A flow run inside a long-lived process (the push path of ``kcg serve``
        runs one intake flow per new mail) must: an IMAP connection left open
        per run soon hits the server's per-user limit (Dovecot's
        ``mail_max_userip_connections``, 10 by default)."""
        for close in (self.mail.close, self.archive.close, self.state.close):
            with contextlib.suppress(Exception):
                close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh_meetings(self) -> None:
        """Resolve the plan again, with the coordinator's decisions about dates
        (``kcg_mail.services.meeting_dates``) from the state record."""
        decided = {mid: DateDecision.from_dict(d) for mid, d in self.ledger.meeting_dates().items()}
        self.meetings = resolve_plan(self.cfg, decisions=decided)

    def meeting_extras(self, meeting_id: str) -> dict[str, Any]:
        """Context for a meeting's mails: the workshop groups of the physical
        meeting, when the planning round divided them (services/round.py), and
        the programme of the meeting's kind (``programmes`` in meetings.yaml)."""
        groups = self.ledger.workshop_groups.get(meeting_id)
        out: dict[str, Any] = {"workshop_groups": groups} if groups else {}
        m = self.meeting(meeting_id)
        programme = self.cfg.meetings.programmes.get(m.kind, []) if m is not None else []
        if programme:  # the kind's programme (meetings.yaml), e.g. the January workshop
            out["programme"] = list(programme)
        return out

    @property
    def ledger(self) -> Ledger:
        """Named, typed access to the key/value state (``kcg_mail.services.ledger``)."""
        return Ledger(self.state)

    def meeting(self, meeting_id: str) -> Meeting | None:
        return next((m for m in self.meetings if m.id == meeting_id), None)

    def attendees(self, m: Meeting) -> list[Person]:
        return [p for p in self.cfg.network.active_members] + list(m.guests)

    # ------------------------------------------------------------ state view
    def invitation(self, meeting_id: str) -> InvitationSnapshot | None:
        raw = self.ledger.invitations.get(meeting_id)
        return InvitationSnapshot.from_dict(raw) if raw else None

    def set_invitation(self, meeting_id: str, snap: InvitationSnapshot) -> None:
        self.ledger.invitations.put(meeting_id, snap.to_dict())

    def meeting_states(self) -> dict[str, MeetingState]:
        settled: dict[str, set[str]] = {}
        sent_on: dict[str, dict[str, date]] = {}
        for rec in self.state.actions():
            if rec.key.count(":step:") and rec.status in ("done", "skipped") and rec.meeting_id:
                settled.setdefault(rec.meeting_id, set()).add(rec.action)
                if rec.status == "done":
                    # the run's day (simulated runs included; a rerun after a crash: the rerun's day);
                    # older records: when the record was written
                    on = rec.detail.get("on") or rec.at[:10]
                    sent_on.setdefault(rec.meeting_id, {})[rec.action] = date.fromisoformat(on)
        filed = {f.meeting_id for f in self.state.filings()}
        ids = {m.id for m in self.meetings} | set(settled)
        return {
            mid: MeetingState(frozenset(settled.get(mid, ())), self.invitation(mid), mid in filed,
                              sent_on.get(mid, {}))
            for mid in ids
        }

    # ------------------------------------------------------------ go-live
    def go_live(self, now: datetime | None = None) -> date | None:
        """The day the network started with kcg-mail: ``meetings.yaml``
        ``go_live:``, else the day recorded by the first run. With ``now``,
        a first run records it (its own day)."""
        if self.cfg.meetings.go_live is not None:
            return self.cfg.meetings.go_live
        recorded = self.ledger.go_live.get()
        if recorded is not None:
            return recorded
        if now is None:
            return None
        self.ledger.go_live.put(now.date())
        return now.date()

    @property
    def extra_days(self) -> frozenset[date]:
        return frozenset(self.cfg.meetings.extra_non_working_days)

    def orphan_invitations(self) -> dict[str, InvitationSnapshot]:
        planned = {m.id for m in self.meetings}
        out = {}
        for rec in self.state.actions():
            if rec.action == "invite" and rec.meeting_id and rec.meeting_id not in planned:
                snap = self.invitation(rec.meeting_id)
                if snap is not None:
                    out[rec.meeting_id] = snap
        return out

    def settle(self, meeting_id: str, step: str, status: str, detail: dict[str, Any] | None = None) -> None:
        self.state.record_action(f"{meeting_id}:step:{step}", meeting_id, step, status, detail or {})


def now_local(cfg: Config, when: datetime | None = None) -> datetime:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(cfg.meetings.timezone)
    return (when or datetime.now(tz)).astimezone(tz)
