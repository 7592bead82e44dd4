"""A stateful fake Exchange Web Services endpoint for tests, at the SOAP level.

Installed on a ``requests_mock.Mocker``: exchangelib builds and sends its real
SOAP requests and parses the envelopes answered here, so its serialisation,
parsing, error handling and retry loop all run. The fake keeps one mailbox
(folders, items, a per-folder change log for SyncFolderItems) and records every
request so tests can assert on the XML we produce.

Operations: GetFolder, FindFolder, CreateFolder, CreateItem (Message,
CalendarItem, CancelCalendarItem), FindItem (IsEqualTo and Exists restrictions), GetItem
(incl. MimeContent, InternetMessageHeaders and item:Size), GetAttachment, UpdateItem, MoveItem,
SyncFolderItems; plus
the Microsoft identity platform token endpoint for OAuth client credentials.

The SOAP side (namespaces, response envelopes, restrictions) is in
``fake_ews_soap``; this module is the mailbox and its operations.
"""

from __future__ import annotations

import base64
import copy
import email
import email.policy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from support.fake_ews_soap import (  # noqa: F401  (NS, TOKEN_URL_RE and the envelopes are the fake's API for tests)
    NS,
    TOKEN_URL_RE,
    E,
    M,
    S,
    T,
    emails_in,
    envelope,
    error_message,
    esc,
    http_status,
    local_name,
    m_tag,
    matches_folder,
    matches_item,
    now_text,
    server_busy,
    soap_fault,
    success,
    t_tag,
)

DISTINGUISHED = {
    # id: (display name, element tag, folder class)
    "msgfolderroot": ("Top of Information Store", "Folder", "IPF.Note"),
    "root": ("", "Folder", None),
    "inbox": ("Inbox", "Folder", "IPF.Note"),
    "sentitems": ("Sent Items", "Folder", "IPF.Note"),
    "calendar": ("Calendar", "CalendarFolder", "IPF.Appointment"),
    "deleteditems": ("Deleted Items", "Folder", "IPF.Note"),
    "drafts": ("Drafts", "Folder", "IPF.Note"),
}


@dataclass
class Request:
    operation: str
    xml: bytes
    root: Any  # lxml element of the whole envelope
    headers: dict[str, str]

    @property
    def body(self):
        return self.root.find(f"{{{S}}}Body")[0]

    def find(self, path: str):
        return self.root.find(path, NS)

    def findtext(self, path: str):
        return self.root.findtext(path, namespaces=NS)

    def findall(self, path: str):
        return self.root.findall(path, NS)

    def __contains__(self, text: str) -> bool:
        return text.encode() in self.xml


@dataclass
class FakeFolder:
    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    tag: str = "Folder"
    folder_class: str | None = "IPF.Note"
    changekey: str = "CK-F-1"
    log: list[tuple[str, str]] = field(default_factory=list)  # ("Create"|"Delete", item id)


@dataclass
class FakeItem:
    id: str
    folder: str
    elem: Any  # t:Message / t:CalendarItem as the client sent it (plus server fields)
    changekey: int = 1
    mime: bytes | None = None
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    attachments: dict[str, Any] = field(default_factory=dict)  # attachment id -> FileAttachment elem

    @property
    def kind(self) -> str:
        return local_name(self.elem.tag)

    @property
    def ck(self) -> str:
        return f"CK{self.changekey}-{self.id[-6:]}"

    def ext(self, name: str) -> str | None:
        for prop in self.elem.findall(t_tag("ExtendedProperty")):
            uri = prop.find(t_tag("ExtendedFieldURI"))
            if uri is not None and uri.get("PropertyName") == name:
                return prop.findtext(t_tag("Value"))
        return None

    def text(self, tag: str) -> str | None:
        return self.elem.findtext(t_tag(tag))


class FakeEWS:
    """One mailbox behind one EWS URL."""

    def __init__(
        self,
        url: str = "https://mail.kcg.example/EWS/Exchange.asmx",
        mailbox: str = "natverket@kcg.example",
        *,
        auth: str = "basic",  # "basic" (username/password), "oauth" (bearer token) or "any" (no check)
        username: str = "svc-kcg",
        password: str = "s3cret",
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str = "app-secret",
        tenant_id: str = "contoso.onmicrosoft.com",
        build: tuple[int, int, int, int] = (15, 1, 2507, 6),
    ):
        self.url = url
        self.mailbox = mailbox
        self.auth = auth
        self.username, self.password = username, password
        self.client_id, self.client_secret, self.tenant_id = client_id, client_secret, tenant_id
        self.build = build
        self.requests: list[Request] = []
        self.token_requests: list[dict[str, list[str]]] = []
        self.issued_tokens: set[str] = set()
        #: Faults answered before normal handling: (operation or None, responder(context) -> body)
        self.faults: list[tuple[str | None, Callable[[Any], str]]] = []
        #: When set, every EWS call answers with this SOAP fault code (e.g. ErrorImpersonateUserDenied).
        self.deny: str | None = None
        #: HTTP status answered to everything (e.g. 403 when EWS is blocked, 404 for a wrong URL).
        self.http_status: int | None = None
        self.folders: dict[str, FakeFolder] = {}
        self.items: dict[str, FakeItem] = {}
        self.sent: list[dict[str, Any]] = []  # what went out (messages, meeting requests, cancellations)
        self._ids = itertools.count(1)
        #: serve MimeContent without Authentication-Results (a MIME rebuilt by the store)
        self.mime_without_auth_results = False
        #: ids of the items whose MimeContent was served (GetItem, SyncFolderItems), in order
        self.mime_served: list[str] = []
        for did, (name, tag, cls) in DISTINGUISHED.items():
            fid = self._new_id("F")
            parent = None if did == "root" else ("msgfolderroot" if did != "msgfolderroot" else "root")
            self.folders[fid] = FakeFolder(fid, name, parent, did, tag, cls)
        # resolve parent distinguished names to ids
        for f in self.folders.values():
            if f.parent:
                f.parent = self.folder_by_name(f.parent).id

    # ------------------------------------------------------------------ helpers

    def _new_id(self, prefix: str) -> str:
        n = next(self._ids)
        return base64.b64encode(f"AAMk{prefix}{n:08d}-kcg-fake-ews".encode()).decode()

    def folder_by_name(self, distinguished: str) -> FakeFolder:
        for f in self.folders.values():
            if f.distinguished == distinguished:
                return f
        raise KeyError(distinguished)

    def subfolder(self, parent: str, name: str) -> FakeFolder | None:
        pid = self.folder_by_name(parent).id
        for f in self.folders.values():
            if f.parent == pid and f.name.lower() == name.lower():
                return f
        return None

    def items_in(self, distinguished_or_id: str) -> list[FakeItem]:
        fid = self.folders[distinguished_or_id].id if distinguished_or_id in self.folders else (
            self.folder_by_name(distinguished_or_id).id
        )
        return [i for i in self.items.values() if i.folder == fid]

    def ops(self) -> list[str]:
        return [r.operation for r in self.requests]

    def last(self, operation: str) -> Request:
        for r in reversed(self.requests):
            if r.operation == operation:
                return r
        raise AssertionError(f"no {operation} request in {self.ops()}")

    def _add_item(self, folder_id: str, elem, **kw) -> FakeItem:
        item = FakeItem(self._new_id("I"), folder_id, elem, **kw)
        self.items[item.id] = item
        self.folders[folder_id].log.append(("Create", item.id))
        return item

    def _remove_item(self, item: FakeItem) -> None:
        del self.items[item.id]
        self.folders[item.folder].log.append(("Delete", item.id))

    # ------------------------------------------------------------------ seeding

    def deliver(self, raw: bytes, *, received: datetime | None = None, item_type: str = "Message") -> str:
        """Put an RFC 822 message in the inbox as the transport service would."""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        elem = etree.Element(t_tag(item_type), nsmap={"t": T})
        etree.SubElement(elem, t_tag("ItemClass")).text = "IPM.Note"
        etree.SubElement(elem, t_tag("Subject")).text = str(parsed.get("Subject", ""))
        etree.SubElement(elem, t_tag("InternetMessageId")).text = str(parsed.get("Message-ID", ""))
        inbox = self.folder_by_name("inbox")
        item = self._add_item(inbox.id, elem, mime=raw, received=received or datetime.now(UTC))
        return item.id

    # ------------------------------------------------------------------ install

    def install(self, mocker) -> FakeEWS:
        mocker.post(self.url, content=self._handle)
        mocker.post(TOKEN_URL_RE, content=self._token)
        return self

    # ------------------------------------------------------------------ OAuth token endpoint

    def _token(self, request, context) -> bytes:
        form = parse_qs(request.text)
        self.token_requests.append(form)
        tenant = TOKEN_URL_RE.match(request.url).group(1)
        context.headers["Content-Type"] = "application/json; charset=utf-8"
        if (
            tenant != self.tenant_id
            or form.get("client_id") != [self.client_id]
            or form.get("client_secret") != [self.client_secret]
        ):
            context.status_code = 401
            return json.dumps(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                    "sent in the request is the client secret value, not the client secret ID.",
                    "error_codes": [7000215],
                }
            ).encode()
        token = f"eyJ0eXAiOiJKV1Qi.fake.{len(self.issued_tokens) + 1}"
        self.issued_tokens.add(token)
        context.status_code = 200
        return json.dumps(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        ).encode()

    # ------------------------------------------------------------------ EWS endpoint

    def _authorized(self, request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "any":  # e.g. NTLM, whose handshake only starts after a 401
            return True
        if self.auth == "oauth":
            return header.startswith("Bearer ") and header[7:] in self.issued_tokens
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def _handle(self, request, context) -> bytes:
        root = etree.fromstring(request.body if isinstance(request.body, bytes) else request.body.encode())
        body = root.find(f"{{{S}}}Body")
        op = local_name(body[0].tag)
        self.requests.append(Request(op, request.body if isinstance(request.body, bytes) else request.body.encode(),
                                     root, dict(request.headers)))
        context.headers["Content-Type"] = "text/xml; charset=utf-8"
        if self.http_status:
            context.status_code = self.http_status
            return b""
        if not self._authorized(request):
            context.status_code = 401
            context.headers["WWW-Authenticate"] = 'Bearer realm=""' if self.auth == "oauth" else 'Basic realm=""'
            return b""
        for i, (fault_op, responder) in enumerate(self.faults):
            if fault_op in (None, op):
                del self.faults[i]
                return responder(context).encode()
        if self.deny:
            context.status_code = 500
            return soap_fault(self.deny, f"{self.deny}: access refused by the fake server.").encode()
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            context.status_code = 500
            return soap_fault("ErrorInvalidRequest", f"The fake EWS does not implement {op}").encode()
        context.status_code = 200
        messages = handler(body[0])
        return envelope(op, messages, self.build).encode()

    # ------------------------------------------------------------------ folder operations

    def _folder_from_id_elem(self, elem) -> FakeFolder | None:
        if local_name(elem.tag) == "DistinguishedFolderId":
            try:
                return self.folder_by_name(elem.get("Id"))
            except KeyError:
                return None
        return self.folders.get(elem.get("Id"))

    def _folder_xml(self, f: FakeFolder) -> str:
        total = len(self.items_in(f.id))
        children = sum(1 for c in self.folders.values() if c.parent == f.id)
        parent = f'<t:ParentFolderId Id="{f.parent}" ChangeKey="CK-F-1"/>' if f.parent else ""
        cls = f"<t:FolderClass>{f.folder_class}</t:FolderClass>" if f.folder_class else ""
        return (
            f'<t:{f.tag}><t:FolderId Id="{f.id}" ChangeKey="{f.changekey}"/>{parent}{cls}'
            f"<t:DisplayName>{esc(f.name)}</t:DisplayName><t:TotalCount>{total}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:{f.tag}>"
        )

    def _op_GetFolder(self, req) -> list[str]:
        out = []
        for fid in req.find("m:FolderIds", NS):
            f = self._folder_from_id_elem(fid)
            if f is None:
                out.append(error_message("GetFolder", "ErrorFolderNotFound",
                                         "The specified folder could not be found in the store."))
            else:
                out.append(success("GetFolder", f"<m:Folders>{self._folder_xml(f)}</m:Folders>"))
        return out

    def _op_FindFolder(self, req) -> list[str]:
        out = []
        restriction = req.find("m:Restriction", NS)
        for pid in req.find("m:ParentFolderIds", NS):
            parent = self._folder_from_id_elem(pid)
            children = [f for f in self.folders.values() if parent and f.parent == parent.id]
            if restriction is not None:
                children = [f for f in children if matches_folder(restriction, f)]
            xml = "".join(self._folder_xml(f) for f in children)
            out.append(success(
                "FindFolder",
                f'<m:RootFolder IndexedPagingOffset="{len(children)}" TotalItemsInView="{len(children)}" '
                f'IncludesLastItemInRange="true"><t:Folders>{xml}</t:Folders></m:RootFolder>',
            ))
        return out

    def _op_CreateFolder(self, req) -> list[str]:
        parent = self._folder_from_id_elem(req.find("m:ParentFolderId", NS)[0])
        out = []
        for folder in req.find("m:Folders", NS):
            name = folder.findtext(t_tag("DisplayName"))
            if any(f.parent == parent.id and f.name.lower() == name.lower() for f in self.folders.values()):
                out.append(error_message("CreateFolder", "ErrorFolderExists",
                                         "A folder with the specified name already exists."))
                continue
            f = FakeFolder(self._new_id("F"), name, parent.id, None, "Folder",
                           folder.findtext(t_tag("FolderClass")) or "IPF.Note")
            self.folders[f.id] = f
            out.append(success("CreateFolder",
                               f'<m:Folders><t:Folder><t:FolderId Id="{f.id}" ChangeKey="{f.changekey}"/>'
                               f"</t:Folder></m:Folders>"))
        return out

    # ------------------------------------------------------------------ item rendering

    def _requested(self, req) -> tuple[set[str], set[str], bool]:
        """(element local names, extended property names, mime?) asked for in the item shape."""
        names, ext = set(), set()
        shape = req.find("m:ItemShape", NS)
        if shape is None:
            return names, ext, False
        for uri in shape.iter(t_tag("FieldURI")):
            names.add(uri.get("FieldURI").partition(":")[2])
        for uri in shape.iter(t_tag("ExtendedFieldURI")):
            ext.add(uri.get("PropertyName"))
        return names, ext, "MimeContent" in names

    def _item_xml(self, item: FakeItem, names: set[str], ext: set[str], mime: bool) -> str:
        tag = item.kind
        parts = [f'<t:ItemId Id="{item.id}" ChangeKey="{item.ck}"/>']
        if mime and item.mime is not None:
            served = item.mime
            if self.mime_without_auth_results:
                from kcg_mail.adapters.headers import with_server_auth_results

                served = with_server_auth_results(served, [])
            parts.insert(0, f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(served).decode()}'
                            f"</t:MimeContent>")
            self.mime_served.append(item.id)
        if "InternetMessageHeaders" in names and item.mime is not None:
            # the transport headers, in message order, as EWS lists them
            from xml.sax.saxutils import escape, quoteattr

            hdrs = email.message_from_bytes(item.mime, policy=email.policy.compat32)
            parts.append("<t:InternetMessageHeaders>" + "".join(
                f"<t:InternetMessageHeader HeaderName={quoteattr(k)}>{escape(' '.join(str(v).split()))}"
                f"</t:InternetMessageHeader>" for k, v in hdrs.items()) + "</t:InternetMessageHeaders>")
        if "Size" in names and item.mime is not None:  # item:Size, the item's size in bytes
            parts.append(f"<t:Size>{len(item.mime)}</t:Size>")
        if "ParentFolderId" in names:
            parts.append(f'<t:ParentFolderId Id="{item.folder}" ChangeKey="CK-F-1"/>')
        if "DateTimeReceived" in names:
            parts.append(f"<t:DateTimeReceived>{item.received.strftime('%Y-%m-%dT%H:%M:%SZ')}</t:DateTimeReceived>")
        for child in item.elem:
            local = local_name(child.tag)
            if local == "ExtendedProperty":
                uri = child.find(t_tag("ExtendedFieldURI"))
                if uri is not None and uri.get("PropertyName") in ext:
                    parts.append(etree.tostring(child, encoding="unicode"))
            elif local == "Attachments" and local in names:
                # like EWS: item shapes list attachments without content (GetAttachment has it)
                listed = copy.deepcopy(child)
                for content in listed.iter(t_tag("Content")):
                    content.getparent().remove(content)
                parts.append(etree.tostring(listed, encoding="unicode"))
            elif local in names and local not in ("MimeContent", "ParentFolderId", "DateTimeReceived", "Size"):
                parts.append(etree.tostring(child, encoding="unicode"))
        return f"<t:{tag}>{''.join(parts)}</t:{tag}>"

    # ------------------------------------------------------------------ item operations

    def _op_CreateItem(self, req) -> list[str]:
        disposition = req.get("MessageDisposition")
        invitations = req.get("SendMeetingInvitations")
        saved = req.find("m:SavedItemFolderId", NS)
        target = self._folder_from_id_elem(saved[0]) if saved is not None else None
        out = []
        for elem in req.find("m:Items", NS):
            kind = local_name(elem.tag)
            elem = copy.deepcopy(elem)
            if kind == "CancelCalendarItem":
                ref = elem.find(t_tag("ReferenceItemId"))
                meeting = self.items.get(ref.get("Id"))
                if meeting is None:
                    out.append(error_message("CreateItem", "ErrorItemNotFound",
                                             "The specified object was not found in the store."))
                    continue
                self.sent.append({"kind": "cancel", "uid": meeting.text("UID"),
                                  "to": emails_in(meeting.elem, "RequiredAttendees"), "disposition": disposition})
                self._remove_item(meeting)  # the organizer's copy goes away with the cancellation
                meeting.folder = self.folder_by_name("deleteditems").id
                self.items[meeting.id] = meeting
                meeting.elem.append(etree.fromstring(f'<t:IsCancelled xmlns:t="{T}">true</t:IsCancelled>'))
                out.append(success("CreateItem", "<m:Items/>"))
                continue
            attachments = {}
            atts = elem.find(t_tag("Attachments"))
            if atts is not None:
                for att in atts:
                    aid = self._new_id("A")
                    att.insert(0, etree.fromstring(f'<t:AttachmentId xmlns:t="{T}" Id="{aid}"/>'))
                    attachments[aid] = att
            if kind == "Message":
                folder = target or self.folder_by_name("sentitems")
                if disposition in ("SendOnly", "SendAndSaveCopy"):
                    self.sent.append({"kind": "message", "to": emails_in(elem, "ToRecipients"),
                                      "cc": emails_in(elem, "CcRecipients"), "subject": elem.findtext(t_tag("Subject")),
                                      "disposition": disposition, "elem": elem})
                if disposition == "SendOnly":
                    out.append(success("CreateItem", "<m:Items/>"))
                    continue
                item = self._add_item(folder.id, elem, attachments=attachments)
                if disposition == "SendAndSaveCopy":
                    out.append(success("CreateItem", "<m:Items/>"))  # EWS returns no id here
                else:
                    out.append(success("CreateItem", f'<m:Items><t:Message><t:ItemId Id="{item.id}" '
                                                     f'ChangeKey="{item.ck}"/></t:Message></m:Items>'))
            elif kind == "CalendarItem":
                folder = target or self.folder_by_name("calendar")
                for server_field, value in (("IsCancelled", "false"), ("CalendarItemType", "Single"),
                                            ("DateTimeCreated", now_text())):
                    etree.SubElement(elem, t_tag(server_field)).text = value
                item = self._add_item(folder.id, elem, attachments=attachments)
                if invitations and invitations != "SendToNone":
                    self.sent.append({"kind": "request", "uid": elem.findtext(t_tag("UID")),
                                      "to": emails_in(elem, "RequiredAttendees"), "mode": invitations})
                out.append(success("CreateItem", f'<m:Items><t:CalendarItem><t:ItemId Id="{item.id}" '
                                                 f'ChangeKey="{item.ck}"/></t:CalendarItem></m:Items>'))
            else:
                out.append(error_message("CreateItem", "ErrorInvalidRequest", f"fake: {kind} not supported"))
        return out

    def _op_FindItem(self, req) -> list[str]:
        names, ext, mime = self._requested(req)
        restriction = req.find("m:Restriction", NS)
        view = req.find("m:IndexedPageItemView", NS)
        limit = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        offset = int(view.get("Offset", "0")) if view is not None else 0
        out = []
        for pid in req.find("m:ParentFolderIds", NS):
            folder = self._folder_from_id_elem(pid)
            if folder is None:
                out.append(error_message("FindItem", "ErrorFolderNotFound",
                                         "The specified folder could not be found in the store."))
                continue
            found = [i for i in self.items_in(folder.id) if restriction is None or matches_item(restriction, i)]
            page = found[offset: offset + limit]
            last = offset + len(page) >= len(found)
            xml = "".join(self._item_xml(i, names, ext, mime) for i in page)
            out.append(success(
                "FindItem",
                f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="{str(last).lower()}"><t:Items>{xml}</t:Items></m:RootFolder>',
            ))
        return out

    def _op_GetItem(self, req) -> list[str]:
        names, ext, mime = self._requested(req)
        out = []
        for ref in req.find("m:ItemIds", NS):
            item = self.items.get(ref.get("Id"))
            if item is None:
                out.append(error_message("GetItem", "ErrorItemNotFound",
                                         "The specified object was not found in the store.", items=True))
            else:
                out.append(success("GetItem", f"<m:Items>{self._item_xml(item, names, ext, mime)}</m:Items>"))
        return out

    def _op_GetAttachment(self, req) -> list[str]:
        out = []
        for ref in req.find("m:AttachmentIds", NS):
            att = next((a for i in self.items.values() for aid, a in i.attachments.items()
                        if aid == ref.get("Id")), None)
            if att is None:
                out.append(error_message("GetAttachment", "ErrorItemNotFound",
                                         "The specified object was not found in the store."))
            else:
                out.append(success("GetAttachment",
                                   f"<m:Attachments>{etree.tostring(att, encoding='unicode')}</m:Attachments>"))
        return out

    def _op_UpdateItem(self, req) -> list[str]:
        out = []
        mode = req.get("SendMeetingInvitationsOrCancellations")
        for change in req.find("m:ItemChanges", NS):
            ref = change.find(t_tag("ItemId"))
            item = self.items.get(ref.get("Id"))
            if item is None:
                out.append(error_message("UpdateItem", "ErrorItemNotFound",
                                         "The specified object was not found in the store."))
                continue
            changed = []
            for update in change.find(t_tag("Updates")):
                uri = update[0]
                if local_name(uri.tag) == "ExtendedFieldURI":
                    name = uri.get("PropertyName")
                    for old in item.elem.findall(t_tag("ExtendedProperty")):
                        if old.find(t_tag("ExtendedFieldURI")).get("PropertyName") == name:
                            item.elem.remove(old)
                    if local_name(update.tag) == "SetItemField":
                        item.elem.append(copy.deepcopy(update[1].find(t_tag("ExtendedProperty"))))
                    changed.append(name)
                    continue
                field_name = uri.get("FieldURI", "").partition(":")[2]
                for old in item.elem.findall(t_tag(field_name)):
                    item.elem.remove(old)
                if local_name(update.tag) == "SetItemField":
                    for new in update[1]:
                        item.elem.append(copy.deepcopy(new))
                changed.append(field_name)
            item.changekey += 1
            if item.kind == "CalendarItem" and mode and mode != "SendToNone":
                self.sent.append({"kind": "update", "uid": item.text("UID"), "mode": mode, "changed": changed,
                                  "to": emails_in(item.elem, "RequiredAttendees")})
            out.append(success(
                "UpdateItem",
                f'<m:Items><t:{item.kind}><t:ItemId Id="{item.id}" ChangeKey="{item.ck}"/></t:{item.kind}>'
                f"</m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
            ))
        return out

    def _op_MoveItem(self, req) -> list[str]:
        target = self._folder_from_id_elem(req.find("m:ToFolderId", NS)[0])
        out = []
        for ref in req.find("m:ItemIds", NS):
            item = self.items.get(ref.get("Id"))
            if item is None:
                out.append(error_message("MoveItem", "ErrorItemNotFound",
                                         "The specified object was not found in the store.", items=True))
                continue
            self._remove_item(item)
            moved = self._add_item(target.id, item.elem, mime=item.mime, received=item.received,
                                   attachments=item.attachments)
            out.append(success("MoveItem", f'<m:Items><t:{moved.kind}><t:ItemId Id="{moved.id}" '
                                           f'ChangeKey="{moved.ck}"/></t:{moved.kind}></m:Items>'))
        return out

    def _op_SyncFolderItems(self, req) -> list[str]:
        names, ext, mime = self._requested(req)
        folder = self._folder_from_id_elem(req.find("m:SyncFolderId", NS)[0])
        state = req.findtext("m:SyncState", namespaces=NS)
        start = int(base64.b64decode(state).decode().split(":")[1]) if state else 0
        limit = int(req.findtext("m:MaxChangesReturned", namespaces=NS) or "100")
        log = folder.log
        changes, pos = [], start
        alive = {i.id for i in self.items_in(folder.id)}
        created_before = {iid for kind, iid in log[:start] if kind == "Create"}
        while pos < len(log) and len(changes) < limit:
            kind, iid = log[pos]
            pos += 1
            if kind == "Create" and iid in alive:
                changes.append(f"<t:Create>{self._item_xml(self.items[iid], names, ext, mime)}</t:Create>")
            elif kind == "Delete" and iid in created_before:
                changes.append(f'<t:Delete><t:ItemId Id="{iid}" ChangeKey="CK0"/></t:Delete>')
        new_state = base64.b64encode(f"{folder.id}:{pos}".encode()).decode()
        return [success(
            "SyncFolderItems",
            f"<m:SyncState>{new_state}</m:SyncState>"
            f"<m:IncludesLastItemInRange>{str(pos >= len(log)).lower()}</m:IncludesLastItemInRange>"
            f"<m:Changes>{''.join(changes)}</m:Changes>",
        )]


