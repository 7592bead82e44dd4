"""The daily flow: everything the meeting cycle says is due today."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from prefect import flow, task

from flows.common import TASK_OPTS, alert_on_failure, as_input, make_app, publish, rename_run, when
from kcg_mail.core.cycle import Due
from kcg_mail.core.overview import step_line
from kcg_mail.services.app import App
from kcg_mail.services.daily import StepResult, execute, run_daily


@task(name="step", task_run_name="{due.action} {due.meeting_id}", **TASK_OPTS)
def step_task(app: App, due: Due, now: datetime) -> StepResult:
    return execute(app, due, now)


def run_step(app: App, due: Due, now: datetime) -> StepResult:
    """One step as a task run; the app is passed quoted (see flows.common.as_input)."""
    return step_task(as_input(app), due, now)


def _name() -> str:
    from prefect import runtime

    return f"daglig {runtime.flow_run.parameters.get('date') or datetime.now().date().isoformat()}"


def _between_meetings(app: App, now: datetime) -> list[str]:
    """Between meetings: the coordinator's view of open decisions and project groups (own artifact);
    returns the project groups waiting for approval, for the run summary."""
    from prefect import runtime
    from prefect.artifacts import create_markdown_artifact

    from kcg_mail.services.followup_status import between_meetings_markdown, followup_attention
    from kcg_mail.services.status import artifact_slug

    md = between_meetings_markdown(app, now.date())
    digest = hashlib.sha256(md.encode("utf-8")).hexdigest()[:16]
    key = f"{artifact_slug(app)}-between-meetings"  # per network, like the overview
    if runtime.flow_run.id and app.ledger.artifact_digests.get(key) != digest:  # only when it changed
        create_markdown_artifact(markdown=md, key=key,
                                 description="Öppna beslut per ansvarig och projektgruppernas senaste status")
        app.ledger.artifact_digests.put(key, digest)
    return followup_attention(app)


@flow(name="kcg-daily", flow_run_name=_name, on_failure=[alert_on_failure], on_crashed=[alert_on_failure],
      log_prints=False)
def daily_flow(date: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict[str, Any]:
    """Send what is due on ``date`` (YYYY-MM-DD, default today) and publish the status."""
    with make_app(workdir, config_dir) as app:  # closed at the end: kcg serve runs flows in-process
        now = when(app, date)
        report = run_daily(app, now, run_step=run_step)
        from kcg_mail.core.cycle import HISTORY
        from kcg_mail.core.plan import is_working_day

        lines = [step_line(r.meeting_id, r.action, r.outcome) for r in report.results]
        history = {s.meeting_id for s in report.skipped if s.detail.startswith(HISTORY)}
        lines += [step_line(s.meeting_id, s.action, "skipped", s.detail) for s in report.skipped
                  if not s.detail.startswith(HISTORY)]
        if history:
            lines.append(f"{len(history)} möte(n) hölls före start ({', '.join(sorted(history))}): inga utskick för dem.")
        if app.go_live() == now.date():
            lines.insert(0, f"Startdag {now.date().isoformat()}: möten som hölls före i dag visas som \"före start\" och får inga "
                            f"utskick (utom protokollmallen till ett möte de senaste dagarna).")
        if not is_working_day(now.date(), app.extra_days):
            lines.append("Ingen arbetsdag (helg eller helgdag): inga utskick i dag.")
        lines += [f"{b.detail}: {b.outcome}" for b in report.between]
        rename_run(f"daglig {now.date().isoformat()}: " + (f"{report.sent} skickade" if report.sent else "inget att skicka"))
        publish(app, f"Daglig körning {now.date().isoformat()}", lines, _between_meetings(app, now), now=now)
        return {"date": now.date().isoformat(), "sent": report.sent, "steps": len(report.results),
                "skipped": len(report.skipped)}
