"""The coordinator decides by replying: his answer to one of our questions.

A question is a mail we sent him (``services.questions``: held minutes waiting
for his yes, a guest's invitation, a member to add or remove ...) whose
Message-ID the intake knows (``MatchContext.question_ids``, built here for every
kind by ``question_ids``). His reply counts only when the rule chain let it
through (authenticated by our receiving server, from the coordinator, a reply to
that very mail: ``rules.COORDINATOR_CHAIN``). What he wrote above the quoted
question is read by the kind's reader (yes/no for most:
``core.inbound.answer``); a clear answer goes to the kind's handler, anything
else gets a one-line question back and changes nothing. Each answer gets a
receipt saying what was done. The same choices stay in the Prefect forms
(``kcg-approve`` / ``kcg-reject``: ``decide``).

The kinds, one line each (``questions.register``): what, the handler, and
``ids=`` for a kind that asks with a mail of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from kcg_mail.core.inbound import ParsedMail, QuestionRef
from kcg_mail.core.inbound.answer import Answer
from kcg_mail.core.inbound.member_request import read_request
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.ports import ActionRecord
from kcg_mail.services import (
    approval,
    ballot_correction,
    ballot_publish,
    guests,
    meeting_dates,
    members,
    plan_adoption,
    project_start,
    questions,
)
from kcg_mail.services.app import App
from kcg_mail.services.manual import ManualProblem
from kcg_mail.services.questions import register, yes_no


def _approve(app: App, q: QuestionRef, now: datetime) -> str:
    return approval.approve(app, q.ref, now).detail.split("\n\n")[0]


def _reject(app: App, q: QuestionRef, now: datetime) -> str:
    detail = approval.reject(app, q.ref).detail
    return "gästen bjuds inte in" if q.what == guests.KIND else detail


# ------------------------------------------------------------------ the kinds of question
register(approval.HELD, yes_no(_approve, _reject))  # held minutes: send out / stop
register(guests.KIND, yes_no(_approve, _reject), ids=guests.question_ids)  # a guest's invitation
register(members.KIND_ADD, yes_no(members.on_yes, members.on_no))  # a member to add
register(members.KIND_REMOVE, yes_no(members.on_yes, members.on_no))  # a member to remove
# the planning round's list of candidates: a yes publishes it (the form is kcg-planning-publish)
register(ballot_publish.WHAT, yes_no(ballot_publish.on_yes, ballot_publish.on_no),
         ids=lambda app, actions: ballot_publish.question_ids(actions))
register(project_start.WHAT, yes_no(project_start.on_yes, project_start.on_no))  # a group proposed in minutes
# next year's plan: a reply is read whole (it may carry an edited table); the form's yes/no through decide
register(plan_adoption.WHAT, lambda app, q, answer, now: plan_adoption.decide(app, q, answer.choice == "yes", now),
         ids=plan_adoption.question_ids, whole=plan_adoption.handle_answer)
# a member's unclear ballot: his reply carries the votes; the form is kcg-planning-correct-ballot
register(ballot_correction.WHAT, ballot_correction.form_answer,
         ids=lambda app, actions: ballot_correction.question_ids(actions), whole=ballot_correction.handle_answer)
# the dates the coordinator decides: a reply carries a date, times and a place (meeting_dates.handle_answer);
# the Prefect form is kcg-set-meeting, a plain yes (e.g. from kcg-approve) confirms a tentative date
for _what in meeting_dates.QUESTION_KINDS:
    register(_what, meeting_dates.yes_no_answer, whole=meeting_dates.handle_answer,
             ids=meeting_dates.question_ids if _what == meeting_dates.QUESTION_KINDS[0] else None)


def question_ids(app: App, actions: list[ActionRecord]) -> dict[str, QuestionRef]:
    """Every open question's Message-ID -> the question, for ``MatchContext.question_ids``."""
    out = questions.asked_ids(actions)
    for kind in questions.KINDS.values():
        if kind.ids is not None:
            out.update(kind.ids(app, actions))
    return out


def ask_waiting(app: App, now: datetime) -> None:
    """Ask every question that waits and has not been asked (held minutes, proposed project
    groups; once each)."""
    approval.ask_waiting(app, now)
    project_start.ask_proposals(app, now)


def handle_answer(app: App, mail: ParsedMail, q: QuestionRef, key: str, now: datetime) -> tuple[Outcome, str]:
    kind = questions.KINDS.get(q.what) or questions.KINDS[approval.HELD]
    if kind.whole is not None:  # the kind reads the whole reply and answers it itself
        return kind.whole(app, mail, q, key, now)
    answer = kind.read(mail.text or "")
    if not answer.clear:
        out = _receipt(app, mail, q.meeting_id, key, understood=False, text=answer.text[:80], done="",
                       again=kind.again)
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"svaret ”{answer.text[:80]}” är oklart; frågat igen ({out})"
    try:
        done = kind.handle(app, q, answer, now)
    except ManualProblem as exc:  # answered already, or nothing waits any more
        done = f"inget att göra ({exc})"
    out = _receipt(app, mail, q.meeting_id, key, understood=True, text=answer.text[:80], done=done)
    return Outcome.COORDINATOR_ANSWER, f"”{answer.text[:40]}” till {q.what} {q.ref[:12]}: {done} ({out})"


def handle_request(app: App, mail: ParsedMail, key: str, now: datetime) -> tuple[Outcome, str]:
    """The coordinator's own mail asking for a member to be added or removed: answered with
    what was understood and a question (``members.propose``), or one line when unclear."""
    req = read_request(mail.subject or "", mail.text or "")
    if req is None or not req.clear:
        problem = req.problem if req is not None else "jag såg inte vad som ska göras"
        out = _receipt(app, mail, None, key, understood=False, text=(req.text if req else "")[:80], done="",
                       again=problem[:1].upper() + problem[1:])
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"oklart besked om en medlem: {problem} ({out})"
    try:
        change = members.understand(app, req, now)
    except ManualProblem as exc:
        out = _receipt(app, mail, None, key, understood=True, text=req.text[:80],
                       done=f"inget ändras, eftersom {exc}")
        return Outcome.COORDINATOR_REQUEST, f"besked om en medlem som inte går att genomföra: {exc} ({out})"
    ref = members.request_ref(change.op, change.email, key)
    out = members.propose(app, change, ref, in_reply_to=mail.message_id)
    return Outcome.COORDINATOR_REQUEST, f"{change.what} {change.email}: frågat om ja ({out})"


def decide(app: App, ref: str, choice: Literal["yes", "no"], now: datetime) -> approval.Outcome:
    """A form's answer (``kcg-approve`` / ``kcg-reject``) to the open question ``ref`` (12 characters
    or all of it): the kind's handler, as a reply would; held items not asked about go to ``approval``."""
    ref = ref.strip()
    found = [q for q in question_ids(app, app.state.actions()).values()
             if q.what not in (approval.HELD, guests.KIND) and len(ref) >= 8 and q.ref.startswith(ref)]
    if not found:
        return approval.approve(app, ref, now) if choice == "yes" else approval.reject(app, ref)
    q = found[0]
    kind = questions.KINDS[q.what]
    detail = kind.handle(app, q, Answer(choice, "formulär"), now)
    return approval.Outcome(q.ref, "approved" if choice == "yes" else "rejected", detail)


def _receipt(app: App, mail: ParsedMail, meeting_id: str | None, key: str, *, understood: bool, text: str,
             done: str, again: str = "") -> str:
    coord = app.cfg.network.coordinator
    subject = (mail.subject or "").removeprefix("SV: ").removeprefix("Re: ").removeprefix("RE: ")[:150]
    msg = app.composer.message(
        "coordinator_receipt", f"{meeting_id or '-'}:coordinator_receipt:{coord.email}:{key[:16]}",
        app.meeting(meeting_id) if meeting_id else None, [coord],
        {"understood": understood, "text": text, "done": done, "subject": subject or "Din fråga",
         "again": again if not understood else ""},
        in_reply_to=mail.message_id)
    return app.outbox.send(msg)
