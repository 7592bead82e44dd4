"""``classify`` answers "what is this mail?" for every incoming mail, in one place:
a reply to the planning round's mails, a project group's status line, or a mail
about a meeting of the plan (minutes, a calendar response ...), and which meeting.
Its answer (:class:`Verdict`) carries the kind (an :class:`Outcome`); the rule
chain for the kind is in ``rules.GATES``, the handler in
``kcg_mail.services.intake.HANDLERS``. Everything the decision needs comes in
through the arguments (``MatchContext``): no I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

from kcg_mail.core.inbound.attachments import is_document_candidate
from kcg_mail.core.inbound.decode import norm_id
from kcg_mail.core.inbound.message import CalendarReply, ParsedMail
from kcg_mail.core.inbound.outcome import KINDS, Outcome
from kcg_mail.core.inbound.tokens import find_token, subject_token
from kcg_mail.core.replykey import ReplyKey, verify
from kcg_mail.ports import Attachment

__all__ = ["KINDS", "MatchContext", "MeetingRef", "RoundReply", "StatusRequestRef", "Verdict", "classify"]

#: How far back / ahead of a mail's date a meeting may lie for the sender+date match.
MATCH_DAYS_BEFORE = 30


MATCH_DAYS_AFTER = 2


@dataclass(frozen=True)
class MeetingRef:
    meeting_id: str
    token: str
    date: date
    #: lower-case addresses allowed to file minutes: host, backup host, coordinator, extra
    filers: frozenset[str]
    invitation_uid: str


@dataclass(frozen=True)
class RoundReply:
    """A reply to the planning round's mails."""

    year: int
    step: str  # "needs", "ballot" or "" (matched by the subject token only)


@dataclass(frozen=True)
class StatusRequestRef:
    """A project group's status request we sent (its record in the state)."""

    key: str
    meeting_id: str | None


@dataclass(frozen=True)
class QuestionRef:
    """A yes/no question we asked the coordinator: ``ref`` is what the approval
    list knows it by (a held reply, a guest's invitation)."""

    ref: str
    meeting_id: str | None
    what: str  # "guest_invitation", "held"


@dataclass(frozen=True)
class MatchContext:
    meetings: tuple[MeetingRef, ...]
    #: our Message-ID -> meeting_id
    sent_ids: Mapping[str, str]
    members: frozenset[str]
    own_addresses: frozenset[str]
    today: date
    #: the network's short name in subject tokens: [KCG-2023-02]
    tag: str = "KCG"
    #: authserv-ids of our own receiving server (``inbound.trusted_authserv_ids``)
    trusted_authserv_ids: frozenset[str] = frozenset()
    #: of those, the ones whose ``dmarc=pass`` counts without ``header.from``
    #: (``inbound.dmarc_pass_without_header_from``)
    dmarc_pass_without_header_from: frozenset[str] = frozenset()
    #: the HMAC secret of reply keys (``KCG_REPLY_SECRET``)
    reply_secret: bytes = b""
    #: a valid reply key is a second factor for filing (``inbound.require_reply_key``)
    require_reply_key: bool = False
    #: our planning round's mails: Message-ID -> the round and step they belong to
    round_ids: Mapping[str, RoundReply] = field(default_factory=dict)
    #: our project groups' status requests: Message-ID -> the request
    status_request_ids: Mapping[str, StatusRequestRef] = field(default_factory=dict)
    #: our questions to the coordinator: Message-ID -> the question
    question_ids: Mapping[str, QuestionRef] = field(default_factory=dict)
    #: the coordinator's address (lower case): only he answers our questions
    coordinator: str = ""


@dataclass(frozen=True)
class Verdict:
    kind: Outcome
    meeting_id: str | None
    reason: str
    attachments: tuple[Attachment, ...] = ()
    calendar_reply: CalendarReply | None = None
    #: kind PLANNING: the round and step it answers
    round_reply: RoundReply | None = None
    #: kind COORDINATOR_ANSWER: the question it answers
    question: QuestionRef | None = None
    #: kind PROJECT_STATUS: the status request it answers
    status_request: StatusRequestRef | None = None


#: the subject token of the planning round's mails: [KCG-PLAN-2024]
_ROUND_TOKEN = re.compile(r"\[\s*([A-Z0-9]{2,10})-PLAN-(\d{4})\s*\]", re.IGNORECASE)


_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprungligt meddelande|originalmeddelande|forwarded message|"
    r"vidarebefordrat meddelande|ursprüngliche nachricht)\s*-{2,}|_{10,}|"
    r"(?:från|from|von|skickat|sent|gesendet)\s*:|"
    r"on .{0,200} wrote\s*:|den .{0,200} skrev .{0,120}:|am .{0,200} schrieb .{0,120}:|"
    r"begin forwarded message\s*:|vidarebefordrat brev\s*:)",
    re.IGNORECASE | re.MULTILINE,
)


def _body_token(text: str, tag: str = "KCG") -> str | None:
    if not text:
        return None
    quoted = [ln for ln in text.splitlines() if ln.lstrip().startswith(">")]
    m = _QUOTE_START.search(text)
    tail = text[m.start():] if m else ""
    for chunk in ("\n".join(quoted), tail, text):
        tok = find_token(chunk, tag)
        if tok:
            return tok
    return None


def _meeting(ctx: MatchContext, meeting_id: str | None) -> MeetingRef | None:
    for m in ctx.meetings:
        if m.meeting_id == meeting_id:
            return m
    return None


def _match_by_ids(mail: ParsedMail, ctx: MatchContext) -> str | None:
    if not ctx.sent_ids:
        return None
    sent = {norm_id(k): v for k, v in ctx.sent_ids.items()}
    candidates: list[str] = []
    if mail.in_reply_to:
        candidates.append(mail.in_reply_to)
    candidates.extend(reversed(mail.references))  # most recent first
    for c in candidates:
        mid = sent.get(norm_id(c))
        if mid:
            return mid
    return None


def _mail_day(mail: ParsedMail, ctx: MatchContext) -> date:
    if mail.date is None:
        return ctx.today
    d = mail.date.date()
    # A broken phone clock must not pull the window into the future.
    if d > ctx.today + timedelta(days=MATCH_DAYS_AFTER) or d < ctx.today - timedelta(days=3650):
        return ctx.today
    return d


def valid_reply_key(mail: ParsedMail, ctx: MatchContext) -> ReplyKey | None:
    """The first reply key in ``mail`` that is valid for its sender, or None."""
    ids = [m.meeting_id for m in ctx.meetings]
    for k in mail.reply_keys:
        rk = verify(ctx.reply_secret, k, mail.sender, ids)
        if rk is not None:
            return rk
    return None


def _match(mail: ParsedMail, ctx: MatchContext) -> tuple[str | None, str]:
    rk = valid_reply_key(mail, ctx)
    if rk is not None and _meeting(ctx, rk.meeting_id) is not None:
        return rk.meeting_id, f"reply key of our {rk.action} mail"
    mid = _match_by_ids(mail, ctx)
    if mid:
        return mid, "In-Reply-To/References name our message"
    tok = find_token(mail.subject, ctx.tag)
    if tok:
        return tok, f"token {subject_token(tok, ctx.tag)} in subject"
    tok = _body_token(mail.text, ctx.tag)
    if tok:
        return tok, f"token {subject_token(tok, ctx.tag)} in quoted text"
    day = _mail_day(mail, ctx)
    lo, hi = day - timedelta(days=MATCH_DAYS_BEFORE), day + timedelta(days=MATCH_DAYS_AFTER)
    hits = [m for m in ctx.meetings if mail.sender and mail.sender in m.filers and lo <= m.date <= hi]
    if len(hits) == 1:
        return hits[0].meeting_id, f"sender files for {hits[0].meeting_id} held {hits[0].date.isoformat()}"
    if len(hits) > 1:
        return None, f"sender files for {len(hits)} recent meetings ({', '.join(h.meeting_id for h in hits)}): ambiguous"
    return None, "no token, no reference to our mail, no recent meeting the sender files for"


def _lower_set(values: Iterable[str]) -> set[str]:
    return {v.strip().lower() for v in values if v}


V = TypeVar("V")


def replied_to(mail: ParsedMail, ids: Mapping[str, V]) -> V | None:
    """What ``ids`` (our Message-ID -> what that mail was) says of the mail this one
    replies to: by In-Reply-To, then References from the most recent."""
    if not ids:
        return None
    sent = {norm_id(k): v for k, v in ids.items()}
    for ref in (mail.in_reply_to, *reversed(mail.references)):
        if ref and norm_id(ref) in sent:
            return sent[norm_id(ref)]
    return None


def round_reply(mail: ParsedMail, ctx: MatchContext) -> RoundReply | None:
    """Is this a reply to a planning round mail? By In-Reply-To/References to one
    we sent, or by the subject token [KCG-PLAN-YYYY]. Automatic mail never is."""
    if mail.auto_reason:  # out-of-office and the like: read as automatic mail
        return None
    found = replied_to(mail, ctx.round_ids)
    if found is not None:
        return found
    if replied_to(mail, ctx.question_ids) is not None:  # a question about the round (the list to publish)
        return None
    m = _ROUND_TOKEN.search(mail.subject or "")
    if m and m.group(1).upper() == ctx.tag.upper():
        return RoundReply(int(m.group(2)), "")
    return None


def question(mail: ParsedMail, ctx: MatchContext) -> QuestionRef | None:
    """The question to the coordinator this mail replies to, or None (never automatic mail)."""
    return None if mail.auto_reason else replied_to(mail, ctx.question_ids)


def coordinator_request(mail: ParsedMail, ctx: MatchContext) -> bool:
    """Does the coordinator ask, in a mail of his own, for a member to be added or removed?"""
    from kcg_mail.core.inbound.member_request import read_request

    if mail.auto_reason or not ctx.coordinator or (mail.sender or "").lower() != ctx.coordinator.lower():
        return False
    return read_request(mail.subject or "", mail.text or "") is not None


def status_request(mail: ParsedMail, ctx: MatchContext) -> StatusRequestRef | None:
    """The project group's status request this mail replies to, or None."""
    return replied_to(mail, ctx.status_request_ids)


def classify(mail: ParsedMail, ctx: MatchContext) -> Verdict:
    """Decide what ``mail`` is. Order: a reply to the planning round, a reply to a
    project group's status request, own, automatic, calendar response, meeting
    match, allowed sender, minutes or no minutes."""
    rr = round_reply(mail, ctx)
    if rr is not None:
        return Verdict(Outcome.PLANNING, None, f"planeringsrunda {rr.year}", round_reply=rr)
    q = question(mail, ctx)
    if q is not None:
        return Verdict(Outcome.COORDINATOR_ANSWER, q.meeting_id, f"svar på frågan {q.ref} till samordnaren", question=q)
    if coordinator_request(mail, ctx):
        return Verdict(Outcome.COORDINATOR_REQUEST, None, "samordnarens besked om en medlem")
    req = status_request(mail, ctx)
    if req is not None:
        return Verdict(Outcome.PROJECT_STATUS, req.meeting_id, "svar på en statusfråga till en projektgrupp",
                       status_request=req)
    sender = (mail.sender or "").lower()
    who = sender or "(no sender)"

    if sender and sender in _lower_set(ctx.own_addresses):
        return Verdict(Outcome.OWN, None, f"sent from our own address {sender}")

    if mail.auto_reason:
        return Verdict(Outcome.AUTOMATIC, None, f"automatic message: {mail.auto_reason}")

    if mail.calendar_reply is not None:
        cal = mail.calendar_reply
        meeting_id = None
        how = ""
        if cal.uid:
            for m in ctx.meetings:
                if m.invitation_uid and m.invitation_uid.strip() == cal.uid.strip():
                    meeting_id, how = m.meeting_id, "invitation UID"
                    break
        if meeting_id is None:
            meeting_id = _match_by_ids(mail, ctx)
            how = "reference to our invitation" if meeting_id else ""
        if meeting_id is None:
            meeting_id = find_token(mail.subject, ctx.tag)
            how = "token in subject" if meeting_id else ""
        reason = f"{cal.partstat.lower()} from {cal.attendee_email or who}"
        reason += f" ({how})" if meeting_id else " (no meeting found)"
        return Verdict(Outcome.CALENDAR_RESPONSE, meeting_id, reason, calendar_reply=cal)

    meeting_id, how = _match(mail, ctx)
    if meeting_id is None:
        status = "member" if sender in _lower_set(ctx.members) else "stranger"
        return Verdict(Outcome.UNMATCHED, None, f"{how}; {status} {who}")
    meeting = _meeting(ctx, meeting_id)
    if meeting is None:
        return Verdict(Outcome.UNMATCHED, None, f"{how}, but meeting {meeting_id} is not in the plan; from {who}")

    if sender not in _lower_set(meeting.filers):
        status = "a member but not a filer" if sender in _lower_set(ctx.members) else "not a member"
        return Verdict(Outcome.NOT_ALLOWED, meeting_id, f"{who} is {status} for {meeting_id} ({how})")

    docs = tuple(a for a in mail.attachments if is_document_candidate(a))
    if docs:
        names = ", ".join(a.filename for a in docs)
        return Verdict(Outcome.MINUTES, meeting_id, f"{len(docs)} document(s) from {who} ({how}): {names}", attachments=docs)
    return Verdict(Outcome.NO_MINUTES, meeting_id, f"no document attached by {who} ({how})")
