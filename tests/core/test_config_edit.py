"""Confirming a meeting's date edits the coordinator's plan file through a
round-trip YAML parser: only the entry's ``date``/``tentative`` lines change;
comments, quotes, order, indentation and line endings stay as they were."""

from __future__ import annotations

import difflib
from datetime import date

import pytest

from kcg_mail.config_edit import PlanEditProblem, confirm_date
from kcg_mail.config_loader import DEFAULT_CONFIG_DIR

PLAN_2023 = (DEFAULT_CONFIG_DIR / "plan-2023.yaml").read_text(encoding="utf-8")


def _changed(old: str, new: str) -> list[str]:
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_only_the_entry_s_date_lines_change():
    new = confirm_date(PLAN_2023, "2023-10", date(2023, 9, 27))
    assert _changed(PLAN_2023, new) == ["-    date: 2023-09-25", "-    tentative: true",
                                        "+    date: 2023-09-27", "+    tentative: false"]


def test_an_entry_without_a_date_gets_both_lines_at_its_end():
    new = confirm_date(PLAN_2023, "2023-05", date(2023, 5, 8))
    assert _changed(PLAN_2023, new) == ["+    date: 2023-05-08", "+    tentative: false"]
    lines = new.splitlines()
    assert lines[lines.index("    host: armina") + 1:][:3] == ["    date: 2023-05-08", "    tentative: false",
                                                               '  - month: "2023-06"']


def test_comments_next_to_the_entry_and_other_layouts_stay():
    text = ('# the plan\nyear: 2031\nmeetings:\n- month: "2031-02"  # moved?\n  host: anna   # asked\n'
            "  # the last line of the entry\n- month: '2031-03'\n  host: bo\n")
    new = confirm_date(text, "2031-02", date(2031, 2, 10))
    assert "- month: \"2031-02\"  # moved?" in new and "  host: anna   # asked" in new
    assert "- month: '2031-03'" in new and "# the last line of the entry" in new
    assert "  date: 2031-02-10\n" in new and "  tentative: false\n" in new


def test_windows_line_endings_stay():
    new = confirm_date(PLAN_2023.replace("\n", "\r\n"), "2023-05", date(2023, 5, 8))
    assert new.count("\r\n") == new.count("\n") == PLAN_2023.count("\n") + 2


def test_no_such_entry_or_no_yaml_is_a_problem_not_a_changed_file():
    with pytest.raises(PlanEditProblem, match="2023-07"):
        confirm_date(PLAN_2023, "2023-07", date(2023, 7, 3))
    with pytest.raises(PlanEditProblem, match="not valid YAML"):
        confirm_date("meetings: [\n  - month: {", "2023-05", date(2023, 5, 8))
    with pytest.raises(PlanEditProblem):
        confirm_date("just a line of text\n", "2023-05", date(2023, 5, 8))
