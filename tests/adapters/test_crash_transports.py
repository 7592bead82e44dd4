"""Crash every transport: real SIGKILLs of a child process at each crash point,
on Maildir + local folder, SMTP/IMAP (real Dovecot + Postfix), Exchange and
Graph (protocol-level fakes) and Maildir + Dropbox (fake API), then a rerun
with clean adapters. See tests/support/crash_worlds.py for the scenario and how the
child reaches the servers.

Invariants after crash + rerun, against a run without crash:
* the state record is the same (mails settled, messages handled, filings,
  decisions, attendance, invitation snapshots);
* what went out, as the *server* counts it, is the same: every key exactly as
  often (per recipient on Dovecot) - nothing lost, nothing twice;
* the Dropbox holds the same files, links and members.

Which points run where (the matrix parametrized to stay within minutes on 2
cores): every point on Maildir + local folder; the points inside the mail
transport on the three network transports (SMTP/IMAP also between the SMTP
transaction and the Sent copy); the points inside the archive on Dropbox.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from support.crash_worlds import (
    SCENARIO,
    DropboxWorld,
    EwsWorld,
    GraphWorld,
    ImapWorld,
    MaildirWorld,
    app_for,
    close_app,
    deliveries,
    observe_state,
    run_child,
    run_scenario_op,
)
from support.helpers import CrashPlan

pytestmark = pytest.mark.slow

MAIL_POINTS = [("send", "before"), ("send", "after"), ("send_invitation", "before"), ("send_invitation", "after"),
               ("move", "before"), ("move", "after"), ("record_message", "before")]
ARCHIVE_POINTS = [("store", "before"), ("store", "after"), ("shared_link", "before"), ("shared_link", "after"),
                  ("record_filing", "before"), ("record_filing", "after"), ("replace_decisions", "before"),
                  ("replace_decisions", "after"), ("add_member", "before"), ("add_member", "after")]
STATE_POINTS = [("record_action", "before"), ("put", "before"), ("record_attendance", "before"),
                ("record_attendance", "after")]
POINTS = {
    "maildir": MAIL_POINTS + ARCHIVE_POINTS + STATE_POINTS,
    "smtp_imap": MAIL_POINTS + [("_append_sent", "before")],
    "exchange": MAIL_POINTS,
    "graph": MAIL_POINTS,
    "dropbox": ARCHIVE_POINTS,
}
#: methods crashed in every op that calls them (the others: in the first)
EVERY_OP = {"send", "store"}


@contextlib.contextmanager
def make_world(name: str, tmp: Path):
    if name == "maildir":
        yield MaildirWorld()
    elif name == "dropbox":
        w = DropboxWorld()
        try:
            yield w
        finally:
            w.stop()
    elif name == "exchange":
        from exchangelib.protocol import close_connections

        w = EwsWorld()
        try:
            yield w
        finally:
            w.stop()
            close_connections()
    elif name == "graph":
        w = GraphWorld()
        try:
            yield w
        finally:
            w.stop()
    else:
        from support.basics import kcg_test_config, server_users
        from support.crash_worlds import new_member
        from support.mailserver import mail_server

        cfg = kcg_test_config(tmp)
        users = server_users(cfg)
        users[new_member(cfg)[3]] = "pw-nina"
        with mail_server(users=users) as server:
            yield ImapWorld(server, str(tmp / "config-kcg-test"), sorted(users), cfg.network.mailbox.email)


def run_in_process(world, workdir: Path, op: int, mail: list[bytes], plan: CrashPlan | None = None):
    with world.active():
        app = app_for(world, workdir, op, plan)
        try:
            for raw in mail:
                world.deliver(raw)
            run_scenario_op(op, app)
        finally:
            close_app(app)


def observe(world, workdir: Path) -> dict:
    with world.active():
        return {"state": observe_state(workdir), "wire": world.wire()}


def diff(expected: dict, got: dict) -> list[str]:
    out = []
    for part in ("state", "wire"):
        for k in expected[part]:
            if expected[part][k] != got[part].get(k):
                e, g = expected[part][k], got[part].get(k)
                if isinstance(e, dict) and isinstance(g, dict):
                    e, g = ({x: e.get(x) for x in set(e) | set(g) if e.get(x) != g.get(x)},
                            {x: g.get(x) for x in set(e) | set(g) if e.get(x) != g.get(x)})
                out.append(f"{part}.{k}: expected {e}, got {g}")
    return out


WORLDS = ["maildir", pytest.param("smtp_imap", marks=pytest.mark.server), "exchange", "graph", "dropbox"]


@pytest.mark.parametrize("name", WORLDS)
def test_sigkill_at_every_point_then_rerun(name, tmp_path):
    with make_world(name, tmp_path) as world:
        # the reference: no crash, the deliveries built from what each host received
        world.reset()
        ref_dir = tmp_path / "ref"
        world.bind(ref_dir)
        mails, after, calls = [], [], []
        for i in range(len(SCENARIO)):
            with world.active():
                app = app_for(world, ref_dir, i)
                try:
                    mails.append(deliveries(world, app, i))
                finally:
                    close_app(app)
            plan = CrashPlan()
            run_in_process(world, ref_dir, i, mails[i], plan)
            calls.append(plan.calls)
            after.append(observe(world, ref_dir))
        assert after[1]["state"]["filings"] and after[1]["state"]["decisions"]
        assert sum(after[-1]["wire"]["out"].values()) > 0

        points = []
        for method, when in POINTS[name]:
            ops = [i for i in range(len(SCENARIO)) if calls[i][method]]
            assert ops, f"{name}: the scenario never calls {method}"
            for i in (ops if method in EVERY_OP else ops[:1]):
                points.append((i, method, when))

        failures = []
        for k, (i, method, when) in enumerate(points):
            world.reset()
            work = tmp_path / f"p{k}"
            world.bind(work)
            for j in range(i):
                run_in_process(world, work, j, mails[j])
            with world.active():
                for raw in mails[i]:
                    world.deliver(raw)
            proc = run_child(world, work, i, f"{method}:1:{when}")
            where = f"{SCENARIO[i].name}: SIGKILL at {method} #1 {when}"
            if proc.returncode != -9 or f"killing myself at {method} #1 {when}" not in proc.stderr:
                failures.append(f"{where}: child did not die there (rc {proc.returncode}): {proc.stderr[-2000:]}")
                continue
            world.settle()
            run_in_process(world, work, i, [])  # the rerun, same day, clean adapters
            problems = diff(after[i], observe(world, work))
            if problems:
                failures.append(f"{where}, rerun: " + "; ".join(problems))
            shutil.rmtree(work, ignore_errors=True)
        assert not failures, f"{name}: {len(failures)} of {len(points)} crash points broke an invariant:\n" + \
            "\n".join(failures)


# ----------------------------------------------------------------------------- what the protocols leave


def _kill_then_rerun(world, work: Path, kill: str, between=lambda: None) -> dict:
    world.reset()
    world.bind(work)
    proc = run_child(world, work, 0, kill)
    assert proc.returncode == -9 and "killing myself at" in proc.stderr, proc.stderr[-2000:]
    between()
    run_in_process(world, work, 0, [])
    return observe(world, work)


@pytest.mark.server
def test_smtp_window_closed_by_the_own_copy_and_what_remains(tmp_path):
    """SIGKILL after Postfix accepted the host's template (the run's second mail) and before
    its Sent copy was written. With the own copy (the network's mailbox in the
    envelope) the rerun finds the mail, writes the Sent copy and sends nothing
    again. What remains: if the own copy has not arrived by the time the rerun
    looks (we remove it to play that), the mail goes out a second time."""
    with make_world("smtp_imap", tmp_path) as world:
        first = "2023-02:send_template:daniel@kcg.test"
        got = _kill_then_rerun(world, tmp_path / "a", "_append_sent:2:before", world.settle)
        assert got["wire"]["out"][first] == 1, "recovered from the own copy: sent once"
        sent = world.server.messages(world.mailbox, "Sent")
        assert sum(1 for r in sent if first.encode() in r) == 1, "the Sent copy written by the rerun"
        assert got["state"]["actions"][first] == "done"

        def copy_not_there_yet():
            world.settle()
            world.server.empty(world.mailbox)  # as if Postfix still held the own copy

        got = _kill_then_rerun(world, tmp_path / "b", "_append_sent:2:before", copy_not_there_yet)
        assert got["wire"]["out"][first] == 2, "the remaining window: without the own copy, a second mail"
        assert got["state"]["actions"][first] == "done"


def test_graph_asynchronous_send_window_and_what_remains(tmp_path):
    """SIGKILL right after Graph answered 202 to sendMail: the Sent Items copy
    is not there yet (the fake is asynchronous like Exchange Online). The rerun
    waits ``settle_seconds`` from the intent and finds it: sent once. What
    remains: a copy slower than ``settle_seconds`` means a second mail."""
    with make_world("graph", tmp_path) as world:
        first = "2023-02:send_template:daniel@gavle.example.se"  # the run's second mail (the first is the invitation)
        got = _kill_then_rerun(world, tmp_path / "a", "send:1:after")
        assert got["wire"]["out"][first] == 1
        assert got["state"]["actions"][first] == "done"

        world.sent_delay, world.settle_seconds = 6.0, 1.0  # Exchange slower than we wait
        got = _kill_then_rerun(world, tmp_path / "b", "send:1:after")
        assert got["wire"]["out"][first] == 2, "the remaining window: the copy came too late, a second mail"
