"""How long the Prefect server keeps what the runs leave (pure).

The coordinator's history in the Prefect UI is kept for ``keep_days`` days:
older finished flow runs are deleted (with their task runs and states), and
so are older versions of the artifacts, except the newest version of each key
(the standing overview ``<short>-oversikt`` always stays, however old). The
durable record of what was sent and filed is the state record, never Prefect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

#: days of run history in the Prefect UI (flow runs, their logs, artifacts)
KEEP_DAYS = 60
#: the states of a run that is over (only those are ever deleted)
FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


@dataclass(frozen=True)
class RunInfo:
    id: str
    state_type: str
    end_time: datetime | None


@dataclass(frozen=True)
class ArtifactInfo:
    id: str
    key: str | None
    created: datetime | None
    flow_run_id: str | None


def cutoff(now: datetime, keep_days: int) -> datetime:
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, not {keep_days}")
    return now - timedelta(days=keep_days)


def runs_to_delete(runs: Iterable[RunInfo], before: datetime) -> list[str]:
    """Finished runs that ended before ``before``; a run still going never."""
    return [r.id for r in runs
            if r.state_type in FINISHED and r.end_time is not None and r.end_time < before]


def artifacts_to_delete(artifacts: Iterable[ArtifactInfo], before: datetime, latest: set[str],
                        deleted_runs: set[str]) -> list[str]:
    """Artifact versions created before ``before``, or belonging to a deleted run,
    but never the newest version of a key (``latest``: their ids)."""
    out = []
    for a in artifacts:
        if a.id in latest:
            continue
        old = a.created is not None and a.created < before
        if old or (a.flow_run_id is not None and a.flow_run_id in deleted_runs):
            out.append(a.id)
    return out
