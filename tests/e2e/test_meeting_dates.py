"""The dates the coordinator decides, end to end on the embedded adapters (Maildir,
SQLite, the real intake and daily run): he is asked by mail and answers by reply
from his phone; the members get a save-the-date, then the invitation as an update
of the same calendar event; a place set after the invitation is one update; a
tentative date nobody confirms is asked about three times, then alerted; the
open meeting reaches its wider audience."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from icalendar import Calendar
from support.basics import at, config_with, shipped_config
from support.helpers import body_text, calendar_parts, close, make_app, plain_mail, recipients, sent_mails

from kcg_mail.core.cycle import due_dates
from kcg_mail.core.plan import PLACE_LATER, add_working_days, is_working_day
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services import meeting_dates
from kcg_mail.services.coordinator import set_meeting
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake
from kcg_mail.services.status import overview_needs, overview_rows

CFG = shipped_config()
COORD = CFG.network.coordinator
MAILBOX = CFG.network.mailbox.email
UID = "kcg-{}@svenskastadskarnor.example.se"


@pytest.fixture
def world(tmp_path):
    """``world(ids)``: an app on ``tmp_path`` with the plan reduced to the meetings ``ids``
    (each call a fresh one on the same work directory, as the next run is); all closed at the end."""
    apps = []

    def open_(ids):
        if apps:
            close(apps[-1])
        apps.append(make_app(tmp_path, config_with(CFG, ids)))
        return apps[-1]

    yield open_
    for a in apps:
        close(a)


def _mails(wd) -> dict[str, object]:
    return {str(m[MARKER_HEADER]).strip(): m for m in sent_mails(wd)}


def _reply(app, wd, key: str, day: date, text: str, n: int):
    """The coordinator's reply from his phone to our mail ``key``, through the intake."""
    ask = _mails(wd)[key]
    raw = plain_mail(f"{COORD.name} <{COORD.email}>", MAILBOX, "SV: " + str(ask["Subject"]).strip(),
                     text + "\n\nSkickat från min iPhone\n\nDen 1 november 2023 skrev KCG:\n> "
                     + "\n> ".join(body_text(ask).splitlines()),
                     when=at(day, 9), msgid=f"<date-answer{n}@svenskastadskarnor.example.se>",
                     in_reply_to=str(ask["Message-ID"]))
    app.mail.deliver(raw, f"date-answer{n}.eml")
    return run_intake(app, at(day, 10))


def _events(wd, meeting_id: str) -> list[tuple[str, str, int, str, str]]:
    """The members' calendar requests of a meeting: (key, uid, sequence, location, method), oldest first."""
    out = []
    for key, m in sorted(_mails(wd).items(), key=lambda kv: int(kv[0].rpartition(":s")[2])
                         if ":members:s" in kv[0] else 0):
        if not key.startswith(f"{meeting_id}:") or ":members:s" not in key:
            continue
        cal = Calendar.from_ical(calendar_parts(m)[0].get_payload(decode=True))
        [ev] = list(cal.walk("VEVENT"))
        out.append((key, str(ev["UID"]), int(ev["SEQUENCE"]), str(ev.get("LOCATION", "")), str(cal["METHOD"])))
    return out


def _receipts(wd) -> list[str]:
    return [body_text(m) for k, m in sorted(_mails(wd).items()) if ":date_receipt:" in k]


def test_date_set_by_reply_gives_a_save_the_date_then_the_invitation_as_an_update(tmp_path, world):
    cfg = config_with(CFG, ["2024-01"])
    app = world(["2024-01"])
    jan = app.meeting("2024-01")
    assert jan is not None and jan.awaiting == "set_meeting"
    ask_day = jan.date - timedelta(weeks=10)
    run_daily(app, at(ask_day))
    key = f"2024-01:date_question:{COORD.email}:set_meeting:n0"
    ask = _mails(tmp_path)[key]
    assert recipients(ask) == {COORD.email}
    assert "du bestämmer datum, tid och plats" in body_text(ask) and "[KCG-2024-01]" in str(ask["Subject"])

    # unclear: one line back, nothing stored, no mail to the members
    rep = _reply(app, tmp_path, key, ask_day + timedelta(days=1), "Kanske i mitten av januari?", 1)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer_unclear"], rep.handled
    assert "Jag hittade inget datum" in _receipts(tmp_path)[0] and app.ledger.meeting_dates() == {}
    assert _events(tmp_path, "2024-01") == []

    rep = _reply(app, tmp_path, key, ask_day + timedelta(days=2),
                 "måndag 15 januari kl 10–16, Stadshuset, Södertälje", 2)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
    receipt = [r for r in _receipts(tmp_path) if "Tack, uppfattat" in r]
    assert len(receipt) == 1 and "måndag 15 januari 2024 kl 10:00–16:00, Stadshuset, Södertälje" in receipt[0]
    assert "save-the-date" in receipt[0]
    # the save-the-date went out at once: the date and times, the place later
    [std] = _events(tmp_path, "2024-01")
    assert std == ("2024-01:save_the_date:members:s0", UID.format("2024-01"), 0, PLACE_LATER, "REQUEST")
    std_mail = _mails(tmp_path)[std[0]]
    assert len(recipients(std_mail)) == len(cfg.network.active_members)
    assert "Inbjudan med plats och program kommer senare" in body_text(std_mail)

    # no more questions once it is set
    app = world(["2024-01"])
    run_daily(app, at(ask_day + timedelta(days=7)))
    assert not [k for k in _mails(tmp_path) if ":date_question:" in k and k != key]

    # the invitation at the physical meeting's own lead: an update of the same event
    jan = app.meeting("2024-01")
    invite_day = due_dates(jan, cfg.meetings.lead_for("physical"))["invite"]
    assert invite_day == add_working_days(date(2024, 1, 15), -20)
    run_daily(app, at(invite_day))
    events = _events(tmp_path, "2024-01")
    assert [(k, u, s, loc) for k, u, s, loc, _ in events] == [
        ("2024-01:save_the_date:members:s0", UID.format("2024-01"), 0, PLACE_LATER),
        ("2024-01:invite:members:s1", UID.format("2024-01"), 1, "Stadshuset, Södertälje")]
    invite = body_text(_mails(tmp_path)["2024-01:invite:members:s1"])
    assert "Program:" in invite and "40 minuter" in invite and "Handlingsplanen antas" in invite
    assert "Dagordning:" not in invite  # the programme replaces the standing agenda
    run_daily(app, at(invite_day + timedelta(days=1)))
    assert len(_events(tmp_path, "2024-01")) == 2


def test_a_place_set_after_the_invitation_is_one_update_with_sequence_1(tmp_path, world):
    app = world(["2024-01"])
    jan = app.meeting("2024-01")
    run_daily(app, at(jan.date - timedelta(weeks=10)))
    key = f"2024-01:date_question:{COORD.email}:set_meeting:n0"
    # he answers late, on the invitation's day, without a place: no save-the-date, the invitation itself
    late = add_working_days(date(2024, 1, 15), -20)
    rep = _reply(app, tmp_path, key, late, "15/1 10-16", 1)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
    assert "Platsen saknas än" in _receipts(tmp_path)[0]
    app = world(["2024-01"])
    run_daily(app, at(late, 11))
    assert [(k, s, loc) for k, _, s, loc, _ in _events(tmp_path, "2024-01")] == [
        ("2024-01:invite:members:s0", 0, PLACE_LATER)]
    assert [r.meeting_id for r in overview_needs(app, at(late, 12)) if r.meeting_id == "2024-01"]
    assert "saknar plats" in " ".join(n.text for n in overview_needs(app, at(late, 12)))

    # the place, by reply to the receipt
    receipt_key = next(k for k in _mails(tmp_path) if ":date_receipt:" in k)
    rep = _reply(app, tmp_path, receipt_key, late + timedelta(days=1), "Plats: Stadshuset, Södertälje", 2)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
    app = world(["2024-01"])
    run_daily(app, at(late + timedelta(days=1), 11))
    run_daily(app, at(late + timedelta(days=2), 11))
    events = _events(tmp_path, "2024-01")
    assert [(k, u, s, loc, meth) for k, u, s, loc, meth in events] == [
        ("2024-01:invite:members:s0", UID.format("2024-01"), 0, PLACE_LATER, "REQUEST"),
        ("2024-01:invite:members:s1", UID.format("2024-01"), 1, "Stadshuset, Södertälje", "REQUEST")]
    assert not [n for n in overview_needs(app, at(late + timedelta(days=2), 12)) if n.meeting_id == "2024-01"]


def test_an_unconfirmed_study_trip_is_asked_three_times_then_alerted(tmp_path, world):
    app = world(["2023-10"])
    trip = app.meeting("2023-10")
    assert trip is not None and trip.awaiting == "confirm_date"
    day = trip.date - timedelta(weeks=11)
    alerted_on = []
    while day < trip.date:
        if is_working_day(day):
            rep = run_daily(app, at(day))
            alerted_on += [day for r in rep.results if r.action == "date_alert"]
        day += timedelta(days=1)
    mails = _mails(tmp_path)
    asks = sorted(k for k in mails if k.startswith(f"2023-10:date_question:{COORD.email}:confirm_date:"))
    assert asks == [f"2023-10:date_question:{COORD.email}:confirm_date:n{i}" for i in range(3)]
    assert [m.date() for m in (mails[k]["Date"].datetime for k in asks)] == [
        trip.date - timedelta(weeks=w) for w in (10, 6, 3)]
    assert "Svara ja om datumet gäller" in body_text(mails[asks[0]])
    alerts = [k for k in mails if k.startswith("alert:meeting-date:2023-10")]
    assert alerts == ["alert:meeting-date:2023-10:confirm_date"]
    assert alerted_on == [trip.date - timedelta(weeks=3) + timedelta(days=7)]  # once, a week after the third
    assert "3 gånger utan svar" in body_text(mails[alerts[0]])
    # the overview says so, and no invitation went out
    need = [n.text for n in overview_needs(app, at(trip.date - timedelta(days=3))) if n.meeting_id == "2023-10"]
    assert len(need) == 1 and "frågad 3 gånger, obesvarad (larm skickat)" in need[0]
    assert [r["läge"] for r in overview_rows(app, at(trip.date - timedelta(days=3)))] == ["väntar på samordnaren"]
    assert _events(tmp_path, "2023-10") == []
    # the host's brief says plainly that the date is not fixed, and who decides
    brief = body_text(mails[f"2023-10:brief_host:{trip.host.email}"])
    # the brief signed by the coordinator says, in his words, that the date is his to confirm
    assert "Datumet är inte bestämt än: jag bestämmer om förslaget" in brief and COORD.name in brief


def test_the_open_meeting_reaches_its_wider_audience(tmp_path, world):
    cfg = config_with(CFG, ["2023-08"])
    app = world(["2023-08"])
    aug = app.meeting("2023-08")
    assert aug is not None and len(aug.audience) == 4
    day = date(2023, 6, 1)
    set_meeting(app, "2023-08", date(2023, 8, 21), "10:00", "15:00", "Kulturhuset, Stockholm", at(day))
    meeting_dates.sync(app, at(day))  # idempotent: the save-the-date went out with the decision
    assert [k for k, *_ in _events(tmp_path, "2023-08")] == ["2023-08:save_the_date:members:s0"]
    app = world(["2023-08"])
    aug = app.meeting("2023-08")
    run_daily(app, at(due_dates(aug, cfg.meetings.lead_for("all_members"))["invite"]))
    mails = _mails(tmp_path)
    members = {p.email for p in cfg.network.members}
    for org in aug.audience:
        [inv] = [m for k, m in mails.items() if k.startswith(f"2023-08:guest_invite:{org.email}:")]
        assert recipients(inv) == {org.email}  # their own invitation, no member addresses
        text = body_text(inv) + calendar_parts(inv)[0].get_payload(decode=True).decode()
        assert not any(e in text for e in members) and "Kulturhuset, Stockholm" in text
    member_inv = body_text(mails["2023-08:invite:members:s1"])
    assert "Mötet är öppet" in member_inv and "Umeå Centrum" in member_inv
    # the plan's own guest still waits for the coordinator's yes
    assert any(k.startswith("2023-08:guest_approval:") for k in mails)
    assert not any(k.startswith("2023-08:guest_invite:innovation@") for k in mails)


def test_a_place_before_the_date_is_kept_and_the_date_still_asked_for(tmp_path, world):
    app = world(["2024-01"])
    jan = app.meeting("2024-01")
    day = jan.date - timedelta(weeks=10)
    run_daily(app, at(day))
    key = f"2024-01:date_question:{COORD.email}:set_meeting:n0"
    rep = _reply(app, tmp_path, key, day, "Plats: Stadshuset, Södertälje", 1)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
    assert "datumet är inte bestämt än" in _receipts(tmp_path)[0]
    app = world(["2024-01"])
    jan = app.meeting("2024-01")
    assert jan.tentative and jan.awaiting == "set_meeting" and jan.place == "Stadshuset, Södertälje"
    assert _events(tmp_path, "2024-01") == []
    run_daily(app, at(day + timedelta(days=7)))
    assert f"2024-01:date_question:{COORD.email}:set_meeting:n1" in _mails(tmp_path)
    # then the date, by reply to the reminder: the save-the-date, the place kept for the invitation
    rep = _reply(app, tmp_path, f"2024-01:date_question:{COORD.email}:set_meeting:n1", day + timedelta(days=8),
                 "15/1 kl 10-16", 2)
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep.handled
    assert [k for k, *_ in _events(tmp_path, "2024-01")] == ["2024-01:save_the_date:members:s0"]
    assert app.meeting("2024-01").place == "Stadshuset, Södertälje"
