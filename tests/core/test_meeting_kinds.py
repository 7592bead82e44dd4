"""Meetings of their own kind, pure: each kind's lead times, the coordinator's
date decisions applied by plan resolution, his free-text answer read, and when
he is asked (and when the alert channel is told he has not answered)."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from support.basics import at, copy_config, shipped_config

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core.cycle import MeetingState, decide, due_dates
from kcg_mail.core.meeting_dates import CONFIRM_DATE, SET_MEETING, SET_PLACE, date_steps, next_ask_day, read_reply
from kcg_mail.core.plan import PLACE_LATER, DateDecision, add_working_days, resolve_plan

pytestmark = pytest.mark.core

CFG = shipped_config()
RULES = CFG.meetings
DEFAULT = (time(10), time(16))


def _m(mid: str, cfg=CFG, decisions=None):
    return next(m for m in resolve_plan(cfg, decisions=decisions) if m.id == mid)


# ------------------------------------------------------------------ lead times per kind


@pytest.mark.parametrize("kind,brief,invite,template", [
    ("digital", 15, 10, 2),
    ("physical", 30, 20, 5),
    ("all_members", 30, 20, 5),
    ("study_trip", 40, 25, 5),
])
def test_each_kind_has_its_own_lead_times(kind, brief, invite, template):
    lead = RULES.lead_for(kind)
    # the host's reminder goes with the template: a week ahead for the longer meetings
    assert (lead.brief_host, lead.invite, lead.send_template) == (brief, invite, template)
    # what is not the kind's own comes from lead_days
    assert (lead.protocol_due, lead.chase_host, lead.escalate) == (2, 3, 5)


def test_the_cycle_invites_each_kind_at_its_own_lead():
    """The physical meeting (date set by the coordinator) is invited 20 working days
    ahead, the digital call 10: each on its own day and not before."""
    jan = _m("2024-01", decisions={"2024-01": DateDecision(date=date(2024, 1, 15), place="Stadshuset, Södertälje")})
    dec = _m("2023-12")
    kind_lead = {k: RULES.lead_for(k) for k in ("digital", "physical", "all_members", "study_trip")}
    for m, n in ((jan, 20), (dec, 10)):
        day = add_working_days(m.date, -n)
        assert due_dates(m, RULES.lead_for(m.kind))["invite"] == day
        before = decide([m], {}, at(add_working_days(day, -1)), RULES.lead_days, {}, kind_lead=kind_lead)
        on = decide([m], {m.id: MeetingState(settled=frozenset({"brief_host"}))}, at(day), RULES.lead_days, {},
                    kind_lead=kind_lead)
        assert "invite" not in [d.action for d in before.due]
        assert "invite" in [d.action for d in on.due], (m.id, on)


@pytest.mark.parametrize("old,new,says", [
    ("lead_days: {brief_host: 40,", "lead_days: {brief: 40,", ["meetings.yaml", "unknown lead time", "brief"]),
    ("audience: [stadskarnor_members]", "audience: [alla]",
     ["meetings.yaml", "kinds.all_members.audience: 'alla'", "network.yaml", "stadskarnor_members"]),
])
def test_kind_settings_are_checked_naming_file_field_and_fix(tmp_path, old, new, says):
    d = copy_config(tmp_path)
    text = (d / "meetings.yaml").read_text(encoding="utf-8")
    assert old in text
    (d / "meetings.yaml").write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(d, environ={})
    assert all(s in str(err.value) for s in says), str(err.value)


# ------------------------------------------------------------------ plan resolution


def test_kinds_the_coordinator_decides_have_no_automatic_date():
    jan = _m("2024-01")
    assert jan.tentative and jan.awaiting == SET_MEETING and jan.date_by == "coordinator"
    assert jan.place == PLACE_LATER
    assert jan.programme and any("40 min" in p for p in jan.programme) and any("Handlingsplan" in p for p in jan.programme)
    trip = _m("2023-10")
    assert trip.tentative and trip.awaiting == CONFIRM_DATE and trip.date == date(2023, 9, 25)
    assert any("Resa" in p for p in trip.programme)
    aug = _m("2023-08")
    assert aug.awaiting == SET_MEETING and [p.email for p in aug.audience] == [
        p.email for p in CFG.network.audiences["stadskarnor_members"]]
    feb = _m("2023-02")
    assert not feb.tentative and not feb.awaiting and feb.programme == ()


def test_the_coordinators_decision_gives_date_times_and_place():
    d = DateDecision(date=date(2024, 1, 15), start=time(9, 30), end=time(15), place="Stadshuset, Södertälje")
    jan = _m("2024-01", decisions={"2024-01": d})
    assert not jan.tentative and jan.awaiting == ""
    assert (jan.date, jan.start.time(), jan.end.time(), jan.place) == (date(2024, 1, 15), time(9, 30), time(15),
                                                                      "Stadshuset, Södertälje")
    # the date without a place: the place is asked for, "Plats meddelas senare" meanwhile
    only = _m("2024-01", decisions={"2024-01": DateDecision(date=date(2024, 1, 15), confirmed=True)})
    assert not only.tentative and only.awaiting == SET_PLACE and only.place == PLACE_LATER
    assert only.start.time() == RULES.times["physical"].start
    # his yes to the study trip's proposed date keeps it
    trip = _m("2023-10", decisions={"2023-10": DateDecision(confirmed=True, place="Göteborg")})
    assert not trip.tentative and trip.date == date(2023, 9, 25) and trip.place == "Göteborg"


def test_a_later_answer_merges_over_the_earlier_one():
    first = DateDecision(date=date(2024, 1, 15), start=time(10), end=time(16), confirmed=True)
    assert first.merged(DateDecision(place="Scandic")).to_dict() == {
        "date": "2024-01-15", "start": "10:00", "end": "16:00", "place": "Scandic", "confirmed": True}
    moved = first.merged(DateDecision(date=date(2024, 1, 22)))
    assert (moved.date, moved.start, moved.end) == (date(2024, 1, 22), None, None)  # the new day's own times
    assert DateDecision.from_dict(moved.to_dict()) == moved


# ------------------------------------------------------------------ reading his answer


@pytest.mark.parametrize("text,day,start,end,place", [
    ("måndag 15 januari kl 10–16, Stadshuset, Norrköping", date(2024, 1, 15), time(10), time(16),
     "Stadshuset, Norrköping"),
    ("15/1 10-16 Scandic Norrköping", date(2024, 1, 15), time(10), time(16), "Scandic Norrköping"),
    ("2024-01-15 10.00–16.00 Stadshuset, Norrköping", date(2024, 1, 15), time(10), time(16), "Stadshuset, Norrköping"),
    ("Hej!\n\nDen 16 jan kl 9.30-15.30 i Stadshuset Västerås\n\nHälsningar\nBjörn", date(2024, 1, 16), time(9, 30),
     time(15, 30), "Stadshuset Västerås"),
    ("15 januari 2024", date(2024, 1, 15), None, None, ""),
    ("15/1 kl 10, Stadshuset", date(2024, 1, 15), time(10), time(16), "Stadshuset"),
    ("Flytta till 2 oktober", date(2023, 10, 2), None, None, ""),
])
def test_a_date_times_and_place_from_a_phone(text, day, start, end, place):
    r = read_reply(text + "\n\nDen 1 november 2023 skrev KCG:\n> Datum för fysiskt möte? 12 januari\n",
                   asked=SET_MEETING, ref=date(2024, 1, 1), today=date(2023, 9, 1), default=DEFAULT)
    assert r.clear, r.question
    assert (r.date, r.start, r.end, r.place) == (day, start, end, place)


def test_the_year_is_the_one_ahead_nearest_the_planned_date():
    r = read_reply("15/1 10-16", asked=SET_MEETING, ref=date(2024, 1, 2), today=date(2023, 11, 20), default=DEFAULT)
    assert r.date == date(2024, 1, 15)
    r = read_reply("26/9", asked=CONFIRM_DATE, ref=date(2023, 9, 25), today=date(2023, 7, 17), default=DEFAULT)
    assert r.date == date(2023, 9, 26)


def test_yes_no_and_place_answers():
    def read(text: str, asked: str):
        r = read_reply(text, asked=asked, ref=date(2023, 9, 25), today=date(2023, 7, 17), default=DEFAULT)
        assert r.clear and r.date is None, r
        return r

    assert read("Ja", CONFIRM_DATE).confirm and read("ja, det gäller", CONFIRM_DATE).confirm
    no = read("Nej, vänta lite", CONFIRM_DATE)
    assert no.declined and not no.confirm
    assert read("Plats: Stadshuset, Norrköping", SET_PLACE).place == "Stadshuset, Norrköping"
    assert read("Scandic Crown, Göteborg", SET_PLACE).place == "Scandic Crown, Göteborg"


@pytest.mark.parametrize("text,asked,says", [
    ("tisdag 15 januari kl 10-16", SET_MEETING, "är en måndag, inte en tisdag"),
    ("vet inte än, återkommer", SET_MEETING, "Jag hittade inget datum"),
    ("Ja", SET_MEETING, "Jag hittade inget datum"),  # a yes is no date
    ("30/2 10-16", SET_MEETING, "inget giltigt datum"),
    ("15/1 16-10", SET_MEETING, "kan inte sluta"),
    ("kl 10-16, Stadshuset", SET_MEETING, "Vilket datum"),
    ("16-18 januari", SET_MEETING, "förstod inte"),
    ("3 september kl 10-16", SET_MEETING, "har redan varit"),
    ("", CONFIRM_DATE, "inget svar"),
])
def test_what_is_unclear_gets_a_one_line_question(text, asked, says):
    r = read_reply(text, asked=asked, ref=date(2024, 1, 2), today=date(2023, 9, 10), default=DEFAULT)
    assert not r.clear and says in r.question and "\n" not in r.question
    assert r.date is None and not r.place


# ------------------------------------------------------------------ when he is asked


def _trip_steps(asked, today, alerted=frozenset()):
    trip = _m("2023-10")
    return date_steps([trip], {"2023-10": asked}, alerted, today, RULES, None)


def test_a_tentative_date_is_asked_about_10_6_and_3_weeks_before_then_alerted():
    trip = _m("2023-10")
    marks = [trip.date - timedelta(weeks=w) for w in (10, 6, 3)]
    asked: list[date] = []
    day = date(2023, 6, 1)
    seen = []
    while day < trip.date:
        for s in _trip_steps(asked, day, frozenset({"2023-10"}) if any(x[0] == "alert" for x in seen) else frozenset()):
            seen.append((s.action, day))
            if s.action == "ask":
                asked.append(day)
        day += timedelta(days=1)
    assert [d for a, d in seen if a == "ask"] == marks
    alerts = [d for a, d in seen if a == "alert"]
    assert alerts == [marks[-1] + timedelta(days=RULES.date_alert_days)]  # once, after the third question
    assert next_ask_day([trip], {"2023-10": marks[:1]}, frozenset(), marks[0], RULES) == marks[1]


def test_no_question_about_a_date_already_decided_or_a_rule_date():
    jan = _m("2024-01", decisions={"2024-01": DateDecision(date=date(2024, 1, 15), place="Stadshuset")})
    feb = _m("2023-02")
    assert date_steps([jan, feb], {}, frozenset(), date(2023, 11, 1), RULES) == []


def test_a_date_to_set_is_asked_ten_weeks_ahead_and_reminded_weekly():
    jan = _m("2024-01")
    first = jan.date - timedelta(weeks=10)
    assert date_steps([jan], {}, frozenset(), first - timedelta(days=1), RULES) == []
    [s] = date_steps([jan], {}, frozenset(), first, RULES)
    assert (s.action, s.what, s.n) == ("ask", SET_MEETING, 0)
    assert date_steps([jan], {"2024-01": [first]}, frozenset(), first + timedelta(days=6), RULES) == []
    [r] = date_steps([jan], {"2024-01": [first]}, frozenset(), first + timedelta(days=7), RULES)
    assert (r.action, r.n) == ("ask", 1)
    # go-live after the ask day: asked at once on go-live
    late = first + timedelta(days=20)
    [g] = date_steps([jan], {}, frozenset(), late, RULES, go_live=late)
    assert g.n == 0


def test_his_signature_and_second_paragraph_are_not_a_place():
    r = read_reply("Hej Björn!\n15/1 10-16 Scandic\nSkickat från min iPhone\n\nVi hörs!\n", asked=SET_MEETING,
                   ref=date(2024, 1, 2), today=date(2023, 11, 1), default=DEFAULT)
    assert (r.date, r.place) == (date(2024, 1, 15), "Scandic")
