"""Where ``kcg demo``'s time went, in one line.

The demo's phases are timed with the clock around them (start-up and imports,
waiting for the Prefect server, the year, the planning round, the report), and
while the demo runs the real calls are timed where they happen: every flow
call (``Flow.__call__``: Prefect's work plus ours), the flow functions' bodies
(ours), and inside them the Word templates (``ProtocolRenderer.render``), the
mail texts (``Composer.render``), the Maildir transport, the local archive, and
the Prefect calls our code makes (artifacts, run names). Prefect's share of a flow run is the flow call minus its body: creating the
run, its states, the task runs, the result store, the client calls.

The wrappers only measure: each calls the original, and they are removed when
the demo ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``), else 0."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Phases:
    def __init__(self) -> None:
        self.t0 = time.monotonic() - process_age()  # the process's start
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._depth: Counter[str] = Counter()
        self.server: Any = None  # prefect_env.TemporaryServer, when the demo started one

    def add(self, label: str, seconds: float, calls: int = 1) -> None:
        self.seconds[label] += seconds
        self.calls[label] += calls

    def clock(self) -> float:
        return time.monotonic()

    @contextlib.contextmanager
    def measure(self, label: str) -> Iterator[None]:
        t = time.monotonic()
        try:
            yield
        finally:
            self.add(label, time.monotonic() - t)

    def _wrap(self, func: Callable[..., Any], label: str) -> Callable[..., Any]:
        phases = self

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if phases._depth[label]:  # a nested call of the same kind is inside the outer one
                return func(*args, **kwargs)
            phases._depth[label] += 1
            t = time.monotonic()
            try:
                return func(*args, **kwargs)
            finally:
                phases._depth[label] -= 1
                phases.add(label, time.monotonic() - t)

        return timed

    @contextlib.contextmanager
    def instrument(self) -> Iterator[None]:
        """Time the real calls (see the module's doc) while inside."""
        from prefect.artifacts import Artifact
        from prefect.flows import Flow

        import flows.common
        import flows.daily
        import flows.intake
        import flows.manual
        import flows.round
        from kcg_mail.adapters.local_archive import LocalFolderArchive
        from kcg_mail.adapters.maildir import MaildirTransport
        from kcg_mail.documents.render import ProtocolRenderer
        from kcg_mail.services.compose import Composer

        patches: list[tuple[Any, str, str]] = [(Flow, "__call__", "flow call")]
        patches += [(ProtocolRenderer, "render", "word"), (Composer, "render", "mail texts")]
        patches += [(MaildirTransport, n, "mail") for n in ("send", "send_invitation", "fetch_new", "move", "deliver")]
        patches += [(LocalFolderArchive, n, "archive") for n in ("store", "read", "list", "shared_link")]
        patches.append((Artifact, "create", "prefect api"))  # the artifacts our runs publish
        for mod in (flows.common, flows.daily, flows.intake, flows.manual, flows.round):
            for name, obj in vars(mod).items():
                if isinstance(obj, Flow):
                    patches.append((obj, "fn", "flow body"))
                elif name == "rename_run":  # each flow module imported it by name
                    patches.append((mod, name, "prefect api"))
        saved = []
        for owner, name, label in patches:
            original = owner.__dict__[name] if isinstance(owner, type) and name in owner.__dict__ else getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, self._wrap(original, label))
        try:
            yield
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def line(self) -> str:
        s, n = self.seconds, self.calls
        total = time.monotonic() - self.t0
        cpu = os.times()
        runs = n["flow call"]
        prefect = s["flow call"] - s["flow body"]
        ours = s["flow body"] - s["word"] - s["mail texts"] - s["mail"] - s["archive"] - s["prefect api"]
        per_run = f", {prefect / runs * 1000:.0f} ms a run" if runs else ""
        between = s["year"] + s["planning"] - s["flow call"]
        return (f"Where the time went ({total:.1f} s): start-up and imports {s['start']:.1f} s, "
                f"waiting for the Prefect server {s['session'] - s['imports']:.1f} s (it answered after "
                f"{s['prefect start']:.1f} s); {runs} flow runs {s['flow call']:.1f} s = Prefect {prefect:.1f} s"
                f"{per_run} + our code {s['flow body']:.1f} s (its Prefect calls: artifacts and run names "
                f"{s['prefect api']:.1f}, Word {s['word']:.1f}, mail texts "
                f"{s['mail texts']:.1f}, Maildir {s['mail']:.1f}, archive {s['archive']:.1f}, state and the rest "
                f"{ours:.1f}); year {s['year']:.1f} s, planning round {s['planning']:.1f} s, hosts' replies and "
                f"the demo between runs {between:.1f} s; server stop {s['stop']:.1f} s, report {s['report']:.1f} s; "
                f"CPU: kcg {cpu.user + cpu.system:.1f} s, Prefect server "
                f"{self.server.cpu_seconds() if self.server else 0.0:.1f} s")
