"""The parts an ``SmtpImapTransport`` holds, against a real Dovecot + Postfix
(tests/mailserver.py): mailbox names in modified UTF-7, the one ``move`` (UID
MOVE, or COPY + STORE + EXPUNGE) used both by the intake's move and by the
filing of our own copies, and the IMAP IDLE source on a connection of its own."""

from __future__ import annotations

import email
import email.policy
import time

import pytest
from support.mailserver import mail_server

from kcg_mail.adapters.imap_idle import ImapIdleSource
from kcg_mail.adapters.imap_session import decode_mutf7, encode_mutf7
from kcg_mail.adapters.smtp_imap import SmtpImapTransport
from kcg_mail.ports import MARKER_HEADER

KCG = "kcg@kcg.test"
LUND = "host.lund@kcg.test"


def test_modified_utf7_is_rfc_3501():
    # RFC 3501 5.1.3's own example, and the Swedish letters and "&" of our folder names
    assert encode_mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_mutf7("Återkoppling & svar") == "&AMU-terkoppling &- svar"
    for name in ("~peter/mail/台北/日本語", "Återkoppling & svar", "Protokoll/Möten 2025", "plain"):
        assert decode_mutf7(encode_mutf7(name).encode("ascii")) == name


@pytest.fixture(scope="module")
def mailserver():
    with mail_server() as server:
        yield server


@pytest.fixture()
def server(mailserver):
    for user in mailserver.users:
        mailserver.reset(user)
    return mailserver


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def incoming(subject: str) -> bytes:
    return (f"From: sender@outside.test\r\nTo: {KCG}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@outside.test>\r\n\r\nhej\r\n").encode()


def own_copy(key: str) -> bytes:
    return (f"From: KCG <{KCG}>\r\nTo: {LUND}\r\nSubject: Protokoll\r\n{MARKER_HEADER}: {key}\r\n"
            f"Message-ID: <own.{key.replace(':', '.')}@kcg.test>\r\n\r\nProtokollet.\r\n").encode()


def without(transport: SmtpImapTransport, *capabilities: str) -> None:
    """Pretend the server lacks ``capabilities`` (as some hosted IMAP servers do)."""
    conn = transport.imap.connection()
    conn.capabilities = tuple(c for c in conn.capabilities if c not in capabilities)


@pytest.mark.server
def test_a_swedish_folder_name_reaches_the_server_in_modified_utf7(server):
    folder = "Behandlat – återkoppling & svar"
    with SmtpImapTransport(**server.transport_kwargs(KCG, processed_folder=folder)) as t:
        server.deliver(incoming("svar 1"), KCG)
        [m] = t.fetch_new(None).messages
        t.move(m.ref, "processed")
    mailbox = server.mailbox_name(folder)
    assert mailbox in server.folders(KCG)  # doveadm lists names in UTF-8
    out = server.doveadm("fetch", "-u", KCG, "hdr", "mailbox", mailbox, "all")
    assert "Subject: svar 1" in out
    assert server.messages(KCG) == []


@pytest.mark.server
def test_own_copies_are_filed_by_the_same_move_without_move_and_uidplus(server):
    """The own copy of a mail whose Sent copy is missing goes to Sent (COPY + STORE +
    EXPUNGE where the server has no MOVE); a second one, Sent now complete, is deleted
    (EXPUNGE where the server has no UIDPLUS). Neither reaches the intake."""
    key = "2025-03:distribute:members:v1"
    with SmtpImapTransport(**server.transport_kwargs(KCG)) as t:
        t.imap.connection()
        without(t, "MOVE", "UIDPLUS")
        server.deliver(own_copy(key), KCG)
        server.deliver(incoming("vanlig post"), KCG)
        batch = t.fetch_new(None)
        assert [parse(m.raw)["Subject"] for m in batch.messages] == ["vanlig post"]
        assert "MOVE" not in t.imap.connection().capabilities  # the same connection did it
        assert [parse(r)[MARKER_HEADER] for r in server.messages(KCG, "Sent")] == [key]
        assert t.was_sent(key) is True

        server.deliver(own_copy(key), KCG)  # a second copy (the server delivered twice)
        assert t.fetch_new(batch.cursor).messages == []
        assert len(server.messages(KCG, "Sent")) == 1
        assert [parse(r)["Subject"] for r in server.messages(KCG)] == ["vanlig post"]


@pytest.mark.server
def test_idle_source_does_not_touch_the_transports_connection(server):
    with SmtpImapTransport(**server.transport_kwargs(KCG)) as t:
        conn = t.imap.connection()
        source = t.mail_source()
        assert isinstance(source, ImapIdleSource)
        try:
            source.mark()
            server.deliver(incoming("push"), KCG)
            t0 = time.monotonic()
            assert source.wait(15.0) is True
            assert time.monotonic() - t0 < 10.0
            assert t.imap.connection() is conn  # the intake's connection is its own
            [m] = t.fetch_new(None).messages
            assert parse(m.raw)["Subject"] == "push"
        finally:
            source.close()
        assert t.imap.connection() is conn  # closing the source leaves it open


@pytest.mark.server
def test_a_connection_lost_after_the_server_took_the_mail_is_not_sent_again(server):
    """The SMTP server accepted the message, then the connection broke before we
    heard so: the send is not repeated (the shared retry idiom calls it ambiguous),
    it fails as transient, and ``was_sent`` finds the mail by our own copy."""
    import smtplib

    from kcg_mail.ports import Address, OutgoingMessage, TransientError

    key = "2025-03:lost:host.lund@kcg.test"
    with SmtpImapTransport(**server.transport_kwargs(KCG)) as t:
        real_connect = t.smtp.connect

        def connect_then_lose_the_answer():
            smtp = real_connect()
            real_sendmail = smtp.sendmail

            def sendmail(*a, **kw):
                real_sendmail(*a, **kw)  # the server has it
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

            smtp.sendmail = sendmail
            return smtp

        sleeps: list[float] = []
        t.retry.sleep = sleeps.append
        t.smtp.connect = connect_then_lose_the_answer
        msg = OutgoingMessage(key=key, action="test", meeting_id="2025-03", sender=Address("KCG", KCG),
                              to=(Address("Värd Lund", LUND),), subject="Dagordning", text="Hej!\n")
        with pytest.raises(TransientError, match="not repeated"):
            t.send(msg)
        assert sleeps == []
        assert len(server.wait_for(LUND)) == 1
        server.wait_for(KCG)  # our own copy arrived
        assert t.was_sent(key) is True  # found by the own copy; Sent is completed from it
        time.sleep(0.5)
        assert len(server.messages(LUND)) == 1
        assert len(server.messages(KCG, "Sent")) == 1
