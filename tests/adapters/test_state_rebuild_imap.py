"""``sent_copies`` on a real Dovecot Sent folder: what ``kcg state rebuild`` reads
(what `kcg state rebuild` reads). Uses the private mail servers of tests/adapters/test_smtp_imap.py."""

from __future__ import annotations

import email
import email.policy

import pytest
from test_smtp_imap import KCG, UMEA, invitation, mailserver, outgoing, server, transport  # noqa: F401

from kcg_mail.adapters.smtp_imap import SmtpImapTransport
from kcg_mail.ports import Address

pytestmark = pytest.mark.server


def test_sent_copies_lists_every_marked_copy_with_its_key(server, transport):  # noqa: F811
    assert list(transport.sent_copies()) == []  # no Sent folder yet
    keys = ["2025-03:send_template:host.lund@kcg.test", "2025-03:distribute:members:v1"]
    transport.send(outgoing(keys[0]))
    transport.send(outgoing(keys[1], to=(Address("Umeå", UMEA),)))
    transport.send_invitation(invitation("REQUEST", 0, "2025-03:invite:members:s0"))
    fresh = SmtpImapTransport(**server.transport_kwargs(KCG))
    try:
        got = dict(fresh.sent_copies())
    finally:
        fresh.close()
    assert set(got) == {*keys, "2025-03:invite:members:s0"}
    inv = email.message_from_bytes(got["2025-03:invite:members:s0"], policy=email.policy.default)
    assert "BEGIN:VCALENDAR" in next(p for p in inv.walk() if p.get_content_type() == "text/calendar").get_content()
    assert all(b"X-KCG-Mail: " + k.encode() in raw for k, raw in got.items())
