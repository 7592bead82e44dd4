"""The intake lock: two intake runs (the schedule's and the push listener's)
never work at the same time. ``flock`` on ``<workdir>/intake.lock`` serialises
them across threads and processes; the kernel releases it when a holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from kcg_mail.ports import StateStore

LOCK_NAME = "intake.lock"



class IntakeBusy(TimeoutError):
    """Another intake run holds the lock longer than we were willing to wait."""


@contextlib.contextmanager
def intake_lock(workdir: Path | str, timeout: float | None = None, poll: float = 0.05) -> Iterator[Path]:
    """Hold the intake lock of ``workdir`` (``flock`` on ``<workdir>/intake.lock``).

    Works between processes and between threads of one process (each call
    opens its own file description). ``timeout=None`` waits as long as it
    takes; otherwise ``IntakeBusy`` after ``timeout`` seconds. The kernel
    releases the lock when the holder dies, so a crashed run never blocks the
    next one. Re-entrant within one thread.
    """
    path = Path(workdir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    held = _held()
    key = str(path.resolve())
    if key in held:  # re-entered by the same thread (e.g. locked_intake around a locked run_intake)
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        if deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if time.monotonic() >= deadline:
                        raise IntakeBusy(f"another intake run holds {path}") from None
                    time.sleep(poll)
        with contextlib.suppress(OSError):  # who holds it, for a person looking
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {threading.get_ident()} {time.time():.3f}\n".encode())
        held.add(key)
        try:
            yield path
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _Held(threading.local):
    """The locks this thread holds (each thread starts with none)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()


_local = _Held()


def _held() -> set[str]:
    return _local.keys


class _WithState(Protocol):
    @property
    def state(self) -> StateStore: ...


def lock_dir(app: _WithState) -> Path:
    """The work directory of an App built by ``kcg_mail.bootstrap`` (where
    ``state.sqlite`` lives): the place of its intake lock."""
    path = app.state.path
    if path is None:
        raise ValueError("cannot tell the work directory of this app's state store; pass workdir explicitly")
    return Path(path).resolve().parent
