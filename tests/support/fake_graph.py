"""A stateful fake of the Microsoft Graph mail/calendar API and the Entra ID
token endpoint, mounted with respx at the httpx transport level.

Everything the adapter does goes through real code: ``GraphTransport`` uses
httpx, and msal (1.39) runs its real client-credentials code — tenant
discovery, token request, token cache, expiry handling — through the
adapter's ``_MsalHttpClient``, which is backed by the same httpx client. So
respx sees the msal traffic too and no ``requests``/requests_mock layer is
involved (that is also the production path).

The fake keeps folders, messages (with MIME), events, delta state and upload
sessions, answers with Graph's JSON and error shapes
(``{"error": {"code": ..., "message": ...}}``) and Entra's token error shape
(``error``, ``error_description`` with AADSTS code, ``error_codes``). Faults can
be injected: throttling (429 + Retry-After), 503/504, expired tokens (401
InvalidAuthenticationToken), missing permissions, missing consent, an access
policy that excludes the mailbox.

Modelled on Microsoft's documentation; where real behaviour is not documented
the fake makes a choice, marked "assumption" below. Notably: the Sent Items
copy of a message keeps the message's singleValueExtendedProperties (documented
behaviour for extended properties set on create), and X- headers are *not*
promoted to PS_INTERNET_HEADERS properties by the fake (undocumented; the
adapter does not rely on it).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import respx

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
UPLOAD = "https://outlook.office.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ALL_ROLES = ("Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite")
WELL_KNOWN = ("inbox", "sentitems", "drafts", "deleteditems")
TIME_ZONES = {"UTC", "W. Europe Standard Time", "Romance Standard Time", "FLE Standard Time", "GMT Standard Time"}
MAX_REQUEST = 4 * 1024 * 1024

_Q = r"'((?:[^']|'')*)'"
EP_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(ep:\s*ep/id eq " + _Q
    + r" and (?:ep/value eq " + _Q + r"|contains\(ep/value,\s*" + _Q + r"\))\)$",
    re.I,
)
NAME_FILTER = re.compile(r"^displayName eq " + _Q + "$")


def _unq(s: str) -> str:
    return s.replace("''", "'")


def _norm_prop(prop_id: str) -> tuple[str, ...]:
    """Extended property ids: type and GUID case-insensitive, Name case-sensitive."""
    m = re.match(r"^(\w+)\s+(\{[^}]+\}|0x[0-9a-fA-F]+)(?:\s+Name\s+(.+))?$", prop_id.strip())
    if not m:
        return (prop_id,)
    return (m.group(1).lower(), m.group(2).lower(), m.group(3) or "")


def _err(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
        }
    }
    return httpx.Response(status, json=body, headers=headers or {})


def _jwt(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'typ': 'JWT', 'alg': 'RS256'})}.{b64(claims)}.{base64.urlsafe_b64encode(b'sig').decode().rstrip('=')}"


@dataclass
class Fault:
    status: int
    times: int
    path: str | None
    method: str | None
    retry_after: str | None
    code: str


class FakeGraph:
    def __init__(
        self,
        mailbox: str = "natverket@kcg.example",
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
        client_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        client_secret: str = "s3cr3t~value",
        roles: tuple[str, ...] = ALL_ROLES,
    ) -> None:
        self.mailbox = mailbox
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.roles = set(roles)
        self.token_lifetime = 3599
        self.token_error: dict[str, Any] | None = None  # injected Entra error body
        self.access_policy_excludes_mailbox = False
        #: serve $value without Authentication-Results (a MIME rebuilt by the store)
        self.mime_without_auth_results = False
        #: answer PidTagMessageSize when ``$expand`` asks for it (False: a store without it)
        self.message_size_known = True
        self.page_size = 10  # server-side max page size for delta
        self.tokens: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        self.discovery_requests = 0
        self.calls: list[tuple[str, str]] = []
        self.outbox: list[dict[str, Any]] = []  # what left the mailbox
        self.upload_puts: list[dict[str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._seq = 0
        self._inbox_log: list[tuple[int, str, str]] = []
        self._rounds: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._min_delta = 0
        #: sendMail and /send are asynchronous, like Exchange Online: the 202
        #: comes first; the mail leaves at once (``outbox``) but its Sent Items
        #: copy is filed ``sent_delay`` seconds later, and never within the
        #: request that sent it (it is in transit: in no folder).
        self.sent_delay = 0.0
        self._in_transit: list[tuple[float, str]] = []
        for name in WELL_KNOWN:
            fid = self._new_id("FOLDER")
            self.folders[fid] = {"id": fid, "displayName": name.capitalize(), "wellKnown": name, "parentFolderId": None}

    # ---------------------------------------------------------------- helpers for tests

    @contextmanager
    def running(self) -> Iterator[FakeGraph]:
        """respx active for the whole httpx stack; any unmocked host is an error."""
        with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
            self.mount(router)
            yield self

    def mount(self, router: respx.MockRouter) -> None:
        router.route(host="graph.microsoft.com").mock(side_effect=self._graph)
        router.route(host="login.microsoftonline.com").mock(side_effect=self._login)
        router.route(host="outlook.office.com").mock(side_effect=self._upload)

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        retry_after: int | str | None = None,
        code: str | None = None,
    ) -> None:
        """The next ``times`` Graph requests matching ``path`` (substring) and
        ``method`` fail with ``status``."""
        default = {429: "TooManyRequests", 503: "ServiceNotAvailable", 504: "GatewayTimeout"}.get(status, "UnknownError")
        self._faults.append(
            Fault(status, times, path, method, None if retry_after is None else str(retry_after), code or default)
        )

    def expire_tokens(self) -> None:
        """Every issued token is now past its lifetime (Graph answers 401)."""
        for t in self.tokens.values():
            t["exp"] = 0

    def respond(self, email: str, response: str) -> None:
        """An attendee answers (accepted, declined, tentativelyAccepted): Exchange
        records it on the organizer's event."""
        for ev in self.events.values():
            for a in ev["json"].get("attendees", []):
                if a["emailAddress"]["address"].lower() == email.lower():
                    a["status"] = {"response": response, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def expire_delta_tokens(self) -> None:
        self._min_delta = self._seq + 1

    def deliver(self, raw: bytes, received: str | None = None) -> str:
        """An incoming message arrives in the inbox. Returns its id."""
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        mid = self._new_id("MSG")
        self.messages[mid] = {
            "id": mid,
            "folder": self.folder_id("inbox"),
            "json": {
                "subject": str(parsed.get("Subject", "")),
                "from": {"emailAddress": {"address": str(parsed.get("From", ""))}},
                "internetMessageId": str(parsed.get("Message-ID", "")),
                "receivedDateTime": received or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "isDraft": False,
            },
            "props": {},
            "attachments": [],
            "mime": raw,
        }
        self._log_inbox("add", mid)
        return mid

    def add_message(self, folder: str, *, subject: str = "", props: dict[str, str] | None = None) -> str:
        """Put a message directly into a folder (e.g. a Sent Items copy written
        by another client)."""
        mid = self._new_id("MSG")
        self.messages[mid] = {
            "id": mid,
            "folder": self.folder_id(folder),
            "json": {"subject": subject, "isDraft": False},
            "props": {_norm_prop(k): (k, v) for k, v in (props or {}).items()},
            "attachments": [],
            "mime": b"Subject: " + subject.encode() + b"\r\n\r\n",
        }
        return mid

    def folder_id(self, name: str) -> str:
        for f in self.folders.values():
            if f["wellKnown"] == name.lower() or f["id"] == name:
                return f["id"]
        raise KeyError(name)

    def child_folder(self, parent: str, name: str) -> dict[str, Any] | None:
        pid = self.folder_id(parent)
        return next(
            (f for f in self.folders.values() if f["parentFolderId"] == pid and f["displayName"].lower() == name.lower()),
            None,
        )

    def file_sent_copies(self) -> None:
        """File the Sent Items copies whose time has come (called on every request)."""
        now = time.monotonic()
        due = [mid for t, mid in self._in_transit if t <= now]
        self._in_transit = [(t, mid) for t, mid in self._in_transit if t > now]
        for mid in due:
            if mid in self.messages:
                self.messages[mid]["folder"] = self.folder_id("sentitems")

    def _hold_sent_copy(self, msg: dict[str, Any]) -> None:
        msg["folder"] = None
        self._in_transit.append((time.monotonic() + self.sent_delay, msg["id"]))

    def in_folder(self, name_or_id: str) -> list[dict[str, Any]]:
        self.file_sent_copies()
        fid = self.folder_id(name_or_id)
        return [m for m in self.messages.values() if m["folder"] == fid]

    def mime_of(self, out: dict[str, Any]):
        return BytesParser(policy=policy.default).parsebytes(out["mime"])

    # ---------------------------------------------------------------- internals

    def _new_id(self, prefix: str) -> str:
        return f"AAMk{prefix}{next(self._ids):06d}="

    def _log_inbox(self, op: str, mid: str) -> None:
        self._seq += 1
        self._inbox_log.append((self._seq, op, mid))

    def _set_folder(self, msg: dict[str, Any], fid: str) -> None:
        inbox = self.folder_id("inbox")
        if msg["folder"] == inbox and fid != inbox:
            self._log_inbox("remove", msg["id"])
        if fid == inbox and msg["folder"] != inbox:
            self._log_inbox("add", msg["id"])
        msg["folder"] = fid

    # ---------------------------------------------------------------- token endpoint

    def _login(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        m = re.match(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$", path)
        if m and request.method == "GET":
            self.discovery_requests += 1
            tenant = m.group(1)
            if tenant != self.tenant_id:
                return httpx.Response(
                    400,
                    json={
                        "error": "invalid_tenant",
                        "error_description": f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
                        "error_codes": [90002],
                    },
                )
            base = f"{LOGIN}/{tenant}"
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                },
            )
        if path == "/common/discovery/instance" and request.method == "GET":
            # msal asks for authority aliases, e.g. after a token error or when
            # removing cached tokens
            self.discovery_requests += 1
            return httpx.Response(
                200,
                json={
                    "tenant_discovery_endpoint": f"{LOGIN}/common/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                        }
                    ],
                },
            )
        m = re.match(r"^/([^/]+)/oauth2/v2\.0/token$", path)
        if not (m and request.method == "POST"):
            return httpx.Response(404, text="not found")
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}

        def fail(status: int, error: str, code: int, text: str) -> httpx.Response:
            return httpx.Response(
                status,
                json={
                    "error": error,
                    "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}",
                    "error_codes": [code],
                    "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    "error_uri": f"https://login.microsoftonline.com/error?code={code}",
                },
            )

        if form.get("grant_type") != "client_credentials":
            return fail(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return fail(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{self.tenant_id}'.",
            )
        if form.get("client_secret") != self.client_secret:
            return fail(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        if form.get("scope") != GRAPH_SCOPE:
            return fail(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid.")
        if self.token_error:
            return httpx.Response(400, json=self.token_error)
        jti = str(uuid.uuid4())
        claims = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "appid": self.client_id,
            "exp": int(time.time()) + self.token_lifetime,
            "jti": jti,
        }
        if self.roles:  # no roles claim at all when nothing is consented
            claims["roles"] = sorted(self.roles)
        token = _jwt(claims)
        self.tokens[token] = {"exp": claims["exp"], "roles": set(self.roles)}
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    # ---------------------------------------------------------------- upload sessions

    def _upload(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        m = re.search(r"AttachmentSessions\('([^']+)'\)", unquote(request.url.path))
        session = self.sessions.get(m.group(1)) if m else None
        if request.method != "PUT" or session is None:
            return _err(404, "ErrorItemNotFound", "The upload session was not found.")
        self.upload_puts.append({"authorization": request.headers.get("Authorization"), "size": len(request.content)})
        if request.url.params.get("authtoken") != session["authtoken"]:
            return _err(401, "InvalidAuthenticationToken", "The upload URL's authtoken is not valid.")
        if "Authorization" in request.headers:
            # Documented: the uploadUrl is pre-authenticated; do not send an
            # Authorization header with the PUT (the fake refuses it).
            return _err(400, "InvalidRequest", "Authorization header is not expected on the pre-authenticated upload URL.")
        cr = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", request.headers.get("Content-Range", ""))
        if not cr:
            return _err(400, "InvalidRequest", "Missing or malformed Content-Range header.")
        start, end, total = map(int, cr.groups())
        body = request.content
        if total != session["size"] or start != len(session["data"]) or end - start + 1 != len(body):
            return _err(416, "InvalidRange", f"Expected range starting at {len(session['data'])}.")
        if len(body) > 4 * 1024 * 1024:
            return _err(413, "RequestBodyTooLarge", "A chunk may be at most 4 MB.")
        session["data"] += body
        if len(session["data"]) < total:
            return httpx.Response(
                200,
                json={"expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": [str(len(session["data"]))]},
            )
        item = session["item"]
        att_id = self._new_id("ATT")
        item["attachments"].append(
            {"id": att_id, "name": session["name"], "size": total, "contentType": session["contentType"], "data": session["data"]}
        )
        del self.sessions[m.group(1)]
        return httpx.Response(201, headers={"Location": f"{GRAPH}/users/{self.mailbox}/{session['kind']}/{item['id']}/attachments/{att_id}"})

    # ---------------------------------------------------------------- graph

    def _graph(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        self.calls.append((request.method, path))
        self.file_sent_copies()
        for f in self._faults:
            if f.times > 0 and (f.path is None or f.path in path) and (f.method is None or f.method == request.method):
                f.times -= 1
                headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                return _err(f.status, f.code, "Injected fault.", headers)
        # authentication
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _err(401, "InvalidAuthenticationToken", "Access token is empty.")
        tok = self.tokens.get(auth[7:])
        if tok is None:
            return _err(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if tok["exp"] < time.time():
            return _err(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if not tok["roles"]:
            return _err(401, "InvalidAuthenticationToken", "Either scp or roles claim need to be present in the token.")
        m = re.match(r"^/v1\.0/users/([^/]+)(/.*)?$", path)
        if not m:
            return _err(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        if m.group(1).lower() != self.mailbox.lower():
            return _err(404, "ErrorInvalidUser", f"The requested user '{m.group(1)}' is invalid.")
        if self.access_policy_excludes_mailbox:
            return _err(
                403, "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            )
        rest = re.sub(r"\('([^']*)'\)", r"/\1", m.group(2) or "")  # mailFolders('inbox') -> mailFolders/inbox
        params = {k: v for k, v in request.url.params.items()}
        body: Any = None
        if request.method in ("POST", "PATCH") and request.content:
            if len(request.content) > MAX_REQUEST:
                return _err(413, "RequestBodyTooLarge", "The maximum request length supported is 4MB.")
            try:
                body = json.loads(request.content)
            except ValueError:
                return _err(400, "BadRequest", "Unable to read JSON request payload.")
        for pattern, method, handler, needs in self._ROUTES:
            rm = re.match(pattern, rest)
            if rm and method == request.method:
                if not (tok["roles"] & needs):
                    return _err(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
                return handler(self, request, params, body, *rm.groups())
        return _err(400, "BadRequest", f"Resource not found for the segment '{rest}'.")

    # --- folders

    def _resolve_folder(self, name: str) -> dict[str, Any] | None:
        try:
            return self.folders[self.folder_id(name)]
        except KeyError:
            return None

    @staticmethod
    def _folder_json(f: dict[str, Any]) -> dict[str, Any]:
        return {"id": f["id"], "displayName": f["displayName"], "parentFolderId": f["parentFolderId"], "totalItemCount": 0}

    def _get_folder(self, request, params, body, fid):
        f = self._resolve_folder(fid)
        if f is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return httpx.Response(200, json=self._folder_json(f))

    def _list_children(self, request, params, body, fid):
        parent = self._resolve_folder(fid)
        if parent is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        kids = [f for f in self.folders.values() if f["parentFolderId"] == parent["id"]]
        if "$filter" in params:
            fm = NAME_FILTER.match(params["$filter"])
            if not fm:
                return _err(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
            kids = [f for f in kids if f["displayName"].lower() == _unq(fm.group(1)).lower()]
        return httpx.Response(200, json={"value": [self._folder_json(f) for f in kids]})

    def _create_child(self, request, params, body, fid):
        parent = self._resolve_folder(fid)
        name = (body or {}).get("displayName")
        if parent is None or not name:
            return _err(400, "ErrorInvalidRequest", "displayName is required.")
        if any(f["parentFolderId"] == parent["id"] and f["displayName"].lower() == name.lower() for f in self.folders.values()):
            return _err(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        new = {"id": self._new_id("FOLDER"), "displayName": name, "wellKnown": None, "parentFolderId": parent["id"]}
        self.folders[new["id"]] = new
        return httpx.Response(201, json=self._folder_json(new))

    # --- extended property filters

    def _match_filter(self, props: dict[tuple[str, ...], tuple[str, str]], flt: str) -> bool | None:
        fm = EP_FILTER.match(flt.strip())
        if not fm:
            return None
        pid, eq_value, contains_value = fm.groups()
        have = props.get(_norm_prop(_unq(pid)))
        if have is None:
            return False
        value = have[1].lower()
        if eq_value is not None:
            return value == _unq(eq_value).lower()  # value comparison is case-insensitive
        return _unq(contains_value).lower() in value

    def _list_messages(self, request, params, body, fid):
        folder = self._resolve_folder(fid)
        if folder is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        msgs = [m for m in self.messages.values() if m["folder"] == folder["id"]]
        if "$filter" in params:
            keep = []
            for msg in msgs:
                ok = self._match_filter(msg["props"], params["$filter"])
                if ok is None:
                    return _err(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
                if ok:
                    keep.append(msg)
            msgs = keep
        expand_ids = None
        if "$expand" in params:
            em = re.match(r"^singleValueExtendedProperties\(\$filter=(.*)\)$", params["$expand"])
            if not em:
                return _err(400, "BadRequest", "Invalid $expand.")
            expand_ids = [_unq(x) for x in re.findall(r"id eq " + _Q, em.group(1))]
        top = int(params.get("$top", "10"))
        out = [self._msg_json(m, expand_ids) for m in msgs[:top]]
        if "internetmessageheaders" in params.get("$select", "").lower():
            for o, m in zip(out, msgs):
                o["internetMessageHeaders"] = self._headers(m)
        return httpx.Response(200, json={"value": out})

    @staticmethod
    def _headers(msg: dict[str, Any]) -> list[dict[str, str]]:
        if not msg.get("mime"):
            return []
        parsed = BytesParser(policy=policy.compat32).parsebytes(msg["mime"], headersonly=True)
        return [{"name": k, "value": " ".join(str(v).split())} for k, v in parsed.items()]

    def _msg_json(self, msg: dict[str, Any], expand_ids: list[str] | None = None) -> dict[str, Any]:
        out = {"id": msg["id"], "parentFolderId": msg["folder"], "hasAttachments": bool(msg["attachments"])}
        out.update(msg["json"])
        if expand_ids is not None:
            wanted = {_norm_prop(i) for i in expand_ids}
            props = [{"id": orig, "value": v} for k, (orig, v) in msg["props"].items() if k in wanted]
            if props:
                out["singleValueExtendedProperties"] = props
        return out

    # --- delta

    def _delta(self, request, params, body, fid):
        if self._resolve_folder(fid) is None or self._resolve_folder(fid)["wellKnown"] != "inbox":
            return _err(400, "ErrorInvalidRequest", "The fake supports delta on the inbox only.")
        expired = _err(410, "SyncStateNotFound", "The sync state is not found or has expired. Start a new sync.")
        if "$skiptoken" in params:
            rid, _, off = params["$skiptoken"].partition(".")
            if rid not in self._rounds:
                return expired
            items, end_seq = self._rounds[rid]
            offset = int(off)
        else:
            since = int(params["$deltatoken"]) if "$deltatoken" in params else None
            if since is not None and since < self._min_delta:
                return expired
            inbox = self.folder_id("inbox")
            items = []
            if since is None:
                ids = [mid for mid, m in self.messages.items() if m["folder"] == inbox]
                items = [self._delta_item(mid) for mid in ids]
            else:
                changed: dict[str, str] = {}
                for seq, op, mid in self._inbox_log:
                    if seq > since:
                        changed[mid] = op
                for mid, _op in changed.items():
                    msg = self.messages.get(mid)
                    if msg is not None and msg["folder"] == inbox:
                        items.append(self._delta_item(mid))
                    else:
                        items.append({"id": mid, "@removed": {"reason": "deleted"}})
            end_seq = self._seq
            rid = uuid.uuid4().hex[:12]
            self._rounds[rid] = (items, end_seq)
            offset = 0
        pref = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
        size = min(self.page_size, int(pref.group(1)) if pref else self.page_size)
        page = items[offset : offset + size]
        base = f"{GRAPH}/users/{self.mailbox}/mailFolders('inbox')/messages/delta"
        out: dict[str, Any] = {"@odata.context": f"{GRAPH}/$metadata#Collection(message)", "value": page}
        if offset + size < len(items):
            out["@odata.nextLink"] = f"{base}?$skiptoken={rid}.{offset + size}"
        else:
            out["@odata.deltaLink"] = f"{base}?$deltatoken={end_seq}"
        return httpx.Response(200, json=out)

    def _delta_item(self, mid: str) -> dict[str, Any]:
        m = self.messages[mid]
        return {
            "@odata.type": "#microsoft.graph.message",
            "@odata.etag": f'W/"{mid}"',
            "id": mid,
            "receivedDateTime": m["json"].get("receivedDateTime"),
        }

    def _get_value(self, request, params, body, mid):
        msg = self.messages.get(mid)
        if msg is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        mime = msg["mime"]
        if self.mime_without_auth_results:  # a MIME rebuilt without the transport headers
            from kcg_mail.adapters.headers import with_server_auth_results

            mime = with_server_auth_results(mime, [])
        return httpx.Response(200, content=mime, headers={"Content-Type": "text/plain"})

    def _get_message(self, request, params, body, mid):
        """``GET /messages/{id}?$select=internetMessageHeaders``: the transport
        headers in message order (Graph returns them only when selected).
        ``$expand=singleValueExtendedProperties($filter=id eq ...)`` adds the
        asked-for extended properties; PidTagMessageSize (``Integer 0x0E08``)
        is the size of the MIME, answered as Graph does (a string value, the id
        in Graph's own spelling, ``Integer 0xe08``)."""
        msg = self.messages.get(mid)
        if msg is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        out: dict[str, Any] = {"id": mid}
        if "internetmessageheaders" in params.get("$select", "").lower():
            out["internetMessageHeaders"] = self._headers(msg)
        if "$expand" in params:
            em = re.match(r"^singleValueExtendedProperties\(\$filter=(.*)\)$", params["$expand"])
            if not em:
                return _err(400, "BadRequest", "Invalid $expand.")
            props = []
            for pid in (_unq(x) for x in re.findall(r"id eq " + _Q, em.group(1))):
                if _norm_prop(pid)[:2] == ("integer", "0x0e08") and self.message_size_known:
                    props.append({"id": "Integer 0xe08", "value": str(len(msg.get("mime") or b""))})
                elif _norm_prop(pid) in msg["props"]:
                    orig, value = msg["props"][_norm_prop(pid)]
                    props.append({"id": orig, "value": value})
            if props:
                out["singleValueExtendedProperties"] = props
        return httpx.Response(200, json=out)

    def value_reads(self) -> list[str]:
        """Ids of the messages whose MIME (``/$value``) was read, in order."""
        return [m.group(1) for method, path in self.calls if method == "GET"
                and (m := re.search(r"/messages/([^/]+)/\$value$", path))]

    # --- move

    def _move(self, request, params, body, mid):
        msg = self.messages.get(mid)
        if msg is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        dest = self._resolve_folder((body or {}).get("destinationId", ""))
        if dest is None:
            return _err(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        self._set_folder(msg, dest["id"])
        if 'IdType="ImmutableId"' not in request.headers.get("Prefer", ""):
            # without immutable ids, an item gets a new id in its new folder
            del self.messages[mid]
            msg["id"] = self._new_id("MSG")
            self.messages[msg["id"]] = msg
        return httpx.Response(201, json=self._msg_json(msg))

    # --- sending

    def _check_message(self, m: dict[str, Any]) -> httpx.Response | None:
        for h in m.get("internetMessageHeaders") or []:
            if not str(h.get("name", "")).lower().startswith("x-"):
                return _err(
                    400, "InvalidInternetMessageHeader",
                    f"The internet message header name '{h.get('name')}' should start with 'x-' or 'X-'.",
                )
        for a in m.get("attachments") or []:
            if a.get("@odata.type") != "#microsoft.graph.fileAttachment" or not a.get("name"):
                return _err(400, "ErrorInvalidRequest", "Invalid attachment.")
            try:
                base64.b64decode(a["contentBytes"], validate=True)
            except (KeyError, ValueError):
                return _err(400, "ErrorInvalidRequest", "contentBytes is not valid base64.")
        imid = m.get("internetMessageId")
        if imid is not None and not re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", imid):
            return _err(400, "InvalidInternetMessageId", "The internetMessageId is not valid.")
        return None

    def _store_message(self, m: dict[str, Any], folder: str, draft: bool) -> dict[str, Any]:
        mid = self._new_id("MSG")
        props = {_norm_prop(p["id"]): (p["id"], p["value"]) for p in m.get("singleValueExtendedProperties") or []}
        attachments = [
            {
                "id": self._new_id("ATT"),
                "name": a["name"],
                "contentType": a.get("contentType", "application/octet-stream"),
                "data": base64.b64decode(a["contentBytes"]),
            }
            for a in m.get("attachments") or []
        ]
        for a in attachments:
            a["size"] = len(a["data"])
        js = {k: v for k, v in m.items() if k not in ("attachments", "singleValueExtendedProperties")}
        js["isDraft"] = draft
        msg = {"id": mid, "folder": self.folder_id(folder), "json": js, "props": props, "attachments": attachments, "mime": b""}
        self.messages[mid] = msg
        return msg

    def _render_mime(self, msg: dict[str, Any]) -> bytes:
        js = msg["json"]
        em = EmailMessage()

        def addrs(key: str) -> str:
            return ", ".join(
                (f"{r['emailAddress'].get('name')} <{r['emailAddress']['address']}>" if r["emailAddress"].get("name") else r["emailAddress"]["address"])
                for r in js.get(key) or []
            )

        em["From"] = self.mailbox
        em["To"] = addrs("toRecipients")
        if js.get("ccRecipients"):
            em["Cc"] = addrs("ccRecipients")
        if js.get("replyTo"):
            em["Reply-To"] = addrs("replyTo")
        em["Subject"] = js.get("subject", "")
        em["Message-ID"] = js.get("internetMessageId") or f"<{uuid.uuid4().hex}@fake.outlook>"
        for h in js.get("internetMessageHeaders") or []:
            em[h["name"]] = h["value"]
        for (_kind, tag, _), (_, value) in msg["props"].items():
            if tag == "0x1042":
                em["In-Reply-To"] = value
            elif tag == "0x1039":
                em["References"] = value
        content = js.get("body", {}).get("content", "")
        if js.get("body", {}).get("contentType", "").lower() == "html":
            em.set_content(content, subtype="html")
        else:
            em.set_content(content)
        for a in msg["attachments"]:
            maintype, _, subtype = a["contentType"].partition("/")
            em.add_attachment(a["data"], maintype=maintype, subtype=subtype or "octet-stream", filename=a["name"])
        return em.as_bytes()

    def _deliver_out(self, msg: dict[str, Any]) -> None:
        msg["mime"] = self._render_mime(msg)
        js = msg["json"]
        self.outbox.append(
            {
                "kind": "mail",
                "to": [r["emailAddress"]["address"] for r in (js.get("toRecipients") or []) + (js.get("ccRecipients") or [])],
                "subject": js.get("subject"),
                "mime": msg["mime"],
                "attachments": [(a["name"], a["size"]) for a in msg["attachments"]],
            }
        )

    def _send_mail(self, request, params, body, *groups):
        m = (body or {}).get("message")
        if not isinstance(m, dict):
            return _err(400, "ErrorInvalidRequest", "The message is missing.")
        if not (m.get("toRecipients") or m.get("ccRecipients") or m.get("bccRecipients")):
            return _err(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        bad = self._check_message(m)
        if bad is not None:
            return bad
        msg = self._store_message(m, "sentitems", draft=False)
        self._deliver_out(msg)
        if body.get("saveToSentItems") is False:
            del self.messages[msg["id"]]
        else:
            self._hold_sent_copy(msg)
        return httpx.Response(202)

    def _create_draft(self, request, params, body, *groups):
        bad = self._check_message(body or {})
        if bad is not None:
            return bad
        msg = self._store_message(body or {}, "drafts", draft=True)
        return httpx.Response(201, json=self._msg_json(msg))

    def _send_draft(self, request, params, body, mid):
        msg = self.messages.get(mid)
        if msg is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if not msg["json"].get("isDraft"):
            return _err(400, "ErrorInvalidOperation", "Only a draft can be sent.")
        msg["json"]["isDraft"] = False
        self._hold_sent_copy(msg)
        self._deliver_out(msg)
        return httpx.Response(202)

    # --- attachments (messages and events)

    def _item(self, kind: str, iid: str) -> dict[str, Any] | None:
        return (self.messages if kind == "messages" else self.events).get(iid)

    def _list_attachments(self, request, params, body, kind, iid):
        item = self._item(kind, iid)
        if item is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return httpx.Response(
            200, json={"value": [{"id": a["id"], "name": a["name"], "size": a["size"], "contentType": a["contentType"]} for a in item["attachments"]]}
        )

    def _add_attachment(self, request, params, body, kind, iid):
        item = self._item(kind, iid)
        if item is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        bad = self._check_message({"attachments": [body]})
        if bad is not None:
            return bad
        data = base64.b64decode(body["contentBytes"])
        att = {"id": self._new_id("ATT"), "name": body["name"], "contentType": body.get("contentType", "application/octet-stream"), "data": data, "size": len(data)}
        item["attachments"].append(att)
        return httpx.Response(201, json={k: v for k, v in att.items() if k != "data"})

    def _create_session(self, request, params, body, kind, iid):
        item = self._item(kind, iid)
        if item is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        ai = (body or {}).get("AttachmentItem") or {}
        if ai.get("attachmentType") != "file" or not ai.get("name") or not isinstance(ai.get("size"), int):
            return _err(400, "ErrorInvalidRequest", "AttachmentItem needs attachmentType 'file', name and size.")
        if ai["size"] > 150 * 1024 * 1024:
            return _err(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "Attachment too large.")
        sid = uuid.uuid4().hex
        self.sessions[sid] = {
            "item": item, "kind": kind, "name": ai["name"], "size": ai["size"],
            "contentType": ai.get("contentType", "application/octet-stream"), "data": b"", "authtoken": uuid.uuid4().hex,
        }
        seg = "Messages" if kind == "messages" else "Events"
        url = f"{UPLOAD}/api/v2.0/Users('{self.mailbox}')/{seg}('{iid}')/AttachmentSessions('{sid}')?authtoken={self.sessions[sid]['authtoken']}"
        return httpx.Response(
            201,
            json={
                "@odata.context": f"{GRAPH}/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": url,
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "nextExpectedRanges": ["0-"],
            },
        )

    # --- calendar

    def _get_calendar(self, request, params, body, *groups):
        return httpx.Response(200, json={"id": "AAMkCALENDAR=", "name": "Calendar"})

    def _event_json(self, ev: dict[str, Any], expand_ids: list[str] | None = None) -> dict[str, Any]:
        out = {"id": ev["id"]}
        out.update(json.loads(json.dumps(ev["json"])))
        for a in out.get("attendees", []):
            a.setdefault("status", {"response": "none", "time": "0001-01-01T00:00:00Z"})
        if expand_ids is not None:
            wanted = {_norm_prop(i) for i in expand_ids}
            props = [{"id": orig, "value": v} for k, (orig, v) in ev["props"].items() if k in wanted]
            if props:
                out["singleValueExtendedProperties"] = props
        return out

    def _validate_event(self, body: dict[str, Any], create: bool) -> httpx.Response | None:
        for key in ("start", "end"):
            if key in body or create:
                v = body.get(key) or {}
                if not v.get("dateTime") or v.get("timeZone") not in TIME_ZONES:
                    return _err(
                        400, "TimeZoneNotSupportedException",
                        f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{v.get('timeZone')}'.",
                    )
        for a in body.get("attendees") or []:
            if a.get("type") not in ("required", "optional", "resource") or "@" not in a.get("emailAddress", {}).get("address", ""):
                return _err(400, "ErrorInvalidRequest", "Invalid attendee.")
        return None

    def _list_events(self, request, params, body, *groups):
        evs = list(self.events.values())
        if "$filter" in params:
            keep = []
            for ev in evs:
                ok = self._match_filter(ev["props"], params["$filter"])
                if ok is None:
                    return _err(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
                if ok:
                    keep.append(ev)
            evs = keep
        expand_ids = None
        if "$expand" in params:
            em = re.match(r"^singleValueExtendedProperties\(\$filter=(.*)\)$", params["$expand"])
            if not em:
                return _err(400, "BadRequest", "Invalid $expand.")
            expand_ids = [_unq(x) for x in re.findall(r"id eq " + _Q, em.group(1))]
        top = int(params.get("$top", "10"))
        return httpx.Response(200, json={"value": [self._event_json(e, expand_ids) for e in evs[:top]]})

    def _create_event(self, request, params, body, *groups):
        body = body or {}
        if not body.get("subject"):
            return _err(400, "ErrorInvalidRequest", "subject is required.")
        bad = self._validate_event(body, create=True)
        if bad is not None:
            return bad
        tx = body.get("transactionId")
        if tx:
            for ev in self.events.values():
                if ev["json"].get("transactionId") == tx:
                    return httpx.Response(201, json=self._event_json(ev))
        eid = self._new_id("EVT")
        js = {k: v for k, v in body.items() if k != "singleValueExtendedProperties"}
        js.setdefault("attendees", [])
        js["iCalUId"] = "040000008200E00074C5B7101A82E008" + uuid.uuid4().hex.upper()
        js["isOrganizer"] = True
        js["organizer"] = {"emailAddress": {"address": self.mailbox}}
        ev = {
            "id": eid,
            "json": js,
            "props": {_norm_prop(p["id"]): (p["id"], p["value"]) for p in body.get("singleValueExtendedProperties") or []},
            "attachments": [],
        }
        self.events[eid] = ev
        if js["attendees"]:
            self._notify("request", ev, [a["emailAddress"]["address"] for a in js["attendees"]])
        return httpx.Response(201, json=self._event_json(ev))

    def _notify(self, kind: str, ev: dict[str, Any], to: list[str], **extra: Any) -> None:
        self.outbox.append(
            {
                "kind": f"meeting-{kind}",
                "to": to,
                "subject": ev["json"].get("subject"),
                "event": json.loads(json.dumps(ev["json"])),
                "attachments": [(a["name"], a["size"]) for a in ev["attachments"]],
                **extra,
            }
        )

    def _patch_event(self, request, params, body, eid):
        ev = self.events.get(eid)
        if ev is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        body = body or {}
        bad = self._validate_event(body, create=False)
        if bad is not None:
            return bad
        before = {a["emailAddress"]["address"].lower() for a in ev["json"].get("attendees", [])}
        changed = [k for k, v in body.items() if k not in ("singleValueExtendedProperties", "attendees") and ev["json"].get(k) != v]
        for k, v in body.items():
            if k != "singleValueExtendedProperties":
                ev["json"][k] = v
        for p in body.get("singleValueExtendedProperties") or []:
            ev["props"][_norm_prop(p["id"])] = (p["id"], p["value"])
        after = [a["emailAddress"]["address"] for a in ev["json"].get("attendees", [])]
        new = [a for a in after if a.lower() not in before]
        old = [a for a in after if a.lower() in before]
        # Exchange sends requests to added attendees and updates to the others
        # when the organizer changes the meeting.
        if new:
            self._notify("request", ev, new)
        if old and changed:
            self._notify("update", ev, old, changed=changed)
        return httpx.Response(200, json=self._event_json(ev))

    def _cancel_event(self, request, params, body, eid):
        ev = self.events.get(eid)
        if ev is None:
            return _err(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if not ev["json"].get("isOrganizer"):
            return _err(400, "ErrorAccessDenied", "Your request can't be completed. You need to be an organizer to cancel a meeting.")
        comment = (body or {}).get("Comment", "")
        self._notify("cancel", ev, [a["emailAddress"]["address"] for a in ev["json"].get("attendees", [])], comment=comment)
        del self.events[eid]  # the organizer's copy goes to Deleted Items
        return httpx.Response(202)

    R = frozenset
    _READ_MAIL = R({"Mail.Read", "Mail.ReadWrite"})
    _WRITE_MAIL = R({"Mail.ReadWrite"})
    _SEND = R({"Mail.Send"})
    _READ_CAL = R({"Calendars.Read", "Calendars.ReadWrite"})
    _WRITE_CAL = R({"Calendars.ReadWrite"})
    _ROUTES = [
        (r"^/mailFolders/([^/]+)$", "GET", _get_folder, _READ_MAIL),
        (r"^/mailFolders/([^/]+)/childFolders$", "GET", _list_children, _READ_MAIL),
        (r"^/mailFolders/([^/]+)/childFolders$", "POST", _create_child, _WRITE_MAIL),
        (r"^/mailFolders/([^/]+)/messages/delta$", "GET", _delta, _READ_MAIL),
        (r"^/mailFolders/([^/]+)/messages$", "GET", _list_messages, _READ_MAIL),
        (r"^/sendMail$", "POST", _send_mail, _SEND),
        (r"^/messages$", "POST", _create_draft, _WRITE_MAIL),
        (r"^/messages/([^/]+)/\$value$", "GET", _get_value, _READ_MAIL),
        (r"^/messages/([^/$]+)$", "GET", _get_message, _READ_MAIL),
        (r"^/messages/([^/]+)/move$", "POST", _move, _WRITE_MAIL),
        (r"^/messages/([^/]+)/send$", "POST", _send_draft, _SEND),
        (r"^/(messages)/([^/]+)/attachments$", "GET", _list_attachments, _READ_MAIL),
        (r"^/(messages)/([^/]+)/attachments$", "POST", _add_attachment, _WRITE_MAIL),
        (r"^/(messages)/([^/]+)/attachments/createUploadSession$", "POST", _create_session, _WRITE_MAIL),
        (r"^/calendar$", "GET", _get_calendar, _READ_CAL),
        (r"^/events$", "GET", _list_events, _READ_CAL),
        (r"^/events$", "POST", _create_event, _WRITE_CAL),
        (r"^/events/([^/]+)$", "PATCH", _patch_event, _WRITE_CAL),
        (r"^/events/([^/]+)/cancel$", "POST", _cancel_event, _WRITE_CAL),
        (r"^/(events)/([^/]+)/attachments$", "GET", _list_attachments, _READ_CAL),
        (r"^/(events)/([^/]+)/attachments$", "POST", _add_attachment, _WRITE_CAL),
        (r"^/(events)/([^/]+)/attachments/createUploadSession$", "POST", _create_session, _WRITE_CAL),
    ]
