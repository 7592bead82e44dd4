"""A project group proposed in minutes is started by the coordinator's reply.

End to end on the embedded defaults (Maildir, local archive, SQLite) with real MIME
mails: the host returns February's minutes with a "Projektgrupp: …" decision, the
intake files them and asks the coordinator once; his "ja" by reply starts the group
once (a second "ja" starts nothing), "nej" leaves it unstarted, an unclear answer is
asked again and changes nothing, and a reply from someone else changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support.helpers import TZ, at, close, config_with, make_app, meeting, plain_mail, sent_mails, shipped_config

from kcg_mail.entrypoints.demo_hosts import host_reply
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.daily import run_daily
from kcg_mail.services.followup import groups, proposals
from kcg_mail.services.intake import run_intake

CFG = config_with(shipped_config(), ["2023-02", "2023-03"])
FEB = meeting("2023-02")
COORD = CFG.network.coordinator
MAILBOX = CFG.network.mailbox.email
LISA = next(p for p in CFG.network.members if p.id == "lisa")
EXTRA = [("Projektgrupp: Trygghet i stadskärnan – gemensam kartläggning", "Lisa Thörn, Pia Sandin", "löpande")]
REF = "2023-02/3"


def _at(hour: int) -> datetime:
    return datetime.combine(FEB.date + timedelta(days=1), datetime.min.time(), TZ).replace(hour=hour)


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _questions(wd: Path) -> list:
    return [m for m in sent_mails(wd) if f":question:{COORD.email}:start_project:" in str(m[MARKER_HEADER])]


def _receipts(wd: Path) -> list[str]:
    found = [m for m in sent_mails(wd) if ":coordinator_receipt:" in str(m[MARKER_HEADER])]
    return [_text(m) for m in sorted(found, key=lambda m: m["Date"].datetime)]


_n = iter(range(1000))


def _reply(app, question, text: str, hour: int, *, sender: str | None = None):
    n = next(_n)
    quoted = "\n> ".join(_text(question).splitlines())
    raw = plain_mail(sender or f"{COORD.name} <{COORD.email}>", MAILBOX, "SV: " + str(question["Subject"]).strip(),
                     f"{text}\n\nDen 3 februari 2023 skrev KCG:\n> {quoted}", when=_at(hour),
                     msgid=f"<answer{n}@svenskastadskarnor.example.se>", in_reply_to=str(question["Message-ID"]))
    app.mail.deliver(raw, f"answer{n}.eml")
    report = run_intake(app, _at(hour) + timedelta(minutes=5))
    assert report.errors == [], report.errors
    return report


@pytest.fixture
def asked(tmp_path):
    """February's minutes filed with a proposed group, and the coordinator asked: (app, wd, question)."""
    app = make_app(tmp_path, CFG)
    run_daily(app, at(FEB.date - timedelta(days=3)))  # the template goes out the Friday before
    app.mail.deliver(host_reply(app, FEB, _at(11), EXTRA), "feb.eml")
    report = run_intake(app, _at(12))
    assert report.errors == [], report.errors
    assert [d.ref for d, _ in proposals(app)] == [REF]
    (q,) = _questions(tmp_path)
    yield app, tmp_path, q
    close(app)


def test_the_question_says_what_the_group_is_who_proposed_it_and_what_yes_does(asked):
    app, wd, q = asked
    assert [str(x) for x in q.get_all("To")] == [f"{COORD.name} <{COORD.email}>"]
    assert str(q["Subject"]).startswith("Starta projektgruppen Trygghet i stadskärnan?")
    text = " ".join(_text(q).split())
    assert "Grupp: Trygghet i stadskärnan" in text and "gemensam kartläggning" in text
    assert f"Protokollet från mötet {FEB.date_text()} (värd {FEB.host.name})" in text
    assert "ansvarig Lisa Thörn, Pia Sandin" in text and "Föreslagen ledare: Lisa Thörn" in text
    assert "Svara ja på det här mejlet för att starta gruppen" in text and "nej för att låta bli" in text
    assert text.endswith("Hälsningar KCG – Svenska Stadskärnor")  # the mailbox partial, as every question
    for word in ("kcg ", "flödet", ".yaml", "kcg-start-project"):
        assert word not in text
    run_intake(app, _at(13))  # a later intake does not ask again
    assert len(_questions(wd)) == 1


def test_yes_by_reply_starts_the_group_once(asked):
    app, wd, q = asked
    report = _reply(app, q, "Ja, gärna.\n\nBjörn", 13)
    assert [x.outcome for x in report.handled] == ["coordinator_answer"]
    (g,) = groups(app)
    assert g.name == "Trygghet i stadskärnan" and g.lead == "lisa" and g.members == ["lisa", "pia"]
    assert proposals(app) == []
    assert "projektgruppen Trygghet i stadskärnan är startad" in _receipts(wd)[-1]
    starts = [r for r in app.state.actions() if r.action == "project_start"]
    _reply(app, q, "Ja", 14)  # a second yes finds it started
    assert len(groups(app)) == 1 and [r for r in app.state.actions() if r.action == "project_start"] == starts
    assert "projektgruppen Trygghet i stadskärnan var redan startad" in _receipts(wd)[-1]
    assert len(_questions(wd)) == 1


def test_no_by_reply_leaves_the_group_unstarted(asked):
    app, wd, q = asked
    _reply(app, q, "Nej tack.", 13)
    assert groups(app) == [] and proposals(app) == []
    assert "projektgruppen startas inte" in _receipts(wd)[-1]
    run_intake(app, _at(15))
    assert len(_questions(wd)) == 1  # a declined proposal is not asked about again


def test_an_unclear_answer_is_asked_again_and_changes_nothing(asked):
    app, wd, q = asked
    report = _reply(app, q, "Kanske, vi tar det på nästa möte.", 13)
    assert [x.outcome for x in report.handled] == ["coordinator_answer_unclear"]
    assert groups(app) == [] and [d.ref for d, _ in proposals(app)] == [REF]
    assert "Svara bara ja eller nej" in _receipts(wd)[-1]
    _reply(app, q, "ja", 14)  # then a clear yes does it
    assert [g.name for g in groups(app)] == ["Trygghet i stadskärnan"]


def test_a_reply_from_someone_else_is_not_an_answer(asked):
    app, wd, q = asked
    report = _reply(app, q, "Ja", 13, sender=f"{LISA.name} <{LISA.email}>")
    assert [x.outcome for x in report.handled] != ["coordinator_answer"]
    assert groups(app) == [] and [d.ref for d, _ in proposals(app)] == [REF]
    assert _receipts(wd) == []
