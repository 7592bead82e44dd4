"""SmtpImapTransport against a real Dovecot (IMAP + LMTP) and Postfix (submission).

The servers are private instances started by tests/support/mailserver.py on loopback
ports; they need the Debian packages from .ci/install-mail.sh and root.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from support.mailserver import mail_server

from kcg_mail.adapters.smtp_imap import SmtpImapTransport
from kcg_mail.ports import (
    MARKER_HEADER,
    Address,
    Attachment,
    Invitation,
    OutgoingMessage,
    TransientError,
    TransportError,
)

pytestmark = pytest.mark.server

KCG = "kcg@kcg.test"
LUND = "host.lund@kcg.test"
UMEA = "host.umea@kcg.test"

SENDER = Address("Svenska Stadskärnor KCG", KCG)


@pytest.fixture(scope="session")
def mailserver():
    with mail_server() as server:
        yield server


@pytest.fixture()
def server(mailserver):
    for user in mailserver.users:
        mailserver.reset(user)
    return mailserver


@pytest.fixture()
def transport(server):
    t = SmtpImapTransport(**server.transport_kwargs(KCG))
    yield t
    t.close()


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def outgoing(key: str, **kw) -> OutgoingMessage:
    base = dict(
        key=key,
        action="test",
        meeting_id="2025-03",
        sender=SENDER,
        to=(Address("Värd Lund", LUND),),
        subject="Möte i Lund – dagordning",
        text="Hej!\nHär kommer dagordningen för mötet i Lund.\n",
    )
    base.update(kw)
    return OutgoingMessage(**base)


def incoming(subject: str, frm: str = "sender@outside.test", to: str = KCG) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@outside.test>\r\n"
        "Date: Thu, 27 Nov 2025 10:00:00 +0100\r\n\r\nhello\r\n"
    ).encode()


def ics(method: str, uid: str, sequence: int, summary: str) -> bytes:
    start = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//kcg-mail tests//SV",
        "VERSION:2.0",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"SEQUENCE:{sequence}",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{start + timedelta(hours=3):%Y%m%dT%H%M%SZ}",
        f"SUMMARY:{summary}",
        f"ORGANIZER;CN=KCG:mailto:{KCG}",
        f"ATTENDEE;CN=Värd Lund;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{LUND}",
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def invitation(method: str, sequence: int, key: str) -> Invitation:
    summary = "KCG-möte Lund" if method == "REQUEST" else "Inställt: KCG-möte Lund"
    msg = outgoing(key, subject=summary, html="<p>Välkommen till Lund!</p>", auto_submitted=False)
    start = datetime(2025, 3, 12, 10, 0)
    return Invitation(
        message=msg,
        uid="kcg-2025-03@kcg.test",
        sequence=sequence,
        method=method,  # type: ignore[arg-type]
        summary=summary,
        description="Nätverksmöte",
        location="Lund",
        start=start,
        end=start + timedelta(hours=3),
        tzid="Europe/Stockholm",
        ics=ics(method, "kcg-2025-03@kcg.test", sequence, summary),
    )


def calendar_part(msg: email.message.EmailMessage):
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
    return parts[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- sending


def test_send_plain_html_attachment_arrives_with_headers_and_copy_in_sent(server, transport):
    assert "Sent" not in server.folders(KCG)
    filename = "Protokoll Göteborg – möte nr 3 (åäö).docx"
    data = b"PK\x03\x04" + bytes(range(256)) * 4
    msg = outgoing(
        "2025-03:agenda:host.lund@kcg.test",
        html="<p>Hej!</p><p>Här kommer <b>dagordningen</b>.</p>",
        cc=(Address("Värd Umeå", UMEA),),
        attachments=(Attachment(filename, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", data),),
    )
    transport.send(msg)

    for user in (LUND, UMEA):
        [raw] = server.wait_for(user)
        got = parse(raw)
        assert got["Message-ID"] == msg.message_id
        assert got[MARKER_HEADER] == msg.key
        assert got["Subject"] == "Möte i Lund – dagordning"
        assert got["Auto-Submitted"] == "auto-generated"
        assert got["X-Auto-Response-Suppress"]
        assert LUND in got["To"] and UMEA in got["Cc"]
        assert got.get_body(("plain",)).get_content().replace("\r\n", "\n") == msg.text
        assert "<b>dagordningen</b>" in got.get_body(("html",)).get_content()
        [att] = list(got.iter_attachments())
        assert att.get_filename() == filename
        assert att.get_content() == data
        # Swedish name encoded per RFC 2231 (filename*=utf-8''...), not raw 8-bit
        assert b"filename*=utf-8''" in raw or b"filename*0*=utf-8''" in raw
        assert raw.isascii()

    assert "Sent" in server.folders(KCG), "Sent folder is created when missing"
    [copy] = server.messages(KCG, "Sent")
    assert parse(copy)[MARKER_HEADER] == msg.key
    assert parse(copy)["Message-ID"] == msg.message_id
    assert transport.was_sent(msg.key)


def test_was_sent_by_marker_exact_match_and_after_restart(server, transport):
    assert not transport.was_sent("2025-03:minutes:host.lund@kcg.test")  # no Sent folder yet
    transport.send(outgoing("2025-03:minutes:host.lund@kcg.test:2"))
    transport.send(outgoing("2025-03:minutes:host.umea@kcg.test", to=(Address("Umeå", UMEA),)))
    fresh = SmtpImapTransport(**server.transport_kwargs(KCG))
    try:
        assert fresh.was_sent("2025-03:minutes:host.lund@kcg.test:2")
        assert fresh.was_sent("2025-03:minutes:host.umea@kcg.test")
        # HEADER search matches substrings; was_sent must not.
        assert not fresh.was_sent("2025-03:minutes:host.lund@kcg.test")
        assert not fresh.was_sent("2025-03:minutes")
        assert not fresh.was_sent("2025-04:minutes:host.lund@kcg.test:2")
    finally:
        fresh.close()


def test_invitation_request_update_and_cancel(server, transport):
    transport.send_invitation(invitation("REQUEST", 0, "2025-03:invite:host.lund@kcg.test"))
    transport.send_invitation(invitation("REQUEST", 1, "2025-03:invite:host.lund@kcg.test:1"))
    transport.send_invitation(invitation("CANCEL", 2, "2025-03:cancel:host.lund@kcg.test"))

    raws = server.wait_for(LUND, count=3)
    msgs = sorted((parse(r) for r in raws), key=lambda m: str(m[MARKER_HEADER]))
    cancel, req0, req1 = msgs
    for m, method, seq in ((req0, "REQUEST", 0), (req1, "REQUEST", 1), (cancel, "CANCEL", 2)):
        part = calendar_part(m)
        assert part.get_param("method") == method
        body = part.get_content()
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        assert f"METHOD:{method}" in body
        assert f"SEQUENCE:{seq}" in body
        assert "UID:kcg-2025-03@kcg.test" in body
        assert m["Auto-Submitted"] is None, "invitations must invite responses"
        assert m.get_body(("html",)) is not None
    assert "STATUS:CANCELLED" in calendar_part(cancel).get_content()
    assert len(server.messages(KCG, "Sent")) == 3
    assert transport.was_sent("2025-03:invite:host.lund@kcg.test:1")


def test_other_tls_modes_smtps_and_imap_starttls(server):
    kw = server.transport_kwargs(
        KCG, smtp_port=server.smtps_port, smtp_security="tls", imap_port=server.imap_port, imap_security="starttls"
    )
    with SmtpImapTransport(**kw) as t:
        t.send(outgoing("2025-03:tls:host.lund@kcg.test"))
        server.wait_for(LUND)
        assert t.was_sent("2025-03:tls:host.lund@kcg.test")
        assert all(c.ok for c in t.check()), t.check()


# --------------------------------------------------------------------------- reading


def test_fetch_new_is_incremental_and_resumes_after_restart(server, transport):
    first = transport.fetch_new(None)
    assert first.messages == []
    validity = server.uidvalidity(KCG)
    base = int(first.cursor.split(":")[1])  # UIDs earlier tests used (INBOX was emptied)
    assert first.cursor == f"{validity}:{base}"

    # UIDs earlier tests used up (their mails, and the transport's own copies of
    # what they sent, were expunged): new mail starts at UIDNEXT
    nxt = int(server.doveadm("-f", "flow", "mailbox", "status", "-u", KCG, "uidnext", "INBOX")
              .strip().split("=", 1)[1]) - 1
    server.deliver(incoming("svar ett"), KCG)
    server.deliver(incoming("svar två"), KCG)
    r1 = transport.fetch_new(first.cursor)
    assert [parse(m.raw)["Subject"] for m in r1.messages] == ["svar ett", "svar två"]
    assert [m.ref for m in r1.messages] == [f"{validity}:{nxt + 1}", f"{validity}:{nxt + 2}"]
    assert r1.cursor == f"{validity}:{nxt + 2}"
    assert all(m.received_at is not None and m.received_at.tzinfo for m in r1.messages)

    # Nothing new: "UID n+1:*" still matches the last message on the server; it must be filtered.
    r2 = transport.fetch_new(r1.cursor)
    assert r2.messages == [] and r2.cursor == r1.cursor

    # The cursor may lag (crash before it was stored): messages come again.
    again = transport.fetch_new(f"{validity}:{nxt + 1}")
    assert [m.ref for m in again.messages] == [f"{validity}:{nxt + 2}"]

    server.deliver(incoming("svar tre"), KCG)
    transport.close()
    restarted = SmtpImapTransport(**server.transport_kwargs(KCG))
    try:
        r3 = restarted.fetch_new(r1.cursor)
        assert [parse(m.raw)["Subject"] for m in r3.messages] == ["svar tre"]
        assert r3.cursor == f"{validity}:{nxt + 3}"
        assert restarted.fetch_new(r3.cursor).messages == []
    finally:
        restarted.close()

    # BODY.PEEK: reading does not mark the mail as seen in the user's mail client.
    with server.imap(KCG) as conn:
        conn.select("INBOX", readonly=True)
        typ, data = conn.uid("SEARCH", "UNSEEN")
        assert len(data[0].split()) == 3


def test_fetch_new_raw_is_the_full_message(server, transport):
    raw = incoming("hela meddelandet")
    server.deliver(raw, KCG)
    [m] = transport.fetch_new(None).messages
    assert m.raw.endswith(b"\r\nhello\r\n")
    assert parse(m.raw)["Message-ID"] == "<hela.meddelandet@outside.test>"


def test_uidvalidity_change_starts_over(server, transport):
    server.deliver(incoming("a"), KCG)
    server.deliver(incoming("b"), KCG)
    r1 = transport.fetch_new(None)
    old = server.uidvalidity(KCG)
    assert r1.cursor == f"{old}:{r1.messages[-1].ref.split(':')[1]}"

    server.set_uidvalidity(KCG, old + 1000)
    transport.close()  # a client sees a new UIDVALIDITY on its next SELECT
    r2 = transport.fetch_new(r1.cursor)
    assert sorted(parse(m.raw)["Subject"] for m in r2.messages) == ["a", "b"]
    assert all(m.ref.startswith(f"{old + 1000}:") for m in r2.messages)
    assert r2.cursor.startswith(f"{old + 1000}:")

    # A reference from before the change is stale: it must not move anything.
    transport.move(r1.messages[0].ref, "processed")
    assert len(server.messages(KCG)) == 2


def test_move_to_processed_and_quarantine_creates_folders_and_is_idempotent(server, transport):
    for s in ("ok 1", "spam", "ok 2"):
        server.deliver(incoming(s), KCG)
    fetched = transport.fetch_new(None)
    refs = {parse(m.raw)["Subject"]: m.ref for m in fetched.messages}
    assert "processed" not in server.folders(KCG) and "quarantine" not in server.folders(KCG)

    transport.move(refs["ok 1"], "processed")
    transport.move(refs["spam"], "quarantine")
    transport.move(refs["ok 1"], "processed")  # already gone: no error
    transport.move(refs["spam"], "processed")  # already gone: not moved twice

    assert {"processed", "quarantine"} <= set(server.folders(KCG))
    assert [parse(r)["Subject"] for r in server.messages(KCG)] == ["ok 2"]
    assert [parse(r)["Subject"] for r in server.messages(KCG, "processed")] == ["ok 1"]
    assert [parse(r)["Subject"] for r in server.messages(KCG, "quarantine")] == ["spam"]

    # The cursor is unaffected: nothing new after the moves.
    assert transport.fetch_new(fetched.cursor).messages == []


def test_move_without_move_extension_uses_copy_store_expunge(server, transport):
    server.deliver(incoming("alt 1"), KCG)
    server.deliver(incoming("alt 2"), KCG)
    msgs = transport.fetch_new(None).messages
    conn = transport.imap.connection()
    assert "MOVE" in conn.capabilities and "UIDPLUS" in conn.capabilities
    # Pretend the server lacks MOVE (as some hosted IMAP servers do).
    conn.capabilities = tuple(c for c in conn.capabilities if c != "MOVE")
    transport.move(msgs[0].ref, "processed")
    assert "MOVE" not in transport.imap.connection().capabilities  # same connection was used
    assert [parse(r)["Subject"] for r in server.messages(KCG)] == ["alt 2"]
    assert [parse(r)["Subject"] for r in server.messages(KCG, "processed")] == ["alt 1"]
    transport.move(msgs[0].ref, "processed")
    assert len(server.messages(KCG, "processed")) == 1


def test_dropped_imap_connection_is_reopened(server, transport):
    server.deliver(incoming("efter avbrott"), KCG)
    cursor = transport.fetch_new(None).cursor
    transport.imap.connection().sock.shutdown(socket.SHUT_RDWR)  # the server or a NAT box dropped it
    sleeps: list[float] = []
    transport.retry.sleep = sleeps.append
    server.deliver(incoming("nästa"), KCG)
    assert [parse(m.raw)["Subject"] for m in transport.fetch_new(cursor).messages] == ["nästa"]
    assert len(sleeps) == 1


def test_idle_wait_reports_new_mail(server, transport):
    source = transport.mail_source()  # IMAP IDLE on a connection of its own
    try:
        source.mark()
        t0 = time.monotonic()
        assert source.wait(1.0) is False
        assert time.monotonic() - t0 >= 0.9  # it waited its timeout out (no speed limit here)

        timer = threading.Timer(0.5, server.deliver, args=(incoming("push"), KCG))
        timer.start()
        try:
            assert source.wait(15.0) is True  # woken by the delivery, not by the timeout
        finally:
            timer.join()
        [m] = transport.fetch_new(None).messages
        assert parse(m.raw)["Subject"] == "push"

        # Mail that arrived between the mark (before an intake run) and the wait is reported at once.
        cursor = transport.fetch_new(None).cursor
        source.mark()
        server.deliver(incoming("between"), KCG)
        t0 = time.monotonic()
        assert source.wait(5.0) is True
        assert time.monotonic() - t0 < 4.5  # not by the timeout
        assert [parse(m.raw)["Subject"] for m in transport.fetch_new(cursor).messages] == ["between"]
    finally:
        source.close()


# --------------------------------------------------------------------------- folders


def test_courier_style_namespace_prefix_is_discovered():
    with mail_server(prefix="INBOX.", separator=".") as courier:
        with SmtpImapTransport(**courier.transport_kwargs(KCG)) as t:
            courier.deliver(incoming("x"), KCG)
            [m] = t.fetch_new(None).messages
            t.move(m.ref, "quarantine")
            t.send(outgoing("2025-03:ns:host.lund@kcg.test"))
            assert t.was_sent("2025-03:ns:host.lund@kcg.test")
            folders = set(courier.folders(KCG))
            assert {"INBOX.quarantine", "INBOX.Sent"} <= folders, folders
            assert [parse(r)["Subject"] for r in courier.messages(KCG, "quarantine")] == ["x"]


# --------------------------------------------------------------------------- failures


def test_check_ok_and_creates_nothing(server, transport):
    """`kcg check --connect` says it changes nothing, so it creates no
    folder; a missing one is reported as created on first use."""
    before = set(server.folders(KCG))
    checks = transport.check()
    assert all(c.ok for c in checks), checks
    names = " ".join(c.name for c in checks)
    assert "SMTP" in names and "IMAP" in names
    assert set(server.folders(KCG)) == before
    for c in checks:
        if c.name.startswith("IMAP folder"):
            folder = c.name.rpartition("(")[2].rstrip(")")
            expected = "exists, writable" if folder in before else "does not exist yet; created on first use"
            assert c.detail == expected, (c, before)
    assert len(server.messages(LUND)) == 0, "check sends nothing"


def test_wrong_password_gives_clear_check_and_error(server):
    t = SmtpImapTransport(**server.transport_kwargs(KCG, password="fel-lösenord"))
    sleeps: list[float] = []
    t.retry.sleep = sleeps.append
    checks = t.check()
    assert [c.ok for c in checks] == [False, False], checks
    for c in checks:
        assert "wrong user or password" in c.detail
    with pytest.raises(TransportError, match="wrong user or password") as ei:
        t.fetch_new(None)
    assert not isinstance(ei.value, TransientError)
    with pytest.raises(TransportError, match="wrong user or password") as ei:
        t.send(outgoing("2025-03:x:host.lund@kcg.test"))
    assert not isinstance(ei.value, TransientError)
    assert sleeps == [], "authentication failures are not retried"
    assert "fel-lösenord" not in repr(t)


def test_server_down_is_transient_after_bounded_retries(server):
    dead = free_port()
    sleeps: list[float] = []
    t = SmtpImapTransport(
        **server.transport_kwargs(KCG, smtp_port=dead, imap_port=dead, retries=2, sleep=sleeps.append)
    )
    with pytest.raises(TransientError, match="3 attempts"):
        t.send(outgoing("2025-03:down:host.lund@kcg.test"))
    assert sleeps == [1.0, 2.0]
    sleeps.clear()
    with pytest.raises(TransientError):
        t.fetch_new(None)
    assert sleeps == [1.0, 2.0]
    sleeps.clear()
    with pytest.raises(TransientError):
        t.was_sent("k")
    checks = t.check()
    assert not any(c.ok for c in checks)
    assert all("refused" in c.detail and "wrong host or port" in c.detail for c in checks), checks


def test_smtp_4xx_is_retried_then_sent_once(server, transport):
    real_connect = transport.smtp.connect
    calls = {"n": 0}

    def flaky_connect():
        smtp = real_connect()
        calls["n"] += 1
        if calls["n"] == 1:
            real_sendmail = smtp.sendmail

            def refuse(*a, **kw):
                real_sendmail  # the real server is never asked on this attempt
                raise smtplib.SMTPDataError(451, b"4.3.0 try again later")

            smtp.sendmail = refuse
        return smtp

    sleeps: list[float] = []
    transport.retry.sleep = sleeps.append
    transport.smtp.connect = flaky_connect
    transport.send(outgoing("2025-03:flaky:host.lund@kcg.test"))
    assert sleeps == [1.0]
    assert len(server.wait_for(LUND)) == 1
    time.sleep(0.5)
    assert len(server.messages(LUND)) == 1
    assert len(server.messages(KCG, "Sent")) == 1


def test_smtp_5xx_is_not_retried(server, transport):
    """Postfix refuses a message over message_size_limit (10 MB) with 552: permanent."""
    sleeps: list[float] = []
    transport.retry.sleep = sleeps.append
    big = Attachment("stor.bin", "application/octet-stream", b"x" * (8 * 1024 * 1024))
    with pytest.raises(TransportError, match="552") as ei:
        transport.send(outgoing("2025-03:big:host.lund@kcg.test", attachments=(big,)))
    assert not isinstance(ei.value, TransientError)
    assert sleeps == []
    assert not transport.was_sent("2025-03:big:host.lund@kcg.test")


def test_untrusted_certificate_is_a_clear_tls_error(server):
    kw = server.transport_kwargs(KCG)
    kw.pop("ssl_context")
    sleeps: list[float] = []
    t = SmtpImapTransport(**kw, sleep=sleeps.append)
    checks = t.check()
    assert [c.ok for c in checks] == [False, False], checks
    assert all("certificate" in c.detail for c in checks), checks
    with pytest.raises(TransportError, match="TLS") as ei:
        t.fetch_new(None)
    assert not isinstance(ei.value, TransientError)
    assert sleeps == []


def test_tls_on_a_plain_port_is_reported(server):
    t = SmtpImapTransport(**server.transport_kwargs(KCG, smtp_security="tls", imap_security="tls", imap_port=server.imap_port))
    checks = t.check()
    assert [c.ok for c in checks] == [False, False], checks
    assert all("TLS" in c.detail for c in checks), checks


def test_own_copy_needs_our_message_id_not_just_our_marker_and_address(server, transport):
    """Our own copy of a sent mail (the network's mailbox among the recipients) never
    reaches the intake and completes Sent. A mail that only carries our marker header and
    our address in From (both can be forged) is not taken for one: it is handed to the
    intake like any incoming mail, and nothing counts as sent because of it."""
    from functools import partial

    from kcg_mail.core import replykey

    secret = b"test-secret"
    transport.verify_own_copies(partial(replykey.is_our_message_id, secret))
    key = "2025-03:distribute:members:v1"

    def copy(message_id: str) -> bytes:
        return (f"From: KCG <{KCG}>\r\nTo: {LUND}\r\nSubject: Protokoll\r\n{MARKER_HEADER}: {key}\r\n"
                f"Message-ID: {message_id}\r\nDate: Thu, 27 Nov 2025 10:00:00 +0100\r\n\r\nProtokollet.\r\n").encode()

    server.deliver(copy("<forged.1@attack.test>"), KCG)
    batch = transport.fetch_new(None)
    assert [parse(m.raw)["Message-ID"] for m in batch.messages] == ["<forged.1@attack.test>"]
    assert server.messages(KCG, "Sent") == []
    assert transport.was_sent(key) is False

    ours = replykey.message_id(secret, key, "kcg.test")
    server.deliver(copy(ours), KCG)
    batch = transport.fetch_new(batch.cursor)
    assert batch.messages == []  # our own copy is no incoming mail
    assert [parse(r)["Message-ID"] for r in server.messages(KCG, "Sent")] == [ours]  # it completed Sent
    assert transport.was_sent(key) is True
