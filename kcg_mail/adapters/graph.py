"""Microsoft 365 mailbox through Microsoft Graph (plain httpx + msal).

EWS is blocked in Exchange Online from 2026-10-01 and switched off on
2027-04-01, so Microsoft 365 tenants use this adapter. It signs in as an
application (client credentials, ``https://graph.microsoft.com/.default``)
and works on one mailbox, the network's.

What goes where:

* ``send``: ``POST /users/{mailbox}/sendMail``; when an attachment is over
  3 MB (or all of them together would make the JSON request too big) a draft
  is created, small attachments are POSTed, big ones go through an upload
  session, and the draft is sent with ``POST /messages/{id}/send``.
* ``send_invitation``: a real calendar event (``POST /events``); Exchange sends
  the meeting request, updates (``PATCH``) and the cancellation
  (``POST /events/{id}/cancel``).
* ``fetch_new``: delta query on the inbox; the delta link is the cursor; each
  message's ``internetMessageHeaders`` and size (PidTagMessageSize, ``$expand``:
  delta cannot expand) are read, then its full MIME (``GET /messages/{id}/$value``)
  when it is within the incoming size cap, else only its headers are passed on.
* ``move``: into a child folder of the inbox, created when missing.
* ``was_sent``: Sent Items and events, found by extended properties.

Every request sends ``Prefer: IdType="ImmutableId"`` so a message keeps its id
when it is moved (the ``ref`` we hand out stays valid).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import msal

from ..ports import (
    MARKER_HEADER,
    Attachment,
    Check,
    FetchResult,
    Folder,
    IncomingMessage,
    MailTransport,
    OutgoingMessage,
    TransportError,
)
from .graph_calendar import GraphCalendar
from .graph_http import (
    _AADSTS_HELP,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_TENANT_ID,
    INLINE_TOTAL,
    LARGE_ATTACHMENT,
    PROP_IN_REPLY_TO,
    PROP_KEY,
    PROP_KEYS,
    PROP_MARKER_HEADER,
    PROP_MESSAGE_SIZE,
    PROP_REFERENCES,
    REQUIRED_ROLES,
    UPLOAD_CHUNK,
    GraphError,
    GraphHttp,
    _jwt_roles,
    _message_size,
    _odata,
    _prop_filter,
    _recipient,
)
from .headers import with_server_auth_results
from .maildir import incoming_limit, oversize_from_fields

log = logging.getLogger(__name__)
























class GraphTransport(GraphHttp, GraphCalendar, MailTransport):
    """One Microsoft 365 mailbox through Microsoft Graph, application permissions."""

    #: size cap for incoming mail in bytes (PidTagMessageSize); None: ``MAX_INCOMING``.
    #: Bigger messages are read as ``internetMessageHeaders`` only, never ``/$value``.
    max_incoming: int | None = None

    def __init__(
        self,
        mailbox: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        base_url: str = "https://graph.microsoft.com/v1.0",
        authority_host: str = "https://login.microsoftonline.com",
        http: httpx.Client | None = None,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        processed_folder: str = "processed",
        quarantine_folder: str = "quarantine",
        *,
        timeout: float = 60.0,
        max_wait: float = 300.0,
        upload_chunk: int = UPLOAD_CHUNK,
        settle_seconds: float = 120.0,
    ) -> None:
        if not (mailbox and tenant_id and client_id and client_secret):
            raise TransportError(
                "Graph needs the mailbox, KCG_GRAPH_TENANT_ID, KCG_GRAPH_CLIENT_ID and "
                "KCG_GRAPH_CLIENT_SECRET"
            )
        if upload_chunk % (320 * 1024) or upload_chunk > 4 * 1024 * 1024:
            raise ValueError("upload_chunk must be a multiple of 320 KiB and at most 4 MiB")
        self.mailbox = mailbox
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout)
        self._timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep
        #: sendMail is asynchronous: the Sent Items copy (what ``was_sent`` looks
        #: for) shows up a while after the 202. A run recovering an interrupted
        #: send waits this long from the intent before deciding it did not go
        #: out (services/app.py Outbox; README "Crash safety").
        self.settle_seconds = settle_seconds
        self.settle_sleep = sleep
        self.upload_chunk = upload_chunk
        self.folder_names: dict[str, str] = {
            "processed": processed_folder,
            "quarantine": quarantine_folder,
        }
        self._folder_ids: dict[str, str] = {}
        self._app: msal.ConfidentialClientApplication | None = None
        self._user = f"{self.base_url}/users/{quote(mailbox, safe='@')}"

    @classmethod
    def from_env(cls, mailbox: str, env: dict[str, str] | None = None, **kw: Any) -> GraphTransport:
        """Credentials from KCG_GRAPH_TENANT_ID, KCG_GRAPH_CLIENT_ID and
        KCG_GRAPH_CLIENT_SECRET."""
        env = dict(os.environ if env is None else env)
        missing = [n for n in (ENV_TENANT_ID, ENV_CLIENT_ID, ENV_CLIENT_SECRET) if not env.get(n)]
        if missing:
            raise TransportError("Graph transport: set " + ", ".join(missing))
        return cls(mailbox, env[ENV_TENANT_ID], env[ENV_CLIENT_ID], env[ENV_CLIENT_SECRET], **kw)

    # ------------------------------------------------------------------ auth





    # ------------------------------------------------------------------ http





    # ------------------------------------------------------------------ send

    def _message_json(self, message: OutgoingMessage) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "subject": message.subject,
            "body": (
                {"contentType": "HTML", "content": message.html}
                if message.html
                else {"contentType": "Text", "content": message.text}
            ),
            "toRecipients": [_recipient(a) for a in message.to],
            "internetMessageId": message.message_id,
        }
        if message.cc:
            msg["ccRecipients"] = [_recipient(a) for a in message.cc]
        if message.reply_to:
            msg["replyTo"] = [_recipient(message.reply_to)]
        if message.sender.email.lower() != self.mailbox.lower():
            log.warning("Graph sends as %s, not as %s", self.mailbox, message.sender.email)
        # Graph accepts only custom X- headers in internetMessageHeaders (any
        # other name is rejected with InvalidInternetMessageHeader). So
        # "Auto-Submitted: auto-generated" (RFC 3834) cannot travel from Graph;
        # X-Auto-Response-Suppress still stops Exchange/Outlook auto-replies.
        headers = [{"name": MARKER_HEADER, "value": message.key}]
        if message.auto_submitted:
            headers.append({"name": "X-Auto-Response-Suppress", "value": "All"})
        msg["internetMessageHeaders"] = headers
        # Our key as a named property: stays on the draft and the Sent Items copy,
        # independent of how Exchange stores the header.
        props = [{"id": PROP_KEY, "value": message.key}]
        if message.in_reply_to:
            props.append({"id": PROP_IN_REPLY_TO, "value": message.in_reply_to})
        if message.references:
            props.append({"id": PROP_REFERENCES, "value": " ".join(message.references)})
        msg["singleValueExtendedProperties"] = props
        return msg

    @staticmethod
    def _file_attachment(att: Attachment) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": att.filename,
            "contentType": att.content_type,
            "contentBytes": base64.b64encode(att.data).decode("ascii"),
        }

    def send(self, message: OutgoingMessage) -> None:
        atts = message.attachments
        if any(len(a.data) > LARGE_ATTACHMENT for a in atts) or sum(len(a.data) for a in atts) > INLINE_TOTAL:
            self._send_via_draft(message)
            return
        msg = self._message_json(message)
        if atts:
            msg["attachments"] = [self._file_attachment(a) for a in atts]
        self._call(
            "POST",
            f"{self._user}/sendMail",
            json_body={"message": msg, "saveToSentItems": True},
            ok=(202,),
            ambiguous_retry=False,
            what=f"sendMail {message.key}",
        )
        log.info("Graph: sent %s to %d recipients", message.key, len(message.recipients))

    def _send_via_draft(self, message: OutgoingMessage) -> None:
        # Reuse a draft left by a crashed run, so a retry does not pile up drafts.
        found = self._get_json(
            self._query(
                "/mailFolders/drafts/messages",
                filter=_prop_filter(PROP_KEY, message.key),
                select="id",
                top="1",
            )
        ).get("value", [])
        if found:
            draft_id = found[0]["id"]
            log.info("Graph: reusing draft for %s", message.key)
        else:
            draft = self._call(
                "POST", f"{self._user}/messages", json_body=self._message_json(message), ok=(201,)
            ).json()
            draft_id = draft["id"]
        msg_url = f"{self._user}/messages/{quote(draft_id, safe='')}"
        self._add_attachments(msg_url, message.attachments)
        resp = self._call("POST", f"{msg_url}/send", ok=(202,), allow=(404,), what=f"send draft {message.key}")
        if resp.status_code == 404:
            # Only possible on a retry after an unclear outcome: the draft is gone
            # because the first send went through.
            log.warning("Graph: draft for %s already sent", message.key)
        log.info("Graph: sent %s (via draft, %d attachments)", message.key, len(message.attachments))

    def _add_attachments(self, item_url: str, attachments: Iterable[Attachment]) -> None:
        """Attach files to a draft or event, skipping those already there (same
        name and size: left by an interrupted run)."""
        attachments = list(attachments)
        if not attachments:
            return
        have = Counter(
            (a.get("name"), a.get("size"))
            for a in self._get_json(f"{item_url}/attachments?$select=name,size").get("value", [])
        )
        for att in attachments:
            if have[(att.filename, len(att.data))] > 0:
                have[(att.filename, len(att.data))] -= 1
                continue
            if len(att.data) > LARGE_ATTACHMENT:
                self._upload_large(item_url, att)
            else:
                self._call("POST", f"{item_url}/attachments", json_body=self._file_attachment(att), ok=(201,))

    def _upload_large(self, item_url: str, att: Attachment) -> None:
        session = self._call(
            "POST",
            f"{item_url}/attachments/createUploadSession",
            json_body={
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": att.filename,
                    "size": len(att.data),
                    "contentType": att.content_type,
                }
            },
            ok=(201,),
        ).json()
        upload_url = session["uploadUrl"]
        total = len(att.data)
        start = 0
        while start < total:
            end = min(start + self.upload_chunk, total)
            # The upload URL is pre-authenticated: sending our bearer token
            # there is refused (and would hand it to another host).
            resp = self._call(
                "PUT",
                upload_url,
                content=att.data[start:end],
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end - 1}/{total}",
                },
                auth=False,
                ok=(200, 201),
                what=f"upload {att.filename}",
            )
            if resp.status_code == 201:
                break
            nxt = (resp.json().get("nextExpectedRanges") or [str(end)])[0]
            start = int(str(nxt).split("-")[0])
        log.info("Graph: uploaded %s (%d bytes) in an upload session", att.filename, total)

    # ------------------------------------------------------------ invitations









    # ----------------------------------------------------------------- intake

    def _valid_link(self, link: str | None) -> bool:
        # Only follow links to our own Graph endpoint: they get our bearer token.
        return bool(link) and link.startswith(self.base_url + "/")

    def fetch_new(self, cursor: str | None) -> FetchResult:
        start = f"{self._user}/mailFolders/inbox/messages/delta?$select=id,receivedDateTime"
        if cursor and not self._valid_link(cursor):
            log.warning("Graph: cursor is not a Graph delta link; starting a full sync")
            cursor = None
        url = cursor or start
        items: list[dict[str, Any]] = []
        restarted = False
        while True:
            resp = self._call(
                "GET",
                url,
                headers={"Prefer": 'IdType="ImmutableId", odata.maxpagesize=50'},
                allow=(410,),
                what="inbox delta",
            )
            if resp.status_code == 410 and not restarted:
                # Delta state expired (syncStateNotFound/resyncRequired): start over.
                # The caller recognises messages it already handled by Message-ID.
                log.warning("Graph: delta link expired; starting a full sync of the inbox")
                restarted, url, items = True, start, []
                continue
            if resp.status_code == 410:
                raise GraphError("Graph inbox delta: 410 even for a fresh sync", status=410)
            data = resp.json()
            items.extend(i for i in data.get("value", []) if "@removed" not in i)
            next_link = data.get("@odata.nextLink")
            if next_link:
                if not self._valid_link(next_link):
                    raise GraphError(f"Graph inbox delta: unexpected nextLink host {next_link[:60]}")
                url = next_link
                continue
            delta_link = data.get("@odata.deltaLink")
            break
        messages: list[IncomingMessage] = []
        seen: set[str] = set()
        for item in items:
            mid = item["id"]
            if mid in seen:
                continue
            seen.add(mid)
            raw = self._read_incoming(mid)
            if raw is None:  # deleted or moved away meanwhile
                continue
            received = None
            if item.get("receivedDateTime"):
                try:
                    received = datetime.fromisoformat(item["receivedDateTime"].replace("Z", "+00:00"))
                except ValueError:
                    received = None
            messages.append(IncomingMessage(ref=mid, raw=raw, received_at=received))
        log.info("Graph: %d new messages in the inbox", len(messages))
        return FetchResult(messages=messages, cursor=delta_link or cursor)

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        """Authentication-Results of the newest inbox mails (``kcg check --connect``)."""
        url = self._query("/mailFolders/inbox/messages", top=str(limit), select="internetMessageHeaders",
                          orderby="receivedDateTime desc")
        out = []
        for item in self._get_json(url).get("value", []):
            fields = [h for h in item.get("internetMessageHeaders") or []
                      if (h.get("name") or "").lower() in ("authentication-results", "from")]
            out.append("".join(f"{h['name']}: {h.get('value', '')}\r\n" for h in fields).encode("utf-8", "replace"))
        return out

    def _read_incoming(self, mid: str) -> bytes | None:
        """One incoming message, None when it is gone. First its transport headers
        (``internetMessageHeaders``, the server's own Authentication-Results) and its
        size (PidTagMessageSize) in one request; then the MIME (``/$value``) only when
        the size is known and within the cap (unknown: read as before). A bigger one
        reaches the intake as its headers only, marked ``X-KCG-Oversize``."""
        path = f"/messages/{quote(mid, safe='')}"
        url = self._query(path, select="internetMessageHeaders",
                          expand=f"singleValueExtendedProperties($filter=id eq {_odata(PROP_MESSAGE_SIZE)})")
        resp = self._call("GET", url, allow=(404,), what="read headers")
        if resp.status_code == 404:
            return None
        meta = resp.json()
        pairs = [(h.get("name", ""), h.get("value", "")) for h in meta.get("internetMessageHeaders") or []]
        size = _message_size(meta)
        if size is not None and size > incoming_limit(self.max_incoming):
            log.warning("Graph: message %s is %d bytes, over the incoming size cap; reading its headers only",
                        mid[:16], size)
            return oversize_from_fields(pairs)
        resp = self._call("GET", f"{self._user}{path}/$value", allow=(404,), what="read MIME")
        if resp.status_code == 404:
            return None
        return with_server_auth_results(resp.content, pairs)

    # ------------------------------------------------------------------- move

    def _folder_id(self, folder: Folder) -> str:
        name = self.folder_names[folder]
        if name in self._folder_ids:
            return self._folder_ids[name]
        url = self._query("/mailFolders/inbox/childFolders", filter=f"displayName eq {_odata(name)}", select="id,displayName")
        found = self._get_json(url).get("value", [])
        if not found:
            resp = self._call(
                "POST",
                f"{self._user}/mailFolders/inbox/childFolders",
                json_body={"displayName": name},
                ok=(201,),
                allow=(409,),
                what=f"create folder {name}",
            )
            if resp.status_code == 201:
                found = [resp.json()]
            else:  # created meanwhile by someone else
                found = self._get_json(url).get("value", [])
        if not found:
            raise GraphError(f"Graph: could not create or find the inbox folder {name!r}")
        self._folder_ids[name] = found[0]["id"]
        return self._folder_ids[name]

    def move(self, ref: str, folder: Folder) -> None:
        dest = self._folder_id(folder)
        resp = self._call(
            "POST",
            f"{self._user}/messages/{quote(ref, safe='')}/move",
            json_body={"destinationId": dest},
            ok=(200, 201),
            allow=(404,),
            what=f"move to {folder}",
        )
        if resp.status_code == 404:
            log.info("Graph: message %s is already gone; nothing to move", ref[:20])

    # --------------------------------------------------------------- was_sent

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        """Every Sent Items message with our key (with its MIME copy), and every event's
        keys (events have no MIME copy), for ``kcg state rebuild``."""
        out: list[tuple[str, bytes]] = []
        expand = (f"singleValueExtendedProperties($filter=id eq {_odata(PROP_KEY)} or id eq "
                  f"{_odata(PROP_MARKER_HEADER)})")
        url: str | None = self._query("/mailFolders/sentitems/messages", select="id", expand=expand, top="100")
        while url:
            data = self._get_json(url)
            for m in data.get("value", []):
                props = {p["id"]: p.get("value", "") for p in m.get("singleValueExtendedProperties", [])}
                key = (props.get(PROP_KEY) or props.get(PROP_MARKER_HEADER) or "").strip()
                if key:
                    raw = self._call("GET", f"{self._user}/messages/{quote(m['id'], safe='')}/$value",
                                     what=f"read sent copy of {key}").content
                    out.append((key, raw))
            url = data.get("@odata.nextLink")
            if url and not self._valid_link(url):
                raise GraphError(f"Graph Sent Items: unexpected nextLink host {url[:60]}")
        expand = f"singleValueExtendedProperties($filter=id eq {_odata(PROP_KEYS)})"
        url = self._query("/events", filter=_prop_filter(PROP_KEYS, "|", op="contains"), select="id",
                          expand=expand, top="100")
        while url:
            data = self._get_json(url)
            for ev in data.get("value", []):
                props = {p["id"]: p.get("value", "") for p in ev.get("singleValueExtendedProperties", [])}
                out.extend((k, b"") for k in (props.get(PROP_KEYS) or "").split("|") if k)
            url = data.get("@odata.nextLink")
            if url and not self._valid_link(url):
                raise GraphError(f"Graph events: unexpected nextLink host {url[:60]}")
        return iter(out)

    def was_sent(self, key: str) -> bool:
        for path, prop, op in (
            ("/mailFolders/sentitems/messages", PROP_KEY, "eq"),
            ("/mailFolders/sentitems/messages", PROP_MARKER_HEADER, "eq"),
            ("/events", PROP_KEYS, "contains"),
        ):
            needle = f"|{key}|" if op == "contains" else key
            url = self._query(path, filter=_prop_filter(prop, needle, op=op), select="id", top="1")
            if self._get_json(url).get("value"):
                return True
        return False

    # ------------------------------------------------------------------ check

    def check(self) -> list[Check]:
        checks: list[Check] = []
        try:
            token = self._token()
        except TransportError as exc:
            return [Check("Graph sign-in", False, str(exc))]
        checks.append(Check("Graph sign-in", True, f"token for app {self.client_id} in tenant {self.tenant_id}"))
        roles = _jwt_roles(token)

        def probe(name: str, path: str, permission: str, good: str) -> bool:
            try:
                self._call("GET", f"{self._user}{path}", what=name)
            except GraphError as exc:
                checks.append(Check(name, False, self._explain(exc, permission, roles)))
                return False
            except TransportError as exc:
                checks.append(Check(name, False, str(exc)))
                return False
            checks.append(Check(name, True, good))
            return True

        mail_ok = probe(
            "Graph mailbox",
            "/mailFolders/inbox?$select=id,displayName,totalItemCount",
            "Mail.ReadWrite",
            f"inbox of {self.mailbox} readable",
        )
        cal_ok = probe("Graph calendar", "/calendar?$select=id,name", "Calendars.ReadWrite", f"calendar of {self.mailbox} readable")

        if roles is None:
            checks.append(Check("Graph permissions", mail_ok and cal_ok, "token roles not readable; see the checks above"))
        elif not roles:
            detail = (
                "the token carries no application permissions (roles). "
                + (
                    "Access works, so it must come from Exchange RBAC for Applications; "
                    "Mail.Send cannot be tested without sending."
                    if mail_ok and cal_ok
                    else _AADSTS_HELP[65001]
                )
            )
            checks.append(Check("Graph permissions", mail_ok and cal_ok, detail))
        else:
            missing = [r for r in REQUIRED_ROLES if r not in roles]
            if missing:
                checks.append(
                    Check(
                        "Graph permissions",
                        False,
                        "missing application permission(s) " + ", ".join(missing)
                        + ": add them under App registrations > API permissions > Microsoft Graph > "
                        "Application permissions, then 'Grant admin consent'",
                    )
                )
            else:
                checks.append(
                    Check(
                        "Graph permissions",
                        True,
                        "token has Mail.ReadWrite, Mail.Send, Calendars.ReadWrite "
                        "(sending is not tested: check sends nothing)",
                    )
                )
        return checks


    def close(self) -> None:
        if self._own_http:
            self._http.close()
