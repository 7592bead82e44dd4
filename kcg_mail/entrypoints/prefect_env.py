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
from collections.abc import Iterator
from pathlib import Path


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
