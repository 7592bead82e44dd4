"""Push intake (kcg_mail.entrypoints.listener) with the real intake, a real Maildir and a
real Dovecot + Postfix (tests/support/mailserver.py). No part of kcg_mail is mocked:
``on_mail`` is either a counter (to see exactly when the listener fires) or the
real ``run_intake`` under the intake lock.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.mailserver import mail_server

from bench._common import CONFIG_DIR, first_meeting, intake_time, replies, server_config
from kcg_mail.adapters.maildir import MaildirTransport, MaildirWatchSource
from kcg_mail.adapters.smtp_imap import SmtpImapTransport
from kcg_mail.bootstrap import bootstrap
from kcg_mail.entrypoints.listener import (
    Listener,
    locked_intake,
)
from kcg_mail.ports import MARKER_HEADER, MailSource
from kcg_mail.services.lock import IntakeBusy, intake_lock

ROOT = Path(__file__).resolve().parents[2]

KCG = "kcg@kcg.test"


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Calls:
    """on_mail that only records when it was called."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self):
        self.times.append(time.monotonic())

    def __len__(self):
        return len(self.times)


def distributions(app) -> list:
    return [r for r in app.state.actions() if r.action == "distribute" and r.status == "done"]


# --------------------------------------------------------------------------- no server


def test_backoff_is_bounded_exponential():
    from kcg_mail.adapters.retry import Delays

    b = Delays(1.0, 8.0)
    assert [b.next() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    b.reset()
    assert b.next() == 1


def test_intake_lock_serialises_threads(tmp_path):
    spans: list[tuple[float, float]] = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        with intake_lock(tmp_path):
            t0 = time.monotonic()
            time.sleep(0.1)
            spans.append((t0, time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 4
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def test_intake_lock_between_processes_and_released_on_death(tmp_path):
    code = ("import sys, time; from kcg_mail.services.lock import intake_lock\n"
            "with intake_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(IntakeBusy):
            with intake_lock(tmp_path, timeout=0.3):
                pass
    finally:
        proc.kill()  # a crashed holder: the kernel drops the lock
        proc.wait()
    with intake_lock(tmp_path, timeout=2):
        pass


@pytest.fixture()
def maildir_app(tmp_path):
    app = bootstrap(tmp_path, CONFIG_DIR)
    yield app
    app.state.close()


def test_maildir_listener_files_a_reply_within_two_seconds(maildir_app, tmp_path):
    app = maildir_app
    m = first_meeting(app)
    (tag, raw), = replies(app, m, 1, "md")
    done = threading.Event()

    def on_mail():
        report = locked_intake(app, intake_time(m), tmp_path)
        if report.count("minutes"):
            done.set()

    listener = Listener(MaildirWatchSource(app.mail.root), on_mail, trigger_on_start=False, wait_timeout=5).start()
    try:
        time.sleep(0.3)
        app.mail.deliver(raw, "reply.eml")
        assert done.wait(30)  # a deadline against hanging, not a speed limit (bench/bench_latency.py)
    finally:
        listener.stop()
    assert len(app.state.filings(m.id)) == 1
    assert len(distributions(app)) == 1


def test_maildir_scheduled_and_listener_race_handle_each_reply_once(tmp_path):
    """The listener and a tight 'scheduled' loop run the real intake at the
    same time, each with its own App (own state connection, own transport)."""
    apps = [bootstrap(tmp_path, CONFIG_DIR) for _ in range(2)]
    m = first_meeting(apps[0])
    msgs = replies(apps[0], m, 5, "race")
    errors: list[str] = []
    stop = threading.Event()

    def run(app):
        r = locked_intake(app, intake_time(m), tmp_path)
        errors.extend(r.errors)

    def scheduled():
        while not stop.is_set():
            run(apps[1])

    sched = threading.Thread(target=scheduled)
    listener = Listener(MaildirWatchSource(apps[0].mail.root, interval=0.05), lambda: run(apps[0]),
                        wait_timeout=1).start()
    sched.start()
    try:
        for i, (_tag, raw) in enumerate(msgs):
            apps[0].mail.deliver(raw, f"r{i}.eml")
            time.sleep(0.05)
        assert wait_until(lambda: len([r for r in apps[0].state.messages() if r.status == "done"]) == 5, 20)
        time.sleep(0.5)
    finally:
        stop.set()
        sched.join(10)
        listener.stop()
    assert errors == []
    # distribution.max_per_meeting_per_day (2): the other three versions wait for approval, not filed
    limit = apps[0].cfg.transport.distribution.max_per_meeting_per_day
    assert len(apps[0].state.filings(m.id)) == limit
    assert len(distributions(apps[0])) == limit == 2
    assert len(apps[0].state.messages("held")) == 5 - limit
    # one distribution mail per distributed version in Sent, never two; one question to the
    # coordinator per held version (he answers by reply), never two
    sent = [str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["X-KCG-Mail"])
            for p in MaildirTransport(tmp_path / "mail").sent_messages()]
    assert sum(":distribute:" in k for k in sent) == limit
    assert sum(":question:" in k for k in sent) == 5 - limit
    assert len(sent) == 5
    for a in apps:
        a.state.close()


# --------------------------------------------------------------------------- real Dovecot + Postfix


@pytest.fixture(scope="module")
def server_cfg(tmp_path_factory):
    """The shipped config with every address on the test server (Postfix
    delivers only @kcg.test), and those users."""
    return server_config(tmp_path_factory.mktemp("cfg") / "config")


@pytest.fixture(scope="module")
def mailserver(server_cfg):
    with mail_server(users=server_cfg[1]) as server:
        server.config_dir = server_cfg[0]
        yield server


@pytest.fixture()
def server(mailserver):
    if mailserver._dovecot is None or mailserver._dovecot.poll() is not None:
        restart_dovecot(mailserver)
    for user in mailserver.users:
        mailserver.reset(user)
    return mailserver


def restart_dovecot(server, down_for: float = 0.0) -> None:
    server.restart_dovecot(down_for)


def idle_source(server) -> MailSource:
    return SmtpImapTransport(**server.transport_kwargs(KCG)).mail_source()  # IMAP IDLE


def plain(i: int) -> bytes:
    return (f"From: someone@outside.test\r\nTo: {KCG}\r\nSubject: hello {i}\r\n"
            f"Message-ID: <m{i}.{time.time()}@outside.test>\r\n\r\nbody {i}\r\n").encode()




@pytest.mark.server
def test_idle_wakes_on_lmtp_delivery_and_triggers_one_intake(server):
    calls = Calls()
    listener = Listener(idle_source(server), calls, trigger_on_start=True, wait_timeout=60).start()
    try:
        assert wait_until(lambda: len(calls) == 1, 5)  # the start-up catch-up
        time.sleep(0.5)  # in IDLE now
        t0 = time.monotonic()
        server.deliver(plain(1), KCG)
        assert wait_until(lambda: len(calls) == 2, 30), server.logs()
        assert calls.times[1] >= t0  # woken by the delivery (latency: bench/bench_latency.py)
        time.sleep(1.5)
        assert len(calls) == 2, "one delivery, one trigger"
    finally:
        listener.stop()
    assert listener.stats.errors == []


@pytest.mark.server
def test_mail_arriving_while_the_intake_works_is_not_missed(server):
    """A delivery between the trigger and the next IDLE: UIDNEXT above the mark."""
    calls: list[float] = []

    def slow_intake():
        calls.append(time.monotonic())
        if len(calls) == 2:
            server.deliver(plain(99), KCG)  # lands while "the intake" runs
            time.sleep(0.3)

    listener = Listener(idle_source(server), slow_intake, wait_timeout=60).start()
    try:
        assert wait_until(lambda: len(calls) == 1, 5)
        time.sleep(0.5)
        server.deliver(plain(1), KCG)
        assert wait_until(lambda: len(calls) == 3, 5), calls
    finally:
        listener.stop()


@pytest.mark.server
def test_reconnects_after_dropped_connection_and_dovecot_restart(server):
    calls = Calls()
    listener = Listener(idle_source(server), calls, wait_timeout=60, backoff_initial=0.2, backoff_max=2.0).start()
    try:
        assert wait_until(lambda: len(calls) == 1, 5)
        time.sleep(0.5)
        # 1. the server drops the connection
        server.doveadm("kick", KCG)
        time.sleep(0.5)
        server.deliver(plain(1), KCG)
        assert wait_until(lambda: len(calls) >= 2, 8), (listener.stats, server.logs())
        n = len(calls)
        # 2. the server goes away for 3 s (several backoff rounds) and comes back;
        #    mail delivered right after the restart still wakes the listener
        restart_dovecot(server, down_for=3.0)
        server.deliver(plain(2), KCG)
        assert wait_until(lambda: len(calls) > n, 10), (listener.stats, server.logs())
        assert listener.stats.reconnects >= 2
        assert any("wait:" in e for e in listener.stats.errors)
        # 3. and the next message after that, in plain IDLE again
        n = len(calls)
        time.sleep(0.5)
        server.deliver(plain(3), KCG)
        assert wait_until(lambda: len(calls) > n, 5), listener.stats
    finally:
        listener.stop()


def _imap_app(server, workdir: Path):
    return bootstrap(workdir, server.config_dir, mail=SmtpImapTransport(**server.transport_kwargs(KCG)))


def _sent_keys(server) -> list[str]:
    out = []
    for raw in server.messages(KCG, "Sent"):
        out.append(str(email.message_from_bytes(raw, policy=email.policy.default)[MARKER_HEADER]))
    return out


@pytest.mark.server
def test_imap_scheduled_and_listener_race_file_and_distribute_once(server, tmp_path):
    """Two real intake runs over the same mail at the same moment (a barrier),
    then the listener against a tight scheduled loop: one filing and one
    distribution per reply."""
    apps = [_imap_app(server, tmp_path) for _ in range(2)]
    m = first_meeting(apps[0])
    msgs = replies(apps[0], m, 4, "imap")
    now = intake_time(m)

    # 1. the same mail, two runs released together
    server.deliver(msgs[0][1], KCG)
    barrier = threading.Barrier(2)
    reports = []

    def both(app):
        barrier.wait()
        reports.append(locked_intake(app, now, tmp_path))

    threads = [threading.Thread(target=both, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(sum(r.count("minutes") for r in [rep]) for rep in reports) == [0, 1]
    assert all(not r.errors for r in reports)
    assert len(apps[0].state.filings(m.id)) == 1
    assert len(distributions(apps[0])) == 1

    # 2. listener + scheduled loop racing over three more replies
    stop = threading.Event()
    errors: list[str] = []

    def run(app):
        errors.extend(locked_intake(app, now, tmp_path).errors)

    def scheduled():
        while not stop.is_set():
            run(apps[1])
            time.sleep(0.05)

    listener = Listener(idle_source(server), lambda: run(apps[0]), wait_timeout=60).start()
    sched = threading.Thread(target=scheduled)
    sched.start()
    try:
        for _, raw in msgs[1:]:
            server.deliver(raw, KCG)
            time.sleep(0.2)
        assert wait_until(lambda: len([r for r in apps[0].state.messages() if r.status == "done"]) == 4, 30)
        time.sleep(1.0)
    finally:
        stop.set()
        sched.join(30)
        listener.stop()
    assert errors == []
    # distribution.max_per_meeting_per_day (2): versions 3 and 4 wait for approval in the held area, not filed
    limit = apps[0].cfg.transport.distribution.max_per_meeting_per_day
    assert len(apps[0].state.filings(m.id)) == limit
    assert len(distributions(apps[0])) == limit == 2
    dist = [k for k in _sent_keys(server) if ":distribute:" in k]
    assert sorted(dist) == sorted(set(dist)) and len(dist) == limit, dist  # Postfix took each once
    assert len(server.messages(KCG, "processed")) == limit
    assert len(server.messages(KCG, "quarantine")) == 4 - limit
    assert len(apps[0].state.messages("held")) == 4 - limit
    assert server.messages(KCG, "INBOX") == []
    for a in apps:
        a.mail.close()
        a.state.close()


def test_intake_lock_is_reentrant_in_one_thread(tmp_path):
    with intake_lock(tmp_path):
        with intake_lock(tmp_path, timeout=0.5):  # would deadlock with a second flock
            pass
        # still held against other threads
        got = []
        t = threading.Thread(target=lambda: got.append(_try_lock(tmp_path)))
        t.start()
        t.join()
        assert got == [False]
    assert _try_lock(tmp_path)


def _try_lock(path) -> bool:
    try:
        with intake_lock(path, timeout=0.1):
            return True
    except IntakeBusy:
        return False
