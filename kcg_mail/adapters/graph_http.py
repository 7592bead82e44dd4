"""Microsoft Graph over plain httpx + msal: the constants, the application's token
(client credentials), and one retried request (``GraphHttp._call``) with
throttling (429/503/504, Retry-After) and Graph's error shapes turned into
clear errors. Used by ``graph.GraphTransport``."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import msal

from ..ports import (
    MARKER_HEADER,
    Address,
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


#: MAPI PidTagMessageSize (PT_LONG): a message's size in bytes. Graph v1.0 has
#: no size property on messages; this one is read with ``$expand`` (the
#: incoming size cap, ``GraphTransport.fetch_new``).
PROP_MESSAGE_SIZE = "Integer 0x0E08"


def _message_size(item: dict[str, Any]) -> int | None:
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


class GraphHttp:
    """Token and requests of a ``GraphTransport`` (needs its ``__init__`` attributes)."""

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

    def _retry_delay(self, resp: httpx.Response | None, attempt: int) -> float:
        if resp is not None:
            value = resp.headers.get("Retry-After")
            if value:
                try:
                    return max(0.0, float(value))
                except ValueError:
                    try:
                        when = parsedate_to_datetime(value)
                        return max(0.0, (when - datetime.now(UTC)).total_seconds())
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
