"""``sent_copies`` on Microsoft Graph (fake Graph at the HTTP level under the real client
code): what ``kcg state rebuild`` reads (issue 13, item 4)."""

from __future__ import annotations

import email
from email import policy

import pytest
from test_graph import fake, invitation, message, transport  # noqa: F401

pytestmark = pytest.mark.core


def test_sent_copies_lists_sent_messages_with_mime_and_event_keys(fake):  # noqa: F811
    t, _ = transport(fake)
    try:
        assert list(t.sent_copies()) == []
        t.send(message())
        t.send(message(key="m1:distribute:members:v1", subject="Protokoll"))
        t.send_invitation(invitation(0))
        t.send_invitation(invitation(1, start_hour=10))
        got = dict(t.sent_copies())
    finally:
        t.close()
    assert set(got) == {"m1:agenda:all", "m1:distribute:members:v1", "m1:invite:all:v0", "m1:invite:all:v1"}
    sent = email.message_from_bytes(got["m1:distribute:members:v1"], policy=policy.default)
    assert str(sent["Subject"]) == "Protokoll"
