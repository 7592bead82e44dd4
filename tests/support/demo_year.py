"""The workdir after ``kcg demo`` (the year, then the planning round), played once per test module."""

from __future__ import annotations

import os
from pathlib import Path

from support.helpers import CONFIG_DIR


def play_demo_year(base: Path) -> Path:
    """Run the demo's year and its planning round into ``base / "demo"`` against the test's Prefect server."""
    from prefect.settings import get_current_settings

    from kcg_mail.entrypoints.demo import run_demo
    from kcg_mail.entrypoints.demo_round import play_round

    wd = base / "demo"
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(get_current_settings().home)  # run_demo would point it at the workdir
    try:
        run_demo(wd, CONFIG_DIR, echo=lambda *a: None)
        play_round(wd, CONFIG_DIR, echo=lambda s: None)
    finally:
        if old is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old
    return wd
