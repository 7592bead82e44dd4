"""The state guard inside real Prefect flow runs: each run leaves a
backup of the state as it finished; a run on an emptied state fails without sending
anything but the coordinator's alert. Slow: the Prefect test harness."""

from __future__ import annotations

import os
import sqlite3

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import pytest  # noqa: E402
from support.helpers import CONFIG_DIR, sent_by_key  # noqa: E402

from kcg_mail.adapters.sqlite_state import BACKUP_DIR, list_backups  # noqa: E402

pytestmark = pytest.mark.slow


def test_flow_runs_keep_backups_and_refuse_an_emptied_state(prefect_api, tmp_path):  # noqa: F811
    from flows.daily import daily_flow

    wd = str(tmp_path)
    state = daily_flow(return_state=True, date="2023-01-16", workdir=wd, config_dir=str(CONFIG_DIR))
    assert state.is_completed(), state
    sent = sent_by_key(tmp_path)
    assert len(sent) == 1  # go-live on 16 January: only the February brief (no flood of January steps)
    (backup,) = list_backups(tmp_path / BACKUP_DIR)  # the first run's records, kept at its end
    con = sqlite3.connect(backup)
    try:
        keys = {r[0] for r in con.execute("SELECT key FROM actions WHERE status='done'")}
    finally:
        con.close()
    assert set(sent) <= keys

    (tmp_path / "state.sqlite").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.sqlite{suffix}").unlink(missing_ok=True)
    state = daily_flow(return_state=True, date="2023-01-17", workdir=wd, config_dir=str(CONFIG_DIR))
    assert state.is_failed()
    assert "kcg state restore" in str(state.message) or "StateReset" in str(state.message)
    new = set(sent_by_key(tmp_path)) - set(sent)
    assert all(k.startswith("alert:kcg-daily:") for k in new) and len(new) == 1  # only the alert
    assert (tmp_path / "state.sqlite").stat().st_size == 0
