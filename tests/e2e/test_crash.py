"""Crash injection: kill the daily and intake runs at every call of every
side effect, rerun them on the same directories with clean adapters, and
check that nothing was lost or done twice.

The scenario (tests/support/helpers.py: CRASH_OPS) is seven runs over February and
March 2023 on a four-person network: catch-up steps and skips, an invitation
and its update, a plan-change mail, templates, minutes filed and
distributed, a reply without attachment, a stranger's mail, a corrected
version of the minutes.

A reference run without crashes records, for each run, the directory before
it and everything observable after it. For each crash point (method, N-th
call, before/after the real call) the test copies the directory from before
that run, runs it with the crash, reruns it with clean adapters (same day,
same time) and compares with the reference:

* zero lost mails or replies: the same keys in mail/sent, every incoming
  message handled and out of the inbox, every reply filed;
* zero duplicate mails: one file per X-KCG-Mail key, and the transport wrote
  each key once over crash + rerun (a second write would be a second mail
  on SMTP);
* zero duplicate files: the archive holds exactly the reference files;
* the same state record (actions settled, messages, filings, decisions,
  invitation snapshots).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.helpers import CRASH_OPS, Crash, CrashPlan, crash_deliveries, observe, run_op

TESTS = Path(__file__).resolve().parents[1]


@dataclass
class Reference:
    before: list[Path]  # directory before each run (incoming mail already delivered)
    after: list[dict]  # observe() after each run
    calls: list[Counter]  # adapter calls made by each run
    logs: list[list[tuple[str, int, str]]]  # the calls in order
    writes: list[Counter]  # mails written by each run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    base = tmp_path_factory.mktemp("crash-reference")
    work = base / "work"
    work.mkdir()
    ref = Reference([], [], [], [], [])
    for i, op in enumerate(CRASH_OPS):
        for name, raw in crash_deliveries(op, work):
            (work / "mail" / "inbox" / "cur").mkdir(parents=True, exist_ok=True)
            (work / "mail" / "inbox" / "cur" / name).write_bytes(raw)
        snap = base / f"before-{i}"
        shutil.copytree(work, snap)
        plan = CrashPlan()
        run_op(op, work, plan)
        ref.before.append(snap)
        ref.after.append(observe(work))
        ref.calls.append(plan.calls)
        ref.logs.append(plan.log)
        ref.writes.append(plan.writes)
    return ref


def test_reference_run_is_complete(reference):
    """The scenario itself: what every crashed run must end up with."""
    final = reference.after[-1]
    sent = final["sent"]
    assert set(sent.values()) == {1}
    actions = Counter(k.split(":")[0] if k.startswith("welcome:") else k.split(":")[1] for k in sent)
    assert actions == Counter({"brief_host": 1, "invite": 3, "send_template": 2, "chase_host": 1, "escalate": 1,
                               "reply_problem": 1, "plan_change": 1, "distribute": 3, "welcome": 1})
    # the Feb invitation goes out (go-live before the meeting); no separate reminder: the
    # reminder is the template mail, and no step of its own is planned any more
    assert not [k for k in final["actions"] if ":step:remind_host" in k]
    assert "2023-03:invite:members:s1" in sent and "2023-02:distribute:members:v2" in sent
    docx = [p for p, _ in final["archive"] if p.endswith(".docx")]
    assert len(docx) == 3 and sum("(v2)" in p for p in docx) == 1  # Feb v1, Feb v2, Mar v1
    assert final["boxes"]["inbox"] == []
    assert len(final["boxes"]["processed"]) == 4 and len(final["boxes"]["quarantine"]) == 2
    assert all(status == "done" for _, status in final["messages"].values())
    assert sorted(o for o, _ in final["messages"].values()) == ["calendar_response", "held", "minutes", "minutes",
                                                                 "minutes", "no_minutes"]  # held: the stranger's file
    assert final["attendance"]["2023-03"] == {"lisa@uppsala.example.se": "ACCEPTED"}
    assert any(p.endswith(".kcg-members.json") for p, _ in final["archive"])  # the new member invited
    assert all(s in ("done", "skipped") for s in final["actions"].values())
    assert [(f[0], f[1]) for f in final["filings"]] == [("2023-02", 1), ("2023-02", 2), ("2023-03", 1)]
    for c in reference.calls:
        assert sum(c.values()) > 0
    for w in reference.writes:
        assert set(w.values()) <= {1}


def _compare(expected: dict, got: dict, writes: Counter, expected_writes: Counter) -> list[str]:
    out = []
    lost = sorted(set(expected["sent"]) - set(got["sent"]))
    extra = sorted(set(got["sent"]) - set(expected["sent"]))
    if lost:
        out.append(f"lost mail {lost}")
    if extra:
        out.append(f"unexpected mail {extra}")
    dup_files = sorted(k for k, n in got["sent"].items() if n > 1)
    dup_writes = sorted(k for k, n in writes.items() if n > 1)
    if dup_files or dup_writes:
        out.append(f"mail sent twice {dup_files or dup_writes}")
    if sorted(writes) != sorted(expected_writes):
        out.append(f"mails written {sorted(writes)} != {sorted(expected_writes)}")
    if got["archive"] != expected["archive"]:
        exp, g = set(expected["archive"]), set(got["archive"])
        out.append(f"archive: extra {sorted(p for p, _ in g - exp)}, missing {sorted(p for p, _ in exp - g)}")
    if got["boxes"] != expected["boxes"]:
        out.append(f"mailboxes {got['boxes']} != {expected['boxes']}")
    for key, (outcome, status) in expected["messages"].items():
        g = got["messages"].get(key)
        if g != (outcome, status):
            out.append(f"message {key[:8]}: {g} instead of {(outcome, status)}")
    if got["filings"] != expected["filings"]:
        out.append(f"filings {got['filings']} != {expected['filings']}")
    if got["decisions"] != expected["decisions"]:
        out.append("decisions differ")
    # A cycle step counts as settled whether it was done or skipped (a rerun
    # may settle a step that already went out as skipped with a reason).
    def settled(actions: dict[str, str]) -> dict[str, str]:
        return {k: ("settled" if ":step:" in k and v in ("done", "skipped") else v) for k, v in actions.items()}

    exp_actions, got_actions = settled(expected["actions"]), settled(got["actions"])
    diff = {k: (got_actions.get(k), v) for k, v in exp_actions.items() if got_actions.get(k) != v}
    diff.update({k: (v, None) for k, v in got_actions.items() if k not in exp_actions})
    if diff:
        out.append(f"state actions (got, expected) {diff}")
    if got["attendance"] != expected["attendance"]:
        out.append(f"attendance {got['attendance']} != {expected['attendance']}")
    if got["kv"] != expected["kv"]:
        out.append(f"invitation state {got['kv']} != {expected['kv']}")
    return out


# Every call of every side effect. "after" is run where it is a moment of its
# own: between writing a mail to Sent and recording it (send, send_invitation)
# and between recording a filing and what follows it. For the other state
# writes, the archive store and the inbox move, "after the N-th call" is the
# same moment as "before the next call" of something in this list (the
# recorded intent is followed by the send, the stored file by its filing
# record, the "done" message record by the move, the move by the next
# message's "seen" record), so those are not run twice.
CRASH_POINTS = [
    ("send", "before"), ("send", "after"),
    ("send_invitation", "before"), ("send_invitation", "after"),
    ("record_action", "before"),
    ("record_filing", "before"), ("record_filing", "after"),
    ("record_message", "before"),
    ("store", "before"),
    ("move", "before"), ("move", "after"),  # after the last move: the run is done
    ("put", "before"),  # the invitation snapshot
    # the other write paths: the decisions of filed minutes, a calendar answer,
    # the shared link of a filed file, the new member's archive invitation
    ("replace_decisions", "before"), ("replace_decisions", "after"),
    ("record_attendance", "before"), ("record_attendance", "after"),
    ("shared_link", "before"), ("shared_link", "after"),
    ("add_member", "before"), ("add_member", "after"),
]


def same_moment_as_send_after(log: list[tuple[str, int, str]], n: int) -> bool:
    """Is the n-th record_action the outbox's "done" record right after the
    transport wrote the same mail? Crashing before it is exactly crashing
    after that send, which the send-after points already do."""
    k = next(j for j, (method, num, _) in enumerate(log) if method == "record_action" and num == n)
    if k == 0:
        return False
    prev_method, _, prev_key = log[k - 1]
    return prev_method in ("send", "send_invitation") and log[k][2] == f"{prev_key} done"


def test_record_action_log_matches_the_outbox():
    """The equivalence used above, checked on the real outbox: intent, send, done."""
    plan = CrashPlan()
    import tempfile

    from support.helpers import close, crash_configs, crashing_app

    from kcg_mail.ports import Address, OutgoingMessage

    with tempfile.TemporaryDirectory() as d:
        app = crashing_app(Path(d), crash_configs()[0], plan)
        coord = app.cfg.network.coordinator
        app.outbox.send(OutgoingMessage(key="k", action="alert", meeting_id=None, sender=app.composer.sender,
                                        to=(Address(coord.name, coord.email),), subject="s", text="t"))
        close(app)
    assert plan.log == [("record_action", 1, "k intent"), ("send", 1, "k"), ("record_action", 2, "k done")]
    assert not same_moment_as_send_after(plan.log, 1) and same_moment_as_send_after(plan.log, 2)


@pytest.mark.parametrize("method,when", CRASH_POINTS, ids=[f"{m}-{w}" for m, w in CRASH_POINTS])
def test_crash_at_every_call_then_rerun(reference, tmp_path, method, when):
    failures: list[str] = []
    positions = 0
    for i, op in enumerate(CRASH_OPS):
        for n in range(1, reference.calls[i][method] + 1):
            if method == "record_action" and when == "before" and same_moment_as_send_after(reference.logs[i], n):
                continue
            positions += 1
            work = tmp_path / f"{i}-{n}"
            shutil.copytree(reference.before[i], work)
            crash = CrashPlan(method, n, when)
            try:
                run_op(op, work, crash)
            except Crash:
                pass
            if not crash.fired:
                failures.append(f"{op.name}: {crash} did not happen")
                continue
            rerun = CrashPlan()  # clean adapters, only counting
            run_op(op, work, rerun)
            problems = _compare(reference.after[i], observe(work), crash.writes + rerun.writes, reference.writes[i])
            if problems:
                failures.append(f"{op.name}: crash at {method} #{n} {when}, rerun: " + "; ".join(problems))
    assert positions > 0, f"the scenario never calls {method}"
    assert not failures, f"{len(failures)} of {positions} crash points broke an invariant:\n" + "\n".join(failures)


def test_two_crashes_in_a_row(reference, tmp_path):
    """Crash, rerun and crash again later in the same run, then finish."""
    i = next(k for k, op in enumerate(CRASH_OPS) if op.kind == "daily")
    work = tmp_path / "w"
    shutil.copytree(reference.before[i], work)
    total = Counter()
    for plan in (CrashPlan("send", 2, "after"), CrashPlan("send_invitation", 1, "after"), CrashPlan()):
        try:
            run_op(CRASH_OPS[i], work, plan)
        except Crash:
            pass
        total += plan.writes
    assert _compare(reference.after[i], observe(work), total, reference.writes[i]) == []


def test_process_really_killed_mid_run(reference, tmp_path):
    """A real SIGKILL between writing the invitation to Sent and recording
    it (no finally blocks, no connection close), then a normal rerun."""
    i = 0
    work = tmp_path / "w"
    shutil.copytree(reference.before[i], work)
    assert reference.calls[i]["send_invitation"] >= 1
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KCG_TEST_KILL": "send_invitation:1:after", "PYTHONPATH": pythonpath}
    killed = subprocess.run([sys.executable, str(TESTS / "support" / "helpers.py"), str(work), str(i)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    assert "killing myself at send_invitation #1 after" in killed.stderr
    # the invitation is in Sent, its record says only "intent"
    from support.helpers import sent_by_key

    from kcg_mail.adapters.sqlite_state import SqliteState

    inv_key = "2023-02:invite:members:s0"  # the first run (go-live 3 Feb) invites to February
    assert inv_key in sent_by_key(work)
    st = SqliteState(work / "state.sqlite")
    assert st.action(inv_key).status == "intent"
    st.close()
    rerun = CrashPlan()
    run_op(CRASH_OPS[i], work, rerun)
    got = observe(work)
    assert inv_key not in rerun.writes  # recognised in Sent: not sent again
    assert got["sent"] == reference.after[i]["sent"]
    assert set(got["sent"].values()) == {1}
    assert got["actions"] == reference.after[i]["actions"]
    assert got["kv"] == reference.after[i]["kv"]
