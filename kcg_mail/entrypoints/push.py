"""The push path of ``kcg serve``: new mail -> an intake flow run in this process.

``kcg serve`` runs two things side by side:

* Prefect's runner (``flows/serve.py``) for the schedules and the forms in the
  UI; each scheduled run starts a subprocess after the runner's poll;
* the push listener (``listener.Listener``) in a thread, which on new mail
  asks an ``IntakeTrigger`` for a run. The trigger calls the intake ``@flow``
  function directly in this process: still a flow run recorded on the Prefect
  server (visible in the UI, with its tasks, artifacts and failure alert),
  under the same intake lock, but without waiting for the runner's poll
  (10 s by default) or a subprocess start (2-3 s).

The trigger coalesces: requests that arrive while a run is pending or working
collapse into one more run right after it (no wake-up is lost: mail that came
in during a run is read by the next one). A run that fails is tried again
with a growing delay (2 s, 4 s ... 5 min) until one succeeds, and at once when
the listener reconnects after losing the mail server. The scheduled safety-net
run (``flows/serve.py``) skips itself when any intake run is working: the two
never queue behind each other.

``run_listener(workdir, config_dir, on_mail=...)`` is the one entry point: it
wires the mail source of the configured transport to ``on_mail`` (default: an
in-process intake flow run through an ``IntakeTrigger``) and runs the
listener in a thread. A standalone ``kcg listen`` calls it and then
``wait_for_stop()``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kcg_mail.adapters.retry import Delays
from kcg_mail.entrypoints.listener import Listener

log = logging.getLogger(__name__)

RETRY_INITIAL = 2.0
RETRY_MAX = 300.0
#: how long ``run_listener(catch_up_here=True)`` waits for the start-up intake run
STARTUP_WAIT = 120.0


class IntakeRunFailed(RuntimeError):
    pass


class IntakeTrigger:
    """One worker thread that runs ``run()`` whenever ``request()`` was called.

    ``request()`` never blocks. Requests made while a run is working are
    coalesced into one more run right after it. A failing run is retried
    after ``retry`` backoff (or earlier, on the next request). ``stop()``
    lets a working run finish (up to ``join`` seconds) and runs nothing new.
    """

    def __init__(self, run: Callable[[], Any], *, retry_initial: float = RETRY_INITIAL,
                 retry_max: float = RETRY_MAX, name: str = "kcg-intake-trigger"):
        self._run = run
        self._cond = threading.Condition()
        self._pending = False
        self._retry_at: float | None = None
        self._stopping = False
        self._working = False
        self.backoff = Delays(retry_initial, retry_max)
        self.runs = 0
        self.failures = 0
        self.requests = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> IntakeTrigger:
        self._thread.start()
        return self

    def request(self, why: str = "new mail") -> None:
        with self._cond:
            self.requests += 1
            self._pending = True
            self._cond.notify_all()
        log.debug("intake requested (%s)", why)

    __call__ = request

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._working or self._pending

    def _next(self) -> bool:
        """Wait until a run is due; False when stopping."""
        with self._cond:
            while not self._stopping:
                if self._pending:
                    self._pending = False
                    self._retry_at = None
                    self._working = True
                    return True
                if self._retry_at is not None:
                    delay = self._retry_at - time.monotonic()
                    if delay <= 0:
                        self._retry_at = None
                        self._working = True
                        return True
                    self._cond.wait(delay)
                else:
                    self._cond.wait()
            return False

    def _loop(self) -> None:
        while self._next():
            try:
                self._run()
                self.runs += 1
                self.backoff.reset()
            except Exception as exc:
                self.failures += 1
                delay = self.backoff.next()
                log.warning("intake run failed (%s: %s); trying again in %.0f s or on the next new mail",
                            type(exc).__name__, exc, delay)
                with self._cond:
                    if self._retry_at is None:
                        self._retry_at = time.monotonic() + delay
            finally:
                with self._cond:
                    self._working = False
                    self._cond.notify_all()

    def stop(self, join: float = 30.0) -> bool:
        """Stop; wait up to ``join`` s for a working run. True when none is left working."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join)
        return not self._thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or working (a failed run counts as done: it is retried later)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._working or self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def intake_flow_runner(workdir: str, config_dir: str | None) -> Callable[[], Any]:
    """The intake ``@flow`` called in this process (a flow run on the server,
    tagged ``listener``). Raises ``IntakeRunFailed`` when the run failed.

    Without flow heartbeats: at its end a run waited up to half a second for
    the heartbeat thread, and mail arriving meanwhile waited for that too."""
    from prefect import tags

    from flows.intake import intake_flow
    from kcg_mail.entrypoints.prefect_env import without_heartbeats

    def run() -> Any:
        with tags("kcg", "listener"), without_heartbeats():
            state = intake_flow(workdir=workdir, config_dir=config_dir, return_state=True)
        if not state.is_completed():
            raise IntakeRunFailed(f"intake run {state.type.value.lower()}: {state.message or ''}".strip())
        return state

    return run


class PushService:
    """The listener plus what it triggers, started and stopped together."""

    def __init__(self, listener: Listener, trigger: IntakeTrigger | None):
        self.listener = listener
        self.trigger = trigger

    def stop(self, grace: float = 20.0) -> bool:
        """Stop listening, let a working intake run finish (up to ``grace`` s)."""
        self.listener.stop(join=5.0)
        return self.trigger.stop(grace) if self.trigger is not None else True

    def wait_for_stop(self) -> None:
        """Block until SIGTERM/SIGINT (main thread), then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        while not done.wait(1.0):
            pass
        self.stop()


def run_listener(workdir: str | Path, config_dir: str | Path | None = None,
                 on_mail: Callable[[], Any] | None = None, *, reconnect_max: float | None = None,
                 catch_up_here: bool = False) -> PushService:
    """Start the push listener for ``workdir`` in a thread and return at once.

    ``on_mail`` is called (from the listener's thread, must not block long)
    whenever new mail may have arrived; by default it requests an intake
    flow run in this process through an ``IntakeTrigger``. Prefect must be
    imported (and ``PREFECT_API_URL`` set) before: importing Prefect from two
    threads at once is what printed "Failed to initialize plugins: deadlock
    detected".

    ``catch_up_here``: the start-up intake (mail that came in while nothing
    listened) runs before this returns and before the listener's thread
    starts (in the trigger's thread, the caller waiting), so that the first
    flow run's lazy imports never happen next to Prefect's runner starting
    up (a flow run started in the listener's thread while the runner started
    hung there once).
    """
    from kcg_mail.bootstrap import make_source
    from kcg_mail.config_loader import load_config
    from kcg_mail.entrypoints.listener import RECONNECT_MAX

    workdir = str(Path(workdir).resolve())
    config_dir = str(Path(config_dir).resolve()) if config_dir else None
    cfg = load_config(config_dir)
    cursor = None  # where the poll sources (Graph, EWS) start: the intake's cursor, read only
    state_file = Path(workdir) / "state.sqlite"
    if state_file.exists():  # never create it here: a new state file is the state guard's to make
        with contextlib.suppress(Exception):
            from kcg_mail.adapters.sqlite_state import SqliteState
            from kcg_mail.services.ledger import Ledger

            st = SqliteState(state_file)
            cursor = Ledger(st).intake_cursor.get()
            st.close()
    trigger = None
    if on_mail is None:
        trigger = IntakeTrigger(intake_flow_runner(workdir, config_dir)).start()
        on_mail = trigger.request
    stop = threading.Event()
    source = make_source(cfg, Path(workdir), stop, cursor=cursor)
    caught_up = False
    if catch_up_here and trigger is not None:
        try:
            source.mark()  # mail arriving from now on wakes the listener's first wait
        except Exception as exc:  # the listener's first connection reports and retries it
            log.debug("start-up mark failed (%s: %s)", type(exc).__name__, exc)
        else:
            # In the trigger's thread, while this one waits: the run's lazy imports never
            # race another thread's, and a SIGTERM meanwhile reaches kcg serve's handler in
            # the main thread instead of Prefect's (which crashes a flow run it interrupts
            # in the main thread). A failed run is retried by the trigger itself.
            trigger.request("start-up")
            caught_up = trigger.wait_idle(STARTUP_WAIT)
    # trigger_on_start: mail that came in while nothing listened is handled now
    listener = Listener(source, on_mail, stop=stop, trigger_on_start=not caught_up,
                        backoff_max=reconnect_max if reconnect_max is not None else RECONNECT_MAX)
    listener.start()
    return PushService(listener, trigger)
