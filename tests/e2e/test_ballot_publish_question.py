"""The planning round's ballot list is published by the coordinator's reply.

Over the Maildir transport through the real intake (real MIME replies, authenticated
as our receiving server hands them over): when the time for proposals has run out,
the coordinator's mail about the list asks him; "ja" by reply publishes it once (each
member gets the ballot once, a second "ja" sends nothing), "nej" leaves it waiting
(a later "ja" still publishes it), an unclear answer is asked again, and a reply from
someone else publishes nothing."""

from __future__ import annotations

from datetime import date

import pytest
from support.helpers import CONFIG_DIR, at, authenticated

from kcg_mail.bootstrap import bootstrap
from kcg_mail.entrypoints import demo_hosts as hosts
from kcg_mail.services import round as round_
from kcg_mail.services.intake import run_intake

YEAR = 2024
DAY = date(2023, 11, 22)


@pytest.fixture
def app(tmp_path):
    app = bootstrap(tmp_path / "work", CONFIG_DIR)
    app.outbox.pacer = None  # the member caps are tested in test_member_caps*.py
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    p = app.cfg.network.person("pia")
    original = hosts.sent_message(app, f"plan-{YEAR}:needs:{p.email}")
    app.mail.deliver(authenticated(hosts.reply_to(original, p, "Omvärldsbevakning\n- Studieresa",
                                                  at(date(2023, 11, 8), 10))), "needs-pia.eml")
    run_intake(app, at(date(2023, 11, 8), 12))
    round_.tick(app, YEAR, at(date(2023, 11, 20)))  # the list is written and the coordinator asked
    yield app
    app.close()


def _done(app, start: str) -> list[str]:
    return [r.key for r in app.state.actions() if r.status == "done" and r.key.startswith(start)]


def _text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def _receipts(app) -> list[str]:
    found = [hosts.sent_message(app, k) for k in _done(app, "") if ":coordinator_receipt:" in k]
    return [_text(m) for m in sorted(found, key=lambda m: m["Date"].datetime)]


_n = iter(range(100))


def _reply(app, text: str, hour: int, sender=None):
    coord = app.cfg.network.coordinator
    asked = hosts.sent_message(app, f"plan-{YEAR}:candidates:{coord.email}")
    app.mail.deliver(authenticated(hosts.reply_to(asked, sender or coord, text, at(DAY, hour))), f"a{next(_n)}.eml")
    report = run_intake(app, at(DAY, hour).replace(minute=5))
    assert report.errors == [], report.errors
    return report


def _ballots(app) -> list[str]:
    return _done(app, f"plan-{YEAR}:ballot:")


def test_the_candidates_mail_asks_for_a_yes(app):
    coord = app.cfg.network.coordinator
    msg = hosts.sent_message(app, f"plan-{YEAR}:candidates:{coord.email}")
    text = " ".join(_text(msg).split())
    assert "Svara ja på det här mejlet för att publicera listan" in text and "Svara nej om den ska vänta" in text
    for word in ("kcg ", "flödet", ".yaml", "kcg-planning-publish", "Kör "):
        assert word not in text
    assert [str(x) for x in msg.get_all("To")] == [f"{coord.name} <{coord.email}>"]


def test_yes_by_reply_publishes_once(app):
    members = round_.round_members(app)
    report = _reply(app, "Ja, publicera den.\n\nBjörn", 9)
    assert [x.outcome for x in report.handled] == ["coordinator_answer"]
    assert round_.topics(app, YEAR) and len(_ballots(app)) == len(members)
    assert "röstlistan för 2024 är publicerad" in _receipts(app)[-1]
    _reply(app, "Ja", 11)
    assert len(_ballots(app)) == len(members)
    assert "var redan publicerad" in _receipts(app)[-1]


def test_no_leaves_it_waiting_and_a_later_yes_publishes(app):
    _reply(app, "Nej, vänta lite.", 9)
    assert round_.topics(app, YEAR) == [] and _ballots(app) == []
    assert "röstlistan publiceras inte nu" in _receipts(app)[-1]
    _reply(app, "Ja", 11)
    assert len(_ballots(app)) == len(round_.round_members(app))


def test_an_unclear_answer_is_asked_again(app):
    report = _reply(app, "Vi pratar om den på mötet.", 9)
    assert [x.outcome for x in report.handled] == ["coordinator_answer_unclear"]
    assert round_.topics(app, YEAR) == [] and _ballots(app) == []
    assert "Svara bara ja eller nej" in _receipts(app)[-1]


def test_a_reply_from_someone_else_publishes_nothing(app):
    report = _reply(app, "Ja", 9, sender=app.cfg.network.person("lisa"))
    assert [x.outcome for x in report.handled] != ["coordinator_answer"]
    assert round_.topics(app, YEAR) == [] and _ballots(app) == [] and _receipts(app) == []
