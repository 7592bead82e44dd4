"""A crash anywhere while a ballot is handled: after the rerun the vote is
counted once and the voter got exactly one receipt (crash injection at every
call of the adapters the intake uses, before and after it)."""

from __future__ import annotations

import shutil
from datetime import date

import pytest
from support.helpers import Crash, CrashPlan, at, authenticated, crashing_app, make_app, shipped_config

from kcg_mail.entrypoints import demo_hosts as hosts
from kcg_mail.entrypoints import demo_round as play
from kcg_mail.services import round as round_
from kcg_mail.services.intake import run_intake

YEAR = 2024
CFG = shipped_config()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A work directory where the ballot is out; and pia's ballot reply."""
    wd = tmp_path_factory.mktemp("published")
    app = make_app(wd, CFG)
    app.outbox.pacer = None  # the needs mail goes on the meeting's day (the caps: test_member_caps*.py)
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    p = CFG.network.person("pia")
    original = hosts.sent_message(app, f"plan-{YEAR}:needs:{p.email}")
    app.mail.deliver(authenticated(hosts.reply_to(original, p, play.needs_text({"Omvärldsbevakning": ["Studieresa", "Resa"]}),
                                                 at(date(2023, 11, 8)))), "n.eml")
    run_intake(app, at(date(2023, 11, 8), 12))
    round_.tick(app, YEAR, at(date(2023, 11, 20)))
    round_.publish_ballot(app, YEAR, at(date(2023, 11, 22)))
    numbers = {t.text: t.number for t in round_.topics(app, YEAR)}
    ballot = hosts.sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
    name, data = hosts.docx_attachment(ballot)
    votes = {numbers["Studieresa"]: 6, numbers["Resa"]: 4}
    raw = authenticated(hosts.reply_to(ballot, p, "Röstsedeln.", at(date(2023, 11, 24), 9), (name, hosts.fill_ballot(data, votes))))
    return wd, raw, votes


def _calls(published, tmp_path) -> list[tuple[str, int]]:
    wd, raw, _ = published
    work = tmp_path / "count"
    shutil.copytree(wd, work)
    plan = CrashPlan()
    app = crashing_app(work, CFG, plan)
    app.mail.deliver(raw, "ballot.eml")
    run_intake(app, at(date(2023, 11, 24), 12))
    return [(m, n) for m in ("send", "put", "record_action", "record_message", "move")
            for n in range(1, plan.calls[m] + 1)]


def test_crash_anywhere_while_a_ballot_is_handled(published, tmp_path):
    wd, raw, votes = published
    points = _calls(published, tmp_path)
    assert ("send", 1) in points and ("put", 1) in points
    for method, n in points:
        for when in ("before", "after"):
            work = tmp_path / f"{method}-{n}-{when}"
            shutil.copytree(wd, work)
            plan = CrashPlan(method, n, when)
            app = crashing_app(work, CFG, plan)
            app.mail.deliver(raw, "ballot.eml")
            with pytest.raises(Crash):
                run_intake(app, at(date(2023, 11, 24), 12))
            again = CrashPlan()
            app2 = crashing_app(work, CFG, again)
            run_intake(app2, at(date(2023, 11, 24), 12, 5))
            label = f"{plan}"
            t = round_.current_tally(app2, YEAR)
            assert t.ballots == 1, label
            assert {r.number: r.votes for r in t.rows if r.votes} == votes, label
            receipts = [k for k in set(plan.writes) | set(again.writes) if ":ballot_ok:" in k]
            assert len(receipts) == 1 and plan.writes[receipts[0]] + again.writes[receipts[0]] == 1, label
            assert not list((work / "mail" / "inbox" / "cur").iterdir()), label
