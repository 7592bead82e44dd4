"""Microsoft Graph over plain httpx + msal: the constants and ``GraphClient``,
which holds the application's token (client credentials, msal), the httpx
client, and makes one request with retries (``kcg_mail.adapters.retry``:
429/503/504 and network faults, Retry-After honoured) and Graph's error shapes
turned into clear errors. ``graph.GraphTransport`` and ``graph_calendar.GraphCalendar``
hold one ``GraphClient`` each (the same one)."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import msal

from ..core.config_model import GraphSettings
from ..ports import (
    MARKER_HEADER,
    Address,
    Attachment,
    TransientError,
    TransportError,
)
from .retry import GaveUp, RetryPolicy, Transient, call_with_retry, status_verdict

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


#: MAPI PidTagMessageSize (PT_LONG): a message's size in bytes. Graph v1.0 has
#: no size property on messages; this one is read with ``$expand`` (the
#: incoming size cap, ``GraphTransport.fetch_new``).
PROP_MESSAGE_SIZE = "Integer 0x0E08"


def message_size(item: dict[str, Any]) -> int | None:
    """PidTagMessageSize from an item expanded with ``singleValueExtendedProperties``
    (Graph may answer the id in its own spelling, e.g. ``Integer 0xe08``); None
    when it is missing or unreadable."""
    for prop in item.get("singleValueExtendedProperties") or []:
        kind, _, tag = str(prop.get("id", "")).strip().partition(" ")
        try:
            if kind.lower() == "integer" and int(tag.strip(), 16) == 0x0E08:
                return int(str(prop.get("value", "")).strip())
        except ValueError:
            return None
    return None


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
PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentativelyAccepted": "TENTATIVE",
    "none": "NEEDS-ACTION",
    "notResponded": "NEEDS-ACTION",
}



WINDOWS_TZ = {
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
AADSTS_HELP = {
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

    status: int
    code: str

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def odata(value: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def prop_filter(prop_id: str, value: str, *, op: str = "eq") -> str:
    if op == "contains":
        cond = f"contains(ep/value, {odata(value)})"
    else:
        cond = f"ep/value eq {odata(value)}"
    return f"singleValueExtendedProperties/Any(ep: ep/id eq {odata(prop_id)} and {cond})"


def recipient(a: Address) -> dict[str, Any]:
    addr: dict[str, Any] = {"address": a.email}
    if a.name:
        addr["name"] = a.name
    return {"emailAddress": addr}


def jwt_roles(token: str) -> set[str] | None:
    """The ``roles`` claim of an access token (read, not verified). None when
    the token is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return None
    roles = claims.get("roles") or [] if isinstance(claims, dict) else None
    return {str(r) for r in roles} if isinstance(roles, list) else None


def graph_error(resp: httpx.Response) -> tuple[str, str]:
    """Graph's error code and message from an error response."""
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:300]
    err = body.get("error", {}) if isinstance(body, dict) else {}
    if isinstance(err, dict):
        return str(err.get("code", "")), str(err.get("message", ""))
    return str(err), ""




class MsalHttpClient:
    """The small HTTP interface msal expects (``msal.oauth2cli.http``), backed by
    our httpx client: the token requests go through the same client, proxy
    settings and test mocks as the Graph calls. ``httpx.Response`` already has
    ``status_code``, ``text``, ``headers`` and ``raise_for_status``."""

    client: httpx.Client
    timeout: float

    def __init__(self, client: httpx.Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def post(
        self,
        url: str,
        params: dict[str, str] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        timeout = kwargs.get("timeout") or self.timeout
        if isinstance(data, dict) or data is None:
            return self.client.post(url, params=params, data=data, headers=headers, timeout=timeout)
        return self.client.post(url, params=params, content=data, headers=headers, timeout=timeout)

    def get(
        self, url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        timeout = kwargs.get("timeout") or self.timeout
        return self.client.get(url, params=params, headers=headers, timeout=timeout)

    def close(self) -> None:  # msal may call it; the client belongs to the GraphClient
        pass


class GraphClient:
    """One application's access to one mailbox's Graph endpoints (``GraphSettings``:
    mailbox, tenant and application; its secret apart): its token
    (msal, client credentials), its httpx client and one retried request
    (:meth:`call`) with Graph's errors mapped to ``TransportError`` (a person
    must act), ``TransientError`` (try again later) or ``GraphError``."""

    mailbox: str
    tenant_id: str
    client_id: str
    base_url: str
    authority: str
    #: ``{base_url}/users/{mailbox}``: the prefix of every mailbox request.
    user: str
    timeout: float
    policy: RetryPolicy
    sleep: Callable[[float], None]
    _secret: str
    _http: httpx.Client
    _own_http: bool
    _app: Any  # msal.ConfidentialClientApplication (untyped), made on first use

    def __init__(
        self,
        settings: GraphSettings,
        client_secret: str,
        *,
        base_url: str = "https://graph.microsoft.com/v1.0",
        authority_host: str = "https://login.microsoftonline.com",
        http: httpx.Client | None = None,
        max_retries: int = 5,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        if not (settings.mailbox and settings.tenant_id and settings.client_id and client_secret):
            raise TransportError(
                "Graph needs the mailbox, KCG_GRAPH_TENANT_ID, KCG_GRAPH_CLIENT_ID and "
                "KCG_GRAPH_CLIENT_SECRET"
            )
        self.mailbox = settings.mailbox
        self.tenant_id = settings.tenant_id
        self.client_id = settings.client_id
        self._secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.authority = f"{authority_host.rstrip('/')}/{self.tenant_id}"
        self.user = f"{self.base_url}/users/{quote(self.mailbox, safe='@')}"
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout)
        self.timeout = timeout
        self.sleep = sleep
        # Graph asks for at most 30 s between tries without Retry-After.
        self.policy = RetryPolicy(max_retries=max_retries, max_wait=max_wait, backoff_max=30.0, sleep=sleep)
        self._app = None

    # ------------------------------------------------------------------ auth

    def _msal_app(self) -> Any:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    http_client=MsalHttpClient(self._http, self.timeout),
                    token_cache=msal.TokenCache(),
                )
            except ValueError as exc:  # tenant discovery answered 4xx
                text = str(exc)
                m = re.search(r"AADSTS(\d+)", text)
                help_ = AADSTS_HELP.get(int(m.group(1))) if m else None
                raise TransportError(
                    f"Graph sign-in: tenant {self.tenant_id!r} could not be used: "
                    + (help_ or "check KCG_GRAPH_TENANT_ID (Directory (tenant) ID).")
                    + f" ({text[:200]})"
                ) from exc
            except httpx.HTTPError as exc:
                raise TransientError(f"Graph sign-in: {self.authority} unreachable: {exc}") from exc
        return self._app

    def token(self) -> str:
        """The application's access token (msal's cache, or a new one)."""
        app = self._msal_app()
        try:
            # msal answers from its cache and fetches a new token when the cached
            # one is missing, expires within 5 minutes or has passed refresh_in.
            result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except httpx.HTTPError as exc:
            raise TransientError(f"Graph sign-in: token endpoint unreachable: {exc}") from exc
        except msal.exceptions.MsalServiceError as exc:  # raised on 5xx via raise_for_status
            raise TransientError(f"Graph sign-in failed, try again later: {exc}") from exc
        if isinstance(result, dict) and "access_token" in result:
            return str(result["access_token"])
        raise self._token_error(result if isinstance(result, dict) else {})

    @staticmethod
    def _token_error(result: dict[str, Any]) -> TransportError:
        error = result.get("error", "unknown_error")
        desc = str(result.get("error_description", ""))
        codes = [int(c) for c in result.get("error_codes") or []]
        if not codes:
            codes = [int(c) for c in re.findall(r"AADSTS(\d+)", desc)]
        first_line = desc.splitlines()[0] if desc else ""
        if error in ("temporarily_unavailable", "server_error"):
            return TransientError(f"Graph sign-in: Entra ID is unavailable ({first_line}); try later")
        for code in codes:
            if code in AADSTS_HELP:
                return TransportError(f"Graph sign-in failed (AADSTS{code}): {AADSTS_HELP[code]}")
        if "consent" in desc.lower():
            return TransportError(f"Graph sign-in failed: {AADSTS_HELP[65001]} ({first_line})")
        return TransportError(f"Graph sign-in failed: {error}: {first_line}")

    def drop_token(self) -> None:
        """Forget the cached access token (Graph rejected it)."""
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

    def call(
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
        idempotent: bool = True,
        what: str = "",
    ) -> httpx.Response:
        """One Graph request with token, throttling and retry handling.

        Statuses in ``ok`` and ``allow`` are returned; others raise. 429, 503
        and 504 (and network faults) are retried by the retry policy (up to
        ``max_retries`` times, waiting Retry-After or 1, 2, 4… s); then
        ``TransientError``. With ``idempotent=False`` (sendMail) a 504, a 500
        or a read timeout is not retried: the mail may have gone, ``was_sent``
        decides on the next run. A 401 InvalidAuthenticationToken drops the
        cached token and repeats the request once.
        """
        accept = set(ok) | set(allow)
        what = what or f"{method} {url.split('?')[0].removeprefix(self.base_url)}"
        refreshed = False

        def attempt() -> httpx.Response:
            nonlocal refreshed
            while True:
                hdrs = {"Prefer": 'IdType="ImmutableId"'} if auth else {}
                hdrs.update(headers or {})
                if auth:
                    hdrs["Authorization"] = f"Bearer {self.token()}"
                resp = self._http.request(method, url, json=json_body, content=content, headers=hdrs, timeout=self.timeout)
                status = resp.status_code
                if status in accept:
                    return resp
                code, message = graph_error(resp)
                if status == 401 and auth and code == "InvalidAuthenticationToken" and not refreshed:
                    log.info("Graph %s: token rejected (%s), getting a new one", what, message[:80])
                    refreshed = True
                    self.drop_token()
                    continue
                if isinstance(status_verdict(status), Transient):
                    raise httpx.HTTPStatusError(f"{status} {code}", request=resp.request, response=resp)
                raise self._error(resp, what, code, message)

        try:
            return call_with_retry(attempt, replace(self.policy, idempotent=idempotent, what=f"Graph {what}"))
        except GaveUp as gave_up:
            raise TransientError(self._gave_up(what, gave_up)) from gave_up.last

    @staticmethod
    def _gave_up(what: str, gave_up: GaveUp) -> str:
        last = gave_up.last
        if gave_up.why == "ambiguous":
            reason = f"{last.response.status_code} {graph_error(last.response)[0]}".strip() if isinstance(
                last, httpx.HTTPStatusError
            ) else type(last).__name__
            return (
                f"Graph {what}: {reason} after the request was sent; the outcome is unknown "
                "(was_sent will tell on the next run)"
            )
        if isinstance(last, httpx.HTTPStatusError):
            code = graph_error(last.response)[0]
            return (
                f"Graph {what}: {last.response.status_code} {code} after {gave_up.attempts} attempts"
                + (f" (server asks to wait {gave_up.wait:.0f} s)" if gave_up.why == "wait" else "")
                + "; try again later"
            )
        return f"Graph {what}: network error after {gave_up.attempts} attempts: {last}"

    def _error(self, resp: httpx.Response, what: str, code: str, message: str) -> GraphError:
        status = resp.status_code
        request_id = resp.headers.get("request-id", "")
        hint = ""
        if status == 401 and "roles" in message:
            hint = " — " + AADSTS_HELP[65001]
        elif status == 403:
            hint = (
                " — the app lacks the application permission for this call (Mail.ReadWrite, "
                "Mail.Send or Calendars.ReadWrite) or the mailbox is outside its application "
                "access policy / RBAC for Applications scope"
            )
        return GraphError(
            f"Graph {what}: {status} {code}: {message}{hint}" + (f" (request-id {request_id})" if request_id else ""),
            status=status,
            code=code,
        )

    def get_json(self, url: str, **kw: Any) -> dict[str, Any]:
        data = self.call("GET", url, **kw).json()
        if not isinstance(data, dict):
            raise GraphError(f"Graph GET {url.split('?')[0].removeprefix(self.base_url)}: the answer is not a JSON object")
        return data

    def query(self, path: str, **params: str) -> str:
        """URL with OData query options; ``$`` keys stay literal."""
        if not params:
            return f"{self.user}{path}"
        qs = "&".join(f"${k}={quote(v, safe=',()/:@{}')}" for k, v in params.items())
        return f"{self.user}{path}?{qs}"

    def valid_link(self, link: str | None) -> bool:
        """Only links to our own Graph endpoint are followed: they get our bearer token."""
        return bool(link) and str(link).startswith(self.base_url + "/")

    def close(self) -> None:
        if self._own_http:
            self._http.close()


class GraphAttachments:
    """Files on a draft or an event: small ones in one POST, big ones (over
    3 MB) through an upload session, those already there (same name and size,
    left by an interrupted run) skipped."""

    client: GraphClient
    upload_chunk: int

    def __init__(self, client: GraphClient, upload_chunk: int = UPLOAD_CHUNK) -> None:
        if upload_chunk % (320 * 1024) or upload_chunk > 4 * 1024 * 1024:
            raise ValueError("upload_chunk must be a multiple of 320 KiB and at most 4 MiB")
        self.client = client
        self.upload_chunk = upload_chunk

    @staticmethod
    def file_attachment(att: Attachment) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": att.filename,
            "contentType": att.content_type,
            "contentBytes": base64.b64encode(att.data).decode("ascii"),
        }

    def add(self, item_url: str, attachments: Iterable[Attachment]) -> None:
        """Attach files to a draft or event, skipping those already there."""
        atts = list(attachments)
        if not atts:
            return
        have = Counter(
            (a.get("name"), a.get("size"))
            for a in self.client.get_json(f"{item_url}/attachments?$select=name,size").get("value", [])
        )
        for att in atts:
            if have[(att.filename, len(att.data))] > 0:
                have[(att.filename, len(att.data))] -= 1
                continue
            if len(att.data) > LARGE_ATTACHMENT:
                self._upload_large(item_url, att)
            else:
                self.client.call("POST", f"{item_url}/attachments", json_body=self.file_attachment(att), ok=(201,))

    def _upload_large(self, item_url: str, att: Attachment) -> None:
        session = self.client.call(
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
        upload_url = str(session["uploadUrl"])
        total = len(att.data)
        start = 0
        while start < total:
            end = min(start + self.upload_chunk, total)
            # The upload URL is pre-authenticated: sending our bearer token
            # there is refused (and would hand it to another host).
            resp = self.client.call(
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
