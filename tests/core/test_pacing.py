"""The member caps, pure: which class a mail is in, the day it may go out, the
days a mail is expected, and the check of what reached the members."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError
from support.helpers import shipped_config

from kcg_mail.core.config_model import MemberCaps
from kcg_mail.core.pacing import (
    MEETING_DAY,
    Pace,
    SentMail,
    check_caps,
    expected,
    pace_of,
    send_on,
    week_of,
    with_expected,
)
from kcg_mail.core.plan import resolve_plan

CAPS = MemberCaps(per_day=1, per_week=4)
COORD = "bjorn@example.se"
ANNA, BO = "anna@example.se", "bo@example.se"
MON = date(2023, 11, 6)  # a Monday, and the meeting's day below
MEETINGS = {MON}


def booked(**days: dict[date, int]) -> dict[str, dict[date, int]]:
    return {f"{k}@example.se": v for k, v in days.items()}


# ------------------------------------------------------------------ classes


@pytest.mark.parametrize("kind,to,pace", [
    ("invite", [ANNA, BO], Pace.ALWAYS),
    ("update_invitation", [ANNA], Pace.ALWAYS),
    ("distribute", [ANNA, COORD], Pace.ALWAYS),
    ("brief_host", [ANNA], Pace.HOST_TASK),
    ("send_template", [ANNA, BO], Pace.HOST_TASK),
    ("planning_receipt", [ANNA], Pace.FREE),
    ("guest_approval", [COORD], Pace.FREE),
    ("some_new_question", [COORD], Pace.FREE),      # the coordinator's work
    ("planning_needs", [COORD], Pace.PACED),        # he gets the round's mails as a member
    ("planning_ballot", [ANNA], Pace.PACED),
    ("decision_reminder", [ANNA], Pace.PACED),
    ("save_the_date", [ANNA, BO, COORD], Pace.ALWAYS),  # a calendar request, like the invitation it precedes
    ("newsletter", [ANNA, BO, COORD], Pace.PACED),  # an unknown kind to members waits its turn
])
def test_each_mail_has_its_class(kind, to, pace):
    assert pace_of(kind, to, COORD) is pace


# ------------------------------------------------------------------ the day


def test_a_paced_mail_goes_today_when_today_fits():
    v = send_on(Pace.PACED, [ANNA], MON + timedelta(days=1), {}, MEETINGS, CAPS)
    assert v.on == MON + timedelta(days=1) and not v.waits(MON + timedelta(days=1)) and v.reason == ""


def test_on_a_meeting_day_only_the_invitation_and_the_minutes_go():
    assert send_on(Pace.ALWAYS, [ANNA], MON, {}, MEETINGS, CAPS).on == MON
    v = send_on(Pace.PACED, [ANNA], MON, {}, MEETINGS, CAPS)
    assert v.on == MON + timedelta(days=1) and v.reason == MEETING_DAY


def test_the_day_cap_moves_a_mail_to_the_next_working_day():
    fri = date(2023, 11, 10)
    v = send_on(Pace.PACED, [ANNA], fri, booked(anna={fri: 1}), set(), CAPS)
    assert v.on == date(2023, 11, 13)  # Saturday and Sunday are no working days
    assert "om dagen" in v.reason


def test_the_week_cap_moves_a_mail_to_the_next_week():
    tue = date(2023, 11, 14)
    days = {tue - timedelta(days=1): 1, tue + timedelta(days=1): 1, tue + timedelta(days=2): 1, tue + timedelta(days=3): 1}
    v = send_on(Pace.PACED, [ANNA], tue, booked(anna=days), set(), CAPS)
    assert v.on == date(2023, 11, 20) and week_of(v.on) != week_of(tue)
    assert "i veckan" in v.reason


def test_a_mail_to_several_members_waits_for_a_day_that_fits_them_all():
    tue = date(2023, 11, 14)
    v = send_on(Pace.PACED, [ANNA, BO], tue, booked(anna={tue: 1}, bo={tue + timedelta(days=1): 1}), set(), CAPS)
    assert v.on == tue + timedelta(days=2)


def test_the_answers_and_the_coordinators_work_never_wait():
    full = booked(anna={MON: 5})
    assert send_on(Pace.FREE, [ANNA], MON, full, MEETINGS, CAPS).on == MON
    assert send_on(Pace.ALWAYS, [ANNA], MON, full, MEETINGS, CAPS).on == MON


def test_a_hosts_task_never_waits_for_the_cap_but_leaves_a_meeting_day():
    tue = MON + timedelta(days=1)
    assert send_on(Pace.HOST_TASK, [ANNA], tue, booked(anna={tue: 3}), MEETINGS, CAPS).on == tue
    # on a meeting's day: the next working day with room (the minutes' day is full)
    v = send_on(Pace.HOST_TASK, [ANNA], MON, booked(anna={tue: 1}), MEETINGS, CAPS, own_meeting=MON + timedelta(days=20))
    assert v.on == tue + timedelta(days=1) and v.reason == MEETING_DAY
    # a task about the meeting held today (the first run's late template) goes today
    assert send_on(Pace.HOST_TASK, [ANNA], MON, {}, MEETINGS, CAPS, own_meeting=MON).on == MON
    assert send_on(Pace.PACED, [ANNA], MON, {}, MEETINGS, CAPS, own_meeting=MON).on == tue
    # no room within three working days: the first working day after the meeting all the same
    full = booked(anna={MON + timedelta(days=n): 1 for n in range(1, 10)})
    assert send_on(Pace.HOST_TASK, [ANNA], MON, full, MEETINGS, CAPS).on == tue


def test_the_caps_are_a_validated_setting():
    assert MemberCaps().per_day == 1 and MemberCaps().per_week == 4
    with pytest.raises(ValidationError, match="per_week"):
        MemberCaps(per_day=2, per_week=1)
    with pytest.raises(ValidationError):
        MemberCaps(per_day=0, per_week=4)
    cfg = shipped_config()
    assert cfg.meetings.member_caps == MemberCaps(per_day=1, per_week=4)


def test_larger_caps_let_more_through():
    tue = date(2023, 11, 14)
    two = MemberCaps(per_day=2, per_week=4)
    assert send_on(Pace.PACED, [ANNA], tue, booked(anna={tue: 1}), set(), two).on == tue
    assert send_on(Pace.PACED, [ANNA], tue, booked(anna={tue: 2}), set(), two).on == tue + timedelta(days=1)


# ------------------------------------------------------------------ expected days


def test_the_invitation_the_minutes_and_the_hosts_tasks_are_expected():
    cfg = shipped_config()
    meetings = [m for m in resolve_plan(cfg) if m.id == "2023-03"]
    m = meetings[0]
    members = [p.email for p in cfg.network.active_members]
    exp = expected(meetings, members, cfg.meetings.lead_days)
    other = next(e for e in members if e not in {m.host.email, m.backup_host.email if m.backup_host else ""})
    assert date(2023, 3, 7) in exp[other]                  # the minutes' day (after Monday 6 March)
    assert date(2023, 2, 20) in exp[other]                 # the invitation, ten working days before
    # the template with the reminder, two working days before; no separate reminder day
    assert date(2023, 3, 2) in exp[m.host.email] and date(2023, 3, 2) not in exp[other]
    assert date(2023, 3, 1) not in exp[m.host.email]
    # a paced mail keeps off them, an expected day that has passed is history
    b = with_expected({}, exp, date(2023, 3, 1))
    assert b[other][date(2023, 3, 7)] == 1 and date(2023, 2, 20) not in b[other]
    assert send_on(Pace.PACED, [other], date(2023, 3, 7), b, {m.date}, CAPS).on == date(2023, 3, 8)


# ------------------------------------------------------------------ the check


def test_the_check_counts_per_day_and_week_and_finds_every_break():
    mails = [SentMail("k1", "invite", MON, (ANNA, BO)),
             SentMail("k2", "planning_receipt", MON, (ANNA,)),      # does not count
             SentMail("k3", "planning_needs", MON, (ANNA,)),        # a meeting's day, and a second mail
             SentMail("k4", "decision_reminder", date(2023, 11, 8), (BO,))]
    c = check_caps(mails, [ANNA, BO], COORD, MEETINGS, CAPS)
    assert not c.held and c.max_day == 2 and c.max_week == 2
    assert c.over_day == ((ANNA, MON, 2),)
    assert c.on_meeting_days == ((ANNA, MON, "k3"),)
    assert c.most("2023-11") == (2, 2)
    ok = check_caps(mails[:2] + mails[3:], [ANNA, BO], COORD, MEETINGS, CAPS)
    assert ok.held and ok.max_day == 1 and ok.max_week == 2 and not ok.over_week


def test_the_check_finds_a_week_over_the_cap():
    mails = [SentMail(f"k{i}", "decision_reminder", MON + timedelta(days=i), (ANNA,)) for i in range(1, 6)]
    c = check_caps(mails, [ANNA], COORD, MEETINGS, CAPS)
    assert c.over_week == ((ANNA, MON, 5),) and not c.over_day
