"""The housekeeping flow against a real Prefect server: old runs and old
artifact versions go, the newest version of each key and runs still within
``keep_days`` stay. Retention rules (pure) are tested below it."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from datetime import UTC, datetime, timedelta  # noqa: E402

import pytest  # noqa: E402
from helpers import CONFIG_DIR  # noqa: E402

from kcg_mail.core import retention  # noqa: E402

T0 = datetime(2026, 1, 10, 12, tzinfo=UTC)


def test_runs_to_delete_only_finished_and_old():
    runs = [retention.RunInfo("old", "COMPLETED", T0 - timedelta(days=61)),
            retention.RunInfo("failed-old", "FAILED", T0 - timedelta(days=90)),
            retention.RunInfo("recent", "COMPLETED", T0 - timedelta(days=59)),
            retention.RunInfo("running", "RUNNING", None),
            retention.RunInfo("old-but-paused", "PAUSED", T0 - timedelta(days=100))]
    before = retention.cutoff(T0, 60)
    assert retention.runs_to_delete(runs, before) == ["old", "failed-old"]


def test_artifacts_keep_the_newest_version_of_each_key():
    before = retention.cutoff(T0, 60)
    old = T0 - timedelta(days=70)
    arts = [retention.ArtifactInfo("a1", "kcg-oversikt", old, "r1"),
            retention.ArtifactInfo("a2", "kcg-oversikt", T0, "r2"),
            retention.ArtifactInfo("b1", "kcg-between-meetings", old, "r1"),  # old, but the newest of its key
            retention.ArtifactInfo("c1", "kcg-korning", T0, "r-deleted")]     # recent, but its run is deleted
    assert retention.artifacts_to_delete(arts, before, latest={"a2", "b1"}, deleted_runs={"r-deleted"}) == ["a1", "c1"]


def test_keep_days_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        retention.cutoff(T0, 0)




@pytest.mark.slow
@pytest.mark.server
def test_housekeeping_deletes_old_runs_and_artifact_versions(prefect_api, tmp_path):
    from prefect import tags
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.daily import daily_flow
    from flows.housekeeping import housekeeping_flow

    wd = str(tmp_path / "work")
    ids = []
    with tags("kcg", "KCG", "daily"):  # as kcg serve and kcg daily tag every run
        for day in ("2023-01-16", "2023-01-17"):
            state = daily_flow(date=day, workdir=wd, config_dir=str(CONFIG_DIR), return_state=True)
            assert state.is_completed(), state
            ids.append(state.state_details.flow_run_id)
    untagged = daily_flow(date="2023-01-18", workdir=wd, config_dir=str(CONFIG_DIR), return_state=True)
    latest = Artifact.get("kcg-oversikt")
    assert latest is not None and latest.flow_run_id == untagged.state_details.flow_run_id

    # within keep_days: nothing goes
    kept = housekeeping_flow(keep_days=60, config_dir=str(CONFIG_DIR))
    assert kept["flow_runs"] == 0
    with get_client(sync_client=True) as client:
        for rid in ids:
            assert client.read_flow_run(rid).id == rid

    # 61 days later: both tagged runs and their artifact versions are deleted
    later = (datetime.now(UTC) + timedelta(days=61)).isoformat()
    done = housekeeping_flow(keep_days=60, now=later, config_dir=str(CONFIG_DIR))
    assert done["flow_runs"] >= 2 and done["artifacts"] >= 4
    with get_client(sync_client=True) as client:
        for rid in ids:
            with pytest.raises(ObjectNotFound):
                client.read_flow_run(rid)
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        left = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        newest_ids = {c.latest_id for c in client.read_latest_artifacts()}
        # only a key's newest version may outlive its run (between-meetings is written only when it changed)
        assert [a.key for a in left if a.id not in newest_ids] == []
        assert {a.key for a in left} <= {"kcg-between-meetings"}
        # the untagged run (not this network's) stays, and so does the newest overview
        assert client.read_flow_run(untagged.state_details.flow_run_id).name.startswith("daglig 2023-01-18")
    newest = Artifact.get("kcg-oversikt")
    assert newest is not None and newest.id == latest.id
