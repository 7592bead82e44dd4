"""The housekeeping flow: keep the Prefect server's history bounded.

``kcg-housekeeping`` runs every night under ``kcg serve`` and deletes, through
the Prefect client, what is older than ``keep_days`` (default 60,
``kcg_mail.core.retention``):

- this network's finished flow runs (tags ``kcg`` and the short name) that
  ended before the cut-off, with their task runs and states (the server
  deletes those with the run);
- older versions of this network's artifacts (``<short>-...``) and the
  artifacts of the deleted runs, never the newest version of a key.

The logs of a deleted run are removed by the server itself: the Prefect API
has no call that deletes logs, but the server's database vacuum removes logs
(and artifacts) whose run is gone when it is started with
``PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,orphans`` (README). Events
are kept for ``PREFECT_SERVER_EVENTS_RETENTION_PERIOD`` (Prefect's default, 7
days) by the same vacuum. The state record (what was sent and filed) is never
touched: it is the durable record, Prefect is the view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger

from flows.common import rename_run, workdir_and_config
from kcg_mail.core import retention

#: at most this many flow runs and artifacts deleted per run (the rest next night)
MAX_DELETE = 2000
PAGE = 200


def _runs(client: Any, tags: list[str], before: datetime) -> list[retention.RunInfo]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    flt = FlowRunFilter(tags=FlowRunFilterTags(all_=tags), end_time=FlowRunFilterEndTime(before_=before),
                        state=dict(type=FlowRunFilterStateType(any_=[StateType(s) for s in retention.FINISHED])))
    out: list[retention.RunInfo] = []
    while len(out) < MAX_DELETE:
        page = client.read_flow_runs(flow_run_filter=flt, sort=FlowRunSort.END_TIME_DESC, limit=PAGE,
                                     offset=len(out))
        out += [retention.RunInfo(str(r.id), r.state_type.value if r.state_type else "", r.end_time) for r in page]
        if len(page) < PAGE:
            break
    return out[:MAX_DELETE]


def _artifacts(client: Any, slug: str, run_ids: list[str]) -> tuple[list[retention.ArtifactInfo], set[str]]:
    """This network's artifact versions (by key prefix) and those of ``run_ids``; the ids of the newest versions."""
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    def page_through(flt: Any) -> list[Any]:
        got: list[Any] = []
        while len(got) < 10 * MAX_DELETE:
            page = client.read_artifacts(artifact_filter=flt, sort=ArtifactSort.ID_DESC, limit=PAGE, offset=len(got))
            got += page
            if len(page) < PAGE:
                break
        return got

    found = {str(a.id): a for a in page_through(ArtifactFilter(key=ArtifactFilterKey(like_=f"{slug}-%")))}
    for i in range(0, len(run_ids), PAGE):
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids[i:i + PAGE]))
        found.update({str(a.id): a for a in page_through(flt)})
    latest = {str(c.latest_id) for c in client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(like_=f"{slug}-%")))}
    infos = [retention.ArtifactInfo(i, a.key, a.created, str(a.flow_run_id) if a.flow_run_id else None)
             for i, a in found.items()]
    return infos, latest


def prune(short: str, slug: str, keep_days: int, now: datetime) -> dict[str, int]:
    """Delete what ``kcg_mail.core.retention`` says, through the Prefect client."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    before = retention.cutoff(now, keep_days)
    with get_client(sync_client=True) as client:
        runs = retention.runs_to_delete(_runs(client, sorted({"kcg", short}), before), before)
        infos, latest = _artifacts(client, slug, runs)
        arts = retention.artifacts_to_delete(infos, before, latest, set(runs))[:MAX_DELETE]
        for aid in arts:
            try:
                client.delete_artifact(UUID(aid))
            except ObjectNotFound:
                pass
        for rid in runs:
            try:
                client.delete_flow_run(UUID(rid))
            except ObjectNotFound:
                pass
    return {"flow_runs": len(runs), "artifacts": len(arts)}


@flow(name="kcg-housekeeping", flow_run_name="städning", log_prints=False)
def housekeeping_flow(keep_days: int = retention.KEEP_DAYS, now: str | None = None, workdir: str | None = None,
                      config_dir: str | None = None) -> dict[str, int]:
    """Delete this network's flow runs and artifact versions older than ``keep_days`` from the Prefect server.

    Args:
        keep_days: Days of history kept in the Prefect UI (at least 1).
    """
    import re

    from kcg_mail.config_loader import load_config

    _, config_dir = workdir_and_config(workdir, config_dir)
    short = load_config(config_dir).network.short
    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    slug = re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-") or "kcg"  # as services.status.artifact_slug
    done = prune(short, slug, keep_days, at)
    rename_run(f"städning: {done['flow_runs']} körningar och {done['artifacts']} artefakter äldre än {keep_days} dagar "
               f"borttagna")
    get_run_logger().info("housekeeping: deleted %d flow runs and %d artifact versions older than %d days",
                          done["flow_runs"], done["artifacts"], keep_days)
    return done
