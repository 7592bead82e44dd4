"""The coordinator decides by replying, for every kind of question: held minutes
(send out or stop), a member to add or remove. Through the real intake on the
embedded adapters (Maildir, local archive, SQLite); a reply counts only when
authenticated, from him, and a reply to that very question; an unclear one gets
one line back and changes nothing; a "ja" killed at any side effect and run
again sends nothing twice."""

from __future__ import annotations

import shutil
from dataclasses import replace as dc_replace
from datetime import timedelta
from pathlib import Path

import pytest
import test_held
from support import helpers as h
from support.attacks.cases import ar, mail

from kcg_mail.config_loader import apply_members_overlay, read_members_overlay
from kcg_mail.core.plan import resolve_plan
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services import answers
from kcg_mail.services.approval import pending
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake

CFG = h.crash_configs()[0]  # February and March 2023, four people; Daniel hosts February, David March
MID = "2023-02"
COORD = CFG.network.coordinator
MAILBOX = CFG.network.mailbox.email
LISA = next(p for p in CFG.network.members if p.id == "lisa")
ANNA = "anna@vasteras.example.se"


#: the February world of test_held.py (invitation and template out) and its mail context
prepared = test_held.prepared
_ctx = test_held._ctx


@pytest.fixture
def wd(prepared, tmp_path):
    return Path(shutil.copytree(prepared, tmp_path / "wd"))


FEB = next(m for m in resolve_plan(CFG) if m.id == MID)


def _day(n: int = 1, hour: int = 12):
    """A moment ``n`` days from the February meeting."""
    return h.at(FEB.date + timedelta(days=n), hour)


def _by_key(wd: Path) -> dict[str, object]:
    return {str(m[MARKER_HEADER]).strip(): m for m in h.sent_mails(wd)}


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _questions(wd: Path, what: str) -> dict[str, object]:
    return {k: m for k, m in _by_key(wd).items() if f":question:{COORD.email}:{what}:" in k}


def _receipts(wd: Path) -> list[str]:
    """The receipts' texts, oldest first (by their Date: each intake here runs at its own hour)."""
    found = [m for k, m in _by_key(wd).items() if ":coordinator_receipt:" in k]
    return [_text(m) for m in sorted(found, key=lambda m: m["Date"].datetime)]


_n = iter(range(1000))


def _reply(app, question, text: str, when, *, sender: str | None = None, auth: str | None = "pass",
           in_reply_to: str | None = None):
    n = next(_n)
    quoted = "\n> ".join(_text(question).splitlines())
    raw = h.plain_mail(sender or f"{COORD.name} <{COORD.email}>", MAILBOX, "SV: " + str(question["Subject"]).strip(),
                     f"{text}\n\nDen 3 februari 2023 skrev KCG:\n> {quoted}", when=when,
                     msgid=f"<answer{n}@svenskastadskarnor.example.se>",
                     in_reply_to=in_reply_to or str(question["Message-ID"]), auth=auth)
    app.mail.deliver(raw, f"answer{n}.eml")
    report = run_intake(app, when + timedelta(minutes=5))
    assert report.errors == [], report.errors
    return report


def _coordinator_mail(app, subject: str, body: str, when, *, auth: str | None = "pass"):
    n = next(_n)
    raw = h.plain_mail(f"{COORD.name} <{COORD.email}>", MAILBOX, subject, body, when=when,
                     msgid=f"<request{n}@svenskastadskarnor.example.se>", auth=auth)
    app.mail.deliver(raw, f"request{n}.eml")
    report = run_intake(app, when + timedelta(minutes=5))
    assert report.errors == [], report.errors
    return report


# ------------------------------------------------------------------ held minutes


def _three_versions(app, wd: Path) -> list[bytes]:
    """Three versions of February's minutes from the host, one day: the third is over the
    day's allowance of two mail-outs and waits for the coordinator."""
    c = _ctx(app, wd)
    docs = [h.changed_minutes(c.docx, f"Beslut {i}") for i in (1, 2, 3)]
    return [mail(dc_replace(c, docx=d), from_=f"Daniel Värd <{c.host}>", ar_fields=[ar(c.ours, "pass", c.host_domain)],
                 body=f"Version {i}.\n") for i, d in enumerate(docs, 1)]


def _hold_minutes(app, wd: Path):
    """The third version of the day is held, and the coordinator is asked (once)."""
    for i, raw in enumerate(_three_versions(app, wd)):
        app.mail.deliver(raw, f"v{i}.eml")
    report = run_intake(app, _day(1, 12))
    assert sorted(x.outcome for x in report.handled) == ["held", "minutes", "minutes"], report.handled
    assert len(_distributed(wd)) == 2
    (p,) = pending(app)
    (q,) = _questions(wd, "held").values()
    return p, q


@pytest.fixture
def held(wd):
    """February's third version of the day, held, and the coordinator asked: (app, wd, pending item, question)."""
    app = h.make_app(wd, CFG)
    p, q = _hold_minutes(app, wd)
    yield app, wd, p, q
    h.close(app)


def _all_out(wd: Path) -> bool:
    """All three versions went out, each once."""
    return sorted(_distributed(wd).values()) == [1, 1, 1]


def _distributed(wd: Path) -> dict[str, int]:
    return {k: n for k, n in h.sent_by_key(wd).items() if ":distribute:" in k}


def test_held_minutes_ask_the_coordinator_and_his_yes_sends_them_out(held):
    app, wd, p, q = held
    text = _text(q)
    assert "väntar" in str(q["Subject"]) and "måndag 6 februari" in str(q["Subject"])
    assert "tredje versionen i dag (högst 2 utskick per möte och dag)" in text  # why, in words
    assert "authenticated:" not in text and "Svara ja" in text and "nej" in text
    assert h.recipients(q) == {COORD.email}
    # a second intake does not ask again
    run_intake(app, _day(1, 13))
    assert len(_questions(wd, "held")) == 1
    rep = _reply(app, q, "Ja, skicka ut det.", _day(1, 14))
    assert [x.outcome for x in rep.handled] == ["coordinator_answer"], rep.handled
    assert not pending(app)
    assert _all_out(wd)
    (receipt,) = _receipts(wd)
    assert "Tack, uppfattat" in receipt and "utskickad till medlemmarna" in receipt
    # the same yes again: nothing more goes out but a receipt saying so
    _reply(app, q, "Ja", _day(1, 15))
    assert _all_out(wd)
    assert len(_receipts(wd)) == 2 and any("inget att göra" in r for r in _receipts(wd))


def test_held_minutes_stopped_by_his_no(held):
    app, wd, p, q = held
    rep = _reply(app, q, "Nej, vänta.", _day(1, 14))
    assert [x.outcome for x in rep.handled] == ["coordinator_answer"]
    assert not pending(app) and len(_distributed(wd)) == 2
    assert app.state.message(p.msg_key).outcome == "rejected"
    (receipt,) = _receipts(wd)
    assert "arkiveras inte och skickas inte ut" in receipt


def test_an_unclear_answer_to_held_minutes_is_asked_again_and_changes_nothing(held):
    app, wd, p, q = held
    rep = _reply(app, q, "Vad står det i det?", _day(1, 14))
    assert [x.outcome for x in rep.handled] == ["coordinator_answer_unclear"]
    assert len(pending(app)) == 1 and len(_distributed(wd)) == 2
    (receipt,) = _receipts(wd)
    assert "Vi kunde inte tolka svaret ”Vad står det i det?”" in receipt and "ja eller nej" in receipt
    _reply(app, q, "ja", _day(1, 15))
    assert _all_out(wd)


def test_a_forged_or_foreign_yes_to_held_minutes_is_discarded(held):
    app, wd, p, q = held
    rep = _reply(app, q, "Ja", _day(1, 14), auth=None)  # no verdict of our receiving server
    assert [x.outcome for x in rep.handled] == ["discarded"]
    rep = _reply(app, q, "Ja", _day(1, 14), sender=f"{LISA.name} <{LISA.email}>")  # not the coordinator
    assert [x.outcome for x in rep.handled] == ["discarded"]
    rep = _reply(app, q, "Ja", _day(1, 14), in_reply_to="<someother@svenskastadskarnor.example.se>")
    assert [x.outcome for x in rep.handled] != ["coordinator_answer"]  # not a reply to the question
    assert len(pending(app)) == 1 and len(_distributed(wd)) == 2 and not _receipts(wd)


def _crash_points(wd: Path, q, when, methods: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """Every call of ``methods`` the "ja" makes, before and after it (counted on a copy)."""
    plan = h.CrashPlan()
    app = h.crashing_app(wd, CFG, plan)
    try:
        _reply(app, q, "Ja", when)
    finally:
        h.close(app)
    return [(m, n, w) for m, n, _ in plan.log if m in methods for w in ("before", "after")]


def _kill_each_and_rerun(base: Path, tmp_path: Path, q, when, points, check) -> None:
    """The "ja" killed at each point, then the next intake on clean adapters; ``check(app, wd, plan)``."""
    for i, (method, n, w) in enumerate(points):
        wd = Path(shutil.copytree(base, tmp_path / f"crash{i}"))
        plan = h.CrashPlan(method, n, w)
        app = h.crashing_app(wd, CFG, plan)
        try:
            with pytest.raises(h.Crash):
                _reply(app, q, "Ja", when)
        finally:
            h.close(app)
        app = _fresh(wd)
        try:
            run_intake(app, when + timedelta(hours=2))
            keys = h.sent_by_key(wd)
            assert max(keys.values()) == 1, (plan, [k for k, v in keys.items() if v > 1])
            assert len(_receipts(wd)) == 1, plan
            check(app, wd, plan)
        finally:
            h.close(app)
        shutil.rmtree(wd)


def test_a_yes_killed_at_any_side_effect_and_run_again_sends_everything_once(prepared, tmp_path):
    base = Path(shutil.copytree(prepared, tmp_path / "base"))
    app = h.make_app(base, CFG)
    _, q = _hold_minutes(app, base)
    h.close(app)
    points = _crash_points(Path(shutil.copytree(base, tmp_path / "count")), q, _day(1, 14),
                           ("send", "record_action", "record_message", "put", "store", "move", "record_filing"))
    assert len(points) > 20 and {m for m, _, _ in points} >= {"send", "store", "record_filing", "move"}

    def check(app, wd, plan):
        assert _all_out(wd) and not pending(app), plan

    _kill_each_and_rerun(base, tmp_path, q, _day(1, 14), points, check)


# ------------------------------------------------------------------ members


def _fresh(wd: Path):
    """The app as the next run builds it: the config with the members overlay (as bootstrap does)."""
    return h.make_app(wd, apply_members_overlay(CFG, wd))


def test_a_member_added_by_mail_and_ja_is_welcomed_and_invited(wd):
    app = _fresh(wd)
    try:
        rep = _coordinator_mail(app, "Ny medlem", "Hej!\nNy medlem: Anna Andersson, Anna@Vasteras.example.se, "
                                "Västerås City\n\nMvh\nBjörn", _day(-3, 9))
        assert [x.outcome for x in rep.handled] == ["coordinator_request"], rep.handled
        (q,) = _questions(wd, "member_add").values()
        text = _text(q)
        for shown in ("Anna Andersson", ANNA, "Västerås City", "Stad: Västerås", "Svara ja"):
            assert shown in text, shown
        assert str(q["In-Reply-To"]).strip().startswith("<request")  # an answer to his mail
        assert read_members_overlay(wd)["added"] == []  # nothing before his yes
        rep = _reply(app, q, "Ja", _day(-3, 10))
        assert [x.outcome for x in rep.handled] == ["coordinator_answer"], rep.handled
        (added,) = read_members_overlay(wd)["added"]
        assert added["email"] == ANNA and added["city"] == "Västerås"
        welcome = _by_key(wd)[f"welcome:{ANNA}"]
        assert h.recipients(welcome) == {ANNA}
        assert app.state.action(f"welcome:{ANNA}:archive").status == "done"
        assert "är medlem från och med nu" in _receipts(wd)[-1]
        # a second yes changes nothing
        _reply(app, q, "Ja", _day(-3, 11))
        assert len(read_members_overlay(wd)["added"]) == 1 and h.sent_by_key(wd)[f"welcome:{ANNA}"] == 1
    finally:
        h.close(app)
    app = _fresh(wd)  # the next run reads the overlay: the invitation is updated with her
    try:
        assert ANNA in {p.email for p in app.cfg.network.active_members}
        run_daily(app, _day(-3, 12))
        upd = _by_key(wd)[f"{MID}:invite:members:s1"]
        assert ANNA in h.recipients(upd)
        run_daily(app, h.at(app.meeting("2023-03").date - timedelta(days=10)))  # March: invited from the start
        assert ANNA in h.recipients(_by_key(wd)["2023-03:invite:members:s0"])
    finally:
        h.close(app)


def test_a_member_removed_by_mail_gets_no_more_mail_and_the_event_is_updated(wd):
    app = _fresh(wd)
    try:
        rep = _coordinator_mail(app, f"Ta bort medlem: {LISA.name}", "", _day(-3, 9))
        assert [x.outcome for x in rep.handled] == ["coordinator_request"]
        (q,) = _questions(wd, "member_remove").values()
        assert LISA.email in _text(q)
        _reply(app, q, "Ja, ta bort", _day(-3, 10))
        assert read_members_overlay(wd)["removed"][0]["email"] == LISA.email
        assert "inte längre medlem" in _receipts(wd)[-1]
    finally:
        h.close(app)
    before = {k for k, m in _by_key(wd).items() if LISA.email in h.recipients(m)}
    app = _fresh(wd)
    try:
        run_daily(app, _day(-3, 12))
        upd = _by_key(wd)[f"{MID}:invite:members:s1"]  # the calendar event, updated without her
        assert LISA.email not in h.recipients(upd) and COORD.email in h.recipients(upd)
        assert LISA.email not in upd.as_string()
        run_daily(app, h.at(app.meeting("2023-03").date - timedelta(days=10)))
        # the minutes of February go out to everyone but her
        c = _ctx(app, wd)
        app.mail.deliver(mail(c, from_=f"Daniel Värd <{c.host}>", ar_fields=[ar(c.ours, "pass", c.host_domain)]),
                         "minutes.eml")
        run_intake(app, _day(1, 12))
        (dist,) = [m for k, m in _by_key(wd).items() if ":distribute:" in k]
        assert LISA.email not in h.recipients(dist) and len(h.recipients(dist)) == 3
        after = {k for k, m in _by_key(wd).items() if LISA.email in h.recipients(m)}
        assert after == before  # no mail to her since the removal
    finally:
        h.close(app)


def test_unclear_or_impossible_member_requests_get_one_line_and_change_nothing(wd):
    app = _fresh(wd)
    try:
        rep = _coordinator_mail(app, "Ny medlem", "Anna Andersson, Västerås City", _day(-3, 9))
        assert [x.outcome for x in rep.handled] == ["coordinator_answer_unclear"]
        assert "ingen e-postadress" in _receipts(wd)[-1] and "Ny medlem: Anna Andersson" in _receipts(wd)[-1]
        rep = _coordinator_mail(app, "Ta bort medlem: Daniel", "", _day(-3, 10))  # he hosts February
        assert [x.outcome for x in rep.handled] == ["coordinator_request"]
        assert "värd" in _receipts(wd)[-1] and "inget ändras" in _receipts(wd)[-1]
        assert not _questions(wd, "member_add") and not _questions(wd, "member_remove")
        # a forged request in his name is never acted on nor answered
        rep = _coordinator_mail(app, "Ny medlem: Eva Ek, eva@x.example.se, Ek City", "", _day(-3, 11), auth=None)
        assert [x.outcome for x in rep.handled] == ["discarded"]
        assert not _questions(wd, "member_add") and read_members_overlay(wd) == {"added": [], "removed": []}
    finally:
        h.close(app)


def test_the_forms_decide_a_member_question_as_a_reply_would(wd):
    app = _fresh(wd)
    try:
        _coordinator_mail(app, "Ny medlem: Anna Andersson, anna@vasteras.example.se, Västerås City", "", _day(-3, 9))
        (key,) = _questions(wd, "member_add")
        ref = key.rsplit(":", 1)[1][:12]
        out = answers.decide(app, ref, "yes", _day(-3, 10))
        assert out.action == "approved" and "är medlem från och med nu" in out.detail
        assert read_members_overlay(wd)["added"][0]["email"] == ANNA
        # his later "ja" by mail finds it done
        _reply(app, _by_key(wd)[key], "Ja", _day(-3, 11))
        assert "redan gjort" in _receipts(wd)[-1] and h.sent_by_key(wd)[f"welcome:{ANNA}"] == 1
    finally:
        h.close(app)


def test_the_member_forms_act_at_once(wd):
    from kcg_mail.services import members

    app = _fresh(wd)
    try:
        done = members.add_by_form(app, "Anna Andersson", ANNA, "Västerås City", "", _day(-3, 9), "run-1")
        assert "är medlem från och med nu" in done and read_members_overlay(wd)["added"][0]["city"] == "Västerås"
        again = members.add_by_form  # the same run retried: nothing twice
        assert "redan gjort" in again(app, "Anna Andersson", ANNA, "Västerås City", "", _day(-3, 9), "run-1")
        done = members.remove_by_form(app, LISA.email, _day(-3, 10), "run-2")
        assert "inte längre medlem" in done
    finally:
        h.close(app)
    app = _fresh(wd)
    try:
        emails = {p.email for p in app.cfg.network.active_members}
        assert ANNA in emails and LISA.email not in emails
        sent_before = len(app.state.actions())
        # the form sent again: a completed run that says so, nothing done twice
        again = members.add_by_form(app, "Anna Andersson", ANNA, "Västerås City", "", _day(-3, 11), "run-3")
        assert again.endswith("är redan medlem; inget ändrades") and len(app.state.actions()) == sent_before
    finally:
        h.close(app)


def test_a_member_yes_killed_at_any_side_effect_and_run_again_adds_once(prepared, tmp_path):
    base = Path(shutil.copytree(prepared, tmp_path / "base"))
    app = _fresh(base)
    _coordinator_mail(app, "Ny medlem: Anna Andersson, anna@vasteras.example.se, Västerås City", "", _day(-3, 9))
    h.close(app)
    (q,) = _questions(base, "member_add").values()
    points = _crash_points(Path(shutil.copytree(base, tmp_path / "count")), q, _day(-3, 10),
                           ("send", "record_action", "put", "add_member", "move", "record_message"))
    assert {m for m, _, _ in points} >= {"send", "add_member", "put", "move"}

    def check(app, wd, plan):
        assert h.sent_by_key(wd)[f"welcome:{ANNA}"] == 1, plan
        assert [x["email"] for x in read_members_overlay(wd)["added"]] == [ANNA], plan

    _kill_each_and_rerun(base, tmp_path, q, _day(-3, 10), points, check)


# ------------------------------------------------------------------ over the real servers


@pytest.mark.server
def test_held_minutes_approved_by_reply_over_dovecot_and_postfix(wd):
    """The question reaches the coordinator's mailbox through Postfix, his reply comes
    in through Postfix and Dovecot, and the minutes reach every member's mailbox once."""
    import email as email_lib
    from email import policy

    from support.basics import server_users
    from support.corpus_cycle import KCG_TEST, accept_domains
    from support.mailserver import mail_server

    from kcg_mail.adapters.smtp_imap import SmtpImapTransport

    users = server_users(CFG)
    users[KCG_TEST] = "kcg-secret"
    with mail_server(users=users) as server:
        accept_domains(server, {e.partition("@")[2] for e in users})
        app = h.make_app(wd, CFG, mail=SmtpImapTransport(**server.transport_kwargs(KCG_TEST)))
        try:
            for raw in _three_versions(app, wd):
                server.deliver(raw, KCG_TEST)
            rep = run_intake(app, _day(1, 12))
            assert sorted(x.outcome for x in rep.handled) == ["held", "minutes", "minutes"], rep.handled
            server.wait_for(COORD.email, count=3)  # two versions sent out, and the question
            (q,) = [m for m in (email_lib.message_from_bytes(r, policy=policy.default)
                                for r in server.messages(COORD.email)) if ":question:" in str(m[MARKER_HEADER])]
            assert "väntar på ditt ja" in str(q["Subject"]) and "Svara ja" in _text(q)
            members = [p.email for p in CFG.network.active_members]
            answer = h.plain_mail(f"{COORD.name} <{COORD.email}>", KCG_TEST, "SV: " + str(q["Subject"]).strip(),
                                "Ja!\n\nDen 7 februari 2023 skrev KCG:\n> " + "\n> ".join(_text(q).splitlines()),
                                when=_day(1, 14), msgid="<imap-answer-1@svenskastadskarnor.example.se>",
                                in_reply_to=str(q["Message-ID"]))
            server.deliver(answer, KCG_TEST)
            rep = run_intake(app, _day(1, 15))
            assert [x.outcome for x in rep.handled] == ["coordinator_answer"], rep.handled
            assert not pending(app)

            def markers(user: str) -> list[str]:
                return [str(email_lib.message_from_bytes(r, policy=policy.default)[MARKER_HEADER])
                        for r in server.messages(user)]

            def minutes_in(user: str) -> list[str]:
                return [k for k in markers(user) if ":distribute:members:" in k]

            for user in members:
                server.wait_for(user, count=3 + (user == COORD.email) * 2)  # the coordinator: question, receipt
                assert len(minutes_in(user)) == 3, user
            assert len([k for k in markers(COORD.email) if ":coordinator_receipt:" in k]) == 1
            # the same answer delivered again: nothing more to the members
            server.deliver(answer, KCG_TEST)
            run_intake(app, _day(1, 16))
            server.wait_queue()
            assert all(len(minutes_in(u)) == 3 for u in members)
            # both copies of his answer left the inbox for the processed folder
            assert sum(b"imap-answer-1@" in r for r in server.messages(KCG_TEST, "processed")) == 2
            assert server.messages(KCG_TEST, "INBOX") == []
        finally:
            h.close(app)
