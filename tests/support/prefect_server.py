"""A real Prefect server on loopback for the operations tests.

``prefect server start --host 127.0.0.1 --port <free>`` in a subprocess with
its own PREFECT_HOME (so its SQLite database is the test's), telemetry off,
UI off (the API is what the tests talk to; the UI only adds start-up time).
Ready when ``/api/health`` answers, typically 5-12 s on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(home: Path, api_url: str | None = None, ui: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PREFECT_") and k not in ("PREFECT_LOGGING_LEVEL",):
            env.pop(k)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
        "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    process: subprocess.Popen
    startup_seconds: float
    log: Path

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (``kcg serve``, a flow) that talks to this server."""
        return server_env(self.home, self.api_url)


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 60.0, ui: bool = False,
                   extra_env: dict[str, str] | None = None) -> Iterator[PrefectServer]:
    """``ui=True``: the server also serves its web UI (the browser test); ``extra_env``:
    more server settings (the cost benchmark's retention settings)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = server_env(home, ui=ui)
    env.update(extra_env or {})
    if ui:  # the UI in the browser must call this server, not the default port 4200
        env["PREFECT_UI_API_URL"] = env["PREFECT_SERVER_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield PrefectServer(api, home, proc, time.monotonic() - t0, log)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process we started (and its process group, which we created)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
