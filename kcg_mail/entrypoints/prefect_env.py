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
from pathlib import Path
from typing import Iterator


def prepare(workdir: Path | None = None, *, quiet: bool = False) -> None:
    """Call before importing prefect."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if workdir is not None and "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_HOME"] = str(Path(workdir).resolve() / "prefect")
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
