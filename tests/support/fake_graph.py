"""A stateful fake of the Microsoft Graph mail/calendar API and the Entra ID
token endpoint, mounted with respx at the httpx transport level.

Everything the adapter does goes through real code: ``GraphTransport`` uses
httpx, and msal (1.39) runs its real client-credentials code — tenant
discovery, token request, token cache, expiry handling — through the
adapter's ``graph_http.MsalHttpClient``, which is backed by the same httpx client. So
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

Split by protocol area: ``fake_entra.FakeEntra`` (the token endpoint, held as
``FakeGraph.entra``), ``fake_graph_calendar.FakeCalendar`` (events, held as
``FakeGraph.calendar``), ``fake_graph_odata`` (filters, property ids, error
shape); this module keeps the mailbox (folders, messages, delta, send,
attachments, upload sessions), the injected faults and the routing.
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
from urllib.parse import unquote

import httpx
import respx

from kcg_mail.core.config_model import GraphSettings
from support.fake_entra import FakeEntra
from support.fake_graph_calendar import FakeCalendar
from support.fake_graph_odata import NAME_FILTER, QUOTED, graph_error, norm_prop, query, unq

GRAPH = "https://graph.microsoft.com/v1.0"
UPLOAD = "https://outlook.office.com"
ALL_ROLES = ("Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite")
WELL_KNOWN = ("inbox", "sentitems", "drafts", "deleteditems")
MAX_REQUEST = 4 * 1024 * 1024

def _on_calendar(name: str) -> Any:
    """A route handler that hands the request to the mailbox's ``FakeCalendar``."""

    def handler(graph: FakeGraph, request: httpx.Request, params: dict[str, str], body: Any, *groups: str) -> httpx.Response:
        response: httpx.Response = getattr(graph.calendar, name)(request, params, body, *groups)
        return response

    return handler


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
        #: the tenant's token endpoint: Graph accepts the tokens it issued
        self.entra = FakeEntra(tenant_id, client_id, client_secret, set(roles))
        self.access_policy_excludes_mailbox = False
        #: serve $value without Authentication-Results (a MIME rebuilt by the store)
        self.mime_without_auth_results = False
        #: answer PidTagMessageSize when ``$expand`` asks for it (False: a store without it)
        self.message_size_known = True
        self.page_size = 10  # server-side max page size for delta
        self.calls: list[tuple[str, str]] = []
        self.outbox: list[dict[str, Any]] = []  # what left the mailbox
        self.upload_puts: list[dict[str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
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
        #: events and meeting messages (``FakeCalendar``), sharing the outbox and ids
        self.calendar = FakeCalendar(mailbox, self.outbox, self._new_id)
        for name in WELL_KNOWN:
            fid = self._new_id("FOLDER")
            self.folders[fid] = {"id": fid, "displayName": name.capitalize(), "wellKnown": name, "parentFolderId": None}

    # ------------------------------------------------------- the app in Entra (FakeEntra)

    @property
    def tenant_id(self) -> str:
        return self.entra.tenant_id

    @property
    def client_id(self) -> str:
        return self.entra.client_id

    @property
    def client_secret(self) -> str:
        return self.entra.client_secret

    def settings(self, **fields: str) -> GraphSettings:
        """transport.yaml's ``mail:`` for this mailbox and app (``fields`` over them);
        the client secret goes apart (``GraphClient(fake.settings(), fake.client_secret)``)."""
        mine = {"tenant_id": self.tenant_id, "client_id": self.client_id, "mailbox": self.mailbox}
        return GraphSettings(kind="graph", **{**mine, **fields})

    @property
    def roles(self) -> set[str]:
        return self.entra.roles

    @roles.setter
    def roles(self, value: set[str]) -> None:
        self.entra.roles = set(value)

    @property
    def token_lifetime(self) -> int:
        return self.entra.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self.entra.token_lifetime = value

    @property
    def token_error(self) -> dict[str, Any] | None:
        return self.entra.token_error

    @token_error.setter
    def token_error(self, value: dict[str, Any] | None) -> None:
        self.entra.token_error = value

    @property
    def token_requests(self) -> int:
        return self.entra.token_requests

    @property
    def discovery_requests(self) -> int:
        return self.entra.discovery_requests

    # ---------------------------------------------------------------- helpers for tests

    @contextmanager
    def running(self) -> Iterator[FakeGraph]:
        """respx active for the whole httpx stack; any unmocked host is an error."""
        with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
            self.mount(router)
            yield self

    def mount(self, router: respx.MockRouter) -> None:
        router.route(host="graph.microsoft.com").mock(side_effect=self._graph)
        router.route(host="login.microsoftonline.com").mock(side_effect=self.entra.handle)
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
        self.entra.expire_tokens()

    def respond(self, email: str, response: str) -> None:
        """An attendee answers (accepted, declined, tentativelyAccepted): see ``FakeCalendar.respond``."""
        self.calendar.respond(email, response)

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        return self.calendar.events

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
            "props": {norm_prop(k): (k, v) for k, v in (props or {}).items()},
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

    # ---------------------------------------------------------------- upload sessions

    def _upload(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        m = re.search(r"AttachmentSessions\('([^']+)'\)", unquote(request.url.path))
        session = self.sessions.get(m.group(1)) if m else None
        if request.method != "PUT" or session is None:
            return graph_error(404, "ErrorItemNotFound", "The upload session was not found.")
        self.upload_puts.append({"authorization": request.headers.get("Authorization"), "size": len(request.content)})
        if request.url.params.get("authtoken") != session["authtoken"]:
            return graph_error(401, "InvalidAuthenticationToken", "The upload URL's authtoken is not valid.")
        if "Authorization" in request.headers:
            # Documented: the uploadUrl is pre-authenticated; do not send an
            # Authorization header with the PUT (the fake refuses it).
            return graph_error(400, "InvalidRequest", "Authorization header is not expected on the pre-authenticated upload URL.")
        cr = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", request.headers.get("Content-Range", ""))
        if not cr:
            return graph_error(400, "InvalidRequest", "Missing or malformed Content-Range header.")
        start, end, total = map(int, cr.groups())
        body = request.content
        if total != session["size"] or start != len(session["data"]) or end - start + 1 != len(body):
            return graph_error(416, "InvalidRange", f"Expected range starting at {len(session['data'])}.")
        if len(body) > 4 * 1024 * 1024:
            return graph_error(413, "RequestBodyTooLarge", "A chunk may be at most 4 MB.")
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
                return graph_error(f.status, f.code, "Injected fault.", headers)
        # authentication
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        tok = self.entra.tokens.get(auth[7:])
        if tok is None:
            return graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if tok["exp"] < time.time():
            return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if not tok["roles"]:
            return graph_error(401, "InvalidAuthenticationToken", "Either scp or roles claim need to be present in the token.")
        m = re.match(r"^/v1\.0/users/([^/]+)(/.*)?$", path)
        if not m:
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        if m.group(1).lower() != self.mailbox.lower():
            return graph_error(404, "ErrorInvalidUser", f"The requested user '{m.group(1)}' is invalid.")
        if self.access_policy_excludes_mailbox:
            return graph_error(
                403, "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            )
        rest = re.sub(r"\('([^']*)'\)", r"/\1", m.group(2) or "")  # mailFolders('inbox') -> mailFolders/inbox
        params = {k: v for k, v in request.url.params.items()}
        body: Any = None
        if request.method in ("POST", "PATCH") and request.content:
            if len(request.content) > MAX_REQUEST:
                return graph_error(413, "RequestBodyTooLarge", "The maximum request length supported is 4MB.")
            try:
                body = json.loads(request.content)
            except ValueError:
                return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        for pattern, method, handler, needs in self._ROUTES:
            rm = re.match(pattern, rest)
            if rm and method == request.method:
                if not (tok["roles"] & needs):
                    return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
                return handler(self, request, params, body, *rm.groups())
        return graph_error(400, "BadRequest", f"Resource not found for the segment '{rest}'.")

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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return httpx.Response(200, json=self._folder_json(f))

    def _list_children(self, request, params, body, fid):
        parent = self._resolve_folder(fid)
        if parent is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        kids = [f for f in self.folders.values() if f["parentFolderId"] == parent["id"]]
        if "$filter" in params:
            fm = NAME_FILTER.match(params["$filter"])
            if not fm:
                return graph_error(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
            kids = [f for f in kids if f["displayName"].lower() == unq(fm.group(1)).lower()]
        return httpx.Response(200, json={"value": [self._folder_json(f) for f in kids]})

    def _create_child(self, request, params, body, fid):
        parent = self._resolve_folder(fid)
        name = (body or {}).get("displayName")
        if parent is None or not name:
            return graph_error(400, "ErrorInvalidRequest", "displayName is required.")
        if any(f["parentFolderId"] == parent["id"] and f["displayName"].lower() == name.lower() for f in self.folders.values()):
            return graph_error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        new = {"id": self._new_id("FOLDER"), "displayName": name, "wellKnown": None, "parentFolderId": parent["id"]}
        self.folders[new["id"]] = new
        return httpx.Response(201, json=self._folder_json(new))

    def _list_messages(self, request, params, body, fid):
        folder = self._resolve_folder(fid)
        if folder is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        found = query([m for m in self.messages.values() if m["folder"] == folder["id"]], params)
        if isinstance(found, httpx.Response):
            return found
        msgs, expand_ids = found
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
            wanted = {norm_prop(i) for i in expand_ids}
            props = [{"id": orig, "value": v} for k, (orig, v) in msg["props"].items() if k in wanted]
            if props:
                out["singleValueExtendedProperties"] = props
        return out

    # --- delta

    def _delta(self, request, params, body, fid):
        if self._resolve_folder(fid) is None or self._resolve_folder(fid)["wellKnown"] != "inbox":
            return graph_error(400, "ErrorInvalidRequest", "The fake supports delta on the inbox only.")
        expired = graph_error(410, "SyncStateNotFound", "The sync state is not found or has expired. Start a new sync.")
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        out: dict[str, Any] = {"id": mid}
        if "internetmessageheaders" in params.get("$select", "").lower():
            out["internetMessageHeaders"] = self._headers(msg)
        if "$expand" in params:
            em = re.match(r"^singleValueExtendedProperties\(\$filter=(.*)\)$", params["$expand"])
            if not em:
                return graph_error(400, "BadRequest", "Invalid $expand.")
            props = []
            for pid in (unq(x) for x in re.findall(r"id eq " + QUOTED, em.group(1))):
                if norm_prop(pid)[:2] == ("integer", "0x0e08") and self.message_size_known:
                    props.append({"id": "Integer 0xe08", "value": str(len(msg.get("mime") or b""))})
                elif norm_prop(pid) in msg["props"]:
                    orig, value = msg["props"][norm_prop(pid)]
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        dest = self._resolve_folder((body or {}).get("destinationId", ""))
        if dest is None:
            return graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
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
                return graph_error(
                    400, "InvalidInternetMessageHeader",
                    f"The internet message header name '{h.get('name')}' should start with 'x-' or 'X-'.",
                )
        for a in m.get("attachments") or []:
            if a.get("@odata.type") != "#microsoft.graph.fileAttachment" or not a.get("name"):
                return graph_error(400, "ErrorInvalidRequest", "Invalid attachment.")
            try:
                base64.b64decode(a["contentBytes"], validate=True)
            except (KeyError, ValueError):
                return graph_error(400, "ErrorInvalidRequest", "contentBytes is not valid base64.")
        imid = m.get("internetMessageId")
        if imid is not None and not re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", imid):
            return graph_error(400, "InvalidInternetMessageId", "The internetMessageId is not valid.")
        return None

    def _store_message(self, m: dict[str, Any], folder: str, draft: bool) -> dict[str, Any]:
        mid = self._new_id("MSG")
        props = {norm_prop(p["id"]): (p["id"], p["value"]) for p in m.get("singleValueExtendedProperties") or []}
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
            return graph_error(400, "ErrorInvalidRequest", "The message is missing.")
        if not (m.get("toRecipients") or m.get("ccRecipients") or m.get("bccRecipients")):
            return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if not msg["json"].get("isDraft"):
            return graph_error(400, "ErrorInvalidOperation", "Only a draft can be sent.")
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return httpx.Response(
            200, json={"value": [{"id": a["id"], "name": a["name"], "size": a["size"], "contentType": a["contentType"]} for a in item["attachments"]]}
        )

    def _add_attachment(self, request, params, body, kind, iid):
        item = self._item(kind, iid)
        if item is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
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
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        ai = (body or {}).get("AttachmentItem") or {}
        if ai.get("attachmentType") != "file" or not ai.get("name") or not isinstance(ai.get("size"), int):
            return graph_error(400, "ErrorInvalidRequest", "AttachmentItem needs attachmentType 'file', name and size.")
        if ai["size"] > 150 * 1024 * 1024:
            return graph_error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "Attachment too large.")
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
        (r"^/calendar$", "GET", _on_calendar("get_calendar"), _READ_CAL),
        (r"^/events$", "GET", _on_calendar("list_events"), _READ_CAL),
        (r"^/events$", "POST", _on_calendar("create_event"), _WRITE_CAL),
        (r"^/events/([^/]+)$", "PATCH", _on_calendar("patch_event"), _WRITE_CAL),
        (r"^/events/([^/]+)/cancel$", "POST", _on_calendar("cancel_event"), _WRITE_CAL),
        (r"^/(events)/([^/]+)/attachments$", "GET", _list_attachments, _READ_CAL),
        (r"^/(events)/([^/]+)/attachments$", "POST", _add_attachment, _WRITE_CAL),
        (r"^/(events)/([^/]+)/attachments/createUploadSession$", "POST", _create_session, _WRITE_CAL),
    ]
