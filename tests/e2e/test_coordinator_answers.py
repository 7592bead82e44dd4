"""The coordinator decides by replying: "ja" or "nej" to our question, from his
phone, through the real intake on the embedded adapters.

The question here is a guest's invitation waiting for his yes. An answer counts
only when our receiving server authenticated it, it comes from the coordinator,
and it replies to that very question; anything unclear gets one line back and
changes nothing."""

from __future__ import annotations

from datetime import date, timedelta

from support.basics import at, config_with, shipped_config
from support.helpers import close, make_app, plain_mail, sent_mails

from kcg_mail.core.cycle import due_dates
from kcg_mail.core.plan import resolve_plan
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services import approval, guests
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake

CFG = shipped_config()
DEC = "2023-12"
GUEST = next(g for g in CFG.network.guests if g.id == "centre_for_cities")
COORD = CFG.network.coordinator
MAILBOX = CFG.network.mailbox.email
ASK = f"{DEC}:guest_approval:{COORD.email}:{GUEST.id}"


def _world(tmp_path):
    cfg = config_with(CFG, [DEC])
    app = make_app(tmp_path, cfg)
    m = next(x for x in resolve_plan(cfg) if x.id == DEC)
    day = due_dates(m, cfg.meetings.lead_days)["invite"]
    run_daily(app, at(day))
    return app, day


def _mails(wd) -> dict[str, object]:
    return {str(m[MARKER_HEADER]).strip(): m for m in sent_mails(wd)}


def _answer(app, wd, day: date, text: str, *, sender: str | None = None, auth: str | None = "pass", n: int = 1,
            in_reply_to: str | None = None):
    ask = _mails(wd)[ASK]
    raw = plain_mail(sender or f"{COORD.name} <{COORD.email}>", MAILBOX, "SV: " + str(ask["Subject"]).strip(),
                     text + "\n\nDen 20 november 2023 skrev KCG:\n> " + "\n> ".join(
                         ask.get_body(("plain",)).get_content().splitlines()),
                     when=at(day, 9), msgid=f"<answer{n}@svenskastadskarnor.example.se>",
                     in_reply_to=in_reply_to or str(ask["Message-ID"]), auth=auth)
    app.mail.deliver(raw, f"answer{n}.eml")
    return run_intake(app, at(day, 10))


def _guest_invited(wd) -> bool:
    return any(k.startswith(f"{DEC}:guest_invite:") for k in _mails(wd))


def test_the_coordinators_yes_by_mail_sends_the_guest_invitation_and_a_receipt(tmp_path):
    app, day = _world(tmp_path)
    try:
        ask = _mails(tmp_path)[ASK]
        assert "Svara ja på det här mejlet" in ask.get_body(("plain",)).get_content()
        rep = _answer(app, tmp_path, day, "Ja, gärna!")
        assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
        assert _guest_invited(tmp_path) and not approval.pending(app)
        receipts = [m for k, m in _mails(tmp_path).items() if ":coordinator_receipt:" in k]
        assert len(receipts) == 1
        text = receipts[0].get_body(("plain",)).get_content()
        assert "Tack, uppfattat" in text and "skickad" in text
        # the same answer again (a rerun, or sent twice): nothing more goes out
        before = set(_mails(tmp_path))
        _answer(app, tmp_path, day, "Ja, gärna!")
        _answer(app, tmp_path, day, "Ja", n=2)
        after = _mails(tmp_path)
        assert sum(k.startswith(f"{DEC}:guest_invite:") for k in after) == 1
        assert set(after) - before <= {k for k in after if ":coordinator_receipt:" in k}
    finally:
        close(app)


def test_the_coordinators_no_by_mail_keeps_the_guest_out(tmp_path):
    app, day = _world(tmp_path)
    try:
        rep = _answer(app, tmp_path, day, "Nej, vi väntar till nästa år.")
        assert [h.outcome for h in rep.handled] == ["coordinator_answer"]
        assert not approval.pending(app) and guests.answer(app, DEC, GUEST.email) == "rejected"
        run_daily(app, at(day + timedelta(days=3)))
        assert not _guest_invited(tmp_path)
    finally:
        close(app)


def test_an_unclear_answer_gets_one_line_back_and_decides_nothing(tmp_path):
    app, day = _world(tmp_path)
    try:
        rep = _answer(app, tmp_path, day, "Kan du ringa mig om det här?")
        assert [h.outcome for h in rep.handled] == ["coordinator_answer_unclear"]
        assert not _guest_invited(tmp_path) and len(approval.pending(app)) == 1
        (receipt,) = [m for k, m in _mails(tmp_path).items() if ":coordinator_receipt:" in k]
        text = receipt.get_body(("plain",)).get_content()
        assert "Vi kunde inte tolka svaret" in text and "ja eller nej" in text
        # then a clear answer decides
        _answer(app, tmp_path, day, "Ja", n=2)
        assert _guest_invited(tmp_path)
    finally:
        close(app)


def test_a_yes_not_proven_to_come_from_the_coordinator_changes_nothing(tmp_path):
    app, day = _world(tmp_path)
    try:
        # unauthenticated (no Authentication-Results from our receiving server), forged in his name
        rep = _answer(app, tmp_path, day, "Ja", auth=None)
        assert [h.outcome for h in rep.handled] == ["discarded"], rep.handled
        # authenticated, but from a member who is not the coordinator
        member = next(p for p in CFG.network.active_members if p.email != COORD.email)
        rep = _answer(app, tmp_path, day, "Ja", sender=f"{member.name} <{member.email}>", n=2)
        assert [h.outcome for h in rep.handled] == ["discarded"], rep.handled
        assert not _guest_invited(tmp_path) and len(approval.pending(app)) == 1
        assert not [k for k in _mails(tmp_path) if ":coordinator_receipt:" in k]
    finally:
        close(app)
