"""ExchangeTransport against a fake EWS endpoint at the SOAP level.

exchangelib's real code builds every request and parses every response; only
the HTTP layer is replaced (requests_mock, no other URL is reachable, so any
autodiscover or stray request fails the test).
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
import requests
import requests_mock
from exchangelib.protocol import close_connections
from support.fake_ews import NS, FakeEWS, envelope, error_message, http_status, server_busy

from kcg_mail.adapters.exchange import ExchangeTransport
from kcg_mail.adapters.exchange_ews import EwsSession
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
T = NS["t"]


@pytest.fixture(autouse=True)
def _fresh_protocols():
    # exchangelib caches Protocol objects (sessions, retry policy) per endpoint+credentials
    close_connections()
    yield
    close_connections()


@pytest.fixture
def mocker():
    with requests_mock.Mocker() as m:
        yield m


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def transport(fake: FakeEWS, mocker, *, auth: str = "basic", **kw) -> tuple[ExchangeTransport, Sleeps]:
    fake.install(mocker)
    sleeps = Sleeps()
    creds = (
        dict(client_id=fake.client_id, client_secret=fake.client_secret, tenant_id=fake.tenant_id)
        if auth == "oauth"
        else dict(username=fake.username, password=fake.password)
    )
    creds.update(kw.pop("creds", {}))
    t = ExchangeTransport(EwsSession(fake.mailbox, auth, fake.url, sleep=sleeps, **creds, **kw))
    return t, sleeps


def message(key: str = "m-2026-05:protocol:anna@kommun.se", **kw) -> OutgoingMessage:
    base = dict(
        key=key,
        action="protocol",
        meeting_id="m-2026-05",
        sender=Address("Key Cities Group", "natverket@kcg.example"),
        to=(Address("Anna Ek", "anna@kommun.se"),),
        cc=(Address("Bo Ås", "bo@stad.se"),),
        reply_to=Address("Sekretariatet", "sekr@kcg.example"),
        subject="Protokollmall – möte 4 maj",
        text="Hej! Här är mallen.",
        html="<p>Hej! Här är <b>mallen</b>.</p>",
        attachments=(Attachment("Protokoll 2026-05-04.docx",
                                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                                b"PK\x03\x04 fake docx"),),
    )
    base.update(kw)
    return OutgoingMessage(**base)


def invitation(seq: int = 0, method: str = "REQUEST", **kw) -> Invitation:
    msg = message(key=f"m-2026-05:invite:v{seq}", action="invite", html=None, attachments=(), cc=(),
                  to=(Address("Anna Ek", "anna@kommun.se"), Address("Cem Ay", "cem@region.se")),
                  auto_submitted=False)
    base = dict(
        message=msg, uid="kcg-m-2026-05@kcg.example", sequence=seq, method=method, summary="KCG nätverksmöte",
        description="Dagordning bifogas.", location="Rådhuset, Sal 2",
        start=datetime(2026, 5, 4, 9, 0, tzinfo=STHLM), end=datetime(2026, 5, 4, 11, 0, tzinfo=STHLM),
        tzid="Europe/Stockholm", ics=b"BEGIN:VCALENDAR...",
    )
    base.update(kw)
    return Invitation(**base)


def ext_prop(request, name: str):
    """(ExtendedFieldURI attributes, value) of an extended property in a request, or None."""
    for prop in request.root.iter(f"{{{T}}}ExtendedProperty"):
        uri = prop.find(f"{{{T}}}ExtendedFieldURI")
        if uri.get("PropertyName") == name:
            return dict(uri.attrib), prop.findtext(f"{{{T}}}Value")
    return None


def updated_fields(request) -> set[str]:
    """FieldURI / extended property names set or deleted by an UpdateItem request."""
    uris = [change[0] for updates in request.root.iter(f"{{{T}}}Updates") for change in updates]
    return {u.get("FieldURI") or u.get("PropertyName") for u in uris}


def inbound(subject: str, attachment: bytes | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = "Anna Ek <anna@kommun.se>"
    m["To"] = "natverket@kcg.example"
    m["Subject"] = subject
    m["Message-ID"] = f"<{abs(hash(subject))}@kommun.se>"
    m.set_content("Hej, här kommer protokollet.")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="protokoll.docx")
    return m.as_bytes()


# ----------------------------------------------------------------------------- send


def test_send_creates_send_and_save_copy_with_marker_headers_and_attachment(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    msg = message()
    t.send(msg)

    req = fake.last("CreateItem")
    assert req.body.get("MessageDisposition") == "SendAndSaveCopy"
    assert req.find(".//m:SavedItemFolderId/t:DistinguishedFolderId").get("Id") == "sentitems"
    assert req.find(".//t:RequestServerVersion").get("Version") == "Exchange2016"
    assert req.find(".//t:ExchangeImpersonation") is None  # basic auth: delegate access
    item = req.find(".//m:Items/t:Message")
    assert item.findtext("t:Subject", namespaces=NS) == "Protokollmall – möte 4 maj"
    assert item.find("t:Body", NS).get("BodyType") == "HTML"
    assert [e.text for e in item.iterfind("t:ToRecipients//t:EmailAddress", NS)] == ["anna@kommun.se"]
    assert [e.text for e in item.iterfind("t:CcRecipients//t:EmailAddress", NS)] == ["bo@stad.se"]
    assert [e.text for e in item.iterfind("t:ReplyTo//t:EmailAddress", NS)] == ["sekr@kcg.example"]
    assert item.findtext("t:InternetMessageId", namespaces=NS) == msg.message_id
    uri, value = ext_prop(req, MARKER_HEADER)
    assert uri == {"DistinguishedPropertySetId": "InternetHeaders", "PropertyName": MARKER_HEADER,
                   "PropertyType": "String"}
    assert value == msg.key
    assert ext_prop(req, "Auto-Submitted")[1] == "auto-generated"
    assert ext_prop(req, "X-Auto-Response-Suppress")[1] == "All"
    att = item.find("t:Attachments/t:FileAttachment", NS)
    assert att.findtext("t:Name", namespaces=NS) == "Protokoll 2026-05-04.docx"
    assert base64.b64decode(att.findtext("t:Content", namespaces=NS)) == b"PK\x03\x04 fake docx"

    assert [s["to"] for s in fake.sent] == [["anna@kommun.se"]]
    assert t.was_sent(msg.key) is True
    assert t.was_sent("m-2026-05:protocol:someone@else.se") is False
    find = fake.last("FindItem")
    assert find.find(".//m:Restriction/t:IsEqualTo/t:ExtendedFieldURI").get("PropertyName") == MARKER_HEADER

    # the sent copy carries the attachment; exchangelib reads it back with GetAttachment
    copy = t.account.sent.filter(kcg_marker=msg.key).get()
    assert copy.attachments[0].content == b"PK\x03\x04 fake docx"
    assert fake.ops()[-1] == "GetAttachment"


def test_send_without_auto_submitted_has_no_auto_headers(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    t.send(message(auto_submitted=False, html=None, attachments=()))
    req = fake.last("CreateItem")
    assert ext_prop(req, "Auto-Submitted") is None
    assert ext_prop(req, "X-Auto-Response-Suppress") is None
    assert req.find(".//t:Body").get("BodyType") == "Text"


def test_refused_message_id_is_dropped_and_sent_once(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    refusal = error_message("CreateItem", "ErrorInvalidPropertySet",
                            "This property can't be set. (message:InternetMessageId)")
    fake.faults.append(("CreateItem", lambda ctx: envelope("CreateItem", [refusal])))
    t.send(message())
    first, second = [r for r in fake.requests if r.operation == "CreateItem"]
    assert first.find(".//t:InternetMessageId") is not None
    assert second.find(".//t:InternetMessageId") is None
    assert ext_prop(second, MARKER_HEADER)[1] == message().key
    assert len(fake.sent) == 1


# ------------------------------------------------------------------------ invitations


def test_invitation_request_update_and_cancel(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)

    t.send_invitation(invitation(0))
    req = fake.last("CreateItem")
    assert req.body.get("SendMeetingInvitations") == "SendToAllAndSaveCopy"
    assert req.find(".//m:SavedItemFolderId/t:DistinguishedFolderId").get("Id") == "calendar"
    cal = req.find(".//m:Items/t:CalendarItem")
    assert cal.findtext("t:UID", namespaces=NS) == "kcg-m-2026-05@kcg.example"
    assert cal.findtext("t:Location", namespaces=NS) == "Rådhuset, Sal 2"
    assert datetime.fromisoformat(cal.findtext("t:Start", namespaces=NS)) == datetime(2026, 5, 4, 9, tzinfo=STHLM)
    assert cal.find("t:StartTimeZone", NS).get("Id") == "W. Europe Standard Time"
    assert [e.text for e in cal.iterfind("t:RequiredAttendees//t:EmailAddress", NS)] == [
        "anna@kommun.se", "cem@region.se"]
    assert ext_prop(req, MARKER_HEADER)[1] == "m-2026-05:invite:v0"
    assert ext_prop(req, "X-KCG-Invitation-UID") == (
        {"DistinguishedPropertySetId": "PublicStrings", "PropertyName": "X-KCG-Invitation-UID",
         "PropertyType": "String"}, "kcg-m-2026-05@kcg.example")
    assert fake.sent[-1]["kind"] == "request"
    assert t.was_sent("m-2026-05:invite:v0") is True  # found in the calendar

    # update: new room, same time -> only the changed field, only to affected attendees
    t.send_invitation(invitation(1, location="Stadshuset, Sal 1"))
    upd = fake.last("UpdateItem")
    assert upd.body.get("SendMeetingInvitationsOrCancellations") == "SendToChangedAndSaveCopy"
    changed = updated_fields(upd)
    assert changed == {"calendar:Location", MARKER_HEADER, "X-KCG-Invitation-Sequence"}
    assert fake.sent[-1] == {"kind": "update", "uid": "kcg-m-2026-05@kcg.example",
                             "mode": "SendToChangedAndSaveCopy",
                             "changed": ["X-KCG-Invitation-Sequence", MARKER_HEADER, "Location"],
                             "to": ["anna@kommun.se", "cem@region.se"]}
    assert t.was_sent("m-2026-05:invite:v1") is True

    # the same update again (a retried run) sends nothing
    n_updates = fake.ops().count("UpdateItem")
    t.send_invitation(invitation(1, location="Stadshuset, Sal 1"))
    assert fake.ops().count("UpdateItem") == n_updates

    # a new time: start and end change
    t.send_invitation(invitation(2, location="Stadshuset, Sal 1", start=datetime(2026, 5, 4, 13, tzinfo=STHLM),
                                 end=datetime(2026, 5, 4, 15, tzinfo=STHLM)))
    changed = updated_fields(fake.last("UpdateItem"))
    assert {"calendar:Start", "calendar:End"} <= changed and "calendar:Location" not in changed

    t.send_invitation(invitation(3, method="CANCEL"))
    cancel = fake.last("CreateItem")
    assert cancel.body.get("MessageDisposition") == "SendAndSaveCopy"
    assert cancel.find(".//m:Items/t:CancelCalendarItem/t:ReferenceItemId") is not None
    assert fake.sent[-1]["kind"] == "cancel"
    n = len(fake.sent)
    t.send_invitation(invitation(3, method="CANCEL"))  # again: already gone, nothing sent
    assert len(fake.sent) == n
    assert [s["kind"] for s in fake.sent] == ["request", "update", "update", "cancel"]


# ------------------------------------------------------------------------------ inbox


def test_fetch_new_syncs_and_returns_full_mime(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    raw1 = inbound("Protokoll Göteborg", attachment=b"PK\x03\x04 docx bytes")
    raw2 = inbound("Re: Kallelse")
    fake.deliver(raw1)
    fake.deliver(raw2)

    first = t.fetch_new(None)
    assert [m.raw for m in first.messages] == [raw1, raw2]
    assert all(m.received_at and m.received_at.tzinfo for m in first.messages)
    ids = [m.ref.split("|") for m in first.messages]
    assert all(item_id and changekey for item_id, changekey in ids)
    sync = fake.last("SyncFolderItems")
    assert sync.find(".//m:SyncFolderId/t:DistinguishedFolderId").get("Id") == "inbox"
    assert sync.find(".//m:SyncState") is None or not sync.findtext(".//m:SyncState")
    get = fake.last("GetItem")
    assert "item:MimeContent" in {u.get("FieldURI") for u in get.root.iterfind(".//t:FieldURI", NS)}

    # nothing new
    again = t.fetch_new(first.cursor)
    assert again.messages == []
    assert fake.last("SyncFolderItems").findtext(".//m:SyncState") == first.cursor

    raw3 = inbound("Protokoll Malmö")
    fake.deliver(raw3)
    third = t.fetch_new(again.cursor)
    assert [m.raw for m in third.messages] == [raw3]

    # no cursor: everything still in the inbox, even on the same (cached) folder object
    assert len(t.fetch_new(None).messages) == 3


def test_fetch_reads_only_the_headers_of_an_item_over_the_size_cap(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    t.max_incoming = 2000
    small1, small2 = inbound("Re: Kallelse"), inbound("Protokoll Malmö")
    big = inbound("Protokoll Göteborg", attachment=b"x" * 5000)
    ids = [fake.deliver(small1), fake.deliver(big), fake.deliver(small2)]

    result = t.fetch_new(None)
    assert [m.ref.split("|")[0] for m in result.messages] == ids  # the inbox's order
    assert [result.messages[0].raw, result.messages[2].raw] == [small1, small2]
    stub = result.messages[1].raw
    assert stub.startswith(b"X-KCG-Oversize: 1\r\n") and stub.endswith(b"\r\n\r\n")
    head = email.message_from_bytes(stub, policy=email.policy.default)
    assert head["Subject"] == "Protokoll Göteborg" and head["From"] == "Anna Ek <anna@kommun.se>"
    assert b"xxxx" not in stub and len(stub) < 1000
    assert fake.mime_served == [ids[0], ids[2]]  # the big item's MIME content never left the server
    sync = fake.last("SyncFolderItems")
    assert "item:Size" in {u.get("FieldURI") for u in sync.root.iterfind(".//t:FieldURI", NS)}
    asked = [{u.get("FieldURI") for u in r.root.iterfind(".//t:FieldURI", NS)} for r in fake.requests
             if r.operation == "GetItem"]
    assert sorted("item:MimeContent" in a for a in asked) == [False, True]
    assert all("item:InternetMessageHeaders" in a for a in asked)

    # without a cap of its own the transport uses MAX_INCOMING (50 MB): the same item is read whole
    t.max_incoming = None
    assert [m.raw for m in t.fetch_new(None).messages] == [small1, big, small2]


def test_fetch_pages_through_many_changes(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    raws = [inbound(f"Svar {i}") for i in range(105)]  # exchangelib asks for 100 changes at a time
    for r in raws:
        fake.deliver(r)
    result = t.fetch_new(None)
    assert [m.raw for m in result.messages] == raws
    assert fake.ops().count("SyncFolderItems") == 2


def test_move_creates_subfolders_once_and_is_idempotent(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    for i in range(3):
        fake.deliver(inbound(f"Meddelande {i}"))
    msgs = t.fetch_new(None).messages

    t.move(msgs[0].ref, "processed")
    t.move(msgs[1].ref, "processed")
    t.move(msgs[2].ref, "quarantine")
    t.move(msgs[0].ref, "processed")  # already moved: not an error

    assert fake.ops().count("CreateFolder") == 2
    create = fake.last("CreateFolder")
    assert create.find(".//m:ParentFolderId/t:DistinguishedFolderId").get("Id") == "inbox"
    assert create.findtext(".//t:DisplayName") == "quarantine"
    assert len(fake.items_in(fake.subfolder("inbox", "processed").id)) == 2
    assert len(fake.items_in(fake.subfolder("inbox", "quarantine").id)) == 1
    assert fake.items_in("inbox") == []
    move = fake.last("MoveItem")
    assert move.find(".//m:ToFolderId/t:FolderId").get("Id") == fake.subfolder("inbox", "processed").id

    # a new process finds the existing folder instead of creating it again
    close_connections()
    t2, _ = transport(fake, mocker)
    fake.deliver(inbound("Sent svar"))
    t2.move(t2.fetch_new(None).messages[0].ref, "processed")
    assert fake.ops().count("CreateFolder") == 2


# ------------------------------------------------------------------------- OAuth / check


def test_oauth_client_credentials_and_impersonation(mocker):
    fake = FakeEWS(url="https://outlook.office365.com/EWS/Exchange.asmx", auth="oauth", build=(15, 20, 8769, 21))
    t, _ = transport(fake, mocker, auth="oauth", version="ExchangeOnline")
    checks = t.check()
    assert checks[0].ok, checks
    assert any("2026-10-01" in c.detail for c in checks)

    (form,) = fake.token_requests
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["https://outlook.office365.com/.default"]
    assert form["client_id"] == [fake.client_id]
    assert mocker.request_history[0].url == (
        f"https://login.microsoftonline.com/{fake.tenant_id}/oauth2/v2.0/token")

    req = fake.requests[0]
    assert req.headers["Authorization"].startswith("Bearer eyJ")
    assert req.headers["X-AnchorMailbox"] == fake.mailbox
    assert req.find(".//s:Header/t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress").text == fake.mailbox
    assert req.operation == "GetFolder"
    assert t.account.access_type == "impersonation"

    t.send(message())
    assert fake.last("CreateItem").find(".//t:ExchangeImpersonation") is not None
    assert len(fake.token_requests) == 1  # token reused


def test_oauth_wrong_secret_is_reported_not_retried(mocker):
    fake = FakeEWS(auth="oauth")
    t, sleeps = transport(fake, mocker, auth="oauth", creds={"client_secret": "expired"})
    (check,) = t.check()
    assert not check.ok
    assert "KCG_EWS_CLIENT_SECRET" in check.detail and "invalid_client" in check.detail
    with pytest.raises(TransportError) as err:
        t.send(message())
    assert not isinstance(err.value, TransientError)
    assert fake.requests == [] and fake.sent == [] and sleeps == []


def test_wrong_password_is_a_clear_401_without_waiting(mocker):
    fake = FakeEWS()
    t, sleeps = transport(fake, mocker, creds={"password": "wrong"})
    (check,) = t.check()
    assert not check.ok
    assert "401" in check.detail and "KCG_EWS_PASSWORD" in check.detail
    assert sleeps == [] and len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ErrorImpersonateUserDenied", "full_access_as_app"),
        ("ErrorAccessDenied", "full_access_as_app"),
        ("ErrorNonExistentMailbox", "does not exist"),
    ],
)
def test_permission_faults_are_explained(mocker, code, expected):
    fake = FakeEWS(auth="oauth")
    fake.deny = code
    t, _ = transport(fake, mocker, auth="oauth")
    checks = t.check()
    assert not checks[0].ok and expected in checks[0].detail, checks[0].detail
    with pytest.raises(TransportError):
        t.fetch_new(None)


def test_ews_blocked_and_wrong_endpoint(mocker):
    fake = FakeEWS()
    fake.http_status = 403
    t, _ = transport(fake, mocker)
    (check,) = t.check()
    assert not check.ok and "EwsAllowedAppIDs" in check.detail and "Graph" in check.detail

    close_connections()
    fake.http_status = 404
    t, _ = transport(fake, mocker)
    (check,) = t.check()
    assert not check.ok and "/EWS/Exchange.asmx" in check.detail


def test_unreachable_server_is_transient(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    mocker.post(fake.url, exc=requests.exceptions.ConnectTimeout("timed out"))
    with pytest.raises(TransientError):
        t.send(message())


# ------------------------------------------------------------------------- throttling


def test_server_busy_backoff_is_waited_then_succeeds(mocker):
    fake = FakeEWS()
    t, sleeps = transport(fake, mocker)
    fake.faults += [("CreateItem", server_busy(250)), ("CreateItem", server_busy(400))]
    t.send(message())
    assert sleeps == [0.25, 0.4]
    assert fake.ops().count("CreateItem") == 3
    assert len(fake.sent) == 1


@pytest.mark.parametrize(("headers", "expected"), [({}, [10]), ({"Retry-After": "2"}, [2])])
def test_http_503_is_retried(mocker, headers, expected):
    fake = FakeEWS()
    fake.deliver(inbound("Hej"))
    t, sleeps = transport(fake, mocker)
    t.account.inbox  # noqa: B018 - resolve the folder before the fault
    fake.faults.append(("SyncFolderItems", http_status(503, headers)))
    assert len(t.fetch_new(None).messages) == 1
    assert sleeps == expected
    assert fake.ops().count("SyncFolderItems") == 2


def test_throttling_beyond_max_wait_is_transient_and_sends_nothing(mocker):
    fake = FakeEWS()
    t, sleeps = transport(fake, mocker, max_wait=1)
    fake.faults += [("CreateItem", server_busy(600))] * 5
    with pytest.raises(TransientError) as err:
        t.send(message())
    assert "run again later" in str(err.value)
    assert sleeps == [0.6]
    assert fake.sent == []
    # the budget is per operation: the next call may wait again
    fake.faults.clear()
    fake.faults.append(("CreateItem", server_busy(600)))
    t.send(message())
    assert sleeps == [0.6, 0.6] and len(fake.sent) == 1


# ------------------------------------------------------------------------- construction


def test_constructor_validates_settings():
    with pytest.raises(ValueError, match="KCG_EWS_CLIENT_SECRET"):
        ExchangeTransport(EwsSession("a@b.se", "oauth", "https://outlook.office365.com/EWS/Exchange.asmx",
                                     client_id="x", tenant_id="t"))
    with pytest.raises(ValueError, match="KCG_EWS_PASSWORD"):
        ExchangeTransport(EwsSession("a@b.se", "ntlm", "https://mail.b.se/EWS/Exchange.asmx", username="B\\svc"))
    with pytest.raises(ValueError, match="version"):
        ExchangeTransport(EwsSession("a@b.se", "basic", "https://x/EWS/Exchange.asmx", version="Exchange2003",
                                     username="u", password="p"))


def test_invitation_update_is_found_by_uid_in_a_new_process(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker)
    t.send_invitation(invitation(0))
    close_connections()
    t2, _ = transport(fake, mocker)
    t2.send_invitation(dataclasses.replace(invitation(1), location="Stadshuset"))
    find = fake.last("FindItem")
    assert find.find(".//m:Restriction/t:IsEqualTo/t:ExtendedFieldURI").get("PropertyName") == "X-KCG-Invitation-UID"
    assert fake.ops().count("CreateItem") == 1 and fake.ops().count("UpdateItem") == 1


def test_ntlm_on_premises_uses_delegate_access_and_pinned_version(mocker):
    fake = FakeEWS(auth="any", build=(15, 2, 1544, 4))
    t, _ = transport(fake, mocker, auth="ntlm", version="Exchange2019", creds={"username": "KCG\\svc-kcg"})
    assert t.check()[0].ok
    t.send(message())
    req = fake.last("CreateItem")
    assert req.find(".//t:ExchangeImpersonation") is None
    assert req.find(".//t:RequestServerVersion").get("Version") == "Exchange2016"  # 2019 speaks the 2016 schema
    assert t.account.access_type == "delegate"


# ------------------------------------------------------------ a rejected token is fetched anew once


def test_rejected_oauth_token_is_refreshed_once_and_the_send_retried(mocker):
    fake = FakeEWS(url="https://outlook.office365.com/EWS/Exchange.asmx", auth="oauth", build=(15, 20, 8769, 21))
    t, _ = transport(fake, mocker, auth="oauth", version="ExchangeOnline")
    t.send(message(key="first"))
    assert len(fake.token_requests) == 1
    fake.issued_tokens.clear()  # the server revokes the token long before its expiry
    t.send(message(key="second"))
    assert len(fake.token_requests) > 1 and t.session.token_refreshes == 1  # a new token (one per pooled session)
    assert len([s for s in fake.sent if s["kind"] == "message"]) == 2  # each once
    assert t.was_sent("second")


def test_token_refused_twice_fails_with_a_true_message(mocker):
    fake = FakeEWS(auth="oauth")
    t, _ = transport(fake, mocker, auth="oauth")
    t.fetch_new(None)
    fake.issued_tokens.clear()
    fake.auth = "oauth"
    original = fake._token

    def token_never_accepted(request, context):
        body = original(request, context)
        fake.issued_tokens.clear()  # every new token is refused as well
        return body

    from support.fake_ews import TOKEN_URL_RE

    mocker.post(TOKEN_URL_RE, content=token_never_accepted)
    with pytest.raises(TransportError) as info:
        t.fetch_new(None)
    assert "newly fetched access token was refused too" in str(info.value)
    assert t.session.token_refreshes == 1  # once, not in a loop
    assert "KCG_EWS_USERNAME" not in str(info.value)


def test_ews_basic_401_names_settings_that_are_read(mocker):
    fake = FakeEWS()
    t, _ = transport(fake, mocker, creds={"password": "wrong"})
    (check,) = t.check()
    assert not check.ok and "KCG_EWS_PASSWORD" in check.detail and "mail.username" in check.detail
    assert "KCG_EWS_USERNAME" not in check.detail


# ------------------------------------------------------------------ sent_copies: what `kcg state rebuild` reads

def test_sent_copies_lists_sent_items_and_invitations_with_their_keys(mocker):
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
