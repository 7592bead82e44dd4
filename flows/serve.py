"""Serve the flows (``kcg serve``) against a Prefect server.

- ``kcg-daily``  every morning 07:00 Europe/Stockholm (a daily cron keeps local
  time across daylight saving);
- ``kcg-intake`` every 30 minutes: the safety net. New mail is handled by the
  push listener of ``kcg serve`` within seconds (``kcg_mail.entrypoints.push``:
  an intake flow run in the serving process); a scheduled run that finds
  another intake working ends at once (``skip_if_busy``) instead of queueing;
- ``kcg-onboard-member``, ``kcg-resend``, ``kcg-refile`` without schedule, run
  by hand from the UI (forms);
- the planning round: ``kcg-planning-start`` and ``kcg-planning-publish`` by
  hand, ``kcg-planning-tick`` every morning at 07:15 (nothing when no round is open).
- ``kcg-housekeeping`` every night at 03:30: the Prefect server's history
  older than ``keep_days`` (60) deleted (``flows/housekeeping.py``);
- the manual flows (``flows/manual.py``) without schedule, run by hand from
  the UI (forms).

Every deployment is named after the network (``kcg-daily/KCG``) and tagged
with its short name and kind, so two networks on one server stay apart and
the UI's filters find their runs. Where a run works (workdir, config) is
bound to the deployment: the manual flows read it from the environment this
process hands its runs (``KCG_WORKDIR``, ``KCG_CONFIG_DIR``), the scheduled
ones get it as parameters hidden from the form.

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

import os
import signal
import threading
import time
from typing import Any

DAILY_CRON = "0 7 * * *"      # every morning at 07:00 Stockholm time
INTAKE_CRON = "*/30 * * * *"  # safety net every 30 minutes (push handles new mail)
PLANNING_CRON = "15 7 * * *"  # the planning round's daily step (does nothing when no round is open)
HOUSEKEEPING_CRON = "30 3 * * *"  # nightly: the Prefect server's history older than keep_days deleted
TZ = "Europe/Stockholm"
#: bound to the deployment, never shown in a form
HIDDEN = ("workdir", "config_dir", "date", "now", "skip_if_busy")


def daily_cron(config_dir: str | None) -> tuple[str, str]:
    """(cron, time zone) of the daily run: ``meetings.yaml`` send_at (default 07:00) and timezone."""
    from kcg_mail.config_loader import load_config

    try:
        rules = load_config(config_dir).meetings
    except Exception:  # the run itself reports a broken config
        return DAILY_CRON, TZ
    return f"{rules.send_at.minute} {rules.send_at.hour} * * *", rules.timezone


def run_tags(short: str, kind: str) -> list[str]:
    """The tags of every run of a network: ``kcg``, its short name, the kind."""
    return sorted({"kcg", short, kind})


def intake_deployment(short: str, worker: bool = False) -> str:
    """The intake deployment the push listener starts: ``kcg serve``'s, or the
    work pool's from prefect.yaml (named ``<short>-worker``)."""
    return f"kcg-intake/{short}-worker" if worker else f"kcg-intake/{short}"


def _hide(dep: Any) -> Any:
    schema = dep._parameter_openapi_schema
    for name in HIDDEN:
        schema.properties.pop(name, None)
    if schema.required:
        schema.required = [r for r in schema.required if r not in HIDDEN]
    return dep


def deployments(workdir: str, config_dir: str | None, short: str, intake_cron: str = INTAKE_CRON) -> list[Any]:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from flows import manual
    from flows.daily import daily_flow
    from flows.housekeeping import housekeeping_flow
    from flows.intake import intake_flow
    from flows.round import planning_correct_ballot, planning_publish, planning_start, planning_tick

    params = {"workdir": workdir, "config_dir": config_dir}
    cron, tz = daily_cron(config_dir)
    enqueue = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    deps = [
        daily_flow.to_deployment(name=short, schedule=Cron(cron, timezone=tz), parameters=params,
                                 concurrency_limit=enqueue, tags=run_tags(short, "daily"),
                                 description="Skickar det som ska ut i dag: värdinfo, kallelser, påminnelser, mallar."),
        intake_flow.to_deployment(name=short, schedule=Cron(intake_cron, timezone=TZ),
                                  parameters={**params, "skip_if_busy": True},
                                  concurrency_limit=enqueue, tags=run_tags(short, "intake"),
                                  description="Läser nya svar: arkiverar och skickar ut protokoll, karantän för resten."),
        # the yearly planning round: started and published by hand, looked after daily
        planning_start.to_deployment(name=short, parameters=params, concurrency_limit=enqueue,
                                     tags=run_tags(short, "planning"),
                                     description="Starta årets planeringsrunda: behovsutskick till alla medlemmar."),
        planning_publish.to_deployment(name=short, parameters=params, concurrency_limit=enqueue,
                                       tags=run_tags(short, "planning"),
                                       description="Publicera röstlistan: röstsedeln till alla medlemmar."),
        planning_tick.to_deployment(name=short, schedule=Cron(PLANNING_CRON, timezone=TZ),
                                    parameters=params, concurrency_limit=enqueue, tags=run_tags(short, "planning"),
                                    description="Planeringsrundan: påminnelser, röstlistan, sammanställning."),
        housekeeping_flow.to_deployment(name=short, schedule=Cron(HOUSEKEEPING_CRON, timezone=TZ), parameters=params,
                                        concurrency_limit=enqueue, tags=run_tags(short, "housekeeping"),
                                        description="Städar Prefect: körningar och artefakter äldre än keep_days dagar."),
    ]
    for fn, text in ((manual.onboard_member, "Välkomna en ny medlem (samma som Lägg till medlem)."),
                     (manual.resend, "Skicka om en kallelse eller protokollmall."),
                     (manual.resend_minutes, "Skicka ett protokoll igen till en medlem."),
                     (manual.refile, "Arkivera ett meddelande ur karantänen ändå."),
                     (manual.confirm_date, "Bekräfta ett preliminärt datum (t.ex. studieresans)."),
                     (manual.set_meeting, "Sätt datum, tid och plats för ett fysiskt möte, studieresan "
                                          "eller mötet för alla."),
                     (manual.approve_reply, "Godkänn ett svar som väntar på godkännande."),
                     (manual.start_project, "Starta en projektgrupp som protokollet föreslår (godkännande)."),
                     (manual.reject_reply, "Avvisa ett svar som väntar på godkännande."),
                     (manual.member_add, "Lägg till en medlem (välkomstmejl, kallelser och protokoll)."),
                     (manual.member_remove, "Ta bort en medlem (inga fler kallelser eller protokoll)."),
                     (manual.preview, "Förhandsvisa en månads utskick per mottagare (inget skickas)."),
                     (planning_correct_ballot, "Rätta en medlems röst i planeringsrundan.")):
        deps.append(fn.to_deployment(name=short, concurrency_limit=enqueue, tags=run_tags(short, "manual"),
                                     description=text))
    return [_hide(d) for d in deps]


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


def build_runner(workdir: str, config_dir: str | None, short: str = "KCG",
                 intake_cron: str = INTAKE_CRON, stop: threading.Event | None = None) -> tuple[Any, list[Any]]:
    """The runner with every deployment registered on the server (not started).

    ``stop`` (``early_sigterm``'s event) set: register no more deployments (one
    registration took up to 5 s on a busy Prefect server on SQLite)."""
    # the runs this process starts inherit where to work (the manual flows' binding)
    os.environ["KCG_WORKDIR"] = workdir
    if config_dir:
        os.environ["KCG_CONFIG_DIR"] = config_dir
    deps = deployments(workdir, config_dir, short, intake_cron)
    runner = _runner_class()(pause_on_shutdown=False)
    for d in deps:
        if stop is not None and stop.is_set():
            break
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


def early_sigterm() -> threading.Event:
    """Until Prefect's runner installs its own handler, SIGTERM only sets the
    returned event: ``kcg serve`` then finishes what it is doing (the start-up
    intake run, registering the deployments) and exits without starting the
    runner, instead of dying in the middle of a flow run (which the UI would
    show as running for ever). Call in the main thread, as early as possible."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def relay_early_stop(runner: Any, stop: threading.Event, timeout: float = 60.0) -> None:
    """A SIGTERM that came after the last check of ``stop`` but before the runner
    installed its own handler: stop the runner as soon as it has started."""

    def relay() -> None:
        stop.wait()
        deadline = time.monotonic() + timeout
        while not runner.started and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.handle_sigterm()

    threading.Thread(target=relay, name="kcg-early-sigterm", daemon=True).start()
