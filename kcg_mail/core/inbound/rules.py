"""Who may make the system act: the rule chain of intake (after GNU Mailman 3).

``classify`` says what a mail is and which meeting it is about. Before the
intake acts on it (files and distributes minutes, answers the sender, records
a calendar response), ``decide`` runs the mail through an ordered chain of
small named rules. Each rule looks at the mail and says *hit* (with why) or
*no hit*; the first hit decides the action:

- ``accept``  go ahead;
- ``hold``    keep it for the coordinator ("väntar på godkännande"): minutes
  that are not proven to come from an allowed filer; released with
  ``kcg approve REF``, refused with ``kcg reject REF``;
- ``discard`` do nothing visible (no answer, no attendance), keep the mail in
  quarantine with the reason: a mail without documents we would otherwise
  have answered, or a calendar response that does not count.

Mail from non-members is held by default. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kcg_mail.core.inbound.authres import mail_authenticated
from kcg_mail.core.inbound.message import ParsedMail
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.inbound.verdict import MatchContext, Verdict, valid_reply_key

Action = Literal["accept", "hold", "discard"]


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: str  # the rule that hit, "" when accepted
    reason: str


@dataclass(frozen=True)
class Rule:
    name: str
    #: None: no hit; a string: hit, and why
    check: Callable[[ParsedMail, Verdict, MatchContext], str | None]


def _lower(values: frozenset[str]) -> set[str]:
    return {v.strip().lower() for v in values}


# ------------------------------------------------------------------ the rules


def one_from_mailbox(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """Exactly one From mailbox (Reply-To, Sender and display names never count)."""
    n = len(mail.from_addresses)
    if n == 0:
        return "From has no address"
    if n > 1 or not mail.sender:
        return f"From names {n} addresses ({', '.join(mail.from_addresses[:3])})"
    return None


def authenticated(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """Our own receiving server authenticated the From domain (RFC 8601)."""
    ok, why = mail_authenticated(mail.auth_results, ctx.trusted_authserv_ids, mail.sender,
                                 ctx.dmarc_pass_without_header_from)
    return None if ok else why


def allowed_filer(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """The From mailbox may file minutes for the meeting."""
    meeting = next((m for m in ctx.meetings if m.meeting_id == v.meeting_id), None)
    if meeting is None:
        return "no meeting of the plan"
    if mail.sender in _lower(meeting.filers):
        return None
    status = "a member but not a filer" if mail.sender in _lower(ctx.members) else "not a member"
    return f"{mail.sender} is {status} for {meeting.meeting_id}"


def reply_key(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """With ``inbound.require_reply_key``: a valid key of our mail about this meeting."""
    if not ctx.require_reply_key:
        return None
    rk = valid_reply_key(mail, ctx)
    if rk is None:
        return "no valid reply key (inbound.require_reply_key)" if mail.reply_keys else \
            "no reply key: not a reply to our mail (inbound.require_reply_key)"
    if rk.meeting_id != v.meeting_id:
        return f"reply key is for {rk.meeting_id}, not {v.meeting_id}"
    return None


def member_sender(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """A calendar response counts only from a member of the network."""
    return None if mail.sender in _lower(ctx.members) else f"{mail.sender or '(no sender)'} is not a member"


def attendee_is_sender(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """... and only for the member who sent it."""
    cal = v.calendar_reply
    who = (cal.attendee_email if cal else "").strip().lower()
    if who and who != mail.sender:
        return f"response for {who} sent by {mail.sender}"
    return None


#: where every chain starts: one sender, authenticated by our receiving server
AUTHENTICATED_CHAIN: tuple[Rule, ...] = (
    Rule("one-from-mailbox", one_from_mailbox),
    Rule("authenticated", authenticated),
)

FILING_CHAIN: tuple[Rule, ...] = (
    *AUTHENTICATED_CHAIN,
    Rule("allowed-filer", allowed_filer),
    Rule("reply-key", reply_key),
)

#: a member's own answer (the planning round's needs and ballot, a project group's status line):
#: from the member, authenticated
MEMBER_ANSWER_CHAIN: tuple[Rule, ...] = (*AUTHENTICATED_CHAIN, Rule("member-sender", member_sender))

#: a member's calendar response: a member's answer about that member's own attendance
CALENDAR_CHAIN: tuple[Rule, ...] = (*MEMBER_ANSWER_CHAIN, Rule("attendee-is-sender", attendee_is_sender))

def coordinator_sender(mail: ParsedMail, v: Verdict, ctx: MatchContext) -> str | None:
    """... and only from the coordinator: nobody else answers the coordinator's questions."""
    if not ctx.coordinator or (mail.sender or "").lower() != ctx.coordinator.lower():
        return f"{mail.sender or '(no sender)'} is not the coordinator"
    return None


#: the coordinator's answer to our question: from him, authenticated
COORDINATOR_CHAIN: tuple[Rule, ...] = (*AUTHENTICATED_CHAIN, Rule("coordinator-sender", coordinator_sender))


@dataclass(frozen=True)
class Gate:
    """What a kind of mail must pass before the intake acts on it."""

    chain: tuple[Rule, ...]
    #: what the first hit does
    on_hit: Action
    #: why it is accepted when no rule hits
    accepted: str


#: per kind of mail (``classify``): its rule chain. A kind not here is only recorded
#: (automatic, own, unmatched mail): nothing to act on, so nothing to check.
GATES: dict[Outcome, Gate] = {
    Outcome.MINUTES: Gate(FILING_CHAIN, "hold", "authenticated filer"),
    Outcome.NOT_ALLOWED: Gate(FILING_CHAIN, "hold", "authenticated filer"),
    Outcome.NO_MINUTES: Gate(FILING_CHAIN, "discard", "authenticated filer"),
    Outcome.CALENDAR_RESPONSE: Gate(CALENDAR_CHAIN, "discard", "member's own answer"),
    Outcome.PLANNING: Gate(MEMBER_ANSWER_CHAIN, "hold", "member's own answer"),
    Outcome.PROJECT_STATUS: Gate(MEMBER_ANSWER_CHAIN, "hold", "member's own answer"),
    #: a forged "ja" is never acted on, nor offered to the coordinator as something to approve
    Outcome.COORDINATOR_ANSWER: Gate(COORDINATOR_CHAIN, "discard", "the coordinator's own answer"),
    Outcome.COORDINATOR_REQUEST: Gate(COORDINATOR_CHAIN, "discard", "the coordinator's own request"),
}


def run_chain(chain: tuple[Rule, ...], mail: ParsedMail, v: Verdict, ctx: MatchContext) -> tuple[str, str] | None:
    """(rule name, why) of the first hit, or None."""
    for rule in chain:
        why = rule.check(mail, v, ctx)
        if why is not None:
            return rule.name, why
    return None


def decide(mail: ParsedMail, v: Verdict, ctx: MatchContext, *, has_documents: bool) -> Decision:
    """What the intake may do with a classified mail."""
    gate = GATES.get(v.kind)
    if gate is None:
        return Decision("accept", "", "nothing to act on")
    if v.kind == Outcome.CALENDAR_RESPONSE and v.meeting_id is None:
        return Decision("accept", "", "no meeting: nothing recorded")
    on_hit = gate.on_hit
    hit = run_chain(gate.chain, mail, v, ctx)
    if gate.chain is FILING_CHAIN:
        if hit is None and v.kind == Outcome.NOT_ALLOWED:  # classify's own filer check
            hit = ("allowed-filer", v.reason)
        if hit is not None and not has_documents:
            on_hit = "discard"
    if hit is None:
        return Decision("accept", "", gate.accepted)
    rule, why = hit
    return Decision(on_hit, rule, why)
