"""Publishing the planning round's ballot list: the coordinator's "ja" to the candidates mail.

When the time for proposals has run out, ``round.write_candidates`` stores the list
of candidates and mails the coordinator (``planning_candidates``, Outbox key
``plan-<year>:candidates:<coordinator>``). That mail is a question of kind
``publish_ballot`` (``questions``, registered with ``ids=question_ids``): "ja"
publishes the list as the Prefect form ``kcg-planning-publish`` does
(``round.publish_ballot``: the numbered list and the ballot to every member, each
mail once by its Outbox key); "nej" leaves it unpublished, and a later "ja" (or the
form) still publishes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from kcg_mail.core.inbound.verdict import QuestionRef
from kcg_mail.ports import ActionRecord
from kcg_mail.services import questions
from kcg_mail.services import round as round_
from kcg_mail.services.app import App
from kcg_mail.services.manual import ManualProblem

WHAT = "publish_ballot"
_KEY = re.compile(r"plan-(\d{4}):candidates:")


def _question(r: ActionRecord) -> QuestionRef | None:
    m = _KEY.match(r.key)
    return QuestionRef(m.group(1), None, WHAT) if m else None


def question_ids(actions: Iterable[ActionRecord]) -> dict[str, QuestionRef]:
    """The candidates mails (one per round): Message-ID -> the question (ref: the year)."""
    return questions.ids_from_actions(actions, _question)


def waiting(app: App, q: QuestionRef) -> bool:
    """The list of round ``q.ref`` is not yet published."""
    return not round_.round_value(app, int(q.ref), "topics", [])


def on_yes(app: App, q: QuestionRef, now: datetime) -> str:
    year = int(q.ref)
    if not waiting(app, q):
        return f"röstlistan för {year} var redan publicerad"
    try:
        round_.publish_ballot(app, year, now)
    except round_.PlanningProblem as exc:
        raise ManualProblem(str(exc)) from None
    n = len(round_.round_value(app, year, "topics", []))
    return f"röstlistan för {year} är publicerad ({n} förslag); alla medlemmar får den numrerade listan och röstsedeln"


def on_no(app: App, q: QuestionRef, now: datetime) -> str:
    if not waiting(app, q):
        return f"röstlistan för {q.ref} var redan publicerad"
    return "röstlistan publiceras inte nu; svara ja på frågan när den ska ut"
