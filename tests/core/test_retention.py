"""Retention of the Prefect server's history (kcg_mail/core/retention.py, pure):
which runs and artifact versions the housekeeping flow deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcg_mail.core import retention

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
