"""Shared wiring for the flows: building the app, publishing what the
coordinator sees in the Prefect UI, naming runs, and the failure alert."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from kcg_mail.bootstrap import bootstrap
from kcg_mail.services.app import App, now_local
from kcg_mail.services.status import meeting_rows, needs_a_person, run_summary

TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
YEAR_PLAN_KEY = "kcg-year-plan"
SUMMARY_KEY = "kcg-run-summary"


def make_app(workdir: str, config_dir: str | None) -> App:
    from kcg_mail.services.alerts import snapshot_config

    workdir = workdir or os.environ.get("KCG_WORKDIR", "var")
    app = bootstrap(workdir, config_dir or os.environ.get("KCG_CONFIG_DIR"))
    snapshot_config(app, workdir)  # the failure alert falls back to it when the config breaks
    return app


def when(app: App, date: str | None, at: str | None = None) -> datetime:
    at = at or app.cfg.meetings.send_at.strftime("%H:%M")
    if date:
        return now_local(app.cfg, datetime.fromisoformat(f"{date}T{at}").replace(tzinfo=now_local(app.cfg).tzinfo))
    return now_local(app.cfg)


def rename_run(name: str) -> None:
    """Name the run after what it did ("intake: 2 protokoll")."""
    run_id = runtime.flow_run.id
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(run_id, name=name)


def publish(app: App, title: str, lines: list[str], extra_attention: list[str] | None = None) -> str:
    attention = (extra_attention or []) + needs_a_person(app)
    md = run_summary(title, lines, attention)
    if runtime.flow_run.id:
        create_table_artifact(table=meeting_rows(app), key=YEAR_PLAN_KEY,
                              description="Årsplanen med status för varje möte")
        create_markdown_artifact(markdown=md, key=SUMMARY_KEY, description=title)
    get_run_logger().info("%s: %d actions, %d need a person", title, len(lines), len(attention))
    if hasattr(app.state, "backup"):  # the state as this run left it (state_guard: rotated, only when changed)
        from kcg_mail.state_guard import keep_backup

        keep_backup(app.state)
    return md


def _hook_logger() -> logging.Logger:
    """Prefect's logger tree: shown in the terminal and in the run's log in the UI."""
    from prefect.logging import get_logger

    return get_logger("kcg.alerts")


def alert_on_failure(flow, flow_run, state) -> None:
    """on_failure hook: one alert mail per problem (keyed by flow, day and error)."""
    from kcg_mail.bootstrap import alert_app
    from kcg_mail.services.alerts import send_failure_alert

    params = flow_run.parameters or {}
    try:
        app, note = alert_app(params.get("workdir") or os.environ.get("KCG_WORKDIR", "var"),
                              params.get("config_dir") or os.environ.get("KCG_CONFIG_DIR"))
        outcome = send_failure_alert(app, flow.name, flow_run, state, note=note)
        _hook_logger().info("failure alert for %s: %s", flow_run.name, outcome)
    except Exception:  # the alert must never mask the failure itself
        _hook_logger().exception("could not send the failure alert")
