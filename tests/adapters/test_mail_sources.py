"""The push port (``MailSource``): each configured transport gives its own source,
picked in ``bootstrap.make_source`` on a transport of its own. Maildir on a real
directory, Graph against the HTTP-level fake under the real client; the IMAP
IDLE source with a real Dovecot is in test_imap_session.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support.basics import CONFIG_DIR
from support.fake_graph import FakeGraph

from kcg_mail.adapters.imap_idle import ImapIdleSource
from kcg_mail.adapters.maildir import MaildirTransport, MaildirWatchSource
from kcg_mail.adapters.smtp_imap import SmtpImapTransport
from kcg_mail.bootstrap import make_source
from kcg_mail.config_loader import load_config
from kcg_mail.core.config_model import SmtpImapSettings
from kcg_mail.ports import POLL_SECONDS, MailSource, PollSource

MAIL = (b"From: someone@outside.test\r\nTo: kcg@kcg.test\r\nSubject: hej\r\n"
        b"Message-ID: <hej.1@outside.test>\r\n\r\nhej\r\n")


def test_embedded_config_gives_a_maildir_watch_that_wakes_on_delivered_mail(tmp_path: Path):
    source = make_source(load_config(CONFIG_DIR), tmp_path)
    assert isinstance(source, MaildirWatchSource)
    try:
        assert source.wait(0.2) is False  # nothing there
        source.mark()
        MaildirTransport(tmp_path / "mail").deliver(MAIL, "m1.eml")
        t0 = time.monotonic()
        assert source.wait(10.0) is True
        assert time.monotonic() - t0 < 5.0  # by the delivery, not by the timeout
        source.mark()
        assert source.wait(0.2) is False  # marked: the same mail does not wake it twice
    finally:
        source.close()


def test_the_listeners_stop_ends_a_waiting_maildir_source(tmp_path: Path):
    stop = threading.Event()
    source = make_source(load_config(CONFIG_DIR), tmp_path, stop)
    assert source.stop is stop
    source.mark()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    assert source.wait(30.0) is False
    assert time.monotonic() - t0 < 10.0


def test_smtp_imap_config_gives_imap_idle_on_a_session_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KCG_MAIL__KIND", "smtp_imap")
    monkeypatch.setenv("KCG_MAIL__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KCG_SMTP_PASSWORD", "x")
    source = make_source(load_config(CONFIG_DIR), tmp_path)  # connects to nothing until it waits
    assert isinstance(source, ImapIdleSource)
    assert source.session.retry.retries == 0  # the listener backs off, not the source

    transport = SmtpImapTransport(SmtpImapSettings(kind="smtp_imap", smtp_host="127.0.0.1", username="kcg@kcg.test"), "x")
    own = transport.mail_source()
    assert isinstance(own, ImapIdleSource) and own.session is not transport.imap
    assert transport.retry.retries == 3  # the intake's transport keeps its retries


def test_graph_config_gives_a_poll_source_that_wakes_on_new_mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeGraph()
    monkeypatch.setenv("KCG_MAIL__KIND", "graph")
    monkeypatch.setenv("KCG_MAIL__TENANT_ID", fake.tenant_id)
    monkeypatch.setenv("KCG_MAIL__CLIENT_ID", fake.client_id)
    monkeypatch.setenv("KCG_MAIL__MAILBOX", fake.mailbox)
    monkeypatch.setenv("KCG_GRAPH_CLIENT_SECRET", fake.client_secret)
    with fake.running():
        source: MailSource = make_source(load_config(CONFIG_DIR), tmp_path)
        assert isinstance(source, PollSource) and source.interval == POLL_SECONDS
        try:
            assert source.wait(0.1) is False  # the first poll: an empty mailbox
            cursor = source.cursor
            fake.deliver(MAIL)
            source.interval = 0.05  # the next poll after 50 ms instead of 10 s
            assert source.wait(5.0) is True
            assert source.cursor != cursor  # it moved on: the same mail does not wake it twice
        finally:
            source.close()
