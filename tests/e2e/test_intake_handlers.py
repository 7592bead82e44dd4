"""The intake's handler table (``services.intake.HANDLERS``) against the core's
rule chains (``rules.GATES``): nothing is acted on that has not passed a chain."""

from __future__ import annotations

from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.services.intake import HANDLERS


def test_every_handled_kind_passes_a_rule_chain_first():
    assert set(HANDLERS) <= set(rules.GATES)


def test_the_round_and_the_project_groups_are_routed_by_the_same_table():
    assert {Outcome.MINUTES, Outcome.NO_MINUTES, Outcome.CALENDAR_RESPONSE, Outcome.PLANNING,
            Outcome.PROJECT_STATUS, Outcome.COORDINATOR_ANSWER, Outcome.COORDINATOR_REQUEST} == set(HANDLERS)
