"""Plan files for the years after 2023, written the way the network writes them
(one plan-YYYY.yaml per year)."""

from __future__ import annotations

from pathlib import Path

import yaml

from support.helpers import copy_config

ROTATION = ["maria", "daniel", "david", "armina", "pia", "monica", "hanna", "lena", "lisa", "linda", "aljosa",
            "jessica", "isabel"]


def plan_yaml(year: int) -> dict:
    """A year plan like the network writes: eleven meetings (no July), the
    physical meeting in January, hosts in turn."""
    meetings = []
    for i, month in enumerate(m for m in range(1, 13) if m != 7):
        meetings.append({"month": f"{year}-{month:02d}", "kind": "physical" if month == 1 else "digital",
                         "theme": f"Tema {year}-{month:02d}", "host": ROTATION[(i + year) % len(ROTATION)]})
    return {"year": year, "months_without_meeting": [f"{year}-07"], "meetings": meetings}


def config_for_years(tmp_path: Path, years=range(2024, 2028)) -> Path:
    """The shipped config plus plan files for more years. The shipped 2023
    plan ends with the January 2024 meeting, so plan-2024 starts in February."""
    d = copy_config(tmp_path)
    for y in years:
        data = plan_yaml(y)
        if y == 2024:
            data["meetings"] = [m for m in data["meetings"] if m["month"] != "2024-01"]
        (d / f"plan-{y}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d
