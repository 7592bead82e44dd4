"""Mails that wait for the member caps, killed anywhere: nothing lost, nothing twice.

The planning round starts on Monday 6 November 2023, the day of a meeting: the
fourteen needs mails wait (the meeting's day, then the minutes' day) in the
state record, and the daily run of Wednesday 8 November sends them (but Lisa's:
the host of 6 November gets her protocol template that day, the first daily
run's late template, so her needs mail waits one more day). A crash is
injected at every call of the adapters while the mails are held back, and at
every call around the first mails and the last while the daily runs send them
(before and after each call); after the rerun every
member has exactly one needs mail. One run is killed for real (SIGKILL) between
the record of a send and the send."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from support.helpers import Crash, CrashPlan, at, crashing_app, make_app, sent_by_key, shipped_config

from kcg_mail.services import round as round_
from kcg_mail.services.daily import run_daily
from kcg_mail.services.pacing import SENT, WAITING, waiting_mails
from kcg_mail.services.status import overview_markdown

YEAR = 2024
CFG = shipped_config()
MEMBERS = [p.email for p in CFG.network.active_members]
START, MINUTES_DAY, RELEASE, THURSDAY = date(2023, 11, 6), date(2023, 11, 7), date(2023, 11, 8), date(2023, 11, 9)
NEEDS = {f"plan-{YEAR}:needs:{e}" for e in MEMBERS}
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def needs_sent(workdir: Path) -> dict[str, int]:
    counts = sent_by_key(workdir)
    return {k: counts[k] for k in NEEDS}


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Path:
    """A work directory where the round started on the meeting's day: every needs mail waits."""
    wd = tmp_path_factory.mktemp("held")
    app = make_app(wd, CFG)
    lines = round_.start_round(app, YEAR, at(START))
    assert all(line.endswith(": waiting") for line in lines) and len(lines) == 14
    app.close()
    return wd


def release(app, hour: int = 7, minute: int = 0) -> None:
    """The daily runs of Wednesday and Thursday."""
    run_daily(app, at(RELEASE, hour, minute))
    run_daily(app, at(THURSDAY, hour, minute))


def test_the_needs_mail_of_a_meeting_day_waits_and_the_overview_says_until_when(held, tmp_path):
    assert needs_sent(held) == dict.fromkeys(NEEDS, 0)
    work = tmp_path / "work"
    shutil.copytree(held, work)
    app = make_app(work, CFG)
    waiting = waiting_mails(app.state)
    assert {w.key for w in waiting} == NEEDS
    assert {w.until for w in waiting} == {RELEASE} and {w.since for w in waiting} == {START}
    md = overview_markdown(app, at(START))
    assert "## Utskick som väntar" in md
    assert "till 14 medlemmar väntar till onsdag 8 november 2023 (en mötesdag" in md
    # and kcg status, the same list
    from typer.testing import CliRunner

    from kcg_mail.entrypoints.cli import app as cli

    out = CliRunner().invoke(cli, ["status", "--workdir", str(work), "--config", str(CFG.directory)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "Utskick som väntar" in out.output and "till 14 medlemmar väntar till onsdag 8 november 2023" in out.output
    # called again the same day (a rerun): still waiting, nothing sent, nothing held twice
    assert set(round_.start_round(app, YEAR, at(START))) == {f"behovsutskick till {p.name}: waiting"
                                                             for p in CFG.network.active_members}
    assert len(waiting_mails(app.state)) == 14 and needs_sent(work) == dict.fromkeys(NEEDS, 0)
    # on the minutes' day they wait on; Wednesday's daily run sends them, the host's on Thursday
    assert app.outbox.release(at(MINUTES_DAY)) == []
    assert needs_sent(work) == dict.fromkeys(NEEDS, 0)
    run_daily(app, at(RELEASE))
    lisa = f"plan-{YEAR}:needs:{CFG.network.person('lisa').email}"
    assert needs_sent(work) == {k: int(k != lisa) for k in NEEDS}
    assert [w.until for w in waiting_mails(app.state)] == [THURSDAY]
    assert "(högst 1 utskick om dagen till en medlem)" in overview_markdown(app, at(RELEASE))
    run_daily(app, at(THURSDAY))
    assert needs_sent(work) == dict.fromkeys(NEEDS, 1) and not waiting_mails(app.state)
    assert "väntade till torsdag 9 november 2023" in overview_markdown(app, at(THURSDAY))


def _release_points(held: Path, tmp_path: Path) -> list[tuple[str, int]]:
    work = tmp_path / "count"
    shutil.copytree(held, work)
    plan = CrashPlan()
    release(crashing_app(work, CFG, plan))
    assert needs_sent(work) == dict.fromkeys(NEEDS, 1)
    # every call of the first mails and the last call of each kind: the rest repeat the pattern
    return [(m, n) for m in ("send", "put", "record_action")
            for n in sorted({n for n in range(1, 7) if n <= plan.calls[m]} | {plan.calls[m]})]


def test_a_crash_anywhere_while_the_waiting_mails_go_out(held, tmp_path):
    points = _release_points(held, tmp_path)
    # fourteen needs mails, the host's template and the coordinator's question about January's date
    assert ("send", 16) in points and ("put", 1) in points
    for method, n in points:
        for when in ("before", "after"):
            work = tmp_path / f"{method}-{n}-{when}"
            shutil.copytree(held, work)
            plan = CrashPlan(method, n, when)
            with pytest.raises(Crash):
                release(crashing_app(work, CFG, plan))
            again = CrashPlan()
            app = crashing_app(work, CFG, again)
            release(app, 7, 5)
            label = str(plan)
            for key in NEEDS:
                assert plan.writes[key] + again.writes[key] == 1, f"{label}: {key}"
            assert needs_sent(work) == dict.fromkeys(NEEDS, 1), label
            assert not waiting_mails(app.state), label
            app.close()


def test_a_crash_anywhere_while_the_mails_are_held_back(tmp_path):
    count = CrashPlan()
    round_.start_round(crashing_app(tmp_path / "count", CFG, count), YEAR, at(START))
    assert count.calls["send"] == 0 and count.calls["put"] >= 14
    for n in range(1, count.calls["put"] + 1):
        for when in ("before", "after"):
            work = tmp_path / f"put-{n}-{when}"
            plan = CrashPlan("put", n, when)
            with pytest.raises(Crash):
                round_.start_round(crashing_app(work, CFG, plan), YEAR, at(START))
            again = CrashPlan()
            app = crashing_app(work, CFG, again)
            round_.start_round(app, YEAR, at(START, 8))  # the coordinator starts it again
            assert len(waiting_mails(app.state)) == 14, str(plan)
            release(app)
            assert needs_sent(work) == dict.fromkeys(NEEDS, 1), str(plan)
            assert sum(again.writes[k] for k in NEEDS) == 14 and not plan.writes, str(plan)
            app.close()


KILL_CHILD = """
import sys
from datetime import date
from pathlib import Path
from support.helpers import KillPlan, at, crashing_app, shipped_config
from kcg_mail.services.daily import run_daily
plan = KillPlan("send", int(sys.argv[2]), "after")
run_daily(crashing_app(Path(sys.argv[1]), shipped_config(), plan), at(date(2023, 11, 8)))
"""


def test_killed_for_real_after_a_send_before_its_record(held, tmp_path):
    """SIGKILL right after the fifth needs mail was written (the seventh mail of the run:
    the host's template and the coordinator's date question go first), before the Outbox recorded it done: the rerun
    finds it in Sent and sends only the nine left."""
    work = tmp_path / "killed"
    shutil.copytree(held, work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(work), "7"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -9, child.stderr[-2000:]
    sent = needs_sent(work)
    assert sum(sent.values()) == 5 and set(sent.values()) == {0, 1}
    app = make_app(work, CFG)
    intents = [r.key for r in app.state.actions() if r.key in NEEDS and r.status == "intent"]
    assert len(intents) == 1  # the fifth: sent, not yet recorded done
    again = CrashPlan()
    release(crashing_app(work, CFG, again), 7, 5)
    assert needs_sent(work) == dict.fromkeys(NEEDS, 1)
    assert sum(again.writes[k] for k in NEEDS) == 9 and intents[0] not in again.writes
    records = {json.dumps(r["state"]) for r in app.ledger.waiting_mails()}
    assert records == {json.dumps(SENT)} and WAITING not in records
