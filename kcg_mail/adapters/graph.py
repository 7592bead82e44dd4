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

import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from .. import ports
from ..core.config_model import GraphSettings
from ..ports import MARKER_HEADER, Check, TransportError
from .graph_calendar import GraphCalendar
from .graph_http import (
    AADSTS_HELP,
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
    GraphAttachments,
    GraphClient,
    GraphError,
    jwt_roles,
    message_size,
    odata,
    prop_filter,
    recipient,
)
from .headers import with_server_auth_results
from .maildir import incoming_limit, oversize_from_fields

__all__ = ["PROP_MARKER_HEADER", "GraphError", "GraphTransport"]

log = logging.getLogger(__name__)


class GraphTransport(ports.MailTransport):
    """One Microsoft 365 mailbox through Microsoft Graph, application permissions.

    Works through the ``GraphClient`` it is given (token, requests, retries,
    errors: ``GraphTransport(GraphClient(settings, secret, ...))``), a
    ``GraphAttachments`` (files on drafts and events) and a ``GraphCalendar``
    (invitations) sharing that client."""

    mailbox: str
    client: GraphClient
    attachments: GraphAttachments
    calendar: GraphCalendar
    settle_seconds: float
    settle_sleep: Callable[[float], None]
    folder_names: dict[str, str]
    _folder_ids: dict[str, str]

    #: size cap for incoming mail in bytes (PidTagMessageSize); None: ``MAX_INCOMING``.
    #: Bigger messages are read as ``internetMessageHeaders`` only, never ``/$value``.
    max_incoming: int | None = None

    def __init__(
        self,
        client: GraphClient,
        *,
        processed_folder: str = "processed",
        quarantine_folder: str = "quarantine",
        upload_chunk: int = UPLOAD_CHUNK,
        settle_seconds: float = 120.0,
    ) -> None:
        self.mailbox = client.mailbox
        self.client = client
        self.attachments = GraphAttachments(self.client, upload_chunk)
        self.calendar = GraphCalendar(self.client, self.attachments)
        #: sendMail is asynchronous: the Sent Items copy (what ``was_sent`` looks
        #: for) shows up a while after the 202. A run recovering an interrupted
        #: send waits this long from the intent before deciding it did not go
        #: out (services/app.py Outbox; README "Crash safety").
        self.settle_seconds = settle_seconds
        self.settle_sleep = client.sleep
        self.folder_names = {"processed": processed_folder, "quarantine": quarantine_folder}
        self._folder_ids = {}

    @classmethod
    def from_env(cls, mailbox: str, env: dict[str, str] | None = None, **kw: Any) -> GraphTransport:
        """Credentials from KCG_GRAPH_TENANT_ID, KCG_GRAPH_CLIENT_ID and
        KCG_GRAPH_CLIENT_SECRET."""
        env = dict(os.environ if env is None else env)
        missing = [n for n in (ENV_TENANT_ID, ENV_CLIENT_ID, ENV_CLIENT_SECRET) if not env.get(n)]
        if missing:
            raise TransportError("Graph transport: set " + ", ".join(missing))
        settings = GraphSettings(kind="graph", tenant_id=env[ENV_TENANT_ID], client_id=env[ENV_CLIENT_ID], mailbox=mailbox)
        return cls(GraphClient(settings, env[ENV_CLIENT_SECRET]), **kw)

    # ------------------------------------------------------------------ send

    def _message_json(self, message: ports.OutgoingMessage) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "subject": message.subject,
            "body": (
                {"contentType": "HTML", "content": message.html}
                if message.html
                else {"contentType": "Text", "content": message.text}
            ),
            "toRecipients": [recipient(a) for a in message.to],
            "internetMessageId": message.message_id,
        }
        if message.cc:
            msg["ccRecipients"] = [recipient(a) for a in message.cc]
        if message.reply_to:
            msg["replyTo"] = [recipient(message.reply_to)]
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

    def send(self, message: ports.OutgoingMessage) -> None:
        atts = message.attachments
        if any(len(a.data) > LARGE_ATTACHMENT for a in atts) or sum(len(a.data) for a in atts) > INLINE_TOTAL:
            self._send_via_draft(message)
            return
        msg = self._message_json(message)
        if atts:
            msg["attachments"] = [self.attachments.file_attachment(a) for a in atts]
        self.client.call(
            "POST",
            f"{self.client.user}/sendMail",
            json_body={"message": msg, "saveToSentItems": True},
            ok=(202,),
            idempotent=False,
            what=f"sendMail {message.key}",
        )
        log.info("Graph: sent %s to %d recipients", message.key, len(message.recipients))

    def _send_via_draft(self, message: ports.OutgoingMessage) -> None:
        # Reuse a draft left by a crashed run, so a retry does not pile up drafts.
        found = self.client.get_json(
            self.client.query(
                "/mailFolders/drafts/messages",
                filter=prop_filter(PROP_KEY, message.key),
                select="id",
                top="1",
            )
        ).get("value", [])
        if found:
            draft_id = found[0]["id"]
            log.info("Graph: reusing draft for %s", message.key)
        else:
            draft = self.client.call(
                "POST", f"{self.client.user}/messages", json_body=self._message_json(message), ok=(201,)
            ).json()
            draft_id = draft["id"]
        msg_url = f"{self.client.user}/messages/{quote(draft_id, safe='')}"
        self.attachments.add(msg_url, message.attachments)
        resp = self.client.call("POST", f"{msg_url}/send", ok=(202,), allow=(404,), what=f"send draft {message.key}")
        if resp.status_code == 404:
            # Only possible on a retry after an unclear outcome: the draft is gone
            # because the first send went through.
            log.warning("Graph: draft for %s already sent", message.key)
        log.info("Graph: sent %s (via draft, %d attachments)", message.key, len(message.attachments))

    # ------------------------------------------------------------ invitations

    def send_invitation(self, invitation: ports.Invitation) -> None:
        self.calendar.send_invitation(invitation)

    def event_responses(self, uid: str) -> dict[str, str] | None:
        """Attendees' answers to the meeting with our ``uid`` (``GraphCalendar``)."""
        return self.calendar.event_responses(uid)

    def event_ical_uid(self, uid: str) -> str | None:
        """The iCalendar UID Exchange gave the event for our ``uid`` (``GraphCalendar``)."""
        return self.calendar.event_ical_uid(uid)

    # ----------------------------------------------------------------- intake

    def fetch_new(self, cursor: str | None) -> ports.FetchResult:
        start = f"{self.client.user}/mailFolders/inbox/messages/delta?$select=id,receivedDateTime"
        if cursor and not self.client.valid_link(cursor):
            log.warning("Graph: cursor is not a Graph delta link; starting a full sync")
            cursor = None
        url = cursor or start
        items: list[dict[str, Any]] = []
        restarted = False
        while True:
            resp = self.client.call(
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
                if not self.client.valid_link(next_link):
                    raise GraphError(f"Graph inbox delta: unexpected nextLink host {next_link[:60]}")
                url = next_link
                continue
            delta_link = data.get("@odata.deltaLink")
            break
        messages: list[ports.IncomingMessage] = []
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
            messages.append(ports.IncomingMessage(ref=mid, raw=raw, received_at=received))
        log.info("Graph: %d new messages in the inbox", len(messages))
        return ports.FetchResult(messages=messages, cursor=delta_link or cursor)

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        """Authentication-Results of the newest inbox mails (``kcg check --connect``)."""
        url = self.client.query("/mailFolders/inbox/messages", top=str(limit), select="internetMessageHeaders",
                          orderby="receivedDateTime desc")
        out = []
        for item in self.client.get_json(url).get("value", []):
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
        url = self.client.query(path, select="internetMessageHeaders",
                          expand=f"singleValueExtendedProperties($filter=id eq {odata(PROP_MESSAGE_SIZE)})")
        resp = self.client.call("GET", url, allow=(404,), what="read headers")
        if resp.status_code == 404:
            return None
        meta = resp.json()
        pairs = [(h.get("name", ""), h.get("value", "")) for h in meta.get("internetMessageHeaders") or []]
        size = message_size(meta)
        if size is not None and size > incoming_limit(self.max_incoming):
            log.warning("Graph: message %s is %d bytes, over the incoming size cap; reading its headers only",
                        mid[:16], size)
            return oversize_from_fields(pairs)
        resp = self.client.call("GET", f"{self.client.user}{path}/$value", allow=(404,), what="read MIME")
        if resp.status_code == 404:
            return None
        return with_server_auth_results(resp.content, pairs)

    # ------------------------------------------------------------------- move

    def _folder_id(self, folder: ports.Folder) -> str:
        name = self.folder_names[folder]
        if name in self._folder_ids:
            return self._folder_ids[name]
        url = self.client.query("/mailFolders/inbox/childFolders", filter=f"displayName eq {odata(name)}", select="id,displayName")
        found = self.client.get_json(url).get("value", [])
        if not found:
            resp = self.client.call(
                "POST",
                f"{self.client.user}/mailFolders/inbox/childFolders",
                json_body={"displayName": name},
                ok=(201,),
                allow=(409,),
                what=f"create folder {name}",
            )
            if resp.status_code == 201:
                found = [resp.json()]
            else:  # created meanwhile by someone else
                found = self.client.get_json(url).get("value", [])
        if not found:
            raise GraphError(f"Graph: could not create or find the inbox folder {name!r}")
        self._folder_ids[name] = found[0]["id"]
        return self._folder_ids[name]

    def move(self, ref: str, folder: ports.Folder) -> None:
        dest = self._folder_id(folder)
        resp = self.client.call(
            "POST",
            f"{self.client.user}/messages/{quote(ref, safe='')}/move",
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
        expand = (f"singleValueExtendedProperties($filter=id eq {odata(PROP_KEY)} or id eq "
                  f"{odata(PROP_MARKER_HEADER)})")
        url: str | None = self.client.query("/mailFolders/sentitems/messages", select="id", expand=expand, top="100")
        while url:
            data = self.client.get_json(url)
            for m in data.get("value", []):
                props = {p["id"]: p.get("value", "") for p in m.get("singleValueExtendedProperties", [])}
                key = (props.get(PROP_KEY) or props.get(PROP_MARKER_HEADER) or "").strip()
                if key:
                    raw = self.client.call("GET", f"{self.client.user}/messages/{quote(m['id'], safe='')}/$value",
                                     what=f"read sent copy of {key}").content
                    out.append((key, raw))
            url = data.get("@odata.nextLink")
            if url and not self.client.valid_link(url):
                raise GraphError(f"Graph Sent Items: unexpected nextLink host {url[:60]}")
        expand = f"singleValueExtendedProperties($filter=id eq {odata(PROP_KEYS)})"
        url = self.client.query("/events", filter=prop_filter(PROP_KEYS, "|", op="contains"), select="id",
                          expand=expand, top="100")
        while url:
            data = self.client.get_json(url)
            for ev in data.get("value", []):
                props = {p["id"]: p.get("value", "") for p in ev.get("singleValueExtendedProperties", [])}
                out.extend((k, b"") for k in (props.get(PROP_KEYS) or "").split("|") if k)
            url = data.get("@odata.nextLink")
            if url and not self.client.valid_link(url):
                raise GraphError(f"Graph events: unexpected nextLink host {url[:60]}")
        return iter(out)

    def was_sent(self, key: str) -> bool:
        for path, prop, op in (
            ("/mailFolders/sentitems/messages", PROP_KEY, "eq"),
            ("/mailFolders/sentitems/messages", PROP_MARKER_HEADER, "eq"),
            ("/events", PROP_KEYS, "contains"),
        ):
            needle = f"|{key}|" if op == "contains" else key
            url = self.client.query(path, filter=prop_filter(prop, needle, op=op), select="id", top="1")
            if self.client.get_json(url).get("value"):
                return True
        return False

    # ------------------------------------------------------------------ check

    def _explain(self, exc: GraphError, permission: str, roles: set[str] | None) -> str:
        text = str(exc).split(" — ")[0]
        if exc.status == 403:
            low = text.lower()
            if "accesspolicy" in low or "raop" in low or "rbac" in low:
                return (
                    f"{self.mailbox} is outside the app's application access policy or RBAC for "
                    "Applications scope: add the mailbox to the policy's group "
                    "(New-ApplicationAccessPolicy -PolicyScopeGroupId) or to the management scope "
                    f"of the role assignment. ({text})"
                )
            if roles and permission not in roles:
                return f"the app lacks the application permission {permission} (grant it and admin consent). ({text})"
            return (
                f"access denied: the app needs {permission}, or {self.mailbox} is excluded by an "
                f"application access policy / RBAC for Applications scope. ({text})"
            )
        if exc.status == 404:
            return f"mailbox {self.mailbox} not found or not in Exchange Online. ({text})"
        if exc.status == 401:
            if roles is not None and not roles:
                return f"Graph refused the token: {AADSTS_HELP[65001]} ({text})"
            return f"Graph refused the token. ({text})"
        return text

    def check(self) -> list[Check]:
        checks: list[Check] = []
        try:
            token = self.client.token()
        except TransportError as exc:
            return [Check("Graph sign-in", False, str(exc))]
        checks.append(Check("Graph sign-in", True, f"token for app {self.client.client_id} in tenant {self.client.tenant_id}"))
        roles = jwt_roles(token)

        def probe(name: str, path: str, permission: str, good: str) -> bool:
            try:
                self.client.call("GET", f"{self.client.user}{path}", what=name)
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
                    else AADSTS_HELP[65001]
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
        self.client.close()
