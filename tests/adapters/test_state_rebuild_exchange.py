"""``sent_copies`` on Exchange (fake EWS at the SOAP level under the real exchangelib):
what ``kcg state rebuild`` reads (issue 13, item 4)."""

from __future__ import annotations

import pytest
from support.fake_ews import FakeEWS
from test_exchange import _fresh_protocols, invitation, message, mocker, transport  # noqa: F401

pytestmark = pytest.mark.core


def test_sent_copies_lists_sent_items_and_invitations_with_their_keys(mocker):  # noqa: F811
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    assert list(t.sent_copies()) == []
    t.send(message())
    t.send(message(key="m-2026-05:distribute:members:v1"))
    t.send_invitation(invitation(0))
    got = dict(t.sent_copies())
    assert set(got) == {"m-2026-05:protocol:anna@kommun.se", "m-2026-05:distribute:members:v1", "m-2026-05:invite:v0"}
    # the MIME copy is fetched with GetItem (FindItem cannot return it), as against a real server;
    # this fake keeps no MIME for items it created, so only the request is checked here
    assert fake.last("GetItem") is not None
