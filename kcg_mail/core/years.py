"""Year after year: one plan file per year, and what a missing plan means.

Pure. Plans live in ``config/plan-YYYY.yaml``; every run loads them all and
acts on the meetings around its own date, whichever file holds them. A plan
file holds the meetings of its year and may end with the January meeting of
the next year (the physical meeting that adopts the next plan), which may
equally be in the next year's file, but not in both.

From 1 October a year without a plan for the next year is a "needs a person"
item, and so is a year that has no plan at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from kcg_mail.core.config_model import Plan

#: the first month from which the next year's plan is asked for
NEXT_PLAN_MONTH = 10

_FILE_YEAR = re.compile(r"plan-(\d{4})\.yaml$")


def plan_file_problems(files: Sequence[tuple[str, Plan]]) -> list[str]:
    """Problems with the set of plan files, each naming file, field and fix."""
    problems: list[str] = []
    by_year: dict[int, str] = {}
    january: dict[str, list[str]] = {}
    for name, plan in files:
        m = _FILE_YEAR.search(name)
        if m is None:
            problems.append(f"{name}: the file name does not say its year (fix: name it plan-{plan.year}.yaml)")
        elif int(m.group(1)) != plan.year:
            problems.append(f"{name}: year: {plan.year} but the file is named for {m.group(1)} "
                            f"(fix: set year: {m.group(1)} or rename the file to plan-{plan.year}.yaml)")
        if plan.year in by_year:
            problems.append(f"{name}: year: {plan.year} is also the year of {by_year[plan.year]} "
                            f"(fix: one plan file per year)")
        by_year.setdefault(plan.year, name)
        next_january = f"{plan.year + 1}-01"
        for i, pm in enumerate(plan.meetings):
            if pm.month == next_january or (pm.month.startswith(f"{plan.year}-") and pm.month.endswith("-01")):
                january.setdefault(pm.month, [])
                if name not in january[pm.month]:
                    january[pm.month].append(name)
            if not pm.month.startswith(f"{plan.year}-") and pm.month != next_january:
                problems.append(
                    f"{name}: meetings[{i}] ({pm.month}).month: not in {plan.year} (fix: put it in "
                    f"plan-{pm.month[:4]}.yaml; only the January meeting of {plan.year + 1} may end this plan)")
    for month, names in sorted(january.items()):
        if len(names) > 1:
            problems.append(f"{' and '.join(names)}: the meeting of {month} is in both files "
                            f"(fix: keep it in one of them, either is fine)")
    return problems


def plan_years(plans: Sequence[Plan]) -> set[int]:
    return {p.year for p in plans}


def missing_plans(years: set[int], today: date) -> list[int]:
    """Years a person must write a plan for, as of ``today``: the current year
    when it has none, and from 1 October the next year when it has none."""
    out = []
    if today.year not in years:
        out.append(today.year)
    if today.month >= NEXT_PLAN_MONTH and today.year + 1 not in years:
        out.append(today.year + 1)
    return out


def missing_plan_items(years: set[int], today: date, has_meetings_ahead: bool) -> list[str]:
    """The "needs a person" lines (Swedish) for missing plans."""
    items = []
    for year in missing_plans(years, today):
        if year == today.year and has_meetings_ahead:
            continue  # e.g. only the January meeting from last year's file: still, next year's check applies
        why = ("inga möten planeras" if year == today.year
               else "från 1 oktober ska nästa års plan finnas")
        items.append(
            f"Det finns ingen årsplan för {year} ({why}). Planeringsrundan tar fram den: behov och röster "
            f"under hösten, och årsplanen antas när du svarar ja på frågan om den.")
    return items
