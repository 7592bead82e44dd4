"""A coordinator's first day: new work directories, the real
Prefect flows on the embedded defaults (Maildir, local folder, SQLite), and
go-live dates across 2023-2027.

Slow: real Prefect (a temporary server per ``kcg`` process, the test harness
for the in-process flows)."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections import Counter
from datetime import date
from email import policy
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import pytest  # noqa: E402
from support.helpers import ROOT  # noqa: E402
from support.years import config_for_years  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

pytestmark = pytest.mark.slow

KCG = str(Path(sys.executable).with_name("kcg"))
HOST_ACTIONS = {"brief_host", "send_template", "chase_host"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KCG_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def _sent(work: Path) -> list[tuple[str, str, str]]:
    """(meeting id, action, Date header day) of every mail in mail/sent."""
    out = []
    for p in sorted((work / "mail" / "sent" / "cur").iterdir()):
        msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
        key = str(msg["X-KCG-Mail"]).strip()  # a long key is folded onto the next line
        parts = key.split(":")
        if parts[0] == "alert":  # alert:meeting-date:<meeting>:<question> (the coordinator did not answer)
            parts = parts[2:]
        out.append((parts[0], parts[1], msg["Date"].datetime.date().isoformat()))
    return out


# ------------------------------------------------------------------ item 1: a new work directory


def test_kcg_daily_on_a_work_directory_that_does_not_exist(tmp_path):
    work = tmp_path / "srv" / "kcg"
    assert not work.parent.exists()
    run = subprocess.run([KCG, "daily", "--date", "2023-01-23", "--workdir", str(work)], cwd=ROOT,
                         env=_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "unable to open database file" not in run.stderr and "Traceback" not in run.stderr
    assert (work / "state.sqlite").is_file() and (work / "prefect").is_dir()
    sent = _sent(work)
    # go-live 23 January 2023: January (2 January) was held 15 working days before: history.
    # February (6 February): its brief was due on 16 January, the invitation is due today.
    assert sorted((m, a) for m, a, _ in sent) == [("2023-02", "brief_host"), ("2023-02", "invite")]
    status = subprocess.run([KCG, "status", "--workdir", str(work)], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "före start" in status.stdout and "Start: 2023-01-23 (första körningen)" in status.stdout


def test_prefect_that_cannot_start_is_one_line_with_what_to_do(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    run = subprocess.run([KCG, "daily", "--date", "2023-01-23", "--workdir", str(tmp_path / "w")], cwd=ROOT,
                         env=_env(PREFECT_HOME=str(blocker / "prefect")), capture_output=True, text=True, timeout=240)
    assert run.returncode == 3
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "Traceback" not in run.stderr
    assert len(lines) <= 3, run.stderr  # one message (rich may wrap it)
    text = " ".join(lines)
    assert "PREFECT_API_URL" in text and str(blocker) in text


def test_kcg_serve_without_a_server_says_what_to_do(tmp_path):
    run = subprocess.run([KCG, "serve", "--workdir", str(tmp_path / "w")], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and "PREFECT_API_URL" in run.stderr and "Traceback" not in run.stderr


def test_kcg_intake_and_status_on_new_directories(tmp_path):
    from kcg_mail.entrypoints.cli import app as cli

    work = tmp_path / "a" / "b"
    status = CliRunner().invoke(cli, ["status", "--workdir", str(work)])
    assert status.exit_code == 0, status.output
    assert "ingen körning än" in status.output
    run = subprocess.run([KCG, "intake", "--workdir", str(tmp_path / "c" / "d")], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "c" / "d" / "state.sqlite").is_file()


# ------------------------------------------------------------------ items 2-4: go-live dates across the years




@pytest.mark.parametrize("go_live", ["2023-06-12", "2024-04-02", "2025-01-07", "2026-11-30", "2027-03-03"])
def test_first_weeks_from_go_live(prefect_api, tmp_path, go_live):
    """The real daily flow on a fresh work directory from ``go_live`` on, on
    every day something is due for eight weeks; no host ever answers."""
    from flows.daily import daily_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.cycle import next_due_date
    from kcg_mail.core.plan import add_working_days, is_working_day
    from kcg_mail.services.status import meeting_rows, needs_a_person

    cfgdir = config_for_years(tmp_path)
    work = tmp_path / "fresh" / "work"
    start = date.fromisoformat(go_live)
    end = date.fromordinal(start.toordinal() + 56)
    day: date | None = start
    runs = 0
    while day is not None and day <= end:
        result = daily_flow(date=day.isoformat(), workdir=str(work), config_dir=str(cfgdir))
        assert result["date"] == day.isoformat()
        runs += 1
        app = bootstrap(work, cfgdir)
        day = next_due_date(app.meetings, app.meeting_states(), day, app.cfg.meetings.lead_days,
                            go_live=app.go_live(), extra=app.extra_days)
    app = bootstrap(work, cfgdir)
    assert app.go_live() == start
    by_id = {m.id: m for m in app.meetings}
    sent = _sent(work)
    assert sent, "the first weeks send something"
    grace = add_working_days(start, -app.cfg.meetings.lead_days.late_template)
    for mid, action, day_sent in sent:
        d = date.fromisoformat(day_sent)
        assert d >= start and is_working_day(d), (mid, action, day_sent)
        assert by_id[mid].date >= grace, f"{mid} was held before go-live ({go_live}) but got {action}"
    host = Counter((mid, d) for mid, action, d in sent if action in HOST_ACTIONS)
    assert set(host.values()) == {1}, f"two mails about one meeting to a host on one day: {host}"
    first_day = [(mid, a) for mid, a, d in sent if d == go_live]
    assert len(first_day) <= 4, first_day  # no flood: at most an invitation and a host mail for two meetings
    rows = {r["möte"].split()[0]: r for r in meeting_rows(app)}  # "2023-01 Fysiskt möte"
    for m in app.meetings:
        if m.date < start:
            assert rows[m.id]["läge"] == "före start", m.id
        else:
            assert rows[m.id]["läge"] != "före start", m.id
    # plans exist up to 2027; from 1 October 2027 the missing 2028 plan needs a person
    items = needs_a_person(app, today=date(2027, 10, 1))
    assert any("ingen årsplan för 2028" in i for i in items)
    assert not any("ingen årsplan för" in i for i in needs_a_person(app, today=start))
    assert runs >= 2


def test_prefect_server_that_does_not_answer_is_one_line(tmp_path):
    from support.prefect_server import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    run = subprocess.run([KCG, "daily", "--date", "2023-01-23", "--workdir", str(tmp_path / "w")], cwd=ROOT,
                         env=_env(PREFECT_API_URL=url), capture_output=True, text=True, timeout=240)
    assert run.returncode == 3
    out = (run.stdout + run.stderr).strip()
    assert "Traceback" not in out and len(out.splitlines()) <= 3, out
    assert url in out and "prefect server start" in out
