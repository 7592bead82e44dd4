"""The coordinator decides by replying: his "ja" or "nej" to one of our questions.

A question is a mail we sent him (a guest's invitation waiting for his yes, a
reply held for approval) whose Message-ID the intake knows
(``MatchContext.question_ids``). His reply counts only when the rule chain let
it through (authenticated by our receiving server, from the coordinator, a
reply to that very mail: ``rules.COORDINATOR_CHAIN``). What he wrote above the
quoted question is read (``core.inbound.answer``): yes approves, no rejects,
anything else gets a one-line question back and changes nothing. Each answer
gets a receipt saying what was done. The same choices stay in the Prefect
forms (``kcg-approve`` / ``kcg-reject``).
"""

from __future__ import annotations

from datetime import datetime

from kcg_mail.core.inbound import ParsedMail, QuestionRef
from kcg_mail.core.inbound.answer import read_yes_no
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.services import approval
from kcg_mail.services.app import App
from kcg_mail.services.manual import ManualProblem


def handle_answer(app: App, mail: ParsedMail, q: QuestionRef, key: str, now: datetime) -> tuple[Outcome, str]:
    if q.what == "adopt_plan":  # next year's plan: an edited table or a yes (services/plan_adoption.py)
        from kcg_mail.services import plan_adoption

        return plan_adoption.handle_answer(app, mail, q, key, now)
    answer = read_yes_no(mail.text or "")
    if answer.choice is None:
        out = _receipt(app, mail, q, key, understood=False, text=answer.text[:80], done="")
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"svaret ”{answer.text[:80]}” är varken ja eller nej; frågat igen ({out})"
    try:
        if answer.choice == "yes":
            result = approval.approve(app, q.ref, now)
            done = _said(result.detail, yes=True, q=q)
        else:
            result = approval.reject(app, q.ref)
            done = _said(result.detail, yes=False, q=q)
    except ManualProblem as exc:  # answered already, or nothing waits any more
        done = f"inget att göra ({exc})"
    out = _receipt(app, mail, q, key, understood=True, text=answer.text[:80], done=done)
    return Outcome.COORDINATOR_ANSWER, f"{'ja' if answer.choice == 'yes' else 'nej'} till {q.ref[:12]}: {done} ({out})"


def _said(detail: str, *, yes: bool, q: QuestionRef) -> str:
    if q.what == "guest_invitation":
        return detail if yes else "gästen bjuds inte in"
    return detail


def _receipt(app: App, mail: ParsedMail, q: QuestionRef, key: str, *, understood: bool, text: str, done: str) -> str:
    coord = app.cfg.network.coordinator
    subject = (mail.subject or "").removeprefix("SV: ").removeprefix("Re: ").removeprefix("RE: ")[:150]
    msg = app.composer.message(
        "coordinator_receipt", f"{q.meeting_id or '-'}:coordinator_receipt:{coord.email}:{key[:16]}",
        app.meeting(q.meeting_id) if q.meeting_id else None, [coord],
        {"understood": understood, "text": text, "done": done, "subject": subject or "Din fråga"},
        in_reply_to=mail.message_id)
    return app.outbox.send(msg)
