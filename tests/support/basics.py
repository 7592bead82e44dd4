"""The pure test helpers: the shipped config, its meetings, simulated times.

Imports only the config loader and the core, so a test module that needs
nothing else stays in the ``core`` marker (derived from imports in conftest).
tests/support/helpers.py re-exports everything here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from kcg_mail.config_loader import Config, load_config
from kcg_mail.core.plan import Meeting, resolve_plan

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
TZ = ZoneInfo("Europe/Stockholm")


@lru_cache(maxsize=1)
def shipped_config() -> Config:
    """The shipped config/ (environment overrides ignored)."""
    return load_config(CONFIG_DIR, environ={})


def copy_config(tmp_path: Path) -> Path:
    """A writable copy of config/ to break in a test."""
    dst = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, dst)
    return dst


def meetings(cfg: Config | None = None) -> list[Meeting]:
    return resolve_plan(cfg or shipped_config())


def meeting(mid: str, cfg: Config | None = None) -> Meeting:
    return next(m for m in meetings(cfg) if m.id == mid)


def config_with(cfg: Config, ids: Iterable[str], **changes: dict) -> Config:
    """``cfg`` with its plans reduced to the meetings ``ids``; ``changes`` maps
    a meeting id to field updates of its PlannedMeeting (date, tentative, ...)."""
    ids = set(ids)
    plans = []
    for p in cfg.plans:
        kept = [pm.model_copy(update=changes.get(pm.meeting_id, {})) for pm in p.meetings if pm.meeting_id in ids]
        plans.append(p.model_copy(update={"meetings": kept}))
    return cfg.model_copy(update={"plans": plans})


def rule_dated(cfg: Config) -> Config:
    """``cfg`` as a network whose dates all follow the calendar rule: no kind waits for the
    coordinator's date and no tentative date is asked about (``meetings.yaml`` ``kinds``,
    ``confirm_weeks``; those are tests/e2e/test_meeting_dates.py's subject)."""
    rules = cfg.meetings.model_copy(update={"kinds": {}, "confirm_weeks": []})
    return cfg.model_copy(update={"meetings": rules})


def small_network(cfg: Config, keep: Iterable[str]) -> Config:
    """``cfg`` with only the members ``keep`` (ids): smaller mails, same rules."""
    keep = set(keep)
    net = cfg.network.model_copy(update={"members": [p for p in cfg.network.members if p.id in keep]})
    return cfg.model_copy(update={"network": net})


def at(d: date | str, hour: int | str = 7, minute: int = 0) -> datetime:
    """A moment in Stockholm time: ``at(date(2023, 2, 20), 11)`` or
    ``at("2023-02-20", "11:30")``. The one ``at`` of the suite."""
    if isinstance(d, str):
        d = date.fromisoformat(d)
    if isinstance(hour, str):
        hh, _, mm = hour.partition(":")
        hour, minute = int(hh), int(mm or 0)
    return datetime.combine(d, time(hour, minute), tzinfo=TZ)


def kcg_test_config(tmp_path: Path, environ: dict[str, str] | None = None) -> Config:
    """config/ with every address moved to @kcg.test, the only domain the test
    Postfix delivers (to Dovecot over LMTP)."""
    import re

    dst = tmp_path / "config-kcg-test"
    shutil.copytree(CONFIG_DIR, dst)
    net = dst / "network.yaml"
    net.write_text(re.sub(r"\b([a-z0-9._-]+)@[a-z0-9.-]+\.example\.(?:se|org)\b", r"\1@kcg.test",
                          net.read_text(encoding="utf-8")), encoding="utf-8")
    return load_config(dst, environ=environ or {})


def server_users(cfg: Config, password_of=lambda e: "pw-" + e.partition("@")[0]) -> dict[str, str]:
    """Every address of the network as a user of the test mail server."""
    emails = {p.email for p in cfg.network.members + cfg.network.guests} | {cfg.network.mailbox.email}
    return {e: password_of(e) for e in sorted(emails)}
