"""The member caps in the shell: hold a mail back, and send it when its day comes.

``kcg_mail.core.pacing`` decides; this module gives it what the state record
knows and keeps what it decides:

* what each member already has per day: every counted mail the Outbox recorded
  (its ``on`` day, the run's day) and every mail waiting for a later day;
* a mail that waits is kept whole in the state record (``Ledger.waiting_mail``:
  the message with its attachments, until when, why) before the Outbox answers
  ``waiting``; the daily run sends it when its day comes (``Outbox.release``).

Nothing lost, nothing twice: the record is written before anything else
happens, so a crash after the decision leaves a waiting mail that the next
daily run sends; sending goes through the Outbox's intent/done record under the
mail's own key, so a crash during the release neither loses nor doubles it; and
a caller that asks again for a mail that waits gets ``waiting`` again.

A reminder that waits is dropped when what it reminds about has come in since
(``moot_if``: the member's needs or ballot is in the planning round's record).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from kcg_mail.core.config_model import Config
from kcg_mail.core.pacing import Pace, Verdict, counts, expected, pace_of, send_on, with_expected
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import Address, Attachment, OutgoingMessage, StateStore
from kcg_mail.services.ledger import Ledger

WAITING = "waiting"
SENT = "sent"
DROPPED = "dropped"


@dataclass(frozen=True)
class Waiting:
    """A mail that waits (for the overview and ``kcg status``)."""

    key: str
    kind: str
    subject: str
    to: list[str]
    since: date
    until: date
    reason: str
    state: str

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Waiting:
        return cls(rec["key"], rec["kind"], rec["subject"], list(rec["to"]), date.fromisoformat(rec["since"]),
                   date.fromisoformat(rec["until"]), rec.get("reason", ""), rec.get("state", WAITING))


# ------------------------------------------------------------------ the message, kept whole


def message_to_json(msg: OutgoingMessage) -> dict[str, Any]:
    d = asdict(msg)
    d["attachments"] = [{"filename": a.filename, "content_type": a.content_type,
                         "data": base64.b64encode(a.data).decode("ascii")} for a in msg.attachments]
    d["date"] = None  # stamped with the day it goes out
    return d


def message_from_json(d: dict[str, Any]) -> OutgoingMessage:
    def address(a: dict[str, str] | None) -> Address | None:
        return Address(a["name"], a["email"]) if a else None

    def addresses(xs: Iterable[dict[str, str]]) -> tuple[Address, ...]:
        return tuple(Address(a["name"], a["email"]) for a in xs)

    sender = address(d["sender"])
    assert sender is not None  # every message has one
    return OutgoingMessage(
        key=d["key"], action=d["action"], meeting_id=d["meeting_id"], sender=sender, to=addresses(d["to"]),
        subject=d["subject"], text=d["text"], html=d.get("html"), cc=addresses(d.get("cc", ())),
        reply_to=address(d.get("reply_to")),
        attachments=tuple(Attachment(a["filename"], a["content_type"], base64.b64decode(a["data"]))
                          for a in d.get("attachments", ())),
        in_reply_to=d.get("in_reply_to"), references=tuple(d.get("references", ())),
        auto_submitted=bool(d.get("auto_submitted", True)), msgid=d.get("msgid"))


# ------------------------------------------------------------------ the pacer


class Pacer:
    """What the Outbox asks before a mail goes out (built by ``App``)."""

    def __init__(self, state: StateStore, cfg: Config, meetings: Iterable[Meeting]) -> None:
        self.state = state
        self.ledger = Ledger(state)
        self.caps = cfg.meetings.member_caps
        self.coordinator = cfg.network.coordinator.email.lower()
        self.members = frozenset(p.email.lower() for p in cfg.network.active_members)
        planned = list(meetings)
        self.meeting_days = frozenset(m.date for m in planned)
        self.meeting_dates = {m.id: m.date for m in planned}
        self.extra = frozenset(cfg.meetings.extra_non_working_days)
        self.expected = expected(planned, self.members, cfg.meetings.lead_days, self.extra,
                                 {m.kind: cfg.meetings.lead_for(m.kind) for m in planned})
        self._booked: dict[str, dict[date, int]] | None = None

    def pace(self, msg: OutgoingMessage) -> Pace:
        return pace_of(msg.action, [a.email for a in msg.recipients], self.coordinator)

    def members_of(self, to: Iterable[str]) -> list[str]:
        return sorted({e.lower() for e in to} & self.members)

    # -------------------------------------------------------------- what members have
    def booked(self) -> dict[str, dict[date, int]]:
        """Per member and day: the counted mails sent (the state record's actions)
        and the mails waiting for that day. Built once per run, then kept up to date."""
        if self._booked is None:
            out: dict[str, dict[date, int]] = defaultdict(dict)
            for rec in self.state.actions():
                to = rec.detail.get("to")
                if rec.status not in ("intent", "done") or not isinstance(to, list) or ":step:" in rec.key:
                    continue
                if not counts(pace_of(rec.action, to, self.coordinator)):
                    continue
                day = date.fromisoformat(str(rec.detail.get("on") or rec.at[:10]))
                for person in self.members_of(to):
                    out[person][day] = out[person].get(day, 0) + 1
            for w in self.waiting():
                for person in self.members_of(w.to):
                    out[person][w.until] = out[person].get(w.until, 0) + 1
            self._booked = dict(out)
        return self._booked

    def _book(self, to: Iterable[str], day: date, n: int) -> None:
        booked = self.booked()
        for person in self.members_of(to):
            mine = booked.setdefault(person, {})
            mine[day] = mine.get(day, 0) + n

    def sent(self, msg: OutgoingMessage, day: date) -> None:
        """The Outbox sent ``msg`` on ``day`` (recorded ``intent``, then ``done``)."""
        if counts(self.pace(msg)):
            self._book((a.email for a in msg.recipients), day, 1)

    # -------------------------------------------------------------- the decision
    def verdict(self, msg: OutgoingMessage, today: date) -> Verdict:
        booked = with_expected(self.booked(), self.expected, today)
        return send_on(self.pace(msg), self.members_of(a.email for a in msg.recipients), today, booked,
                       self.meeting_days, self.caps, self.extra, self.meeting_dates.get(msg.meeting_id or ""))

    def room_today(self, to: Iterable[str], today: date) -> bool:
        """Would a mail that may wait go to ``to`` today (no meeting's day, room within the caps)?"""
        booked = with_expected(self.booked(), self.expected, today)
        return send_on(Pace.PACED, self.members_of(to), today, booked, self.meeting_days, self.caps,
                       self.extra).on == today

    def recheck(self, rec: dict[str, Any], msg: OutgoingMessage, today: date) -> Verdict:
        """May waiting ``rec`` go today? Asked without its own place in the counts."""
        until = date.fromisoformat(rec["until"])
        self._book(rec["to"], until, -1)
        try:
            return self.verdict(msg, today)
        finally:
            self._book(rec["to"], until, 1)

    def hold(self, msg: OutgoingMessage, verdict: Verdict, today: date, moot_if: list[Any] | None = None) -> None:
        """Keep ``msg`` in the state record until ``verdict.on`` (before anything else happens)."""
        rec: dict[str, Any] = {"key": msg.key, "kind": msg.action, "meeting_id": msg.meeting_id, "subject": msg.subject,
               "to": [a.email for a in msg.recipients], "since": today.isoformat(), "until": verdict.on.isoformat(),
               "reason": verdict.reason, "state": WAITING, "moot_if": moot_if, "message": message_to_json(msg)}
        self.ledger.put_waiting_mail(msg.key, rec)
        self._book(rec["to"], verdict.on, 1)

    def waits(self, key: str) -> bool:
        rec = self.ledger.waiting_mail(key)
        return rec is not None and rec.get("state") == WAITING

    # -------------------------------------------------------------- when the day comes
    def due(self, today: date) -> list[dict[str, Any]]:
        return [r for r in self.ledger.waiting_mails() if r.get("state") == WAITING
                and date.fromisoformat(r["until"]) <= today]

    def moot(self, rec: dict[str, Any]) -> bool:
        """Has what a waiting reminder asks for come in since?"""
        cond = rec.get("moot_if")
        if not cond:
            return False
        year, what, member_id = cond
        return member_id in (self.ledger.planning_values.get(int(year), str(what)) or {})

    def settle(self, rec: dict[str, Any], state: str, today: date, until: date | None = None,
               reason: str | None = None) -> None:
        """``rec`` went out (``sent``), is no longer needed (``dropped``) or waits on
        (``waiting``, a new ``until``); the counts follow."""
        old = date.fromisoformat(rec["until"])
        self._book(rec["to"], old, -1)
        new = {**rec, "state": state, ("until" if state == WAITING else "settled"): (until or today).isoformat()}
        if reason:
            new["reason"] = reason
        self.ledger.put_waiting_mail(rec["key"], new)
        if state == WAITING and until is not None:
            self._book(rec["to"], until, 1)

    def waiting(self) -> list[Waiting]:
        return [Waiting.from_record(r) for r in self.ledger.waiting_mails() if r.get("state") == WAITING]


def waiting_mails(state: StateStore) -> list[Waiting]:
    """The mails that wait now (the overview)."""
    return [Waiting.from_record(r) for r in Ledger(state).waiting_mails() if r.get("state") == WAITING]


def next_release_day(state: StateStore, after: date) -> date | None:
    """The first day after ``after`` a waiting mail is due (the demo runs the daily flow then)."""
    days = [w.until for w in waiting_mails(state) if w.until > after]
    return min(days) if days else None
