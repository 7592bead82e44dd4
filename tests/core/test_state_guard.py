"""State that cannot silently reset: an emptied, deleted or replaced
state file in a used work directory is an error naming the file and the fix, and nothing
is sent; ``kcg state rebuild`` and ``kcg state restore`` bring back a record under which
the next runs send nothing already sent."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from support.helpers import (  # noqa: E402
    CONFIG_DIR,
    archive_files,
    at,
    attachment_of,
    config_with,
    meeting,
    replace_attachment,
    sent_by_key,
    shipped_config,
)
from typer.testing import CliRunner

from kcg_mail.adapters.sqlite_state import (  # noqa: E402
    BACKUP_DIR,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SqliteState,
    StateFileError,
    list_backups,
)
from kcg_mail.bootstrap import bootstrap  # noqa: E402
from kcg_mail.entrypoints.cli import app as cli  # noqa: E402
from kcg_mail.entrypoints.demo_hosts import host_reply  # noqa: E402
from kcg_mail.services.daily import run_daily  # noqa: E402
from kcg_mail.services.intake import run_intake  # noqa: E402
from kcg_mail.state_guard import StateReset  # noqa: E402

pytestmark = pytest.mark.core

FEB, MAR = meeting("2023-02"), meeting("2023-03")
CFG = config_with(shipped_config(), ["2023-02", "2023-03"])
runner = CliRunner()


def _app(wd: Path):
    return bootstrap(wd, CONFIG_DIR, cfg=CFG)


def _run(wd: Path, *, intake_day=None, daily_days=()) -> None:
    a = _app(wd)
    try:
        for d in daily_days:
            run_daily(a, at(d))
        if intake_day is not None:
            report = run_intake(a, at(intake_day, 12))
            assert report.errors == []
    finally:
        a.state.close()


def _used_workdir(wd: Path) -> bytes:
    """February: brief, invitation, reminder, template; the host's minutes filed and
    distributed; March's brief (its date is 21 days before)."""
    _run(wd, daily_days=[FEB.date - timedelta(days=3)])  # the Friday before: a working day
    a = _app(wd)
    try:
        raw = host_reply(a, FEB, at(FEB.date + timedelta(days=1), 10))
        a.mail.deliver(raw, "feb.eml")
    finally:
        a.state.close()
    _run(wd, intake_day=FEB.date + timedelta(days=1))
    return raw


def _empty(path: Path) -> None:
    path.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _cli(*args: str):
    return runner.invoke(cli, [*args], catch_exceptions=False)


@pytest.fixture
def used(tmp_path):
    wd = tmp_path / "w"
    reply = _used_workdir(wd)
    sent = sent_by_key(wd)
    assert any(":distribute:" in k for k in sent) and any(":send_template:" in k for k in sent)
    assert archive_files(wd)
    return wd, sent, reply


def test_state_file_carries_schema_marker_and_version(tmp_path):
    s = SqliteState(tmp_path / "state.sqlite")
    try:
        meta = s.meta()
        assert meta["schema"] == SCHEMA_NAME and meta["version"] == str(SCHEMA_VERSION) and len(meta["instance"]) == 32
        assert not s.marker_path.exists()  # written at the first record, not at creation
        s.put("x", "1")
        assert s.marker_path.exists() and s.instance in s.marker_path.read_text()
    finally:
        s.close()
    # a foreign SQLite file and a newer version are refused, naming the file
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    with pytest.raises(StateFileError, match=str(other)):
        SqliteState(other)
    con = sqlite3.connect(tmp_path / "state.sqlite")
    con.execute("UPDATE meta SET value='99' WHERE key='version'")
    con.commit()
    con.close()
    with pytest.raises(StateFileError, match="newer kcg-mail"):
        SqliteState(tmp_path / "state.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateFileError, match="not a kcg-mail state file"):
        SqliteState(tmp_path / "junk.sqlite")


@pytest.mark.parametrize("how", ["emptied", "deleted", "replaced", "rows_deleted"])
def test_reset_state_is_an_error_and_nothing_is_sent(used, how):
    wd, sent, reply = used
    state = wd / "state.sqlite"
    if how == "emptied":
        _empty(state)
    elif how == "deleted":
        state.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(state) + suffix).unlink(missing_ok=True)
    elif how == "replaced":
        _empty(state)
        state.unlink()
        SqliteState(state).close()  # a new, blank file with another instance id
    else:
        con = sqlite3.connect(state)
        for table in ("actions", "messages", "filings", "decisions", "kv"):
            con.execute(f"DELETE FROM {table}")
        con.commit()
        con.close()
    with pytest.raises(StateReset) as info:
        _run(wd, daily_days=[FEB.date - timedelta(days=1), FEB.date + timedelta(days=3)])
    msg = str(info.value)
    assert str(state) in msg
    assert "kcg state restore" in msg and "kcg state rebuild" in msg and "Nothing was sent" in msg
    assert sent_by_key(wd) == sent
    # and through the command line a run fails the same way (exit code, no new mail)
    for cmd in (["status"], ["daily", "--date", (FEB.date + timedelta(days=3)).isoformat()], ["intake"]):
        r = runner.invoke(cli, [*cmd, "-w", str(wd), "-c", str(CONFIG_DIR)])
        assert r.exit_code == 3, (cmd, r.output)
        assert "State problem" in r.output and "kcg state rebuild" in r.output and str(state) in r.output
    assert sent_by_key(wd) == sent


def test_rebuild_then_rerun_sends_nothing_already_sent(used):
    wd, sent, reply = used
    before = _app(wd)
    try:
        expected_actions = {r.key for r in before.state.actions() if ":step:" not in r.key and r.status == "done"}
        expected_filed = before.state.filings()
        expected_filings = [(f.meeting_id, f.version, f.content_hash) for f in expected_filed]
        expected_decisions = before.state.decisions()
        expected_invite = before.invitation("2023-02")
    finally:
        before.state.close()
    _empty(wd / "state.sqlite")

    r = _cli("state", "rebuild", "-w", str(wd), "-c", str(CONFIG_DIR))
    assert r.exit_code == 0, r.output
    assert "sent mails recorded as done" in r.output
    # the report names what came back: the meeting whose invitation it restored, each protocol filed again
    assert "invitation snapshots restored (2023-02)" in r.output
    assert all(f.path in r.output for f in expected_filed)

    after = _app(wd)
    try:
        assert {r.key for r in after.state.actions() if ":step:" not in r.key} == expected_actions
        assert [(f.meeting_id, f.version, f.content_hash) for f in after.state.filings()] == expected_filings
        assert after.state.decisions() == expected_decisions
        assert after.invitation("2023-02") == expected_invite
    finally:
        after.state.close()
    # the same runs again: nothing new; the February minutes again: a duplicate
    _run(wd, daily_days=[FEB.date - timedelta(days=1), FEB.date + timedelta(days=3)])
    a = _app(wd)
    try:
        again = replace_attachment(reply, attachment_of(reply)[1], "<feb-again@gavle.example.se>")
        a.mail.deliver(again, "feb-again.eml")
        report = run_intake(a, at(FEB.date + timedelta(days=2), 12))
        assert [h.outcome for h in report.handled] == ["duplicate"]
    finally:
        a.state.close()
    assert sent_by_key(wd) == sent
    # ...while what is really due next still goes out (the record is not just "stop everything")
    _run(wd, daily_days=[MAR.date - timedelta(days=14)])
    new = set(sent_by_key(wd)) - set(sent)
    assert new and all(k.startswith("2023-03:") for k in new)
    assert set(sent_by_key(wd).values()) == {1}


def test_restore_from_the_automatic_backup(used):
    wd, sent, reply = used
    backups = list_backups(wd / BACKUP_DIR)
    assert 1 <= len(backups) <= 7
    a = _app(wd)
    try:
        expected = {(r.key, r.status) for r in a.state.actions()}
        expected_filings = [(f.meeting_id, f.version) for f in a.state.filings()]
    finally:
        a.state.close()
    _empty(wd / "state.sqlite")
    r = _cli("state", "restore", "-w", str(wd), "-c", str(CONFIG_DIR))
    assert r.exit_code == 0, r.output
    assert "Restored" in r.output
    a = _app(wd)
    try:
        assert {(r.key, r.status) for r in a.state.actions()} >= {x for x in expected if ":step:" not in x[0]}
        assert [(f.meeting_id, f.version) for f in a.state.filings()] == expected_filings
    finally:
        a.state.close()
    _run(wd, daily_days=[FEB.date - timedelta(days=1), FEB.date + timedelta(days=3)])
    assert sent_by_key(wd) == sent


def test_backups_are_rotated_and_skipped_when_nothing_changed(tmp_path):
    from kcg_mail.state_guard import keep_backup

    s = SqliteState(tmp_path / "state.sqlite")
    try:
        s.put("k", "0")
        made = [keep_backup(s, keep=3)]
        assert keep_backup(s, keep=3) is None  # unchanged: no new copy
        for i in range(1, 6):
            s.put("k", str(i))
            made.append(keep_backup(s, keep=3))
        kept = list_backups(tmp_path / BACKUP_DIR)
        assert kept == sorted(made[-3:], reverse=True)
        con = sqlite3.connect(kept[0])
        assert con.execute("SELECT value FROM kv WHERE key='k'").fetchone()[0] == "5"
        con.close()
    finally:
        s.close()


def test_a_new_work_directory_starts_without_error(tmp_path):
    wd = tmp_path / "fresh"
    a = _app(wd)
    try:
        assert a.state.is_blank()
    finally:
        a.state.close()
    assert not os.path.exists(wd / BACKUP_DIR) or not list_backups(wd / BACKUP_DIR)


def test_alert_about_a_reset_state_goes_out_without_touching_the_state_file(used):
    from kcg_mail.bootstrap import alert_app
    from kcg_mail.services.alerts import send_failure_alert

    wd, sent, _ = used
    _empty(wd / "state.sqlite")

    class Run:
        id, name, parameters = "00000000-0000-0000-0000-000000000009", "daily", {}

    class State:
        def __init__(self, exc):
            self.exc, self.message = exc, f"Flow run encountered an exception: {type(exc).__name__}: {exc}"

        def result(self, raise_on_failure=True):
            return self.exc

    with pytest.raises(StateReset) as info:
        _app(wd)
    a, note = alert_app(wd, str(CONFIG_DIR))
    try:
        assert note and "alert-state.sqlite" in note
        assert send_failure_alert(a, "kcg-daily", Run(), State(info.value), now=at(FEB.date)) == "mail: sent"  # per channel (no webhook configured)
        assert send_failure_alert(a, "kcg-daily", Run(), State(info.value), now=at(FEB.date, 9)) == "already"
    finally:
        a.state.close()
    new = set(sent_by_key(wd)) - set(sent)
    assert len(new) == 1 and next(iter(new)).startswith("alert:kcg-daily:")
    assert (wd / "state.sqlite").stat().st_size == 0  # still recognisably reset
    with pytest.raises(StateReset):
        _app(wd)
