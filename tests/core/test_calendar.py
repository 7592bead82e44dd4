"""Calendar rules: first Monday of the month, moved past Swedish public
holidays by the configured policy; explicit dates win; `kcg plan --json`."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from support.helpers import CONFIG_DIR, config_with, shipped_config
from typer.testing import CliRunner

from kcg_mail.core.plan import apply_holiday_policy, date_text, first_monday, is_working_day, resolve_meeting, resolve_plan
from kcg_mail.entrypoints.cli import app as cli


def _with_rules(**rules):
    cfg = shipped_config()
    return cfg.model_copy(update={"meetings": cfg.meetings.model_copy(update=rules)})


def _dates(cfg) -> dict[str, date]:
    return {m.id: m.date for m in resolve_plan(cfg)}


# ------------------------------------------------------------ first Monday


@pytest.mark.parametrize("year,month,expected", [
    (2023, 1, date(2023, 1, 2)),
    (2023, 2, date(2023, 2, 6)),
    (2023, 5, date(2023, 5, 1)),   # the 1st is itself a Monday
    (2023, 10, date(2023, 10, 2)),
    (2024, 1, date(2024, 1, 1)),
    (2024, 9, date(2024, 9, 2)),
    (2025, 1, date(2025, 1, 6)),
    (2026, 4, date(2026, 4, 6)),
    (2026, 2, date(2026, 2, 2)),
])
def test_first_monday(year, month, expected):
    d = first_monday(year, month)
    assert d == expected
    assert d.weekday() == 0 and d.month == month and d.day <= 7


def test_first_monday_every_month_of_a_decade():
    for year in range(2020, 2031):
        for month in range(1, 13):
            d = first_monday(year, month)
            assert d.weekday() == 0 and d.month == month and (d - timedelta(days=7)).month != month


# ------------------------------------------------------------ holidays


@pytest.mark.parametrize("holiday,moved,why", [
    (date(2023, 5, 1), date(2023, 5, 2), "Första maj"),
    (date(2024, 1, 1), date(2024, 1, 2), "Nyårsdagen"),
    (date(2025, 1, 6), date(2025, 1, 7), "Trettondedag jul"),
    (date(2026, 4, 6), date(2026, 4, 7), "Annandag påsk"),
])
def test_holiday_moves_to_next_working_day(holiday, moved, why):
    assert not is_working_day(holiday), why
    assert is_working_day(moved)
    assert apply_holiday_policy(holiday, "next_working_day") == moved


@pytest.mark.parametrize("holiday,previous", [
    (date(2023, 5, 1), date(2023, 4, 28)),   # back over the weekend to Friday
    (date(2024, 1, 1), date(2023, 12, 29)),  # into the previous year
    (date(2025, 1, 6), date(2025, 1, 3)),
    (date(2026, 4, 6), date(2026, 4, 2)),    # Långfredag 3 April is a holiday too
])
def test_previous_working_day_policy(holiday, previous):
    assert apply_holiday_policy(holiday, "previous_working_day") == previous


def test_keep_policy():
    for d in (date(2023, 5, 1), date(2024, 1, 1), date(2025, 1, 6), date(2026, 4, 6)):
        assert apply_holiday_policy(d, "keep") == d


def test_working_day_is_not_moved():
    d = date(2023, 2, 6)
    for policy in ("next_working_day", "previous_working_day", "keep"):
        assert apply_holiday_policy(d, policy) == d


def test_weekends_and_public_holidays_are_not_working_days():
    assert not is_working_day(date(2023, 2, 4))  # Saturday
    assert not is_working_day(date(2023, 2, 5))  # Sunday
    assert not is_working_day(date(2023, 5, 18))  # Kristi himmelfärdsdag
    assert not is_working_day(date(2023, 12, 25))
    assert is_working_day(date(2023, 6, 22))


def test_extra_non_working_days_in_policy():
    extra = frozenset({date(2023, 5, 2)})
    assert apply_holiday_policy(date(2023, 5, 1), "next_working_day", extra) == date(2023, 5, 3)
    assert apply_holiday_policy(date(2023, 2, 6), "next_working_day", frozenset({date(2023, 2, 6)})) == date(2023, 2, 7)


# ------------------------------------------------------------ resolved plan


def test_shipped_plan_dates():
    d = _dates(shipped_config())
    assert d["2023-01"] == date(2023, 1, 2)
    assert d["2023-02"] == date(2023, 2, 6)
    assert d["2023-05"] == date(2023, 5, 2)     # 1 May is a holiday
    assert d["2023-10"] == date(2023, 9, 25)    # tentative study trip, proposed v 39
    assert d["2024-01"] == date(2024, 1, 2)     # New Year's Day
    assert "2023-07" not in d
    for mid, day in d.items():
        if mid not in ("2023-05", "2023-10", "2024-01"):
            assert day == first_monday(day.year, day.month), mid


def test_plan_policy_previous_working_day():
    d = _dates(_with_rules(holiday_policy="previous_working_day"))
    assert d["2023-05"] == date(2023, 4, 28)
    assert d["2024-01"] == date(2023, 12, 29)
    assert d["2023-02"] == date(2023, 2, 6)


def test_plan_policy_keep():
    d = _dates(_with_rules(holiday_policy="keep"))
    assert d["2023-05"] == date(2023, 5, 1)
    assert d["2024-01"] == date(2024, 1, 1)


def test_plan_extra_non_working_days():
    d = _dates(_with_rules(extra_non_working_days=[date(2023, 3, 6), date(2023, 5, 2)]))
    assert d["2023-03"] == date(2023, 3, 7)
    assert d["2023-05"] == date(2023, 5, 3)
    assert d["2023-04"] == date(2023, 4, 3)


def test_date_override_wins_over_rule_and_policy():
    cfg = config_with(shipped_config(), ["2023-02", "2023-05"],
                      **{"2023-02": {"date": date(2023, 2, 13)}, "2023-05": {"date": date(2023, 5, 1)}})
    d = _dates(cfg)
    assert d == {"2023-02": date(2023, 2, 13), "2023-05": date(2023, 5, 1)}


def test_time_override_and_kind_times():
    cfg = shipped_config()
    pm = next(p for p in cfg.all_meetings() if p.month == "2023-03")
    m = resolve_meeting(cfg, pm)
    assert (m.start.hour, m.start.minute, m.end.hour) == (9, 0, 10)  # digital
    from datetime import time

    m2 = resolve_meeting(cfg, pm.model_copy(update={"start": time(13, 30), "end": time(15, 0)}))
    assert (m2.start.hour, m2.start.minute, m2.end.hour) == (13, 30, 15)
    aug = next(m for m in resolve_plan(cfg) if m.id == "2023-08")
    assert (aug.start.hour, aug.end.hour) == (10, 15)  # all_members


def test_times_are_aware_and_follow_daylight_saving():
    ms = {m.id: m for m in resolve_plan(shipped_config())}
    assert ms["2023-03"].start.utcoffset() == timedelta(hours=1)  # before 26 March
    assert ms["2023-04"].start.utcoffset() == timedelta(hours=2)
    assert ms["2023-11"].start.utcoffset() == timedelta(hours=1)
    assert all(m.start.tzinfo is not None and m.end > m.start for m in ms.values())


def test_plan_is_sorted_and_cancelled_meetings_are_left_out():
    cfg = config_with(shipped_config(), ["2023-02", "2023-03", "2023-04"], **{"2023-03": {"cancelled": True}})
    assert [m.id for m in resolve_plan(cfg)] == ["2023-02", "2023-04"]
    ms = resolve_plan(shipped_config())
    assert [m.start for m in ms] == sorted(m.start for m in ms)


def test_swedish_date_text():
    assert date_text(date(2023, 2, 6)) == "måndag 6 februari 2023"
    assert date_text(date(2023, 5, 2)) == "tisdag 2 maj 2023"


# ------------------------------------------------------------ kcg plan --json

REQUIRED = {"id", "date", "start", "end", "kind", "kind_label", "theme_no", "theme", "host", "backup_host",
            "tentative", "proposed", "comment", "guests", "place", "link"}


def test_cli_plan_json():
    result = CliRunner().invoke(cli, ["plan", "--year", "2023", "--json", "--config", str(CONFIG_DIR)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 12
    for row in rows:
        assert REQUIRED <= set(row), REQUIRED - set(row)
        start, end = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"])
        assert start.tzinfo is not None and end > start
        assert start.date().isoformat() == row["date"]
    by_id = {r["id"]: r for r in rows}
    may, jan = by_id["2023-05"], by_id["2024-01"]
    assert may["date"] == "2023-05-02"
    assert may["start"] == "2023-05-02T09:00:00+02:00" and may["end"] == "2023-05-02T10:00:00+02:00"
    assert jan["date"] == "2024-01-02"
    assert jan["start"] == "2024-01-02T10:00:00+01:00" and jan["end"] == "2024-01-02T16:00:00+01:00"
    assert by_id["2023-10"]["tentative"] is True and by_id["2023-10"]["proposed"] == "Förslag v 39 (sept)"
    assert by_id["2023-08"]["guests"] == ["Innovationschef Svensk Handel"]


def test_cli_plan_other_year_is_empty():
    result = CliRunner().invoke(cli, ["plan", "--year", "2031", "--json", "--config", str(CONFIG_DIR)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_cli_plan_reports_config_problems(tmp_path):
    from support.helpers import copy_config

    d = copy_config(tmp_path)
    f = d / "plan-2023.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("host: daniel", "host: danne", 1), encoding="utf-8")
    result = CliRunner().invoke(cli, ["plan", "--json", "--config", str(d)])
    assert result.exit_code == 2
    assert "danne" in result.output
