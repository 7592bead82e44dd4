"""The pure core: working days, go-live without a flood, spacing
from when a step actually went out, one mail a day per person and meeting,
and the years after 2023 (plan files, a missing next-year plan).

The simulation below walks the real ``decide``/``next_due_date`` over plans
for 2023-2027 from several go-live dates, settling each step the way the
daily run does, and checks the promises on everything that would go out."""

from __future__ import annotations

from datetime import date

import pytest
import yaml
from support.helpers import at, meeting, shipped_config
from support.years import config_for_years, plan_yaml

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core.cycle import HOST_STEPS, STEPS, MeetingState, decide, is_history, next_due_date, step_dates
from kcg_mail.core.plan import add_working_days, is_working_day, resolve_plan
from kcg_mail.core.years import missing_plan_items, missing_plans, plan_file_problems

CFG = shipped_config()
LEAD = CFG.meetings.lead_days
FEB = meeting("2023-02")  # Monday 6 February 2023

# ------------------------------------------------------------------ working days


@pytest.mark.parametrize("start,n,expected", [
    (date(2023, 2, 6), -1, date(2023, 2, 3)),     # Monday -> Friday, not Sunday
    (date(2024, 4, 2), -1, date(2024, 3, 28)),    # Easter: Good Friday and Easter Monday are holidays
    (date(2024, 3, 28), 1, date(2024, 4, 2)),
    (date(2025, 1, 7), -1, date(2025, 1, 3)),     # 6 January (Trettondedag jul) is a Monday
    # Midsummer Eve is no public holiday in `holidays` (list it in extra_non_working_days if wanted)
    (date(2026, 6, 22), -1, date(2026, 6, 19)),
    (date(2023, 12, 27), -2, date(2023, 12, 21)),  # 25 and 26 December, then the weekend
    (date(2023, 2, 4), 0, date(2023, 2, 6)),      # Saturday moved to Monday
])
def test_add_working_days(start, n, expected):
    assert add_working_days(start, n) == expected


def test_extra_days_off_are_not_working_days():
    assert add_working_days(date(2023, 2, 6), -1, frozenset({date(2023, 2, 3)})) == date(2023, 2, 2)


def test_no_mail_on_weekends_or_public_holidays():
    state = {FEB.id: MeetingState()}
    for day in (date(2023, 1, 21), date(2023, 1, 22), date(2023, 1, 6)):  # Saturday, Sunday, Epiphany
        assert not is_working_day(day)
        dec = decide([FEB], state, at(day), LEAD, {})
        assert dec.due == [] and dec.skip == []


def test_template_for_a_monday_meeting_goes_out_two_working_days_before_on_thursday():
    dates = step_dates(FEB, MeetingState(), LEAD)
    assert dates["send_template"] == date(2023, 2, 2) and dates["send_template"].weekday() == 3


# ------------------------------------------------------------------ go-live


def test_meetings_before_go_live_are_history():
    go = date(2023, 6, 12)  # a Monday in June 2023
    ms = resolve_plan(CFG)
    dec = decide(ms, {}, at(go), LEAD, {}, go_live=go)
    before = [m for m in ms if m.date < go]
    assert {m.id for m in before} == {"2023-01", "2023-02", "2023-03", "2023-04", "2023-05", "2023-06"}
    sent = {(d.meeting_id, d.action) for d in dec.due}
    # June was held on 5 June, 5 working days before go-live: history too (late_template is 3)
    assert not any(mid in {m.id for m in before} for mid, _ in sent)
    skipped = {(s.meeting_id, s.action) for s in dec.skip}
    assert skipped == {(m.id, s) for m in before for s in STEPS}
    assert all(s.reason == "mötet hölls före start (2023-06-12)" for s in dec.skip)
    assert all(is_history(m, go) for m in before)


def test_first_run_mid_year_sends_at_most_one_mail_per_host():
    """The bug: `kcg daily --date 2023-06-10` sent 17 mails for January to June."""
    go = date(2023, 6, 12)
    ms = resolve_plan(CFG)
    dec = decide(ms, {}, at(go), LEAD, {}, go_live=go)
    per_meeting: dict[str, list[str]] = {}
    for d in dec.due:
        per_meeting.setdefault(d.meeting_id, []).append(d.action)
    # only August (held 7 August, briefed 15 working days before = 17 July) is near: nothing is due yet
    assert per_meeting == {}
    assert next_due_date(ms, {}, go, LEAD, go_live=go) == date(2023, 7, 17)


def test_meeting_held_a_few_days_before_go_live_still_gets_its_template_then_the_chase():
    go = date(2023, 2, 8)  # Wednesday: February was on Monday 6 February, 2 working days before
    dec = decide([FEB], {}, at(go), LEAD, {}, go_live=go)
    assert [(d.meeting_id, d.action) for d in dec.due] == [(FEB.id, "send_template")]
    assert {s.action for s in dec.skip} == {"brief_host", "invite"}
    sent = MeetingState(settled=frozenset(STEPS[:3]), sent_on={"send_template": go})
    # the planned chase day (9 February) is too close: at least 2 working days after the template
    assert decide([FEB], {FEB.id: sent}, at(date(2023, 2, 9)), LEAD, {}, go_live=go).due == []
    assert next_due_date([FEB], {FEB.id: sent}, go, LEAD, go_live=go) == date(2023, 2, 10)
    dec = decide([FEB], {FEB.id: sent}, at(date(2023, 2, 10)), LEAD, {}, go_live=go)
    assert [(d.meeting_id, d.action) for d in dec.due] == [(FEB.id, "chase_host")]


def test_meeting_held_more_than_a_few_days_before_go_live_gets_nothing():
    go = date(2023, 2, 10)  # 4 working days after 6 February
    dec = decide([FEB], {}, at(go), LEAD, {}, go_live=go)
    assert dec.due == [] and {s.action for s in dec.skip} == set(STEPS)


def test_go_live_two_days_before_a_meeting():
    """Brief and invitation are late and the template is due: the invitation goes out and
    the host gets one mail (the reminder with the template), not the brief as well."""
    go = date(2023, 2, 2)  # Thursday before Monday 6 February
    dec = decide([FEB], {}, at(go), LEAD, {}, go_live=go)
    assert [(d.meeting_id, d.action) for d in dec.due] == [(FEB.id, "invite"), (FEB.id, "send_template")]
    assert [(s.action, s.reason) for s in dec.skip] == [("brief_host", "ersatt av send_template samma dag")]
    st = MeetingState(settled=frozenset({"brief_host", "invite", "send_template"}),
                      sent_on={"invite": go, "send_template": go})
    assert next_due_date([FEB], {FEB.id: st}, go, LEAD, go_live=go) == date(2023, 2, 9)  # the chase


def test_host_step_waits_when_the_host_already_got_a_mail_today():
    day = date(2023, 2, 2)
    # the brief went out today in an earlier run (a late brief): the template waits a day
    st = MeetingState(settled=frozenset({"brief_host", "invite"}), sent_on={"brief_host": day})
    assert decide([FEB], {FEB.id: st}, at(day, 15), LEAD, {}).due == []
    assert next_due_date([FEB], {FEB.id: st}, day, LEAD) == date(2023, 2, 3)
    assert [(d.action) for d in decide([FEB], {FEB.id: st}, at(date(2023, 2, 3)), LEAD, {}).due] == ["send_template"]


def test_no_chase_when_the_template_never_went_out():
    st = MeetingState(settled=frozenset(STEPS[:3]))  # all skipped
    dec = decide([FEB], {FEB.id: st}, at(date(2023, 2, 9)), LEAD, {})
    assert dec.due == [] and [(s.action, s.reason) for s in dec.skip] == [("chase_host", "mallen skickades aldrig")]


# ------------------------------------------------------------------ years


def test_plan_files_for_several_years_load(tmp_path):
    cfg = load_config(config_for_years(tmp_path), environ={})
    years = sorted({m.date.year for m in resolve_plan(cfg)})
    assert years == [2023, 2024, 2025, 2026, 2027]
    assert len(resolve_plan(cfg, 2025)) == 11


def test_january_meeting_in_both_files_names_both(tmp_path):
    d = config_for_years(tmp_path, [2024])
    data = yaml.safe_load((d / "plan-2024.yaml").read_text(encoding="utf-8"))
    data["meetings"].insert(0, plan_yaml(2024)["meetings"][0])
    (d / "plan-2024.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(d, environ={})
    (p,) = [p for p in info.value.problems if "2024-01" in p]
    assert "plan-2023.yaml" in p and "plan-2024.yaml" in p and "in both files" in p and "fix:" in p


def test_january_meeting_may_be_in_the_next_years_file_instead(tmp_path):
    d = config_for_years(tmp_path, [2024])
    p23 = yaml.safe_load((d / "plan-2023.yaml").read_text(encoding="utf-8"))
    jan = [m for m in p23["meetings"] if m["month"] == "2024-01"]
    p23["meetings"] = [m for m in p23["meetings"] if m["month"] != "2024-01"]
    (d / "plan-2023.yaml").write_text(yaml.safe_dump(p23, allow_unicode=True), encoding="utf-8")
    p24 = yaml.safe_load((d / "plan-2024.yaml").read_text(encoding="utf-8"))
    p24["meetings"] = jan + p24["meetings"]
    (d / "plan-2024.yaml").write_text(yaml.safe_dump(p24, allow_unicode=True), encoding="utf-8")
    cfg = load_config(d, environ={})
    assert [m.id for m in resolve_plan(cfg) if m.month == "2024-01"] == ["2024-01"]


def test_meeting_outside_the_plan_year_and_misnamed_file():
    plan = CFG.plans[0]
    wrong = plan.model_copy(update={"meetings": plan.meetings + [plan.meetings[1].model_copy(update={"month": "2024-03"})]})
    problems = plan_file_problems([("config/plan-2023.yaml", wrong), ("config/plan-2025.yaml", plan)])
    assert any("meetings[12] (2024-03).month: not in 2023" in p and "plan-2024.yaml" in p for p in problems)
    assert any("year: 2023 but the file is named for 2025" in p for p in problems)


@pytest.mark.parametrize("today,years,expected", [
    (date(2026, 9, 30), {2026}, []),
    (date(2026, 10, 1), {2026}, [2027]),
    (date(2026, 10, 1), {2026, 2027}, []),
    (date(2026, 11, 29), {2023}, [2026, 2027]),
    (date(2027, 3, 1), {2026, 2027}, []),
])
def test_missing_plans(today, years, expected):
    assert missing_plans(years, today) == expected


def test_missing_plan_item_says_what_to_do():
    (item,) = missing_plan_items({2026}, date(2026, 10, 1), True)
    # the coordinator reads it: what is missing and how it comes about, no file and no command
    assert "ingen årsplan för 2027" in item and "svarar ja" in item
    assert "config/" not in item and "kcg " not in item and ".yaml" not in item


# ------------------------------------------------------------------ the years, simulated


@pytest.mark.parametrize("go_live", [date(2023, 1, 16), date(2023, 6, 10), date(2024, 4, 1), date(2025, 1, 7),
                                     date(2026, 11, 29), date(2027, 3, 3)])
def test_simulated_years_from_go_live(tmp_path, go_live):
    """From go-live to the end of 2027, no host ever answers: every promise
    of go-live holds on everything that would go out."""
    cfg = load_config(config_for_years(tmp_path), environ={})
    ms = resolve_plan(cfg)
    settled: dict[str, set[str]] = {}
    sent_on: dict[str, dict[str, date]] = {}
    out: list[tuple[date, str, str]] = []
    day: date | None = go_live
    while day is not None and day <= date(2028, 2, 1):
        states = {m.id: MeetingState(frozenset(settled.get(m.id, ())), None, False, dict(sent_on.get(m.id, {})))
                  for m in ms}
        dec = decide(ms, states, at(day), cfg.meetings.lead_days, {}, go_live=go_live)
        for s in dec.skip:
            settled.setdefault(s.meeting_id, set()).add(s.action)
        for d in dec.due:
            settled.setdefault(d.meeting_id, set()).add(d.action)
            sent_on.setdefault(d.meeting_id, {})[d.action] = day
            out.append((day, d.meeting_id, d.action))
        states = {m.id: MeetingState(frozenset(settled.get(m.id, ())), None, False, dict(sent_on.get(m.id, {})))
                  for m in ms}
        day = next_due_date(ms, states, day, cfg.meetings.lead_days, go_live=go_live)
    by_id = {m.id: m for m in ms}
    grace = add_working_days(go_live, -LEAD.late_template)
    assert out, "something goes out"
    for when, mid, action in out:
        m = by_id[mid]
        assert when >= go_live and is_working_day(when), (when, mid, action)
        assert m.date >= grace, f"{mid} was held before go-live but got {action}"
        if m.date < go_live:
            assert action in ("send_template", "chase_host", "escalate"), (mid, action)
    host_mails = [(when, mid) for when, mid, action in out if action in HOST_STEPS]
    assert len(host_mails) == len(set(host_mails)), "a host got two mails about one meeting on one day"
    for mid in {mid for _, mid, _ in out}:
        on = sent_on[mid]
        if "chase_host" in on:
            assert on["chase_host"] >= add_working_days(on["send_template"], LEAD.spacing)
            assert on["chase_host"] >= add_working_days(by_id[mid].date, LEAD.chase_host)
        if "escalate" in on:
            assert on["escalate"] >= add_working_days(on["chase_host"], LEAD.spacing)
    # every confirmed meeting from go-live on got its template, chase and escalation, each once
    upcoming = [m for m in ms if m.date >= go_live and not m.tentative and m.date <= date(2027, 12, 31)]
    for m in upcoming:
        actions = [a for _, mid, a in out if mid == m.id]
        for step in ("invite", "send_template", "chase_host", "escalate"):
            assert actions.count(step) == 1, (m.id, step, actions)
    # the very first day sends at most one mail per host and meeting
    first_day = [(mid, a) for when, mid, a in out if when == min(w for w, _, _ in out) and a in HOST_STEPS]
    assert len(first_day) == len({mid for mid, _ in first_day})
