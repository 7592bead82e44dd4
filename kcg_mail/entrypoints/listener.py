"""Push intake: a long-running listener that waits for new mail instead of polling.

One loop, one *mail source* (the ``MailSource`` port) that blocks until
something may have arrived. The configured transport makes it on a connection
of its own and ``bootstrap.make_source`` picks it:

* ``ImapIdleSource`` (``kcg_mail.adapters.imap_idle``) – IMAP IDLE; while the
  server cannot push (no IDLE capability) it falls back to a short poll of
  ``UIDNEXT``;
* ``MaildirWatchSource`` (``kcg_mail.adapters.maildir``) – watches the Maildir
  inbox directories (mtime, then the file names) every 0.5 s;
* ``PollSource`` (``kcg_mail.ports``, the default of transports without push:
  Graph, EWS) – a delta / sync-state query every 10 s with the listener's own
  cursor, waking when it returns anything.

Each signal calls ``on_mail()`` – in ``kcg serve`` that is an
``IntakeTrigger`` (``kcg_mail.entrypoints.push``) which runs the intake flow in
the serving process (a flow run visible in the UI); in tests and benchmarks a
function that runs the intake in-process. A failing source (dropped
connection, server restart) is retried with a short capped backoff (0.5 s,
1 s, then every ``RECONNECT_MAX`` = 1.5 s: a refused connection on the
server's host costs nothing, and the listener is back within 2 s of the
server); after a reconnect the listener always triggers once (mail that came
in while the connection was down, and a run that failed because the server
was away). A failing ``on_mail`` is retried with the same backoff until it
succeeds: a signal is never dropped. Both go through ``adapters/retry.py``
(``until_stopped``: tenacity's exponential wait, slept on the stop event), the
one retry idiom of the adapters.

The listener never decides what a message is or whether it was handled: the
intake run does, through the state record (message key ``done`` → skip). Two
intake runs (the safety-net schedule and the listener's) must never work at the
same time; ``intake_lock(workdir)`` serialises them across threads and
processes with ``flock`` on ``<workdir>/intake.lock``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcg_mail.adapters.retry import until_stopped
from kcg_mail.ports import MailSource
from kcg_mail.services.lock import intake_lock, lock_dir

if TYPE_CHECKING:
    from kcg_mail.services.app import App

log = logging.getLogger(__name__)

INTAKE_DEPLOYMENT = "kcg-intake/kcg-intake"

#: How long one wait of the source may block (an IMAP IDLE is re-issued after it).
IDLE_TIMEOUT = 300.0
#: Reconnect probes while the mail server is away: 0.5 s, 1 s, then every 1.5 s.
RECONNECT_INITIAL = 0.5
RECONNECT_MAX = 1.5


def locked_intake(app: App, now: Any, workdir: Path | str | None = None, **kw: Any) -> Any:
    """``run_intake`` under the intake lock (what the flow does once wired)."""
    from kcg_mail.services.intake import run_intake

    with intake_lock(workdir if workdir is not None else lock_dir(app)):
        return run_intake(app, now, **kw)


# --------------------------------------------------------------------------- the listener


@dataclass
class ListenerStats:
    waits: int = 0
    wakes: int = 0
    triggers: int = 0
    trigger_failures: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


class Listener:
    """``run()`` blocks until ``stop()``; ``start()`` runs it in a daemon thread."""

    def __init__(self, source: MailSource, on_mail: Callable[[], Any], *, wait_timeout: float = IDLE_TIMEOUT,
                 backoff_initial: float = RECONNECT_INITIAL, backoff_max: float = RECONNECT_MAX,
                 trigger_on_start: bool = True,
                 stop: threading.Event | None = None):
        self.source = source
        self.on_mail = on_mail
        self.wait_timeout = wait_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.trigger_on_start = trigger_on_start
        self._stop = stop or source.stop
        source.stop = self._stop  # a source waits on the listener's stop between polls
        self.stats = ListenerStats()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self, name: str = "kcg-listener") -> Listener:
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self, join: float | None = 10.0) -> None:
        self._stop.set()
        # An IMAP IDLE blocks in select(): closing the connection ends it. Closed again
        # while the thread lives: a stop that came while it was still connecting found
        # no connection to close, and the IDLE it then entered would wait its full timeout.
        deadline = time.monotonic() + (join or 0.0)
        while True:
            with contextlib.suppress(Exception):
                self.source.close()
            if self._thread is None or join is None or not self._thread.is_alive():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._thread.join(min(0.2, left))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ loop
    def _trigger(self, why: str) -> None:
        """mark + on_mail, retried (``retry.until_stopped``) until it works or we stop."""

        def once() -> bool:
            try:
                self.source.mark()
            except Exception as exc:  # the trigger matters more than the mark
                log.info("listener: could not mark the mailbox (%s); triggering anyway", exc)
            self.on_mail()
            return True

        def failed(exc: BaseException, delay: float) -> None:
            self.stats.trigger_failures += 1
            self.stats.errors.append(f"trigger: {type(exc).__name__}: {exc}")
            log.warning("listener: starting the intake failed (%s: %s); retry in %.0f s", type(exc).__name__, exc, delay)

        if until_stopped(once, self._stop, initial=self.backoff_initial, maximum=self.backoff_max, on_error=failed):
            self.stats.triggers += 1
            log.debug("listener: intake triggered (%s)", why)

    def _wait_failed(self, exc: BaseException, delay: float) -> None:
        self._failing = True
        self.stats.errors.append(f"wait: {type(exc).__name__}: {exc}")
        log.warning("listener: %s failed (%s: %s); reconnecting in %.1f s",
                    self.source.name, type(exc).__name__, exc, delay)
        with contextlib.suppress(Exception):
            self.source.close()

    def run(self) -> None:
        log.info("listener: waiting for new mail (%s)", self.source.name)
        self._failing = False
        if self.trigger_on_start:
            self._trigger("start")
        while not self.stopped:
            # wait for news; a failure reconnects after a wait (``retry.until_stopped``)
            news = until_stopped(lambda: (self.source.wait(self.wait_timeout),), self._stop,
                                 initial=self.backoff_initial, maximum=self.backoff_max, on_error=self._wait_failed)
            if news is None or self.stopped:
                break
            self.stats.waits += 1
            if self._failing:
                # Back. Trigger once whatever the source says: mail that came
                # in while we were away, and an intake run that failed because
                # the server was gone (its mail may already count as seen).
                self._failing = False
                self.stats.reconnects += 1
                log.info("listener: %s is back", self.source.name)
                self._trigger("reconnected")
                continue
            if news[0]:
                self.stats.wakes += 1
                self._trigger("new mail")
        with contextlib.suppress(Exception):
            self.source.close()
        log.info("listener: stopped")


# --------------------------------------------------------------------------- kcg serve


def trigger_intake_deployment(name: str = INTAKE_DEPLOYMENT, *, coalesce: bool = True) -> Any:
    """Start one run of the intake deployment (visible in the Prefect UI) and
    return at once (``timeout=0``). With ``coalesce`` no new run is created
    while one is still Scheduled/Pending: that run has not read the inbox yet
    and will see the new mail too. Returns the flow run (or the waiting one)."""
    from prefect.deployments import run_deployment

    if coalesce:
        waiting = _waiting_intake_run(name)
        if waiting is not None:
            log.debug("listener: intake run %s is still waiting to start; not adding another", waiting.id)
            return waiting
    return run_deployment(name=name, timeout=0, tags=["kcg", "listener"], flow_run_name="intake (new mail)")


def _waiting_intake_run(name: str) -> Any:
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        flow_name, _, dep_name = name.partition("/")
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[dep_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING]))
                ),
                limit=5,
            )
        from datetime import datetime, timedelta

        soon = datetime.now(UTC) + timedelta(seconds=30)
        for r in runs:  # a run scheduled for later (the next cron slot) does not count
            if r.expected_start_time is None or r.expected_start_time <= soon:
                return r
    except Exception as exc:  # never let the check stop a trigger
        log.debug("listener: could not look for waiting intake runs: %s", exc)
    return None
