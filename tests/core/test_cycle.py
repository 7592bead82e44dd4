"""The pure meeting cycle: decide(plan, state record, now) -> what is due.

No I/O: meetings come from the shipped config through resolve_plan, and
changed meetings are dataclasses.replace copies."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import pytest
from support.basics import at, meeting, meetings, shipped_config

from kcg_mail.core.cycle import (
    STEPS,
    Decisions,
    InvitationSnapshot,
    MeetingState,
    decide,
    due_dates,
    invitation_snapshot,
    next_due_date,
)
from kcg_mail.core.plan import Meeting

LEAD = shipped_config().meetings.lead_days
FEB = meeting("2023-02")  # digital, Monday 6 February 2023 09:00-10:00
TRIP = meeting("2023-10")  # tentative study trip, 25 September 2023
# Working days from Monday 6 February 2023 (no public holiday from 16 January to 13 February)
# (the host's reminder and the template are one step, send_template)
OFFSETS = {"brief_host": -15, "invite": -10, "send_template": -2, "chase_host": 3, "escalate": 5}
FEB_DAYS = {"brief_host": date(2023, 1, 16), "invite": date(2023, 1, 23), "send_template": date(2023, 2, 2),
            "chase_host": date(2023, 2, 9), "escalate": date(2023, 2, 13)}


def members_of(m: Meeting) -> tuple[str, ...]:
    cfg = shipped_config()
    return tuple(p.email for p in cfg.network.active_members) + tuple(g.email for g in m.guests)


def run(ms, now: datetime, states=None, orphans=None, attendees=None) -> Decisions:
    ms = list(ms)
    att = attendees if attendees is not None else {m.id: members_of(m) for m in ms}
    return decide(ms, states or {}, now, LEAD, att, orphans)


def due(dec: Decisions) -> list[tuple[str, str]]:
    return [(d.meeting_id, d.action) for d in dec.due]


def skipped(dec: Decisions) -> list[tuple[str, str]]:
    return [(s.meeting_id, s.action) for s in dec.skip]


def snap(m: Meeting, seq: int = 0, **kw) -> InvitationSnapshot:
    s = invitation_snapshot(m, members_of(m), f"kcg-{m.id}@svenskastadskarnor.example.se", seq)
    return dataclasses.replace(s, **kw) if kw else s


def moved(m: Meeting, days: int) -> Meeting:
    d = timedelta(days=days)
    return dataclasses.replace(m, date=m.date + d, start=m.start + d, end=m.end + d)


# ------------------------------------------------------------ lead times


def test_lead_times_of_the_shipped_config():
    assert (LEAD.brief_host, LEAD.invite, LEAD.send_template, LEAD.chase_host, LEAD.escalate) == \
        tuple(abs(OFFSETS[s]) for s in STEPS)
    assert due_dates(FEB, LEAD) == FEB_DAYS
    assert set(STEPS) == set(OFFSETS)


def sent_state(steps, **kw) -> MeetingState:
    """These steps went out on their planned days."""
    return MeetingState(settled=frozenset(steps), invitation=snap(FEB) if "invite" in steps else None,
                        sent_on={s: FEB_DAYS[s] for s in steps}, **kw)


@pytest.mark.parametrize("step", list(OFFSETS))
def test_each_step_is_due_on_its_day_and_not_the_day_before(step):
    day = FEB_DAYS[step]
    earlier = [s for s in STEPS if OFFSETS[s] < OFFSETS[step]]
    state = {FEB.id: sent_state(earlier)}
    before = run([FEB], at(day - timedelta(days=1), 7), state)
    assert (FEB.id, step) not in due(before)
    assert before.due == [] and before.skip == []
    on_day = run([FEB], at(day, 7), state)
    assert due(on_day) == [(FEB.id, step)]
    assert on_day.skip == []
    assert on_day.due[0].reason == f"{step} due {day.isoformat()}"
    assert due(run([FEB], at(day, 23, 59), state)) == [(FEB.id, step)]


def test_all_steps_of_a_year_become_due_in_order():
    """Walk every day of a meeting's cycle, settling what is done: each step
    goes out exactly once, on its own day."""
    settled: set[str] = set()
    sent_on: dict[str, date] = {}
    invitation = None
    sent: list[tuple[str, date]] = []
    for i in range(-40, 20):
        day = FEB.date + timedelta(days=i)
        dec = run([FEB], at(day, 7), {FEB.id: MeetingState(frozenset(settled), invitation, sent_on=dict(sent_on))})
        assert dec.skip == []
        for d in dec.due:
            sent.append((d.action, day))
            settled.add(d.action)
            sent_on[d.action] = day
            if d.action == "invite":
                invitation = snap(FEB)
    assert sent == [(s, FEB_DAYS[s]) for s in STEPS]
    assert all(d.weekday() < 5 for _, d in sent)


# ------------------------------------------------------------ idempotency


def test_settled_steps_are_not_due_again():
    day = FEB_DAYS["brief_host"]
    first = run([FEB], at(day))
    assert due(first) == [(FEB.id, "brief_host")]
    again = run([FEB], at(day, 15), {FEB.id: MeetingState(settled=frozenset({"brief_host"}))})
    assert again.due == [] and again.skip == []


def test_nothing_due_twice_after_everything_settled():
    state = {FEB.id: MeetingState(settled=frozenset(STEPS), invitation=snap(FEB))}
    for i in range(-40, 60, 3):
        dec = run([FEB], at(FEB.date + timedelta(days=i)), state)
        assert dec.due == [] and dec.skip == []


def test_invite_not_due_when_an_invitation_went_out_but_step_not_settled():
    """A crash after sending the invitation but before settling the step: the
    snapshot says it went out; decide must not invite again."""
    day = FEB.date - timedelta(days=10)
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host"}), invitation=snap(FEB))}
    assert due(run([FEB], at(day), state)) == []


def test_decisions_are_pure_and_deterministic():
    now = at(FEB.date - timedelta(days=1))
    assert run(meetings(), now) == run(meetings(), now)


# ------------------------------------------------------------ missed runs


def test_run_after_meeting_start_skips_pre_meeting_mails_but_sends_template():
    now = FEB.start + timedelta(minutes=1)
    dec = run([FEB], now)
    assert due(dec) == [(FEB.id, "send_template")]
    skips = {s.action: s.reason for s in dec.skip}
    assert set(skips) == {"brief_host", "invite"}
    assert all(r == "mötet har redan börjat" for r in skips.values())


def test_run_on_meeting_morning_before_start_invites_and_sends_one_host_mail():
    """Since hosts get one mail a day per meeting, the
    template (with the reminder) replaces the brief that is due the same morning."""
    now = FEB.start - timedelta(hours=2)
    dec = run([FEB], now)
    assert due(dec) == [(FEB.id, a) for a in ("invite", "send_template")]
    assert sorted(skipped(dec)) == [(FEB.id, "brief_host")]
    assert {s.reason for s in dec.skip} == {"ersatt av send_template samma dag"}


def test_first_run_long_after_meeting_without_go_live():
    """Changed when hosts got one mail a day: no chase before the template went out, no
    escalation before the chase (spacing from when each actually went out)."""
    dec = run([FEB], at(FEB.date + timedelta(days=30)))
    assert sorted(skipped(dec)) == sorted((FEB.id, a) for a in ("brief_host", "invite"))
    assert due(dec) == [(FEB.id, "send_template")]


def test_skipped_steps_once_recorded_are_not_skipped_again():
    now = FEB.start + timedelta(hours=3)
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}))}
    dec = run([FEB], now, state)
    assert dec.skip == [] and due(dec) == [(FEB.id, "send_template")]


def test_chase_and_escalate_not_due_when_minutes_filed():
    state = {FEB.id: MeetingState(settled=frozenset(STEPS[:3]), invitation=snap(FEB), minutes_filed=True)}
    for extra in (3, 7, 20):
        dec = run([FEB], at(FEB.date + timedelta(days=extra)), state)
        assert dec.due == []
        assert all(s.action in ("chase_host", "escalate") and s.reason == "protokollet har redan kommit in"
                   for s in dec.skip)
    dec = run([FEB], at(FEB.date + timedelta(days=7)), state)
    assert sorted(skipped(dec)) == [(FEB.id, "chase_host"), (FEB.id, "escalate")]


def test_template_not_sent_when_minutes_already_filed():
    state = {FEB.id: MeetingState(settled=frozenset(STEPS[:2]), invitation=snap(FEB), minutes_filed=True)}
    dec = run([FEB], at(FEB_DAYS["send_template"]), state)
    assert dec.due == [] and skipped(dec) == [(FEB.id, "send_template")]


def test_chase_without_minutes_then_escalate():
    state = {FEB.id: sent_state(STEPS[:3])}
    assert due(run([FEB], at(date(2023, 2, 8)), state)) == []
    assert due(run([FEB], at(date(2023, 2, 9)), state)) == [(FEB.id, "chase_host")]
    state = {FEB.id: sent_state(STEPS[:4])}
    assert due(run([FEB], at(date(2023, 2, 10)), state)) == []
    assert due(run([FEB], at(date(2023, 2, 13)), state)) == [(FEB.id, "escalate")]


# ------------------------------------------------------------ tentative meetings


def test_tentative_meeting_only_briefs_the_host():
    assert TRIP.tentative and TRIP.date == date(2023, 9, 25)
    brief_day = TRIP.date - timedelta(days=21)
    assert run([TRIP], at(brief_day - timedelta(days=1))).due == []
    assert due(run([TRIP], at(brief_day))) == [(TRIP.id, "brief_host")]
    state = {TRIP.id: MeetingState(settled=frozenset({"brief_host"}))}
    for i in (-14, -3, -1):
        dec = run([TRIP], at(TRIP.date + timedelta(days=i)), state)
        assert dec.due == [] and dec.skip == [], i  # waiting: the date may still be confirmed


def test_tentative_meeting_steps_are_skipped_after_its_start():
    state = {TRIP.id: MeetingState(settled=frozenset({"brief_host"}))}
    dec = run([TRIP], at(TRIP.date + timedelta(days=8)), state)
    assert dec.due == []
    assert sorted(skipped(dec)) == sorted((TRIP.id, s) for s in STEPS if s != "brief_host")
    assert all(s.reason == "datumet bekräftades aldrig (preliminärt)" for s in dec.skip)


def test_confirmed_tentative_meeting_gets_its_invitation():
    confirmed = dataclasses.replace(TRIP, tentative=False)
    state = {TRIP.id: MeetingState(settled=frozenset({"brief_host"}))}
    dec = run([confirmed], at(TRIP.date - timedelta(days=10)), state)
    assert due(dec) == [(TRIP.id, "invite")]


# ------------------------------------------------------------ plan changes


@pytest.mark.parametrize("change,expected", [
    (lambda m: moved(m, 7), ["start", "end"]),
    (lambda m: dataclasses.replace(m, end=m.end + timedelta(minutes=30)), ["end"]),
    (lambda m: dataclasses.replace(m, place="Göteborg, Nordstan"), ["location"]),
    (lambda m: dataclasses.replace(m, host=meeting("2023-03").host), ["host"]),
])
def test_update_invitation_when_meeting_changes(change, expected):
    changed = change(FEB)
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB))}
    dec = run([changed], at(FEB.date - timedelta(days=10)), state)
    assert due(dec) == [(FEB.id, "update_invitation")]
    assert dec.due[0].reason == "ändrat: " + ", ".join(expected)


def test_update_invitation_when_attendees_change():
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB))}
    more = {FEB.id: members_of(FEB) + ("innovation@svenskhandel.example.se",)}
    dec = run([FEB], at(FEB.date - timedelta(days=10)), state, attendees=more)
    assert due(dec) == [(FEB.id, "update_invitation")]
    assert dec.due[0].reason == "ändrat: attendees"
    same_order_changed = {FEB.id: tuple(reversed(members_of(FEB)))}
    assert run([FEB], at(FEB.date - timedelta(days=10)), state, attendees=same_order_changed).due == []


def test_unchanged_meeting_needs_no_update():
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB))}
    assert run([FEB], at(FEB.date - timedelta(days=10)), state).due == []


def test_no_update_after_the_meeting_ended():
    state = {FEB.id: MeetingState(settled=frozenset(STEPS[:3]), invitation=snap(FEB), minutes_filed=True)}
    dec = run([dataclasses.replace(FEB, place="Någon annanstans")], FEB.end + timedelta(minutes=1), state)
    assert "update_invitation" not in [a for _, a in due(dec)]


def test_cancel_invitation_when_meeting_becomes_tentative():
    tentative = dataclasses.replace(FEB, tentative=True)
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB))}
    dec = run([tentative], at(FEB.date - timedelta(days=10)), state)
    assert due(dec) == [(FEB.id, "cancel_invitation")]
    assert dec.due[0].reason == "datumet är inte längre bekräftat"
    # once cancelled, not again
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB, 1, cancelled=True))}
    assert run([tentative], at(FEB.date - timedelta(days=9)), state).due == []


def test_reconfirmed_meeting_gets_its_invitation_back():
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB, 1, cancelled=True))}
    dec = run([FEB], at(FEB.date - timedelta(days=10)), state)
    assert due(dec) == [(FEB.id, "update_invitation")]
    assert dec.due[0].reason == "datumet är bekräftat igen"


def test_cancel_invitation_of_removed_meeting():
    s = snap(FEB)
    dec = run([], at(FEB.date - timedelta(days=10)), orphans={FEB.id: s})
    assert due(dec) == [(FEB.id, "cancel_invitation")]
    assert dec.due[0].reason == "mötet är borttaget ur planen"
    # already cancelled, or in the past: nothing to do
    assert run([], at(FEB.date - timedelta(days=10)), orphans={FEB.id: dataclasses.replace(s, cancelled=True)}).due == []
    assert run([], FEB.start + timedelta(hours=1), orphans={FEB.id: s}).due == []


def test_cancellations_and_updates_come_first():
    mar = meeting("2023-03")
    state = {FEB.id: MeetingState(settled=frozenset({"brief_host", "invite"}), invitation=snap(FEB))}
    now = at(mar.date - timedelta(days=21))  # 13 Feb: March brief is due
    dec = run([moved(FEB, 14), mar], now, state, orphans={"2023-99": snap(mar)})
    assert [a for _, a in due(dec)][:2] == ["cancel_invitation", "update_invitation"]
    assert (mar.id, "brief_host") in due(dec)


# ------------------------------------------------------------ next_due_date


def test_next_due_date():
    assert next_due_date([FEB], {}, date(2023, 1, 1), LEAD) == date(2023, 1, 16)
    brief = {FEB.id: sent_state(["brief_host"])}
    assert next_due_date([FEB], brief, date(2023, 1, 16), LEAD) == date(2023, 1, 23)
    settled = {FEB.id: sent_state(["brief_host", "invite"])}
    assert next_due_date([FEB], settled, date(2023, 1, 10), LEAD) == date(2023, 2, 2)
    three = {FEB.id: sent_state(STEPS[:3])}
    assert next_due_date([FEB], three, date(2023, 2, 5), LEAD) == date(2023, 2, 9)
    # the chase waits for the template: nothing is due after the meeting until it went out
    tpl_skipped = {FEB.id: MeetingState(settled=frozenset(STEPS[:3]))}
    assert next_due_date([FEB], tpl_skipped, date(2023, 2, 5), LEAD) is None
    filed = {FEB.id: MeetingState(settled=frozenset(STEPS[:3]), minutes_filed=True)}
    assert next_due_date([FEB], filed, date(2023, 2, 5), LEAD) is None
    everything = {FEB.id: MeetingState(settled=frozenset(STEPS))}
    assert next_due_date([FEB], everything, date(2023, 1, 1), LEAD) is None


def test_next_due_date_over_the_year():
    ms = meetings()
    first = next_due_date(ms, {}, date(2022, 12, 1), LEAD)
    # 15 working days before Monday 2 January 2023; Monday 26 December is a holiday
    assert first == date(2022, 12, 9)
    assert next_due_date(ms, {}, date(2024, 1, 9), LEAD) is None
