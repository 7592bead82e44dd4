"""The incoming size cap on the Exchange (EWS) and Microsoft Graph transports,
through the real intake: a message over the cap reaches the intake as its
headers only (``X-KCG-Oversize``), its MIME content never leaves the server,
the host gets the polite too-large answer and the message is quarantined; a
normal-size message in the same batch is handled as always.

exchangelib and httpx/msal run their real code against the protocol-level
fakes (tests/support/fake_ews.py, tests/support/fake_graph.py). The cap is set per transport
(``max_incoming``) so no 50 MB message has to be built; the rule is the same.
"""

from __future__ import annotations

import base64
import email
from email import policy

from support.attacks.cases import ar, ics_reply, mail

# the February world of the attack tests: the template went out, the host may answer
from support.attacks.world import _genuine, _intake

CAP = 10_000


def _batch(c) -> tuple[bytes, bytes]:
    big = _genuine(c, in_reply_to=c.tpl_msgid, subject="SV: " + c.tpl_subject)  # the minutes, with the docx
    small = mail(c, from_=c.member, subject="Accepterat: " + c.token, attach=False, ics=ics_reply(c, c.member),
                 ar_fields=[ar(c.ours, "pass", "uppsala.example.se")])
    assert len(small) < CAP < len(big)
    return big, small


def _check_intake(app, c, report) -> None:
    assert report.errors == []
    assert sorted(h.outcome for h in report.handled) == ["calendar_response", "too_large"], report.handled
    assert app.state.attendance("2023-02") == {c.member: "ACCEPTED"}  # the small one, read whole
    assert app.state.filings() == []  # the minutes were not read, so nothing was filed
    replies = [r.key for r in app.state.actions() if r.action == "reply_problem"]
    assert replies == [f"2023-02:reply_problem:{c.host}:{c.when.date().isoformat()}"]


def test_ews_message_over_the_cap_is_answered_from_its_headers(feb):  # noqa: F811
    import requests_mock
    from exchangelib.protocol import close_connections
    from support.fake_ews import FakeEWS

    from kcg_mail.adapters.exchange import ExchangeTransport
    from kcg_mail.adapters.exchange_ews import EwsSession

    app, wd, c = feb
    fake = FakeEWS()
    close_connections()
    with requests_mock.Mocker() as mocker:
        fake.install(mocker)
        app.mail = ExchangeTransport(EwsSession(fake.mailbox, "basic", fake.url, sleep=lambda s: None,
                                                username=fake.username, password=fake.password))
        app.mail.max_incoming = CAP
        app.outbox.mail = app.mail
        big, small = _batch(c)
        big_id, small_id = fake.deliver(big), fake.deliver(small)
        report = _intake(app)
        _check_intake(app, c, report)
        assert fake.mime_served == [small_id]  # the big item's MIME content was never asked for
        quarantine = fake.subfolder("inbox", "quarantine")
        assert [i.mime for i in fake.items_in(quarantine.id)] == [big]  # moved (EWS gives it a new id)
        assert big_id not in fake.items
        (reply,) = [s for s in fake.sent if s["kind"] == "message"]
        assert reply["to"] == [c.host]
        body = reply["elem"].findtext("{http://schemas.microsoft.com/exchange/services/2006/types}Body")
        assert "för stort" in body
        app.mail.close()
    close_connections()


def test_graph_message_over_the_cap_is_answered_from_its_headers(feb):  # noqa: F811
    from support.fake_graph import FakeGraph

    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient

    app, wd, c = feb
    fake = FakeGraph()
    with fake.running():
        app.mail = GraphTransport(GraphClient(fake.settings(), fake.client_secret,
                                              sleep=lambda s: None))
        app.mail.max_incoming = CAP
        app.outbox.mail = app.mail
        big, small = _batch(c)
        big_id, small_id = fake.deliver(big), fake.deliver(small)
        report = _intake(app)
        _check_intake(app, c, report)
        assert fake.value_reads() == [small_id]  # GET /messages/{big}/$value never happened
        assert [m["id"] for m in fake.in_folder(fake.child_folder("inbox", "quarantine")["id"])] == [big_id]
        (reply,) = fake.outbox
        assert reply["to"] == [c.host]
        text = email.message_from_bytes(reply["mime"], policy=policy.default).get_body(("plain", "html"))
        assert "för stort" in text.get_content()
        app.mail.close()


def test_oversize_marker_is_built_once_for_every_transport():
    """The marker logic lives in one place (maildir.oversize_headers); the header
    list of EWS/Graph becomes the same headers-only message as a raw header."""
    from kcg_mail.adapters.maildir import oversize_from_fields, oversize_headers
    from kcg_mail.core.inbound.parse_mail import parse

    raw_head = b"From: Anna <anna@city.example>\r\nSubject: Stort\r\n folded\r\n\r\nbody " + base64.b64encode(b"x" * 99)
    from_fields = oversize_from_fields([("From", "Anna <anna@city.example>"), ("Subject", "Stort\r\n folded"),
                                        ("Bad Name", "dropped"), ("", "dropped")])
    assert from_fields == b"X-KCG-Oversize: 1\r\nFrom: Anna <anna@city.example>\r\nSubject: Stort folded\r\n\r\n"
    assert oversize_headers(raw_head).startswith(b"X-KCG-Oversize: 1\r\nFrom: Anna")
    assert b"body" not in oversize_headers(raw_head)
    assert parse(from_fields).oversize


def test_maildir_transport_has_the_same_per_instance_cap(tmp_path):
    from kcg_mail.adapters.maildir import MaildirTransport

    t = MaildirTransport(tmp_path)
    t.deliver(b"From: a@b.example\r\nSubject: Stort\r\n\r\n" + b"x" * 500, "big.eml")
    t.deliver(b"From: a@b.example\r\nSubject: Litet\r\n\r\nhej\r\n", "small.eml")
    t.max_incoming = 100
    assert sorted(m.raw for m in t.fetch_new(None).messages) == [
        b"From: a@b.example\r\nSubject: Litet\r\n\r\nhej\r\n",
        b"X-KCG-Oversize: 1\r\nFrom: a@b.example\r\nSubject: Stort\r\n\r\n",
    ]
    t.max_incoming = None  # MAX_INCOMING (50 MB)
    assert all(b"Oversize" not in m.raw for m in t.fetch_new(None).messages)
