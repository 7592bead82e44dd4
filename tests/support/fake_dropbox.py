"""A fake Dropbox API server on loopback, for running the real ``dropbox`` SDK offline.

:class:`FakeDropbox` is a real HTTP server (a thread on 127.0.0.1, random port).
:meth:`FakeDropbox.session` returns a ``requests.Session`` whose adapter sends
the SDK's ``https://api.dropboxapi.com/...`` and ``https://content.dropboxapi.com/...``
calls to it (as ``http://127.0.0.1:PORT/<host>/<path>``), so the SDK's own
request building, token refresh, error parsing and retry code all run. Any
other host is refused: no test can reach the network.

The fake keeps state (namespaces with files, folders, revs and content
hashes, ``fake_dropbox_model``; shared links, shared folders and their members,
whose routes are ``fake_dropbox_sharing``; upload sessions; access tokens) and answers with the JSON shapes of the Dropbox API v2 as
generated from its stone spec (see ``dropbox/files.py``, ``sharing.py``,
``auth.py`` in the installed SDK), including route errors (409 with
``error_summary`` and ``error``), auth errors (401), rate limits (429 with
``Retry-After``), path-root errors (422) and the OAuth token endpoint.

Behaviour worth knowing:
* names compare case-insensitively (``path_lower``), like Dropbox;
* ``mode=add`` on an existing file with identical content returns that file
  (no conflict), like Dropbox without ``strict_conflict``; different content is
  ``path/conflict/file``;
* every upload-style call that carries ``content_hash`` is checked against the
  bytes received (``content_hash_mismatch``);
* faults are injected with :meth:`fail`, :meth:`corrupt_next_upload`,
  :meth:`report_wrong_hash_next`, :meth:`expire_tokens`, :meth:`make_read_only`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from support.fake_dropbox_model import (  # noqa: F401  (content_hash and the model are the fake's API for tests)
    BLOCK,
    Call,
    FakeFile,
    FakeFolder,
    Namespace,
    RouteError,
    content_hash,
    route_error,
    ts,
)
from support.fake_dropbox_sharing import SharingRoutes

API_HOST = "api.dropboxapi.com"
CONTENT_HOST = "content.dropboxapi.com"
CONTENT_ROUTES = {
    "files/upload",
    "files/upload_session/start",
    "files/upload_session/append_v2",
    "files/upload_session/finish",
    "files/download",
}


class FakeDropbox:
    def __init__(
        self,
        app_key: str = "test-app-key",
        app_secret: str = "test-app-secret",
        refresh_token: str = "test-refresh-token",
        team_refresh_token: str = "test-team-refresh-token",
        home_ns: str = "1001",
        team_root_ns: str = "9001",
        team_member_id: str = "dbmid:AAAmember1",
    ):
        self.app_key, self.app_secret = app_key, app_secret
        self.refresh_tokens = {refresh_token: "user", team_refresh_token: "team"}
        self.home_ns, self.team_root_ns = home_ns, team_root_ns
        self.team_member_ids = {team_member_id}
        self.namespaces = {home_ns: Namespace(home_ns), team_root_ns: Namespace(team_root_ns)}
        self.shared_members: dict[str, list[dict[str, str]]] = {}
        self.sessions: dict[str, bytearray] = {}
        self.tokens: dict[str, str] = {}  # access token -> "user" | "team"
        self.expired: set[str] = set()
        self.auth_codes: dict[str, str] = {}
        self.calls: list[Call] = []
        self.token_requests: list[dict[str, str]] = []
        self.faults: dict[str, list[RouteError]] = {}
        self.read_only: set[str] = set()
        self.page_size = 2000
        self.omit_link_metadata = False
        self.hooks: dict[str, list[Any]] = {}
        self._corrupt_next = False
        self._wrong_hash_next = False
        self.counter = itertools.count(1)
        self.sharing = SharingRoutes(self)
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeDropbox:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body in separate writes
            wbufsize = 1 << 16

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-dropbox", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def session(self) -> requests.Session:
        """A session for ``dropbox.Dropbox(session=...)``: Dropbox hosts go to
        this server, anything else is refused."""
        s = requests.Session()
        s.trust_env = False  # no proxies from the environment
        s.mount("https://", _LoopbackAdapter(self.base_url))
        s.mount("http://", _LoopbackAdapter(self.base_url))
        return s

    # ------------------------------------------------------------ test controls

    def fail(self, route: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next ``times`` calls of ``route`` (e.g. "files/upload",
        "oauth2/token") answer ``status`` (429 with Retry-After, or 5xx)."""
        if status == 429:
            ra = 1 if retry_after is None else retry_after
            err = RouteError(
                429,
                {"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"}, "retry_after": ra}},
                {"Retry-After": str(ra)},
            )
        else:
            err = RouteError(status, b"Service Unavailable" if status == 503 else b"Internal Server Error")
        with self.lock:
            self.faults.setdefault(route, []).extend([err] * times)

    def before(self, route: str, fn: Any) -> None:
        """Run ``fn(fake)`` once, just before the next call of ``route`` is handled
        (to simulate another client changing Dropbox meanwhile)."""
        self.hooks.setdefault(route, []).append(fn)

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 expired_access_token."""
        with self.lock:
            self.expired.update(self.tokens)

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()
            self.expired.update(self.tokens)

    def corrupt_next_upload(self) -> None:
        """Flip a byte of the next upload-style body as if damaged in transit."""
        self._corrupt_next = True

    def report_wrong_hash_next(self) -> None:
        """Store the next upload correctly but report a wrong content_hash."""
        self._wrong_hash_next = True

    def make_read_only(self, path: str, ns: str | None = None) -> None:
        """Writes under ``path`` fail with no_write_permission."""
        self.read_only.add(((ns or self.home_ns), path.lower().rstrip("/")))

    def add_auth_code(self, code: str, refresh_token: str) -> None:
        self.auth_codes[code] = refresh_token
        self.refresh_tokens.setdefault(refresh_token, "user")

    def put_file(self, path: str, data: bytes, ns: str | None = None) -> FakeFile:
        with self.lock:
            return self._write(self.namespaces[ns or self.home_ns], path, data)

    def file(self, path: str, ns: str | None = None) -> FakeFile | None:
        return self.namespaces[ns or self.home_ns].files.get(path.lower())

    def members(self, folder: str, ns: str | None = None) -> list[str]:
        f = self.namespaces[ns or self.home_ns].folders.get(folder.lower().rstrip("/"))
        if f is None or f.shared_folder_id is None:
            return []
        return [m["email"] for m in self.shared_members.get(f.shared_folder_id, [])]

    def calls_to(self, route: str) -> list[Call]:
        return [c for c in self.calls if c.route == route]

    # ------------------------------------------------------------ dispatch

    def handle(self, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(raw_path).path.lstrip("/").split("/", 1)
        host, path = parts[0], (parts[1] if len(parts) > 1 else "")
        h = {k.lower(): v for k, v in headers.items()}
        try:
            with self.lock:
                if path == "oauth2/token":
                    return self._json(200, self._token(host, body))
                if not path.startswith("2/"):
                    raise RouteError(404, b"Unknown endpoint")
                route = path[2:]
                return self._api(host, route, h, body)
        except RouteError as e:
            if isinstance(e.body, bytes):
                return e.status, {"Content-Type": "text/plain; charset=utf-8", **e.headers}, e.body
            return self._json(e.status, e.body, e.headers)

    @staticmethod
    def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()

    def _take_fault(self, route: str) -> None:
        queue = self.faults.get(route)
        if queue:
            raise queue.pop(0)

    # ------------------------------------------------------------ oauth

    def _token(self, host: str, body: bytes) -> dict:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        self.token_requests.append(form)
        self.calls.append(Call("oauth2/token", host, {}, form, len(body)))
        self._take_fault("oauth2/token")
        if host != API_HOST:
            raise RouteError(400, b"token endpoint is on api.dropboxapi.com")
        if form.get("client_id") != self.app_key or form.get("client_secret") != self.app_secret:
            raise RouteError(400, {"error": "invalid_client", "error_description": "Invalid client_id or client_secret"})
        grant = form.get("grant_type")
        if grant == "refresh_token":
            kind = self.refresh_tokens.get(form.get("refresh_token", ""))
            if kind is None:
                raise RouteError(400, {"error": "invalid_grant", "error_description": "refresh token is invalid or revoked"})
            token = "sl." + secrets.token_urlsafe(16)
            self.tokens[token] = kind
            return {"access_token": token, "token_type": "bearer", "expires_in": 14400}
        if grant == "authorization_code":
            refresh = self.auth_codes.pop(form.get("code", ""), None)
            if refresh is None:
                raise RouteError(400, {"error": "invalid_grant", "error_description": "code doesn't exist or has expired"})
            token = "sl." + secrets.token_urlsafe(16)
            self.tokens[token] = "user"
            return {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 14400,
                "refresh_token": refresh,
                "scope": "account_info.read files.content.read files.content.write files.metadata.read sharing.read sharing.write",
                "uid": "123456",
                "account_id": "dbid:" + "A" * 35,
            }
        raise RouteError(400, {"error": "unsupported_grant_type"})

    # ------------------------------------------------------------ API

    def _api(self, host: str, route: str, h: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        upload_style = route in CONTENT_ROUTES
        raw_arg = h.get("dropbox-api-arg") if upload_style else (body.decode() or "null")
        arg = json.loads(raw_arg) if raw_arg else None
        self.calls.append(Call(route, host, h, arg, len(body)))
        expected_host = CONTENT_HOST if upload_style else API_HOST
        if host != expected_host:
            raise RouteError(400, f"Error in call to API function {route!r}: wrong host {host}".encode())
        self._take_fault(route)
        if self.hooks.get(route):
            self.hooks[route].pop(0)(self)
        self._authenticate(route, h)
        ns = self._namespace(h)
        area, _, name = route.partition("/")
        routes = self.sharing if area == "sharing" else self
        handler = getattr(routes, name.replace("/", "__") if area == "sharing" else "_r_" + route.replace("/", "__"), None)
        if handler is None:
            raise RouteError(400, f"Unknown API function: {route!r}".encode())
        if route == "files/download":
            meta, data = handler(ns, arg)
            return 200, {"Content-Type": "application/octet-stream", "Dropbox-API-Result": json.dumps(meta)}, data
        if upload_style:
            if self._corrupt_next and body:
                self._corrupt_next = False
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            if arg.get("content_hash") and arg["content_hash"] != content_hash(body):
                raise route_error("content_hash_mismatch", {".tag": "content_hash_mismatch"})
            return self._json(200, handler(ns, arg, body))
        return self._json(200, handler(ns, arg))

    def _authenticate(self, route: str, h: dict[str, str]) -> None:
        auth = h.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or token not in self.tokens:
            raise RouteError(401, {"error_summary": "invalid_access_token/..", "error": {".tag": "invalid_access_token"}})
        if token in self.expired:
            raise RouteError(401, {"error_summary": "expired_access_token/..", "error": {".tag": "expired_access_token"}})
        if self.tokens[token] == "team":
            member = h.get("dropbox-api-select-user")
            if member is None:
                raise RouteError(
                    400,
                    f'Error in call to API function "{route}": This API function operates on a single Dropbox '
                    "account, but the OAuth 2 access token you provided is for an entire Dropbox Business team. "
                    'Provide the "Dropbox-API-Select-User" HTTP header.'.encode(),
                )
            if member not in self.team_member_ids:
                raise RouteError(401, {"error_summary": "invalid_select_user/..", "error": {".tag": "invalid_select_user"}})

    def _namespace(self, h: dict[str, str]) -> Namespace:
        raw = h.get("dropbox-api-path-root")
        if raw is None:
            return self.namespaces[self.home_ns]
        root = json.loads(raw)
        tag = root.get(".tag")
        ns_id = {"home": self.home_ns, "root": root.get("root"), "namespace_id": root.get("namespace_id")}.get(tag)
        if ns_id not in self.namespaces or (tag == "root" and ns_id != self.team_root_ns):
            raise RouteError(422, {"error_summary": "no_permission/..", "error": {".tag": "no_permission"}})
        return self.namespaces[ns_id]

    # ------------------------------------------------------------ file system

    def _new_rev(self) -> str:
        return f"{next(self.counter):015x}"

    def _new_id(self) -> str:
        return "id:" + secrets.token_urlsafe(12)

    @staticmethod
    def check_path(path: str) -> str:
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise route_error("path/malformed_path", {".tag": "path", "path": {".tag": "malformed_path"}})
        return path

    def lookup(self, ns: Namespace, path: str) -> FakeFile | FakeFolder:
        self.check_path(path)
        key = path.lower()
        found = ns.files.get(key) or ns.folders.get(key)
        if found is None:
            # A file where a parent folder should be: not_folder.
            parents = key.split("/")
            for i in range(2, len(parents)):
                if "/".join(parents[:i]) in ns.files:
                    raise route_error("path/not_folder", {".tag": "path", "path": {".tag": "not_folder"}})
            raise route_error("path/not_found", {".tag": "path", "path": {".tag": "not_found"}})
        return found

    def ensure_folders(self, ns: Namespace, folder_path: str, write_error: Any) -> None:
        parts = [p for p in folder_path.split("/") if p]
        for i in range(1, len(parts) + 1):
            display = "/" + "/".join(parts[:i])
            key = display.lower()
            if key in ns.files:
                raise write_error({".tag": "conflict", "conflict": {".tag": "file_ancestor"}})
            ns.folders.setdefault(key, FakeFolder(display, self._new_id()))

    def _write(self, ns: Namespace, path: str, data: bytes, mode: dict | None = None, write_error: Any = None) -> FakeFile:
        mode = mode or {".tag": "add"}
        if write_error is None:

            def write_error(reason: dict) -> RouteError:
                return route_error("path/" + reason[".tag"], {".tag": "path", "reason": reason, "upload_session_id": ""})

        self.check_path(path)
        key = path.lower()
        if any(key == ro or key.startswith(ro + "/") for nsid, ro in self.read_only if nsid == ns.ns_id):
            raise write_error({".tag": "no_write_permission"})
        if key in ns.folders:
            raise write_error({".tag": "conflict", "conflict": {".tag": "folder"}})
        self.ensure_folders(ns, path.rpartition("/")[0], write_error)
        existing = ns.files.get(key)
        if existing is not None:
            if existing.data == data:
                return existing  # identical content is not a conflict (no strict_conflict)
            if mode[".tag"] == "add":
                raise write_error({".tag": "conflict", "conflict": {".tag": "file"}})
        f = FakeFile(
            path_display=existing.path_display if existing else path,
            data=bytes(data),
            rev=self._new_rev(),
            id=existing.id if existing else self._new_id(),
            server_modified=datetime.now(UTC),
        )
        ns.files[key] = f
        return f

    def _file_meta(self, f: FakeFile, tag: bool = True) -> dict:
        meta = {
            "name": f.path_display.rpartition("/")[2],
            "path_lower": f.path_display.lower(),
            "path_display": f.path_display,
            "id": f.id,
            "client_modified": ts(f.server_modified),
            "server_modified": ts(f.server_modified),
            "rev": f.rev,
            "size": len(f.data),
            "is_downloadable": True,
            "content_hash": f.content_hash,
        }
        if self._wrong_hash_next:
            self._wrong_hash_next = False
            meta["content_hash"] = "0" * 64
        return {".tag": "file", **meta} if tag else meta

    @staticmethod
    def _folder_meta(f: FakeFolder) -> dict:
        meta = {
            ".tag": "folder",
            "name": f.path_display.rpartition("/")[2],
            "path_lower": f.path_display.lower(),
            "path_display": f.path_display,
            "id": f.id,
        }
        if f.shared_folder_id:
            meta["shared_folder_id"] = f.shared_folder_id
            meta["sharing_info"] = {"read_only": False, "shared_folder_id": f.shared_folder_id, "traverse_only": False, "no_access": False}
        return meta

    # ------------------------------------------------------------ routes: files

    def _r_files__get_metadata(self, ns: Namespace, arg: dict) -> dict:
        item = self.lookup(ns, arg["path"])
        return self._file_meta(item) if isinstance(item, FakeFile) else self._folder_meta(item)

    def _r_files__upload(self, ns: Namespace, arg: dict, body: bytes) -> dict:
        return self._file_meta(self._write(ns, arg["path"], body, arg.get("mode")), tag=False)

    def _r_files__upload_session__start(self, ns: Namespace, arg: dict, body: bytes) -> dict:
        sid = "sess-" + secrets.token_hex(8)
        self.sessions[sid] = bytearray(body)
        return {"session_id": sid}

    def _session(self, cursor: dict) -> bytearray:
        buf = self.sessions.get(cursor["session_id"])
        if buf is None:
            raise route_error("not_found", {".tag": "not_found"})
        if cursor["offset"] != len(buf):
            raise route_error("incorrect_offset", {".tag": "incorrect_offset", "correct_offset": len(buf)})
        return buf

    def _r_files__upload_session__append_v2(self, ns: Namespace, arg: dict, body: bytes) -> None:
        self._session(arg["cursor"]).extend(body)
        return None

    def _r_files__upload_session__finish(self, ns: Namespace, arg: dict, body: bytes) -> dict:
        try:
            buf = self._session(arg["cursor"])
        except RouteError as e:
            raise route_error("lookup_failed", {".tag": "lookup_failed", "lookup_failed": e.body["error"]}) from None
        data = bytes(buf) + body
        commit = arg["commit"]

        def write_error(reason: dict) -> RouteError:
            return route_error("path/" + reason[".tag"], {".tag": "path", "path": reason})

        f = self._write(ns, commit["path"], data, commit.get("mode"), write_error)
        del self.sessions[arg["cursor"]["session_id"]]
        return self._file_meta(f, tag=False)

    def _r_files__download(self, ns: Namespace, arg: dict) -> tuple[dict, bytes]:
        item = self.lookup(ns, arg["path"])
        if isinstance(item, FakeFolder):
            raise route_error("path/not_file", {".tag": "path", "path": {".tag": "not_file"}})
        return self._file_meta(item, tag=False), item.data

    def _children(self, ns: Namespace, folder: str) -> list[dict]:
        prefix = folder.lower() + "/"
        out = []
        for key, f in sorted(ns.folders.items()):
            if key.startswith(prefix) and "/" not in key[len(prefix) :]:
                out.append(self._folder_meta(f))
        for key, f in sorted(ns.files.items()):
            if key.startswith(prefix) and "/" not in key[len(prefix) :]:
                out.append(self._file_meta(f))
        return out

    def _page(self, ns: Namespace, folder: str, offset: int, limit: int) -> dict:
        entries = self._children(ns, folder)
        page = entries[offset : offset + limit]
        nxt = offset + len(page)
        cursor = json.dumps({"ns": ns.ns_id, "folder": folder, "offset": nxt, "limit": limit})
        return {"entries": page, "cursor": cursor, "has_more": nxt < len(entries)}

    def _r_files__list_folder(self, ns: Namespace, arg: dict) -> dict:
        path = arg["path"]
        if path != "":
            item = self.lookup(ns, path)
            if isinstance(item, FakeFile):
                raise route_error("path/not_folder", {".tag": "path", "path": {".tag": "not_folder"}})
        limit = min(arg.get("limit") or self.page_size, self.page_size)
        return self._page(ns, path, 0, limit)

    def _r_files__list_folder__continue(self, ns: Namespace, arg: dict) -> dict:
        c = json.loads(arg["cursor"])
        return self._page(self.namespaces[c["ns"]], c["folder"], c["offset"], c["limit"])

    # ------------------------------------------------------------ routes: users

    def _r_users__get_current_account(self, ns: Namespace, arg: Any) -> dict:
        return {
            "account_id": "dbid:" + "A" * 35,
            "name": {
                "given_name": "Kim",
                "surname": "Kansli",
                "familiar_name": "Kim",
                "display_name": "Kim Kansli",
                "abbreviated_name": "KK",
            },
            "email": "kansli@example.se",
            "email_verified": True,
            "disabled": False,
            "locale": "sv",
            "referral_link": "https://db.tt/x",
            "is_paired": False,
            "account_type": {".tag": "business"},
            "root_info": {
                ".tag": "team",
                "root_namespace_id": self.team_root_ns,
                "home_namespace_id": self.home_ns,
                "home_path": "/Kim Kansli",
            },
        }


class _LoopbackAdapter(HTTPAdapter):
    """Sends Dropbox API hosts to the fake server; refuses every other host."""

    ALLOWED = {API_HOST, CONTENT_HOST}

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        u = urllib.parse.urlsplit(request.url)
        if u.netloc not in self.ALLOWED:
            raise requests.ConnectionError(f"fake_dropbox: refusing to contact {u.netloc} (tests are offline)")
        request.url = f"{self.base_url}/{u.netloc}{u.path}" + (f"?{u.query}" if u.query else "")
        return super().send(request, **kwargs)
