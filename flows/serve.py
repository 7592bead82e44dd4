"""Serve the flows (``kcg serve``) against a Prefect server.

- ``kcg-daily``  every morning 07:00 Europe/Stockholm (a daily cron keeps local
  time across daylight saving);
- ``kcg-intake`` every 30 minutes: the safety net. New mail is handled by the
  push listener of ``kcg serve`` within seconds (``kcg_mail.entrypoints.push``:
  an intake flow run in the serving process); a scheduled run that finds
  another intake working ends at once (``skip_if_busy``) instead of queueing;
- ``kcg-onboard-member``, ``kcg-resend``, ``kcg-refile`` without schedule, run
  by hand from the UI (forms).

Each deployment has ``concurrency_limit=1``: two runs of the same flow never
overlap. The daily run queues behind a running one (ENQUEUE: it must happen);
so is an intake started by hand (the push listener's runs are not deployment
runs; they and the scheduled run serialise on the intake lock).

``pause_on_shutdown=False``: stopping or restarting ``kcg serve`` leaves the
schedules active, so the runs scheduled meanwhile are picked up when it is
back (the Prefect default would pause them and nothing would run until
someone resumed them in the UI).
"""

from __future__ import annotations

from typing import Any

DAILY_CRON = "0 7 * * *"      # every morning at 07:00 Stockholm time
INTAKE_CRON = "*/30 * * * *"  # safety net every 30 minutes (push handles new mail)
TZ = "Europe/Stockholm"
TAGS = ["kcg"]


def deployments(workdir: str, config_dir: str | None, intake_cron: str = INTAKE_CRON) -> list[Any]:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from flows.manual import onboard_member, refile, resend

    params = {"workdir": workdir, "config_dir": config_dir}
    enqueue = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    return [
        daily_flow.to_deployment(name="kcg-daily", schedule=Cron(DAILY_CRON, timezone=TZ), parameters=params,
                                 concurrency_limit=enqueue, tags=TAGS,
                                 description="Skickar det som ska ut i dag: värdinfo, kallelser, påminnelser, mallar."),
        intake_flow.to_deployment(name="kcg-intake", schedule=Cron(intake_cron, timezone=TZ),
                                  parameters={**params, "skip_if_busy": True},
                                  concurrency_limit=enqueue, tags=TAGS,
                                  description="Läser nya svar: arkiverar och skickar ut protokoll, karantän för resten."),
        onboard_member.to_deployment(name="kcg-onboard-member", parameters=params, concurrency_limit=enqueue,
                                     tags=TAGS + ["manual"], description="Välkomna en ny medlem (formulär)."),
        resend.to_deployment(name="kcg-resend", parameters=params, concurrency_limit=enqueue,
                             tags=TAGS + ["manual"], description="Skicka om en kallelse eller protokollmall."),
        refile.to_deployment(name="kcg-refile", parameters=params, concurrency_limit=enqueue,
                             tags=TAGS + ["manual"], description="Arkivera ett meddelande ur karantänen ändå."),
    ]


#: On SIGTERM, how long scheduled runs (subprocesses) may take to finish
#: before Prefect's runner cancels what is left.
STOP_GRACE_SECONDS = 15.0


def _runner_class() -> Any:
    import threading
    import time

    from prefect.runner import Runner

    class DrainingRunner(Runner):
        """Prefect's runner, but SIGTERM first lets its subprocess runs finish.

        Prefect's own handler cancels every run it still tracks at once,
        including one that has just completed and whose process is still
        exiting: that run showed as "Cancelled (Runner is shutting down)".
        Here the runner stops taking new scheduled runs, waits up to
        ``STOP_GRACE_SECONDS`` for the tracked processes to exit, then stops
        as Prefect does (cancelling only what is still working)."""

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            if not self.started or self.stopping or self._loop is None:
                return super().handle_sigterm(*args, **kwargs)
            poller = getattr(self, "_scheduled_run_poller", None)
            if poller is not None:
                poller.stopping = True  # no new scheduled runs
            self._logger.info("SIGTERM received: letting working runs finish (up to %.0f s)", STOP_GRACE_SECONDS)

            def drain() -> None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                while self._process_manager.flow_run_ids() and time.monotonic() < deadline:
                    time.sleep(0.1)
                Runner.handle_sigterm(self)

            threading.Thread(target=drain, name="kcg-drain", daemon=True).start()

    return DrainingRunner


def build_runner(workdir: str, config_dir: str | None, intake_cron: str = INTAKE_CRON) -> tuple[Any, list[Any]]:
    """The runner with every deployment registered on the server (not started)."""
    deps = deployments(workdir, config_dir, intake_cron)
    runner = _runner_class()(pause_on_shutdown=False)
    for d in deps:
        runner.add_deployment(d)  # registers the deployment on the server
    return runner, deps


def run_runner(runner: Any, deps: list[Any]) -> None:
    """Like ``prefect.serve``; blocks until SIGTERM (runs finish first) or Ctrl-C."""
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.flows import _display_serve_start_message  # the banner serve() prints

    _display_serve_start_message(*deps)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def serve_all(workdir: str, config_dir: str | None, intake_cron: str = INTAKE_CRON) -> None:
    run_runner(*build_runner(workdir, config_dir, intake_cron))
