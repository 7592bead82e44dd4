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
  message is read as full MIME (``GET /messages/{id}/$value``).
* ``move``: into a child folder of the inbox, created when missing.
* ``was_sent``: Sent Items and events, found by extended properties.

Every request sends ``Prefer: IdType="ImmutableId"`` so a message keeps its id
when it is moved (the ``ref`` we hand out stays valid).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections import Counter
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msal

from ..ports import (
    MARKER_HEADER,
    Address,
    Attachment,
    Check,
    FetchResult,
    Folder,
    IncomingMessage,
    Invitation,
    MailTransport,
    OutgoingMessage,
    TransientError,
    TransportError,
)

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

#: Our own property set for named extended properties (a fixed random GUID).
KCG_PROPSET = "{2bf9bae4-6943-41aa-8aa8-9c73cbcae29c}"
#: On messages (drafts and the Sent Items copy): the idempotency key.
PROP_KEY = f"String {KCG_PROPSET} Name KcgKey"
#: On events: the invitation UID, the highest sequence applied, and every key
#: sent for the event as ``|k1|k2|`` (so ``was_sent`` finds older versions).
PROP_UID = f"String {KCG_PROPSET} Name KcgUid"
PROP_SEQ = f"String {KCG_PROPSET} Name KcgSequence"
PROP_KEYS = f"String {KCG_PROPSET} Name KcgKeys"
#: PS_INTERNET_HEADERS: where Exchange keeps X- headers of a message. Mail sent
#: by the EWS adapter carries the marker here.
PS_INTERNET_HEADERS = "{00020386-0000-0000-C000-000000000046}"
PROP_MARKER_HEADER = f"String {PS_INTERNET_HEADERS} Name {MARKER_HEADER}"
#: MAPI PidTagInReplyToId / PidTagInternetReferences (threading headers that
#: cannot go into ``internetMessageHeaders``).
PROP_IN_REPLY_TO = "String 0x1042"
PROP_REFERENCES = "String 0x1039"

#: Graph asks for an upload session above 3 MB per attachment; a JSON request
#: must stay under 4 MB, and base64 adds a third (3,000,000 bytes -> 4,000,000).
LARGE_ATTACHMENT = 3_000_000
INLINE_TOTAL = 2_900_000
#: Upload chunks: a multiple of 320 KiB and at most 4 MB.
UPLOAD_CHUNK = 320 * 1024 * 12

REQUIRED_ROLES = ("Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite")

ENV_TENANT_ID = "KCG_GRAPH_TENANT_ID"
ENV_CLIENT_ID = "KCG_GRAPH_CLIENT_ID"
ENV_CLIENT_SECRET = "KCG_GRAPH_CLIENT_SECRET"

#: Graph attendee responses as RFC 5545 PARTSTAT values.
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentativelyAccepted": "TENTATIVE",
    "none": "NEEDS-ACTION",
    "notResponded": "NEEDS-ACTION",
}

_RETRY_STATUS = {429, 503, 504}
_WINDOWS_TZ = {
    "Europe/Stockholm": "W. Europe Standard Time",
    "Europe/Oslo": "W. Europe Standard Time",
    "Europe/Copenhagen": "Romance Standard Time",
    "Europe/Berlin": "W. Europe Standard Time",
    "Europe/Helsinki": "FLE Standard Time",
    "Europe/London": "GMT Standard Time",
    "UTC": "UTC",
    "Etc/UTC": "UTC",
}

#: Token errors from Microsoft Entra, explained for whoever runs ``kcg check``.
_AADSTS_HELP = {
    7000215: "the client secret is wrong. Put the secret's Value (shown only once, when it was "
    "created) in KCG_GRAPH_CLIENT_SECRET, not its Secret ID; if the value is lost, create a new "
    "secret under App registrations > Certificates & secrets.",
    7000222: "the client secret has expired. Create a new one under App registrations > "
    "Certificates & secrets and update KCG_GRAPH_CLIENT_SECRET.",
    700016: "no application with this client id exists in the tenant. Check KCG_GRAPH_CLIENT_ID "
    "(Application (client) ID) and KCG_GRAPH_TENANT_ID (Directory (tenant) ID).",
    90002: "the tenant was not found. Check KCG_GRAPH_TENANT_ID (Directory (tenant) ID).",
    900023: "the tenant id is not valid. Check KCG_GRAPH_TENANT_ID (Directory (tenant) ID).",
    65001: "admin consent is missing. An administrator must open App registrations > API "
    "permissions and press 'Grant admin consent' for Mail.Send, Mail.ReadWrite and "
    "Calendars.ReadWrite (application permissions).",
    7000229: "the app has no service principal (enterprise application) in this tenant. "
    "Grant admin consent once, which creates it.",
    500011: "the Microsoft Graph resource is not available to this tenant/app; check the "
    "tenant id and that admin consent was granted.",
}


class GraphError(TransportError):
    """Graph answered with an error we do not handle ourselves."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _odata(value: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _prop_filter(prop_id: str, value: str, *, op: str = "eq") -> str:
    if op == "contains":
        cond = f"contains(ep/value, {_odata(value)})"
    else:
        cond = f"ep/value eq {_odata(value)}"
    return f"singleValueExtendedProperties/Any(ep: ep/id eq {_odata(prop_id)} and {cond})"


def _recipient(a: Address) -> dict[str, Any]:
    addr: dict[str, Any] = {"address": a.email}
    if a.name:
        addr["name"] = a.name
    return {"emailAddress": addr}


def _jwt_roles(token: str) -> set[str] | None:
    """The ``roles`` claim of an access token (read, not verified). None when
    the token is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return None
    roles = claims.get("roles") or []
    return set(roles) if isinstance(roles, list) else None


def _graph_error(resp: httpx.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error", {})
    except ValueError:
        return "", resp.text[:300]
    if isinstance(err, dict):
        return str(err.get("code", "")), str(err.get("message", ""))
    return str(err), ""


class _MsalHttpClient:
    """The small HTTP interface msal expects (``msal.oauth2cli.http``), backed by
    our httpx client: the token requests go through the same client, proxy
    settings and test mocks as the Graph calls. ``httpx.Response`` already has
    ``status_code``, ``text``, ``headers`` and ``raise_for_status``."""

    def __init__(self, client: httpx.Client, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        timeout = kwargs.get("timeout") or self._timeout
        if isinstance(data, (dict, list)) or data is None:
            return self._client.post(url, params=params, data=data, headers=headers, timeout=timeout)
        return self._client.post(url, params=params, content=data, headers=headers, timeout=timeout)

    def get(self, url, params=None, headers=None, **kwargs):
        timeout = kwargs.get("timeout") or self._timeout
        return self._client.get(url, params=params, headers=headers, timeout=timeout)

    def close(self) -> None:  # msal may call it; the client belongs to the transport
        pass


class GraphTransport(MailTransport):
    """One Microsoft 365 mailbox through Microsoft Graph, application permissions."""

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
    def from_env(cls, mailbox: str, env: dict[str, str] | None = None, **kw: Any) -> "GraphTransport":
        """Credentials from KCG_GRAPH_TENANT_ID, KCG_GRAPH_CLIENT_ID and
        KCG_GRAPH_CLIENT_SECRET."""
        env = dict(os.environ if env is None else env)
        missing = [n for n in (ENV_TENANT_ID, ENV_CLIENT_ID, ENV_CLIENT_SECRET) if not env.get(n)]
        if missing:
            raise TransportError("Graph transport: set " + ", ".join(missing))
        return cls(mailbox, env[ENV_TENANT_ID], env[ENV_CLIENT_ID], env[ENV_CLIENT_SECRET], **kw)

    # ------------------------------------------------------------------ auth

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    http_client=_MsalHttpClient(self._http, self._timeout),
                    token_cache=msal.TokenCache(),
                )
            except ValueError as exc:  # tenant discovery answered 4xx
                text = str(exc)
                m = re.search(r"AADSTS(\d+)", text)
                help_ = _AADSTS_HELP.get(int(m.group(1))) if m else None
                raise TransportError(
                    f"Graph sign-in: tenant {self.tenant_id!r} could not be used: "
                    + (help_ or "check KCG_GRAPH_TENANT_ID (Directory (tenant) ID).")
                    + f" ({text[:200]})"
                ) from exc
            except httpx.HTTPError as exc:
                raise TransientError(f"Graph sign-in: {self.authority} unreachable: {exc}") from exc
        return self._app

    def _token(self) -> str:
        app = self._msal_app()
        try:
            # msal answers from its cache and fetches a new token when the cached
            # one is missing, expires within 5 minutes or has passed refresh_in.
            result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except httpx.HTTPError as exc:
            raise TransientError(f"Graph sign-in: token endpoint unreachable: {exc}") from exc
        except msal.exceptions.MsalServiceError as exc:  # raised on 5xx via raise_for_status
            raise TransientError(f"Graph sign-in failed, try again later: {exc}") from exc
        if result and "access_token" in result:
            return result["access_token"]
        raise self._token_error(result or {})

    def _token_error(self, result: dict[str, Any]) -> TransportError:
        error = result.get("error", "unknown_error")
        desc = str(result.get("error_description", ""))
        codes = list(result.get("error_codes") or [])
        if not codes:
            codes = [int(c) for c in re.findall(r"AADSTS(\d+)", desc)]
        first_line = desc.splitlines()[0] if desc else ""
        if error in ("temporarily_unavailable", "server_error"):
            return TransientError(f"Graph sign-in: Entra ID is unavailable ({first_line}); try later")
        for code in codes:
            if code in _AADSTS_HELP:
                return TransportError(f"Graph sign-in failed (AADSTS{code}): {_AADSTS_HELP[code]}")
        if "consent" in desc.lower():
            return TransportError(f"Graph sign-in failed: {_AADSTS_HELP[65001]} ({first_line})")
        return TransportError(f"Graph sign-in failed: {error}: {first_line}")

    def _drop_token(self) -> None:
        if self._app is None:
            return
        try:
            self._app.remove_tokens_for_client()
        except (httpx.HTTPError, msal.exceptions.MsalServiceError, ValueError, KeyError):
            # alias lookup failed: clear the access tokens of this cache directly
            cache = self._app.token_cache
            for at in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(at)

    # ------------------------------------------------------------------ http

    def _retry_delay(self, resp: httpx.Response | None, attempt: int) -> float:
        if resp is not None:
            value = resp.headers.get("Retry-After")
            if value:
                try:
                    return max(0.0, float(value))
                except ValueError:
                    try:
                        when = parsedate_to_datetime(value)
                        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
                    except (TypeError, ValueError):
                        pass
        return float(min(2**attempt, 30))

    def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        ok: Iterable[int] = (200, 201, 202, 204),
        allow: Iterable[int] = (),
        ambiguous_retry: bool = True,
        what: str = "",
    ) -> httpx.Response:
        """One Graph request with token, throttling and retry handling.

        Statuses in ``ok`` and ``allow`` are returned; others raise. 429, 503
        and 504 (and network faults) are retried up to ``max_retries`` times,
        waiting Retry-After (or 1, 2, 4… s); then ``TransientError``. With
        ``ambiguous_retry=False`` (sendMail) a 504 or a read timeout is not
        retried: the mail may have gone, ``was_sent`` decides on the next run.
        A 401 InvalidAuthenticationToken drops the cached token and retries once.
        """
        ok_set, allow_set = set(ok), set(allow)
        what = what or f"{method} {url.split('?')[0].removeprefix(self.base_url)}"
        refreshed = False
        attempt = 0
        while True:
            hdrs = {"Prefer": 'IdType="ImmutableId"'} if auth else {}
            hdrs.update(headers or {})
            if auth:
                hdrs["Authorization"] = f"Bearer {self._token()}"
            try:
                resp = self._http.request(
                    method, url, json=json_body, content=content, headers=hdrs, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                # Connect faults happen before anything was sent: always safe to retry.
                sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                if not ambiguous_retry and sent:
                    raise TransientError(
                        f"Graph {what}: {type(exc).__name__} after the request was sent; the "
                        "outcome is unknown (was_sent will tell on the next run)"
                    ) from exc
                if attempt >= self.max_retries:
                    raise TransientError(f"Graph {what}: network error after {attempt + 1} attempts: {exc}") from exc
                delay = self._retry_delay(None, attempt)
                log.warning("Graph %s: %s, retrying in %.0f s", what, type(exc).__name__, delay)
                attempt += 1
                self._sleep(delay)
                continue
            status = resp.status_code
            if status in ok_set or status in allow_set:
                return resp
            code, message = _graph_error(resp)
            if status == 401 and auth and code == "InvalidAuthenticationToken" and not refreshed:
                log.info("Graph %s: token rejected (%s), getting a new one", what, message[:80])
                refreshed = True
                self._drop_token()
                continue
            if status in _RETRY_STATUS:
                if status == 504 and not ambiguous_retry:
                    raise TransientError(
                        f"Graph {what}: 504 gateway timeout; the outcome is unknown "
                        "(was_sent will tell on the next run)"
                    )
                delay = self._retry_delay(resp, attempt)
                if attempt >= self.max_retries or delay > self.max_wait:
                    raise TransientError(
                        f"Graph {what}: {status} {code or ''} after {attempt + 1} attempts"
                        + (f" (server asks to wait {delay:.0f} s)" if delay > self.max_wait else "")
                        + "; try again later"
                    )
                log.warning("Graph %s: %s %s, retrying in %.1f s", what, status, code, delay)
                attempt += 1
                self._sleep(delay)
                continue
            request_id = resp.headers.get("request-id", "")
            hint = ""
            if status == 401 and "roles" in message:
                hint = " — " + _AADSTS_HELP[65001]
            elif status == 403:
                hint = (
                    " — the app lacks the application permission for this call (Mail.ReadWrite, "
                    "Mail.Send or Calendars.ReadWrite) or the mailbox is outside its application "
                    "access policy / RBAC for Applications scope"
                )
            raise GraphError(
                f"Graph {what}: {status} {code}: {message}{hint}"
                + (f" (request-id {request_id})" if request_id else ""),
                status=status,
                code=code,
            )

    def _get_json(self, url: str, **kw: Any) -> dict[str, Any]:
        return self._call("GET", url, **kw).json()

    def _query(self, path: str, **params: str) -> str:
        """URL with OData query options; ``$`` keys stay literal."""
        if not params:
            return f"{self._user}{path}"
        qs = "&".join(f"${k}={quote(v, safe=',()/:@{}')}" for k, v in params.items())
        return f"{self._user}{path}?{qs}"

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

    @staticmethod
    def _when(dt: datetime, tzid: str) -> dict[str, str]:
        try:
            zone = ZoneInfo(tzid)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        win = _WINDOWS_TZ.get(tzid)
        if zone is not None and win:
            local = dt.astimezone(zone) if dt.tzinfo else dt
            return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": win}
        aware = dt if dt.tzinfo else dt.replace(tzinfo=zone or timezone.utc)
        utc = aware.astimezone(timezone.utc).replace(tzinfo=None)
        return {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": "UTC"}

    def _event_fields(self, inv: Invitation) -> dict[str, Any]:
        m = inv.message
        return {
            "subject": inv.summary or m.subject,
            "body": (
                {"contentType": "HTML", "content": m.html}
                if m.html
                else {"contentType": "Text", "content": m.text or inv.description}
            ),
            "start": self._when(inv.start, inv.tzid),
            "end": self._when(inv.end, inv.tzid),
            "location": {"displayName": inv.location},
            "responseRequested": True,
        }

    @staticmethod
    def _attendees(inv: Invitation) -> list[dict[str, Any]]:
        return [dict(_recipient(a), type="required") for a in inv.message.to] + [
            dict(_recipient(a), type="optional") for a in inv.message.cc
        ]

    def _find_event(self, uid: str) -> dict[str, Any] | None:
        expand = (
            "singleValueExtendedProperties($filter=id eq "
            f"{_odata(PROP_SEQ)} or id eq {_odata(PROP_KEYS)})"
        )
        found = self._get_json(
            self._query("/events", filter=_prop_filter(PROP_UID, uid), select="id,subject", expand=expand)
        ).get("value", [])
        if len(found) > 1:
            log.warning("Graph: %d events carry uid %s; using the first", len(found), uid)
        return found[0] if found else None

    def send_invitation(self, invitation: Invitation) -> None:
        inv = invitation
        key = inv.message.key
        event = self._find_event(inv.uid)
        if inv.method == "CANCEL":
            if event is None:
                log.info("Graph: no event for %s; nothing to cancel (already cancelled?)", inv.uid)
                return
            self._call(
                "POST",
                f"{self._user}/events/{quote(event['id'], safe='')}/cancel",
                json_body={"Comment": inv.message.text or inv.description},
                ok=(202,),
                allow=(404,),
                what=f"cancel {key}",
            )
            log.info("Graph: cancelled meeting %s", inv.uid)
            return

        if event is None:
            self._create_event(inv)
            return
        props = {p["id"]: p.get("value", "") for p in event.get("singleValueExtendedProperties", [])}
        try:
            applied = int(props.get(PROP_SEQ, "-1"))
        except ValueError:
            applied = -1
        if applied >= inv.sequence:
            log.info("Graph: meeting %s already at sequence %d; nothing to do", inv.uid, applied)
            return
        keys = props.get(PROP_KEYS, "|") or "|"
        if f"|{key}|" not in keys:
            keys = keys + f"{key}|"
        event_url = f"{self._user}/events/{quote(event['id'], safe='')}"
        self._add_attachments(event_url, inv.message.attachments)
        body = self._event_fields(inv)
        body["attendees"] = self._attendees(inv)
        body["singleValueExtendedProperties"] = [
            {"id": PROP_SEQ, "value": str(inv.sequence)},
            {"id": PROP_KEYS, "value": keys},
        ]
        # Graph/Exchange sends the update to the attendees.
        self._call("PATCH", event_url, json_body=body, ok=(200,), what=f"update {key}")
        log.info("Graph: updated meeting %s to sequence %d", inv.uid, inv.sequence)

    def _create_event(self, inv: Invitation) -> None:
        key = inv.message.key
        body = self._event_fields(inv)
        body["transactionId"] = inv.uid  # Graph ignores a repeated create with the same id
        props = [
            {"id": PROP_UID, "value": inv.uid},
            {"id": PROP_KEYS, "value": f"|{key}|"},
        ]
        if not inv.message.attachments:
            body["attendees"] = self._attendees(inv)
            props.append({"id": PROP_SEQ, "value": str(inv.sequence)})
            body["singleValueExtendedProperties"] = props
            self._call("POST", f"{self._user}/events", json_body=body, ok=(201,), what=f"create {key}")
            log.info("Graph: created meeting %s with %d attendees", inv.uid, len(body["attendees"]))
            return
        # With attachments: create without attendees (nothing is sent yet), attach,
        # then add the attendees, which sends the request with the files. No
        # sequence is stored until then, so a crash in between is resumed as an
        # update on the next run.
        body["singleValueExtendedProperties"] = props
        event = self._call("POST", f"{self._user}/events", json_body=body, ok=(201,), what=f"create {key}").json()
        event_url = f"{self._user}/events/{quote(event['id'], safe='')}"
        self._add_attachments(event_url, inv.message.attachments)
        self._call(
            "PATCH",
            event_url,
            json_body={
                "attendees": self._attendees(inv),
                "singleValueExtendedProperties": [{"id": PROP_SEQ, "value": str(inv.sequence)}],
            },
            ok=(200,),
            what=f"invite {key}",
        )
        log.info("Graph: created meeting %s with attachments", inv.uid)

    def event_responses(self, uid: str) -> dict[str, str] | None:
        """Attendees' answers to the meeting with our ``uid``, as PARTSTAT
        values (ACCEPTED, DECLINED, TENTATIVE, NEEDS-ACTION), read from the
        event; None when there is no such event. Exchange records the replies
        on the event itself, so this needs no reply mail at all."""
        found = self._get_json(
            self._query("/events", filter=_prop_filter(PROP_UID, uid), select="id,attendees")
        ).get("value", [])
        if not found:
            return None
        out: dict[str, str] = {}
        for a in found[0].get("attendees", []):
            email = a.get("emailAddress", {}).get("address", "").lower()
            response = (a.get("status") or {}).get("response", "none")
            if email:
                out[email] = _PARTSTAT.get(response, "NEEDS-ACTION")
        return out

    def event_ical_uid(self, uid: str) -> str | None:
        """The iCalendar UID Exchange gave the event for our ``uid``. Graph does
        not let us set the UID, so attendees' reply mails carry this one."""
        found = self._get_json(
            self._query("/events", filter=_prop_filter(PROP_UID, uid), select="id,iCalUId")
        ).get("value", [])
        return found[0].get("iCalUId") if found else None

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
            resp = self._call(
                "GET",
                f"{self._user}/messages/{quote(mid, safe='')}/$value",
                allow=(404,),
                what="read MIME",
            )
            if resp.status_code == 404:  # deleted or moved away meanwhile
                continue
            raw = self._with_server_headers(mid, resp.content)
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

    def _with_server_headers(self, mid: str, raw: bytes) -> bytes:
        """The Authentication-Results of the message as Exchange Online stored
        them (``internetMessageHeaders``), in place of those in the MIME."""
        resp = self._call("GET", f"{self._user}/messages/{quote(mid, safe='')}?$select=internetMessageHeaders",
                          allow=(404,), what="read headers")
        if resp.status_code == 404:
            return raw
        from kcg_mail.adapters.headers import with_server_auth_results

        pairs = [(h.get("name", ""), h.get("value", "")) for h in resp.json().get("internetMessageHeaders") or []]
        return with_server_auth_results(raw, pairs)

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
                return f"Graph refused the token: {_AADSTS_HELP[65001]} ({text})"
            return f"Graph refused the token. ({text})"
        return text

    def close(self) -> None:
        if self._own_http:
            self._http.close()
