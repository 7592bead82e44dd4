"""Questions to the coordinator: one registry of kinds, one way to ask.

Every decision the product needs from the coordinator is a *question*: a short
Swedish mail he answers from his phone ("ja" / "nej"), and the same choice in
the Prefect forms ``kcg-approve`` / ``kcg-reject``. A kind of question is one
:class:`Kind` in ``KINDS``: its name (``QuestionRef.what``), how the answer is
read (yes/no for most, ``core.inbound.answer.read_yes_no``), the handler that
does what the answer says, and the line that asks again when the answer is
unclear. The registrations are in ``kcg_mail.services.answers`` (one line per
kind); this module only holds the types and the asking, so that the modules of
the kinds can import it.

Asking: ``ask(app, what, ref, meeting, question)`` sends the question once (the
Outbox key ``<meeting>:question:<coordinator>:<what>:<ref>``); its Message-ID
is then found by ``asked_ids`` for ``MatchContext.question_ids``, so a reply to
it reaches the kind's handler (``answers.handle_answer``). A kind that sends a
mail of its own, or keeps an Outbox key of its own (``ask(..., key=)``), registers
``ids=`` (its own Message-ID -> QuestionRef).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kcg_mail.core.inbound.answer import Answer, read_yes_no
from kcg_mail.core.inbound.message import ParsedMail
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.inbound.verdict import QuestionRef
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import ActionRecord
from kcg_mail.services.app import App

#: the Outbox action of a question asked with ``ask`` (the key's second part)
ACTION = "question"
AGAIN_YES_NO = "Svara bara ja eller nej på frågan nedan, så ordnar jag resten."


class Reading(Protocol):
    """What a kind's reader gives: clear or not, and the words that were read."""

    @property
    def clear(self) -> bool: ...

    @property
    def text(self) -> str: ...


#: (app, the question, the answer as read, now) -> what was done, in Swedish (for the receipt and the form)
Handler = Callable[[App, QuestionRef, Any, datetime], str]
#: (app, the reply, the question, the reply's msg_key, now) -> its outcome and what was done: a kind that
#: reads the whole reply itself (an attachment, its own receipt), e.g. next year's plan as a Word table
WholeHandler = Callable[[App, ParsedMail, QuestionRef, str, datetime], tuple[Outcome, str]]
#: (app, the action records) -> our question mail's Message-ID -> the question
IdsFn = Callable[[App, list[ActionRecord]], dict[str, QuestionRef]]


@dataclass(frozen=True)
class Kind:
    what: str
    handle: Handler
    read: Callable[[str], Reading] = read_yes_no
    #: for a kind that asks with a mail of its own (not ``ask``)
    ids: IdsFn | None = None
    #: the line that asks again when the answer is unclear
    again: str = AGAIN_YES_NO
    #: reads and answers the whole reply itself (``handle`` then serves the forms only)
    whole: WholeHandler | None = None


KINDS: dict[str, Kind] = {}


def register(what: str, handle: Handler, *, read: Callable[[str], Reading] = read_yes_no, ids: IdsFn | None = None,
             again: str = AGAIN_YES_NO, whole: WholeHandler | None = None) -> Kind:
    """Add a kind of question (``what`` is ``QuestionRef.what``); registering it again replaces it."""
    kind = Kind(what, handle, read, ids, again, whole)
    KINDS[what] = kind
    return kind


def yes_no(on_yes: Callable[[App, QuestionRef, datetime], str],
           on_no: Callable[[App, QuestionRef, datetime], str]) -> Handler:
    """A handler from what yes does and what no does (each returns what was done)."""
    def handle(app: App, q: QuestionRef, answer: Answer, now: datetime) -> str:
        return on_yes(app, q, now) if answer.choice == "yes" else on_no(app, q, now)
    return handle


@dataclass(frozen=True)
class Question:
    """The text of a question: subject, what waits and why, and what yes and no do."""

    subject: str
    lead: str
    yes: str  # "skicka ut protokollet" (after "Svara ja ... för att")
    no: str  # "stoppa det"
    details: tuple[str, ...] = field(default_factory=tuple)


def question_key(app: App, what: str, ref: str, meeting_id: str | None) -> str:
    mid = meeting_id if meeting_id and ":" not in meeting_id else "-"
    return f"{mid}:{ACTION}:{app.cfg.network.coordinator.email}:{what}:{ref}"


def ask(app: App, what: str, ref: str, meeting: Meeting | None, question: Question, *,
        in_reply_to: str | None = None, template: str = "coordinator_question",
        extra: dict[str, Any] | None = None, key: str | None = None) -> str:
    """Send the question once (``already`` when it went out before, also after a crash).
    ``key``: the Outbox key of a kind that keeps its own (its ``ids=`` then finds the answer)."""
    coord = app.cfg.network.coordinator
    ctx: dict[str, Any] = {
        "question": {"subject": question.subject, "lead": question.lead, "yes": question.yes, "no": question.no,
                     "details": list(question.details)},
        "ref": ref[:12], "meeting": app.composer.meeting_ctx(meeting, app.meetings) if meeting else None,
        **(extra or {}),
    }
    msg = app.composer.message(template, key or question_key(app, what, ref, meeting.id if meeting else None), meeting,
                               [coord], ctx, in_reply_to=in_reply_to)
    return app.outbox.send(msg)


def ids_from_actions(actions: Iterable[ActionRecord],
                     match: Callable[[ActionRecord], QuestionRef | None]) -> dict[str, QuestionRef]:
    """Our question mails that went out: their Message-ID -> the question ``match`` reads from
    the action record (``None``: the record is not one of these questions)."""
    out: dict[str, QuestionRef] = {}
    for r in actions:
        msgid = r.detail.get("message_id")
        q = match(r) if r.status == "done" and msgid else None
        if q is not None:
            out[str(msgid)] = q
    return out


def _asked(r: ActionRecord) -> QuestionRef | None:
    parts = r.key.split(":")
    if len(parts) < 5 or parts[1] != ACTION:
        return None
    return QuestionRef(":".join(parts[4:]), r.meeting_id, parts[3])


def asked_ids(actions: list[ActionRecord]) -> dict[str, QuestionRef]:
    """The questions asked with ``ask``: their Message-ID -> the question."""
    return ids_from_actions(actions, _asked)
