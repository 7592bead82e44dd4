"""Serve the flows on their schedules (``kcg serve``) against a Prefect server."""

from __future__ import annotations

DAILY_CRON = "0 7 * * *"      # every morning at 07:00 Stockholm time
INTAKE_CRON = "*/5 * * * *"   # every five minutes
TZ = "Europe/Stockholm"


def deployments(workdir: str, config_dir: str | None):
    from prefect.schedules import Cron

    from flows.daily import daily_flow
    from flows.intake import intake_flow

    params = {"workdir": workdir, "config_dir": config_dir}
    return [
        daily_flow.to_deployment(name="kcg-daily", schedule=Cron(DAILY_CRON, timezone=TZ), parameters=params,
                                 concurrency_limit=1, tags=["kcg"]),
        intake_flow.to_deployment(name="kcg-intake", schedule=Cron(INTAKE_CRON, timezone=TZ), parameters=params,
                                  concurrency_limit=1, tags=["kcg"]),
    ]


def serve_all(workdir: str, config_dir: str | None) -> None:
    from prefect import serve

    serve(*deployments(workdir, config_dir), pause_on_shutdown=False)
