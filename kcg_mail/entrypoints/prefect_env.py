"""Prefect process settings for one-shot runs (``kcg daily``, ``kcg demo``).

Without ``PREFECT_API_URL`` Prefect starts a temporary local server inside
the process. Telemetry is turned off (its heartbeat prints sqlite lock
errors on the ephemeral server) and, for simulated runs, flow heartbeats
are turned off: each flow run otherwise waits up to a second for the
heartbeat thread to stop, and heartbeats only matter for runs a worker or
``serve`` watches.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class PrefectUnavailable(RuntimeError):
    """Prefect cannot run here; ``str()`` is one line: why, and what to do."""


FIX = ("set PREFECT_API_URL to a running Prefect server (`prefect server start`, then "
       "PREFECT_API_URL=http://127.0.0.1:4200/api)")


def prepare(workdir: Path | None = None, *, quiet: bool = False) -> None:
    """Call before importing prefect. Creates the work directory (and, for
    Prefect's temporary server, ``<workdir>/prefect``) so a first run on a new
    directory works; raises PrefectUnavailable when the temporary server
    could not start there."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if workdir is not None:
        try:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PrefectUnavailable(f"cannot create the work directory {workdir}: {exc.strerror}; "
                                     f"choose another with --workdir") from exc
        if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
            os.environ["PREFECT_HOME"] = str(Path(workdir).resolve() / "prefect")
    if "PREFECT_API_URL" not in os.environ:
        home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
        try:
            home.mkdir(parents=True, exist_ok=True)
            probe = home / ".kcg-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PrefectUnavailable(
                f"Prefect's temporary server cannot start: its folder {home} is not writable ({exc.strerror}); "
                f"{FIX}, or PREFECT_HOME to a writable folder") from exc
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def explain(exc: BaseException) -> str | None:
    """One line for a Prefect start-up failure, or None for any other error."""
    if isinstance(exc, PrefectUnavailable):
        return str(exc)
    text = str(exc)
    if "ephemeral Prefect API server" in text or "Cannot schedule flows on an ephemeral server" in text:
        url = os.environ.get("PREFECT_API_URL")
        where = f"the Prefect server at {url} did not answer" if url else "Prefect's temporary server did not start"
        return f"{where} ({text.splitlines()[0][:160]}); {FIX}"
    if "Failed to reach API at" in text:
        return (f"the Prefect server at {os.environ.get('PREFECT_API_URL', '(PREFECT_API_URL)')} does not answer; "
                f"start it (`prefect server start --host 127.0.0.1`) or unset PREFECT_API_URL to use a temporary one")
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, httpx.ConnectError) and os.environ.get("PREFECT_API_URL"):
        return (f"the Prefect server at {os.environ['PREFECT_API_URL']} does not answer ({exc}); start it "
                f"(`prefect server start --host 127.0.0.1`) or unset PREFECT_API_URL for a temporary one")
    return None


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _template_path() -> Path:
    """Where a new, empty Prefect database is kept for this Prefect version."""
    from importlib.metadata import version

    base = os.environ.get("KCG_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kcg-mail"
    return Path(base) / f"prefect-{version('prefect')}-empty.db"


def seed_home(home: Path) -> bool:
    """A new ``PREFECT_HOME`` gets a copy of an empty Prefect database that
    Prefect's own migrations made before (see :func:`keep_template`), instead of
    migrating a new file (116 migrations, about 5 s of CPU here). The server
    still checks the database against its migrations when it starts. False
    when there is no copy yet or the home has a database already."""
    import shutil

    db = Path(home) / "prefect.db"
    template = _template_path()
    if db.exists() or not template.is_file():
        return False
    Path(home).mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(db.name + ".seed")
    shutil.copyfile(template, tmp)
    tmp.replace(db)
    return True


def keep_template(home: Path) -> None:
    """After a server made a new database in ``home`` and before anything ran:
    keep an online-backup copy of it as the template for the next new home."""
    import sqlite3

    template = _template_path()
    if template.exists():
        return
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp = template.with_name(f"{template.name}.{os.getpid()}")
        src = sqlite3.connect(f"file:{Path(home) / 'prefect.db'}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            with dst:
                src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.close()
        finally:
            src.close()
        tmp.replace(template)
    except (OSError, sqlite3.Error):  # a cache only: the next new home migrates itself
        with contextlib.suppress(OSError, UnboundLocalError):
            tmp.unlink()


class TemporaryServer:
    """The Prefect server a one-shot command would get in ephemeral mode, started
    by us at the very beginning of ``kcg demo`` instead of at its first flow run.

    The command and settings are Prefect's own ephemeral ones
    (``prefect.server.api.server.SubprocessASGIServer``: uvicorn with
    ``prefect.server.api.server:create_app``, UI off, ``PREFECT__SERVER_EPHEMERAL``)
    on a free loopback port, its database in ``PREFECT_HOME``. Two differences
    make it faster: it starts while this process is still importing the flows
    (on a new ``PREFECT_HOME`` the server spends 5 s creating its database),
    and this process talks to it through ``PREFECT_API_URL`` and so never
    imports Prefect's server package (about 2.5 s of CPU) itself."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.started = 0.0
        self.ready_after = 0.0
        self.cpu = 0.0
        self.new_home = self.seeded = False

    def start(self) -> TemporaryServer:
        import atexit
        import socket
        import subprocess
        import sys
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_UI_ENABLED": "0",
               "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        self.home.mkdir(parents=True, exist_ok=True)
        self.new_home = not (self.home / "prefect.db").exists()
        self.seeded = self.new_home and seed_home(self.home)
        self.started = time.monotonic()
        with open(self.home / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        return self

    def wait(self, timeout: float | None = None) -> float:
        """Block until ``/api/health`` answers; returns the seconds since start."""
        import time
        import urllib.request

        limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
        while True:
            if self.process is None or self.process.poll() is not None:
                raise PrefectUnavailable(f"Prefect's temporary server exited while starting (log: "
                                         f"{self.home / 'server.log'}); {FIX}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - self.started > limit:
                self.stop()
                raise PrefectUnavailable(f"Prefect's temporary server did not answer within {limit:.0f} s "
                                         f"(log: {self.home / 'server.log'}); {FIX}")
            time.sleep(0.05)
        self.ready_after = time.monotonic() - self.started
        if self.new_home and not self.seeded:
            keep_template(self.home)
        return self.ready_after

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process used so far (Linux), else 0."""
        if self.process is None:
            return self.cpu
        try:
            with open(f"/proc/{self.process.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self) -> None:
        if self.process is not None:
            self.cpu = self.cpu_seconds()
        proc, self.process = self.process, None
        if proc is not None:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a child process: SIGTERM, ``grace`` seconds to exit, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def drain_workers(timeout: float = 30.0) -> None:
    """Deliver what Prefect's event and log workers still hold (before the
    server they talk to stops)."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
    except ImportError:  # pragma: no cover
        return
    for cls in (APILogWorker, EventsWorker):
        try:
            cls.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001  (a worker that cannot drain must not fail the command)
            pass


@contextlib.contextmanager
def session(workdir: Path, *, while_starting: Callable[[], None] | None = None,
            on_ready: Callable[[float], None] | None = None) -> Iterator[TemporaryServer | None]:
    """Many flow runs in one process (``kcg demo``): one Prefect server and one
    client connection for all of them.

    Without ``PREFECT_API_URL`` the server is a :class:`TemporaryServer` in
    ``<workdir>/prefect`` (the place Prefect's own temporary server would use),
    started before Prefect is imported here; ``while_starting()`` runs while it
    starts (the imports), then ``on_ready(seconds)`` once it answers. Every flow run inside shares one client (Prefect otherwise
    opens a new HTTP client, with its TLS set-up, for every flow run: about
    0.1 s a run here) and runs without heartbeats (see the module's doc)."""
    prepare(workdir, quiet=True)
    server = None
    if "PREFECT_API_URL" not in os.environ:
        server = TemporaryServer(Path(os.environ["PREFECT_HOME"])).start()
    try:
        if while_starting is not None:
            while_starting()
        if server is not None:
            # in Prefect's settings only (below), not in the environment: the runs
            # behave as with Prefect's own temporary server (no Secret blocks looked up)
            seconds = server.wait()
        else:
            seconds = 0.0
        if on_ready is not None:
            on_ready(seconds)
        import prefect.settings as ps
        from prefect.context import SyncClientContext
        from prefect.settings import temporary_settings

        updates: dict[Any, Any] = {ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        if server is not None:
            updates[ps.PREFECT_API_URL] = server.url
        with temporary_settings(updates=updates), SyncClientContext.get_or_create():
            try:
                yield server
            finally:
                drain_workers()
    finally:
        if server is not None:
            server.stop()
