"""Serve the flows (``kcg serve``) against a Prefect server.

- ``kcg-daily``  every morning 07:00 Europe/Stockholm (a daily cron keeps local
  time across daylight saving);
- ``kcg-intake`` every five minutes;
- ``kcg-onboard-member``, ``kcg-resend``, ``kcg-refile`` without schedule, run
  by hand from the UI (forms).

Each deployment has ``concurrency_limit=1``: two runs of the same flow never
overlap. The daily run queues behind a running one (ENQUEUE: it must happen);
so is an intake (ENQUEUE: a run the push listener starts while a scheduled
intake runs must not be dropped; the listener skips triggering when one is
already pending, so at most one waits).

``pause_on_shutdown=False``: stopping or restarting ``kcg serve`` leaves the
schedules active, so the runs scheduled meanwhile are picked up when it is
back (the Prefect default would pause them and nothing would run until
someone resumed them in the UI).
"""

from __future__ import annotations

from typing import Any

DAILY_CRON = "0 7 * * *"      # every morning at 07:00 Stockholm time
INTAKE_CRON = "*/5 * * * *"   # every five minutes
TZ = "Europe/Stockholm"
TAGS = ["kcg"]


def deployments(workdir: str, config_dir: str | None) -> list[Any]:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from flows.manual import onboard_member, refile, resend, start_project

    params = {"workdir": workdir, "config_dir": config_dir}
    enqueue = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    return [
        daily_flow.to_deployment(name="kcg-daily", schedule=Cron(DAILY_CRON, timezone=TZ), parameters=params,
                                 concurrency_limit=enqueue, tags=TAGS,
                                 description="Skickar det som ska ut i dag: värdinfo, kallelser, påminnelser, mallar."),
        intake_flow.to_deployment(name="kcg-intake", schedule=Cron(INTAKE_CRON, timezone=TZ), parameters=params,
                                  concurrency_limit=enqueue, tags=TAGS,
                                  description="Läser nya svar: arkiverar och skickar ut protokoll, karantän för resten."),
        onboard_member.to_deployment(name="kcg-onboard-member", parameters=params, concurrency_limit=enqueue,
                                     tags=TAGS + ["manual"], description="Välkomna en ny medlem (formulär)."),
        resend.to_deployment(name="kcg-resend", parameters=params, concurrency_limit=enqueue,
                             tags=TAGS + ["manual"], description="Skicka om en kallelse eller protokollmall."),
        refile.to_deployment(name="kcg-refile", parameters=params, concurrency_limit=enqueue,
                             tags=TAGS + ["manual"], description="Arkivera ett meddelande ur karantänen ändå."),
        start_project.to_deployment(name="kcg-start-project", parameters=params, concurrency_limit=enqueue,
                                    tags=TAGS + ["manual"],
                                    description="Starta en projektgrupp som protokollet föreslår (godkännande)."),
    ]


def serve_all(workdir: str, config_dir: str | None) -> None:
    from prefect import serve

    serve(*deployments(workdir, config_dir), pause_on_shutdown=False)
