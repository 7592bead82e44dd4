"""The housekeeping flow against a real Prefect server: old runs and old
artifact versions go, the newest version of each key and runs still within
``keep_days`` stay (the rules: tests/core/test_retention.py)."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from datetime import UTC, datetime, timedelta  # noqa: E402

import pytest  # noqa: E402
from support.helpers import CONFIG_DIR  # noqa: E402


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
