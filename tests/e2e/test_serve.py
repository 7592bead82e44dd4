"""The production path: ``kcg serve`` against real servers, as a coordinator runs it.

A real Prefect server, a real Dovecot + Postfix, ``kcg serve`` as a subprocess
with Prefect's default runner settings (tests/support/serve_harness.py). A host
replies through SMTP submission; Postfix delivers to the network mailbox over
LMTP; the test waits where members read their mail. Nothing of kcg_mail runs in
the test process except composing the host's reply and reading the state
record afterwards.

The waits are generous (a shared machine); every one of them is far below the
30-minute safety-net schedule, so a pass means the push path did the work.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

# isort: off
from support.serve_harness import host_and_member, serve_stack  # puts bench/ on sys.path
from bench._common import MAILBOX, replies
# isort: on

pytestmark = [pytest.mark.server, pytest.mark.slow]

WAIT = 90.0  # seconds; the safety net would take up to 30 minutes
BAD_LOG = ("Traceback", "WARNING", "ERROR", "Failed to initialize plugins", "ObjectNotFound", "deadlock")


def wait_until(pred, timeout: float = WAIT, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def members_with(stack, emails, n: int) -> bool:
    return all(len(stack.distributions(e)) >= n for e in emails)


def why(stack) -> str:
    """What a failed wait shows: runs, the serve log, the mail server's log."""
    runs = [(r["name"], r["state_type"], (r.get("state") or {}).get("message")) for r in stack.intake_runs()]
    return f"runs: {runs}\n--- kcg serve:\n{stack.log()[-4000:]}\n--- mail:\n{stack.mail.logs()[-3000:]}"


def filings(stack, meeting_id: str) -> int:
    from kcg_mail.adapters.sqlite_state import SqliteState

    st = SqliteState(stack.workdir / "state.sqlite")
    try:
        return len(st.filings(meeting_id))
    finally:
        st.close()


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    from support.prefect_server import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect")) as server:
        yield server


@pytest.fixture()
def stack(tmp_path, prefect):
    with serve_stack(tmp_path, prefect) as s:
        yield s


def test_kcg_serve_files_and_distributes_a_reply_sent_through_postfix(stack):
    app, m, host, member = host_and_member(stack.config_dir)
    members = [p.email for p in app.cfg.network.active_members]
    msgs = replies(app, m, 3, "serve")

    stack.start_serve()
    stack.wait_ready()
    log = stack.log()
    assert not [b for b in BAD_LOG if b in log], log  # a normal start says nothing alarming

    # 1. a host's reply while kcg serve runs
    stack.submit(msgs[0][1], host)
    assert wait_until(lambda: members_with(stack, members, 1)), why(stack)
    d = stack.distributions(member)[0]
    assert "Beslut serve0: ta fram underlag" in d.text()
    assert m.token in d.message["Subject"]
    assert filings(stack, m.id) == 1
    runs = stack.intake_runs()
    pushed = [r for r in runs if r["name"] == "intag: 1 protokoll"]
    assert len(pushed) == 1 and pushed[0]["state_type"] == "COMPLETED", runs
    assert "listener" in pushed[0]["tags"]
    assert not [r for r in runs if r["state_type"] in ("FAILED", "CRASHED", "CANCELLED")], runs

    # 2. SIGTERM: kcg serve stops, and the completed runs stay completed
    stopped_in = stack.stop_serve(signal.SIGTERM, timeout=30)
    assert stopped_in != float("inf"), stack.log()
    assert stack.proc.returncode in (0, -signal.SIGTERM), (stack.proc.returncode, stack.log())
    after = {r["id"]: r["state_type"] for r in stack.intake_runs()}
    assert all(after[r["id"]] == r["state_type"] for r in runs if r["state_type"] == "COMPLETED"), after
    assert "CANCELLED" not in after.values(), after

    # 3. a reply while kcg serve is down is handled when it is back
    stack.submit(msgs[1][1], host)
    assert wait_until(lambda: stack.delivery_of(MAILBOX, b"#serve0001"), 30)  # in the network's INBOX
    stack.start_serve()
    assert wait_until(lambda: members_with(stack, members, 2)), why(stack)
    assert "Beslut serve1" in stack.distributions(member)[1].text()

    # 4. and the next one pushed as before
    stack.submit(msgs[2][1], host)
    assert wait_until(lambda: members_with(stack, members, 3)), why(stack)
    time.sleep(1.0)
    # exactly once: one filing and one distribution per reply, for every member
    assert filings(stack, m.id) == 3
    assert {e: len(stack.distributions(e)) for e in members} == {e: 3 for e in members}
    sent = [p for p in stack.files(MAILBOX) if b":distribute:members:" in p.read_bytes()]
    assert len(sent) == 3  # the Sent copies
    assert not [b for b in BAD_LOG if b in stack.log()], stack.log()


def test_kcg_serve_carries_on_after_the_mail_server_restarts(stack):
    app, m, host, member = host_and_member(stack.config_dir)
    members = [p.email for p in app.cfg.network.active_members]
    msgs = replies(app, m, 3, "fault")
    stack.start_serve()
    stack.wait_ready()

    # 1. the mail server goes away for 3 s; a reply right after its return
    stack.mail.restart_dovecot(down_for=3.0)
    stack.submit(msgs[0][1], host)
    assert wait_until(lambda: members_with(stack, members, 1)), why(stack)
    assert "Beslut fault0" in stack.distributions(member)[0].text()

    # 2. a reply delivered just before the server goes down: the run it
    #    started may fail half-way; it is redone once the server is back
    stack.submit(msgs[1][1], host)
    assert wait_until(lambda: stack.delivery_of(MAILBOX, b"#fault0001"), 30)
    stack.mail.stop_dovecot()
    time.sleep(3.0)
    stack.mail.start_dovecot()
    assert wait_until(lambda: members_with(stack, members, 2)), why(stack)

    # 3. plain push again
    stack.submit(msgs[2][1], host)
    assert wait_until(lambda: members_with(stack, members, 3)), why(stack)
    time.sleep(1.0)
    assert filings(stack, m.id) == 3
    assert {e: len(stack.distributions(e)) for e in members} == {e: 3 for e in members}
    texts = [d.text() for d in stack.distributions(member)]
    assert [any(f"Beslut fault{i}" in t for t in texts) for i in range(3)] == [True] * 3
    runs = stack.intake_runs()
    assert sum(r["state_type"] == "COMPLETED" and r["name"].startswith("intag: ") and "protokoll" in r["name"]
               for r in runs) >= 1, runs
    assert stack.proc.poll() is None, stack.log()  # still serving


def imap_sessions(stack, user: str = MAILBOX) -> int:
    """The network mailbox's open IMAP sessions, as Dovecot counts them."""
    out = stack.mail.doveadm("who", "-1", user)
    return sum(1 for line in out.splitlines()[1:] if "imap" in line)


def test_kcg_serve_closes_each_runs_mail_connection(stack):
    """One in-process intake run per new mail: each must close its IMAP session.

    Dovecot allows 10 sessions per user and address (its default); a run that
    left its session open made the eleventh-or-so reply fail with
    "Maximum number of connections from user+IP exceeded"."""
    app, m, host, member = host_and_member(stack.config_dir)
    n = 14
    msgs = replies(app, m, n, "conn")
    stack.start_serve()
    stack.wait_ready()
    for i, (_, raw) in enumerate(msgs):
        stack.submit(raw, host)
        assert wait_until(lambda i=i: len(stack.distributions(member)) >= i + 1), why(stack)
    assert wait_until(stack.wait_no_run_working, 30)
    # the listener's IDLE session, and at most one more from a run ending right now
    assert imap_sessions(stack) <= 2, stack.mail.doveadm("who", "-1", MAILBOX)
    runs = stack.intake_runs()
    assert not [r for r in runs if r["state_type"] in ("FAILED", "CRASHED", "CANCELLED")], runs
    assert len([r for r in runs if "listener" in r["tags"] and r["state_type"] == "COMPLETED"]) >= n
    assert filings(stack, m.id) == n
    assert "Maximum number of connections" not in stack.log(), stack.log()[-3000:]
    # the runs carry their tags, their message tasks none: a tagged task run first asks the
    # server for tag concurrency slots, which took 2.2-2.5 s in about one run of ten
    pushed = [r["id"] for r in runs if "listener" in r["tags"]]
    tasks = httpx.post(f"{stack.prefect.api_url}/task_runs/filter",
                       json={"flow_runs": {"id": {"any_": pushed}}}, timeout=10).json()
    assert len([t for t in tasks if t["name"].startswith("message")]) >= n, tasks
    assert [t["tags"] for t in tasks if t["tags"]] == [], tasks


def test_sigterm_while_kcg_serve_starts_leaves_no_run_behind(stack):
    """SIGTERM at several moments of the start-up (Prefect's imports, the start-up
    intake run, registering the deployments): kcg serve exits within seconds, no
    intake run is left running on the server, and every reply is distributed
    exactly once by the end."""
    app, m, host, member = host_and_member(stack.config_dir)
    delays = (0.8, 1.6, 2.2, 3.0, 4.5)
    msgs = replies(app, m, len(delays), "early")
    for i, delay in enumerate(delays):
        stack.submit(msgs[i][1], host)  # while kcg serve is stopped: the start-up run's work
        assert wait_until(lambda i=i: stack.delivery_of(MAILBOX, msgs[i][0].encode()), 30)
        stack.start_serve()
        time.sleep(delay)
        took = stack.stop_serve(signal.SIGTERM, timeout=30)
        assert took < 25, (delay, stack.log()[-3000:])
        # before Python installed the handler SIGTERM ends it at once (no run can have started)
        assert stack.proc.returncode in (0, -signal.SIGTERM), (delay, stack.proc.returncode, stack.log()[-3000:])
        left = [r for r in stack.intake_runs() if r["state_type"] in ("RUNNING", "PENDING", "CANCELLING")]
        assert left == [], (delay, left, stack.log()[-3000:])
        assert not [r for r in stack.intake_runs() if r["state_type"] in ("CRASHED", "CANCELLED", "FAILED")], delay
    stack.start_serve()
    assert wait_until(lambda: len(stack.distributions(member)) >= len(delays)), why(stack)
    time.sleep(1.0)
    texts = [d.text() for d in stack.distributions(member)]
    for i in range(len(delays)):
        assert sum(f"Beslut early{i}:" in t for t in texts) == 1, (i, texts)
    assert filings(stack, m.id) == len(delays)
