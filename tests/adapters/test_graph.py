"""GraphTransport against the stateful fake Graph API (tests/support/fake_graph.py).

httpx and msal run their real code; respx answers at the httpx transport level
and refuses any host it does not know, so nothing leaves the machine."""

from __future__ import annotations

import email
from datetime import datetime
from email import policy
from zoneinfo import ZoneInfo

import pytest
from support.fake_graph import FakeGraph

from kcg_mail.adapters.graph import PROP_MARKER_HEADER, GraphError, GraphTransport
from kcg_mail.adapters.graph_http import GraphClient
from kcg_mail.ports import (
    MARKER_HEADER,
    Address,
    Attachment,
    Invitation,
    OutgoingMessage,
    TransientError,
    TransportError,
)

STHLM = ZoneInfo("Europe/Stockholm")
NET = Address("KCG-nätverket", "natverket@kcg.example")
ANNA = Address("Anna Värd", "anna@city.example")
BO = Address("Bo Ek", "bo@city.example")


@pytest.fixture
def fake():
    f = FakeGraph()
    with f.running():
        yield f


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def transport(fake: FakeGraph, **kw) -> tuple[GraphTransport, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("sleep", sleeps)
    folders = {k: kw.pop(k) for k in ("processed_folder", "quarantine_folder") if k in kw}
    secret = kw.pop("secret", fake.client_secret)
    t = GraphTransport(GraphClient(fake.settings(), secret, **kw), **folders)
    return t, sleeps


def message(key: str = "m1:agenda:all", **kw) -> OutgoingMessage:
    base = dict(
        key=key,
        action="agenda",
        meeting_id="m1",
        sender=NET,
        to=(ANNA,),
        subject="Dagordning 2 februari",
        text="Hej! Här är dagordningen.",
    )
    base.update(kw)
    return OutgoingMessage(**base)


def invitation(seq: int = 0, method: str = "REQUEST", start_hour: int = 9, attachments=()) -> Invitation:
    msg = message(
        key=f"m1:invite:all:v{seq}" if method == "REQUEST" else "m1:cancel:all",
        action="invite",
        to=(ANNA, BO),
        subject="KCG-möte",
        text="Digitalt möte, länk i inbjudan." if method == "REQUEST" else "Mötet är inställt.",
        attachments=tuple(attachments),
        auto_submitted=False,
    )
    return Invitation(
        message=msg,
        uid="kcg-m1@kcg.example",
        sequence=seq,
        method=method,  # type: ignore[arg-type]
        summary="KCG-möte februari",
        description="Digitalt möte",
        location="Teams",
        start=datetime(2026, 2, 2, start_hour, 0, tzinfo=STHLM),
        end=datetime(2026, 2, 2, start_hour + 1, 30, tzinfo=STHLM),
        tzid="Europe/Stockholm",
        ics=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )


def raw_mail(n: int) -> bytes:
    return (
        f"From: Host {n} <host{n}@city.example>\r\nTo: natverket@kcg.example\r\n"
        f"Subject: Svar {n}\r\nMessage-ID: <reply{n}@city.example>\r\n\r\nProtokoll {n}\r\n"
    ).encode()


def posts(fake: FakeGraph, suffix: str) -> int:
    return sum(1 for m, p in fake.calls if m == "POST" and p.endswith(suffix))


# ------------------------------------------------------------------------ send


def test_send_small_message_headers_sent_copy_and_was_sent(fake):
    t, _ = transport(fake)
    msg = message(
        html="<p>Hej!</p>",
        cc=(BO,),
        reply_to=ANNA,
        in_reply_to="<orig@city.example>",
        references=("<orig@city.example>",),
        attachments=(Attachment("dagordning.pdf", "application/pdf", b"%PDF-1.7 small"),),
    )
    assert t.was_sent(msg.key) is False
    t.send(msg)

    assert posts(fake, "/sendMail") == 1 and posts(fake, "/messages") == 0
    (out,) = fake.outbox
    assert out["to"] == [ANNA.email, BO.email]
    mime = fake.mime_of(out)
    assert mime[MARKER_HEADER] == msg.key
    assert mime["X-Auto-Response-Suppress"] == "All"
    assert mime["Auto-Submitted"] is None  # cannot travel through Graph (X- headers only)
    assert mime["Message-ID"] == msg.message_id
    assert mime["In-Reply-To"] == "<orig@city.example>"
    assert mime["Reply-To"] == "Anna Värd <anna@city.example>"
    assert [p.get_filename() for p in mime.iter_attachments()] == ["dagordning.pdf"]
    assert len(fake.in_folder("sentitems")) == 1
    assert t.was_sent(msg.key) is True
    assert t.was_sent("m1:agenda:other") is False


def test_send_large_attachment_through_upload_session(fake):
    t, _ = transport(fake)
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256 + 7)  # ~5 MB, not a chunk multiple
    msg = message(
        key="m1:minutes:all",
        attachments=(
            Attachment("protokoll.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", big),
            Attachment("bilaga.txt", "text/plain", b"liten bilaga"),
        ),
    )
    t.send(msg)

    assert posts(fake, "/sendMail") == 0
    assert posts(fake, "/messages") == 1  # the draft
    assert posts(fake, "/attachments/createUploadSession") == 1
    assert posts(fake, "/send") == 1
    assert len(fake.upload_puts) == 2  # 3.75 MiB chunks
    assert all(p["authorization"] is None for p in fake.upload_puts)  # pre-authenticated URL
    (out,) = fake.outbox
    assert sorted(out["attachments"]) == sorted([("protokoll.docx", len(big)), ("bilaga.txt", 12)])
    parts = {p.get_filename(): p.get_content() for p in fake.mime_of(out).iter_attachments()}
    assert parts["protokoll.docx"] == big
    assert fake.mime_of(out)[MARKER_HEADER] == msg.key
    assert fake.in_folder("drafts") == []
    assert t.was_sent(msg.key)


def test_large_send_resumes_the_draft_after_a_failure(fake):
    t, sleeps = transport(fake, max_retries=2)
    big = b"x" * (3 * 1024 * 1024 + 1)
    msg = message(key="m1:minutes:v2", attachments=(Attachment("p.docx", "application/octet-stream", big),))
    fake.inject(503, times=3, path="/send")
    with pytest.raises(TransientError):
        t.send(msg)
    assert sleeps == [1.0, 2.0] and fake.outbox == []
    assert len(fake.in_folder("drafts")) == 1

    t.send(msg)  # next run: the same draft, attachment not uploaded twice
    assert posts(fake, "/messages") == 1
    assert posts(fake, "/attachments/createUploadSession") == 1
    assert len(fake.outbox) == 1 and fake.outbox[0]["attachments"] == [("p.docx", len(big))]


def test_auto_submitted_cannot_be_sent_as_internet_message_header(fake):
    """Why the adapter leaves Auto-Submitted out: Graph takes X- headers only."""
    t, _ = transport(fake)
    msg = {
        "subject": "x",
        "body": {"contentType": "Text", "content": "x"},
        "toRecipients": [{"emailAddress": {"address": ANNA.email}}],
        "internetMessageHeaders": [{"name": "Auto-Submitted", "value": "auto-generated"}],
    }
    with pytest.raises(GraphError) as err:
        t.client.call("POST", f"{t.client.user}/sendMail", json_body={"message": msg})
    assert err.value.status == 400 and err.value.code == "InvalidInternetMessageHeader"


# ----------------------------------------------------------------- invitations


def test_invitation_create_update_cancel(fake):
    t, _ = transport(fake)
    t.send_invitation(invitation(0))
    (ev,) = fake.events.values()
    assert ev["json"]["start"] == {"dateTime": "2026-02-02T09:00:00", "timeZone": "W. Europe Standard Time"}
    assert ev["json"]["transactionId"] == "kcg-m1@kcg.example"
    assert [a["type"] for a in ev["json"]["attendees"]] == ["required", "required"]
    assert [o["kind"] for o in fake.outbox] == ["meeting-request"]
    assert fake.outbox[0]["to"] == [ANNA.email, BO.email]

    t.send_invitation(invitation(0))  # a re-run: nothing new goes out
    assert len(fake.outbox) == 1 and len(fake.events) == 1

    t.send_invitation(invitation(1, start_hour=10))
    assert len(fake.events) == 1
    assert fake.outbox[-1]["kind"] == "meeting-update"
    assert fake.outbox[-1]["event"]["start"]["dateTime"] == "2026-02-02T10:00:00"
    assert t.was_sent("m1:invite:all:v0") and t.was_sent("m1:invite:all:v1")
    assert not t.was_sent("m1:invite:all:v2")

    t.send_invitation(invitation(1, method="CANCEL"))
    assert fake.outbox[-1]["kind"] == "meeting-cancel"
    assert fake.outbox[-1]["comment"] == "Mötet är inställt."
    assert fake.events == {}
    t.send_invitation(invitation(1, method="CANCEL"))  # already gone: no error, nothing sent
    assert len(fake.outbox) == 3


def test_invitation_with_attachments_goes_out_with_them(fake):
    t, _ = transport(fake)
    big = b"d" * (3 * 1024 * 1024 + 10)
    t.send_invitation(
        invitation(0, attachments=[Attachment("mall.docx", "application/octet-stream", big), Attachment("a.txt", "text/plain", b"a")])
    )
    (req,) = fake.outbox
    assert req["kind"] == "meeting-request"
    assert sorted(req["attachments"]) == sorted([("mall.docx", len(big)), ("a.txt", 1)])
    assert posts(fake, "/attachments/createUploadSession") == 1


def test_event_responses_and_ical_uid(fake):
    t, _ = transport(fake)
    assert t.event_responses("kcg-m1@kcg.example") is None
    t.send_invitation(invitation(0))
    fake.respond(ANNA.email, "accepted")
    fake.respond(BO.email, "tentativelyAccepted")
    assert t.event_responses("kcg-m1@kcg.example") == {ANNA.email: "ACCEPTED", BO.email: "TENTATIVE"}
    (ev,) = fake.events.values()
    assert t.event_ical_uid("kcg-m1@kcg.example") == ev["json"]["iCalUId"]


def test_from_env_names_missing_variables():
    with pytest.raises(TransportError, match="KCG_GRAPH_CLIENT_SECRET"):
        GraphTransport.from_env("a@b.example", env={"KCG_GRAPH_TENANT_ID": "t", "KCG_GRAPH_CLIENT_ID": "c"})
    t = GraphTransport.from_env(
        "a@b.example", env={"KCG_GRAPH_TENANT_ID": "t", "KCG_GRAPH_CLIENT_ID": "c", "KCG_GRAPH_CLIENT_SECRET": "s"}
    )
    assert (t.client.tenant_id, t.client.client_id) == ("t", "c")
    t.close()


# ---------------------------------------------------------------------- intake


def test_delta_intake_incremental_and_resume_after_restart(fake):
    fake.page_size = 2
    ids = [fake.deliver(raw_mail(n), received=f"2026-02-0{n}T08:00:00Z") for n in (1, 2, 3)]
    t, _ = transport(fake)
    first = t.fetch_new(None)
    assert [m.ref for m in first.messages] == ids
    assert first.messages[0].raw == raw_mail(1)
    assert first.messages[0].received_at == datetime.fromisoformat("2026-02-01T08:00:00+00:00")
    assert first.cursor and "$deltatoken=" in first.cursor
    assert sum(1 for m, p in fake.calls if p.endswith("/messages/delta")) == 2  # two pages

    assert t.fetch_new(first.cursor).messages == []
    t.close()

    new_id = fake.deliver(raw_mail(4))
    t2, _ = transport(fake)  # a restart: new process, cursor from the state store
    second = t2.fetch_new(first.cursor)
    assert [m.ref for m in second.messages] == [new_id]
    assert second.messages[0].raw == raw_mail(4)

    t2.move(new_id, "processed")  # removal shows up as @removed: ignored
    third = t2.fetch_new(second.cursor)
    assert third.messages == [] and third.cursor


def test_message_over_the_size_cap_is_read_as_headers_only(fake):
    big = raw_mail(2).replace(b"Protokoll 2", b"x" * 5000)
    ids = [fake.deliver(raw_mail(1)), fake.deliver(big), fake.deliver(raw_mail(3))]
    t, _ = transport(fake)
    t.max_incoming = 2000
    result = t.fetch_new(None)
    assert [m.ref for m in result.messages] == ids
    assert [result.messages[0].raw, result.messages[2].raw] == [raw_mail(1), raw_mail(3)]
    stub = result.messages[1].raw
    assert stub == (b"X-KCG-Oversize: 1\r\nFrom: Host 2 <host2@city.example>\r\nTo: natverket@kcg.example\r\n"
                    b"Subject: Svar 2\r\nMessage-ID: <reply2@city.example>\r\n\r\n")
    assert fake.value_reads() == [ids[0], ids[2]]  # the big MIME never left the server
    headers_calls = [p for m, p in fake.calls if m == "GET" and p.endswith(tuple(ids))]
    assert len(headers_calls) == 3  # one request per message for headers and size
    # without a cap of its own the transport uses MAX_INCOMING (50 MB): read whole
    t.max_incoming = None
    assert [m.raw for m in t.fetch_new(None).messages] == [raw_mail(1), big, raw_mail(3)]
    t.close()


def test_unknown_size_reads_the_mime_as_before(fake):
    """A server that does not answer PidTagMessageSize: the message is read whole."""
    fake.deliver(raw_mail(1))
    fake.message_size_known = False
    t, _ = transport(fake)
    t.max_incoming = 10
    assert [m.raw for m in t.fetch_new(None).messages] == [raw_mail(1)]
    assert len(fake.value_reads()) == 1
    t.close()


def test_expired_delta_link_starts_a_full_sync(fake):
    fake.deliver(raw_mail(1))
    t, _ = transport(fake)
    cursor = t.fetch_new(None).cursor
    fake.expire_delta_tokens()
    fake.deliver(raw_mail(2))
    again = t.fetch_new(cursor)
    assert [m.raw for m in again.messages] == [raw_mail(1), raw_mail(2)]  # caller dedupes by Message-ID


def test_foreign_cursor_is_not_followed(fake):
    fake.deliver(raw_mail(1))
    t, _ = transport(fake)
    result = t.fetch_new("https://evil.example/steal?token")  # would receive our bearer token
    assert len(result.messages) == 1
    assert all("evil" not in p for _, p in fake.calls)


# ------------------------------------------------------------------------ move


def test_move_creates_folder_and_is_idempotent(fake):
    a, b = fake.deliver(raw_mail(1)), fake.deliver(raw_mail(2))
    t, _ = transport(fake)
    t.move(a, "processed")
    processed = fake.child_folder("inbox", "processed")
    assert processed is not None
    assert [m["id"] for m in fake.in_folder(processed["id"])] == [a]
    t.move(a, "processed")  # again (immutable ids: same ref still valid)
    t.move("AAMkNOSUCHMESSAGE=", "processed")  # gone: not an error
    assert posts(fake, "/childFolders") == 1

    t2, _ = transport(fake, quarantine_folder="Karantän")
    t2.move(b, "quarantine")
    assert [m["id"] for m in fake.in_folder(fake.child_folder("inbox", "Karantän")["id"])] == [b]
    t2.move(a, "processed")  # folder exists already: found, not created
    assert posts(fake, "/childFolders") == 2
    assert fake.in_folder("inbox") == []


# -------------------------------------------------------------------- was_sent


def test_was_sent_finds_marker_header_property_of_other_clients(fake):
    fake.add_message("sentitems", subject="via EWS", props={PROP_MARKER_HEADER: "m0:agenda:all"})
    fake.add_message("inbox", subject="not sent", props={PROP_MARKER_HEADER: "m0:reply:x"})
    t, _ = transport(fake)
    assert t.was_sent("m0:agenda:all")
    assert not t.was_sent("m0:reply:x")
    assert not t.was_sent("it's quoted")  # OData quoting holds


# ------------------------------------------------------------------ throttling


def test_throttling_honours_retry_after_then_succeeds(fake):
    t, sleeps = transport(fake)
    fake.inject(429, times=2, path="/sendMail", retry_after=7)
    t.send(message())
    assert sleeps == [7.0, 7.0]
    assert len(fake.outbox) == 1


def test_503_and_504_backoff_then_success(fake):
    fake.deliver(raw_mail(1))
    t, sleeps = transport(fake)
    fake.inject(503, times=1, path="/delta")
    fake.inject(504, times=1, path="/$value")
    assert len(t.fetch_new(None).messages) == 1
    assert sleeps == [1.0, 1.0]


def test_throttling_is_bounded(fake):
    t, sleeps = transport(fake, max_retries=3)
    fake.inject(429, times=100, retry_after=2)
    with pytest.raises(TransientError, match="429"):
        t.send(message())
    assert sleeps == [2.0, 2.0, 2.0]
    assert fake.outbox == []


def test_long_retry_after_gives_up_at_once(fake):
    t, sleeps = transport(fake, max_wait=60)
    fake.inject(429, times=1, retry_after=3600)
    with pytest.raises(TransientError, match="3600"):
        t.was_sent("k")
    assert sleeps == []


def test_sendmail_gateway_timeout_is_not_blindly_retried(fake):
    t, sleeps = transport(fake)
    fake.inject(504, times=1, path="/sendMail")
    with pytest.raises(TransientError, match="outcome is unknown"):
        t.send(message())
    assert sleeps == []
    assert posts(fake, "/sendMail") == 1


# ----------------------------------------------------------------------- token


def test_token_cached_then_renewed_after_401(fake):
    t, _ = transport(fake)
    t.was_sent("a")
    t.was_sent("b")
    assert fake.discovery_requests == 1  # msal's real tenant discovery went through httpx
    assert fake.token_requests == 1  # msal's cache served the rest
    fake.expire_tokens()
    t.send(message())
    assert fake.token_requests == 2
    assert len(fake.outbox) == 1


def test_msal_renews_token_close_to_expiry(fake):
    fake.token_lifetime = 240  # msal treats tokens with < 5 min left as expired
    t, _ = transport(fake)
    t.was_sent("a")
    t.was_sent("b")
    assert fake.token_requests >= 2


def test_401_twice_is_an_error_not_a_loop(fake):
    t, _ = transport(fake)
    t.was_sent("a")
    fake.inject(401, times=5, code="InvalidAuthenticationToken")
    with pytest.raises(TransportError, match="401"):
        t.was_sent("b")
    assert fake.token_requests == 2


# ----------------------------------------------------------------------- check


def test_check_all_good_sends_nothing(fake):
    t, _ = transport(fake)
    checks = t.check()
    assert [c.name for c in checks] == ["Graph sign-in", "Graph mailbox", "Graph calendar", "Graph permissions"]
    assert all(c.ok for c in checks), checks
    assert fake.outbox == [] and all(m == "GET" for m, _ in fake.calls)


def test_check_wrong_secret(fake):
    t, _ = transport(fake, secret="1a2b3c4d-0000-0000-0000-000000000000")
    (c,) = t.check()
    assert not c.ok and "AADSTS7000215" in c.detail and "Secret ID" in c.detail


def test_check_wrong_tenant():
    fake = FakeGraph()
    with fake.running():
        t = GraphTransport(GraphClient(fake.settings(tenant_id="no-such-tenant"), fake.client_secret))
        (c,) = t.check()
    assert not c.ok and "tenant" in c.detail and "KCG_GRAPH_TENANT_ID" in c.detail


def test_check_no_admin_consent_token_without_roles():
    fake = FakeGraph(roles=())
    with fake.running():
        checks = {c.name: c for c in transport(fake)[0].check()}
    assert checks["Graph sign-in"].ok
    assert not checks["Graph mailbox"].ok and "admin consent" in checks["Graph mailbox"].detail
    assert not checks["Graph permissions"].ok and "Grant admin consent" in checks["Graph permissions"].detail


def test_check_consent_error_at_sign_in(fake):
    fake.token_error = {
        "error": "invalid_grant",
        "error_description": "AADSTS65001: The user or administrator has not consented to use the application.",
        "error_codes": [65001],
    }
    (c,) = transport(fake)[0].check()
    assert not c.ok and "AADSTS65001" in c.detail and "Grant admin consent" in c.detail


def test_check_missing_mail_permission():
    fake = FakeGraph(roles=("Mail.Send", "Calendars.ReadWrite"))
    with fake.running():
        checks = {c.name: c for c in transport(fake)[0].check()}
    assert not checks["Graph mailbox"].ok and "Mail.ReadWrite" in checks["Graph mailbox"].detail
    assert checks["Graph calendar"].ok
    assert not checks["Graph permissions"].ok and "Mail.ReadWrite" in checks["Graph permissions"].detail


def test_check_mailbox_outside_access_policy(fake):
    fake.access_policy_excludes_mailbox = True
    checks = {c.name: c for c in transport(fake)[0].check()}
    assert not checks["Graph mailbox"].ok
    assert "access policy" in checks["Graph mailbox"].detail and fake.mailbox in checks["Graph mailbox"].detail


# ------------------------------------------------------------------ sent_copies: what `kcg state rebuild` reads

def test_sent_copies_lists_sent_messages_with_mime_and_event_keys(fake):
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
