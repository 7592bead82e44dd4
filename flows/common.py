"""Shared wiring for the flows: building the app, publishing what the
coordinator sees in the Prefect UI, naming runs, and the failure alert.

Every run (daily, intake, manual) rewrites the network's standing overview,
the markdown artifact ``<short>-oversikt`` (the table of meetings and the
"behöver en människa" list, ``kcg_mail.core.overview``); a run that did
something also writes ``<short>-korning`` (what this run did)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from kcg_mail.bootstrap import bootstrap
from kcg_mail.services.app import App, now_local
from kcg_mail.services.status import artifact_slug, overview_markdown, run_summary

TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@contextlib.contextmanager
def untagged_tasks() -> Iterator[None]:
    """Run the tasks inside without the tags the flow run was started with.

    A task run that carries tags first asks the Prefect server for the tags'
    concurrency slots (``prefect.task_engine``: one acquisition per task run,
    even when no limit exists). The push path of ``kcg serve`` starts its
    intake runs under ``tags("kcg", "listener")``; measured on the benchmark
    stack, about one acquisition in ten took 2.2-2.5 s, which was the whole
    of the latency above the goal. The flow run keeps its tags (the UI filters
    by them); its task runs need none."""
    from prefect.context import TagsContext

    with TagsContext(current_tags=set()):
        yield


def as_input(value: Any) -> Any:
    """A task input Prefect passes on as it is, without walking through it.

    Before every task run Prefect visits each input, recursively, looking for
    futures and states to resolve and to record as upstream dependencies. The
    App (config, plan, adapters, state) is a large object graph with neither:
    walking it cost about 15 ms a task run. ``quote`` tells Prefect not to
    look inside; the task still receives the App itself."""
    from prefect.utilities.annotations import quote

    return quote(value)


def overview_key(app: App) -> str:
    return f"{artifact_slug(app)}-oversikt"


def summary_key(app: App) -> str:
    return f"{artifact_slug(app)}-korning"


def workdir_and_config(workdir: str | None = None, config_dir: str | None = None) -> tuple[str, str | None]:
    """Where a run works: the parameters when given, else what the deployment
    bound in the environment (``KCG_WORKDIR``, ``KCG_CONFIG_DIR``)."""
    return (workdir or os.environ.get("KCG_WORKDIR") or "var",
            config_dir or os.environ.get("KCG_CONFIG_DIR") or None)


def make_app(workdir: str | None = None, config_dir: str | None = None) -> App:
    from kcg_mail.services.alerts import retry_pending_alerts, snapshot_config

    workdir, config_dir = workdir_and_config(workdir, config_dir)
    app = bootstrap(workdir, config_dir)
    snapshot_config(app, workdir)  # the failure alert falls back to it when the config breaks
    retry_pending_alerts(app, _run_logger())  # an alert that failed before goes out now
    return app


def when(app: App, date: str | None, at: str | None = None) -> datetime:
    at = at or app.cfg.meetings.send_at.strftime("%H:%M")
    if date:
        return now_local(app.cfg, datetime.fromisoformat(f"{date}T{at}").replace(tzinfo=now_local(app.cfg).tzinfo))
    return now_local(app.cfg)


def pretend_today() -> str | None:
    """Tests pretend a day for the manual flows through the deployment's
    environment (``KCG_TODAY``), never through the form."""
    return os.environ.get("KCG_TODAY") or None


def rename_run(name: str) -> None:
    """Name the run after what it did ("intake: 2 protokoll")."""
    run_id = runtime.flow_run.id
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(run_id, name=name)


def publish_overview(app: App, now: datetime | None = None, by: str = "") -> str:
    """Rewrite the standing overview (every run calls this, also manual ones)."""
    md = overview_markdown(app, now, by)
    if runtime.flow_run.id:
        create_markdown_artifact(markdown=md, key=overview_key(app),
                                 description=f"{app.cfg.network.short}: möten och vad som behöver en människa")
    return md


def publish(app: App, title: str, lines: list[str], extra_attention: list[str] | None = None,
            now: datetime | None = None) -> str:
    from kcg_mail.services.status import clear_problem, needs_a_person

    for what in ("mail", "archive"):  # a daily or intake run that got this far: the connections work
        clear_problem(app, what)
    attention = (extra_attention or []) + needs_a_person(app, now)
    md = run_summary(title, lines, attention)
    if runtime.flow_run.id:
        create_markdown_artifact(markdown=md, key=summary_key(app), description=title)
    publish_overview(app, now, by=title)
    get_run_logger().info("%s: %d actions, %d need a person", title, len(lines), len(attention))
    app.state.keep_backup()  # the state as this run left it (rotated, only when changed)
    return md


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (tests calling the services)
        return logging.getLogger("kcg.alerts")


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure / on_crashed hook: alert the coordinator once per problem,
    by webhook and by mail. A channel that fails is an ERROR in this run's
    log (visible in the UI) and is tried again by the next run."""
    from prefect.logging.loggers import flow_run_logger

    from kcg_mail.bootstrap import alert_app
    from kcg_mail.services.alerts import send_failure_alert

    log = flow_run_logger(flow_run, flow)
    params = flow_run.parameters or {}
    try:
        workdir, config_dir = workdir_and_config(params.get("workdir"), params.get("config_dir"))
        app, note = alert_app(workdir, config_dir)
        with app:
            outcome = send_failure_alert(app, flow.name, flow_run, state, note=note, log=log)
        log.info("failure alert for %s: %s", flow_run.name, outcome)
    except Exception as exc:  # the alert must never mask the failure itself
        log.error("could not send the failure alert: %s: %s", type(exc).__name__, exc, exc_info=True)
