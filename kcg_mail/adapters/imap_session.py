"""One IMAP account on one connection: connect (implicit TLS, STARTTLS or plain
on loopback), log in (UTF-8 passwords through SASL PLAIN), the server's
namespace and separator, mailbox names in modified UTF-7, selecting, creating
folders on first use, checking responses, and moving a message (UID MOVE, or
COPY + STORE \\Deleted + EXPUNGE where the server has no MOVE).

Folder names are given with ``/`` as the hierarchy separator and without the
personal namespace prefix (``"processed"``, ``"Archive/kcg"``); the session
asks the server for its prefix and separator, so ``"processed"`` becomes
``INBOX.processed`` on a Courier-style server and ``processed`` on Dovecot.
A name that already starts with the server's prefix is used as it is.

The connection is opened on first use and kept; ``run`` retries an operation
on a fresh connection after a transient fault (``mail_faults.Retry``).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from kcg_mail.ports import Check, TransportError

from .mail_faults import Retry, connection_problem, describe
from .server_login import Security, ServerLogin, closed_on_failure

log = logging.getLogger(__name__)

T = TypeVar("T")

ImapSecurity = Security

#: How many messages one UID FETCH asks for.
FETCH_BATCH = 50

_UID_RE = re.compile(rb"\bUID (\d+)")
_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
_SIZE_RE = re.compile(rb"UID (\d+).*?RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*?UID (\d+)")


# --------------------------------------------------------------------------- mailbox names


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 5.1.3) for mailbox names."""
    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            b = base64.b64encode("".join(buf).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append("&" + b.decode("ascii") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(raw: bytes) -> str:
    s = raw.decode("ascii", errors="replace")
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "&":
            j = s.find("-", i)
            if j < 0:
                out.append(s[i:])
                break
            chunk = s[i + 1 : j]
            if not chunk:
                out.append("&")
            else:
                b = chunk.replace(",", "/")
                b += "=" * (-len(b) % 4)
                out.append(base64.b64decode(b).decode("utf-16-be", errors="replace"))
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def wire_name(mailbox: str) -> str:
    """A mailbox name as it goes on the wire: modified UTF-7, quoted."""
    return quote(encode_mutf7(mailbox))


def _unquote(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return decode_mutf7(raw)


# --------------------------------------------------------------------------- responses


def ok(what: str, typ: str, data: list[Any]) -> list[Any]:
    """``data`` of an OK response; anything else raises ``imaplib.IMAP4.error``."""
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{what}: {typ} {detail}")
    return data


def uids_of(data: list[Any]) -> list[int]:
    """The UIDs of a UID SEARCH answer."""
    first = data[0] if data else None
    return [int(x) for x in first.split()] if isinstance(first, bytes) else []


def fetch_items(data: list[Any]) -> list[tuple[int, bytes, datetime | None]]:
    """(uid, literal, internal date) of a UID FETCH answer. The server may put
    UID and INTERNALDATE before or after the literal."""
    out: list[tuple[int, bytes, datetime | None]] = []
    i = 0
    while i < len(data):
        item = data[i]
        if isinstance(item, tuple):
            head, body = item[0], item[1]
            tail = b""
            if i + 1 < len(data) and isinstance(data[i + 1], bytes):
                tail = data[i + 1]
                i += 1
            meta = head + b" " + tail
            m = _UID_RE.search(meta)
            if m:
                when = None
                d = _INTERNALDATE_RE.search(meta)
                if d:
                    with contextlib.suppress(ValueError):
                        when = datetime.strptime(d.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
                out.append((int(m.group(1)), body, when))
        i += 1
    return out


def oversized(data: list[Any], limit: int) -> set[int]:
    """UIDs of a ``(UID RFC822.SIZE)`` answer whose size is above ``limit``."""
    out = set()
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        m = _SIZE_RE.search(line)
        if m:
            uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            if int(size) > limit:
                out.add(int(uid))
    return out


# --------------------------------------------------------------------------- the session


@dataclass(eq=False, repr=False)
class ImapSession(ServerLogin):
    """One IMAP account, one connection at a time."""

    protocol = "imap"

    _conn: imaplib.IMAP4 | None = field(default=None, init=False)
    #: (mailbox, read-only) selected on ``_conn``
    _selected: tuple[str, bool] | None = field(default=None, init=False)
    #: the personal namespace: prefix and hierarchy separator (None: not asked yet)
    _prefix: str = field(default="", init=False)
    _delim: str | None = field(default=None, init=False)
    _known_folders: set[str] = field(default_factory=set, init=False)

    def twin(self, retry: Retry) -> ImapSession:
        """The same account on a connection of its own (the push listener's)."""
        return ImapSession(self.host, self.port, self.username, self.password, security=self.security,
                           ssl_context=self.ssl_context, timeout=self.timeout, retry=retry)

    # ------------------------------------------------------------------ connection
    def connection(self) -> imaplib.IMAP4:
        """The logged-in connection, opened on first use."""
        if self._conn is None:
            conn = self._connect()
            self._conn, self._selected = conn, None
            self._discover_namespace(conn)
        return self._conn

    def _connect(self) -> imaplib.IMAP4:
        conn = self.open_connection(imaplib.IMAP4, imaplib.IMAP4_SSL, context_arg="ssl_context")
        with closed_on_failure(conn.shutdown):
            if self.security == "starttls":
                if "STARTTLS" not in conn.capabilities:
                    raise self.no_starttls(tls_port=993)
                conn.starttls(ssl_context=self.ssl_context)
            try:
                self._login(conn)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                text = describe(exc)
                if "UNAVAILABLE" in text or "temporar" in text.lower():
                    raise imaplib.IMAP4.abort(text) from exc
                raise TransportError(
                    f"IMAP login as {self.username!r} on {self.host}:{self.port} refused: "
                    f"wrong user or password ({text})"
                ) from exc
        return conn

    def _login(self, conn: imaplib.IMAP4) -> None:
        creds = self.plain_credentials()
        if creds is None:
            conn.login(self.username, self.password)
        else:  # imaplib's LOGIN only sends ASCII
            conn.authenticate("PLAIN", lambda _challenge: creds)
        # The capabilities before login are a subset (Dovecot adds MOVE, NAMESPACE,
        # UIDPLUS... after it); imaplib does not refresh them itself.
        typ, data = conn.capability()
        last = data[-1] if data else None
        if typ == "OK" and isinstance(last, bytes) and last:
            conn.capabilities = tuple(last.decode("ascii", "replace").upper().split())

    def _discover_namespace(self, conn: imaplib.IMAP4) -> None:
        if self._delim is not None:
            return
        prefix, delim = "", None
        if "NAMESPACE" in conn.capabilities:
            typ, data = conn.namespace()
            first = data[0] if data else None
            if typ == "OK" and isinstance(first, bytes):
                m = re.match(rb'\(\("((?:[^"\\]|\\.)*)" (?:"((?:[^"\\]|\\.)*)"|NIL)', first)
                if m:
                    prefix = _unquote(b'"' + m.group(1) + b'"')
                    if m.group(2) is not None:
                        delim = m.group(2).decode().replace("\\\\", "\\")
        if delim is None:
            typ, data = conn.list('""', '""')
            first = data[0] if data else None
            if typ == "OK" and isinstance(first, bytes):
                m = _LIST_RE.match(first)
                if m and m.group("delim") != b"NIL":
                    delim = m.group("delim")[1:-1].decode().replace("\\\\", "\\")
        self._prefix, self._delim = prefix, delim or "/"

    @property
    def separator(self) -> str | None:
        """The server's hierarchy separator (None before the first connection)."""
        return self._delim

    def drop(self) -> None:
        """Forget the connection without a goodbye (after a fault, or from another
        thread to end a blocking IDLE: no LOGOUT exchange races its reader)."""
        conn, self._conn, self._selected = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def close(self) -> None:
        """Log out and close the connection."""
        conn, self._conn, self._selected = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.logout()

    def run(self, what: str, fn: Callable[[imaplib.IMAP4], T]) -> T:
        """``fn(connection)``, retried on a fresh connection after a transient fault."""
        return self.retry.run(what, lambda: fn(self.connection()), on_fault=self.drop)

    # ------------------------------------------------------------------ mailboxes
    def mailbox(self, name: str) -> str:
        """The server's mailbox name for a configured ``/``-separated folder name."""
        self.connection()
        if name.upper() == "INBOX":
            return "INBOX"
        if self._prefix and (name.startswith(self._prefix) or name.upper().startswith(self._prefix.upper())):
            return name
        return self._prefix + name.replace("/", self._delim or "/")

    def exists(self, mailbox: str) -> bool:
        if mailbox in self._known_folders:
            return True
        typ, data = self.connection().list('""', wire_name(mailbox))
        found = typ == "OK" and any(
            isinstance(d, bytes) and b"\\NonExistent" not in d and b"\\Noselect" not in d for d in data if d
        )
        if found:
            self._known_folders.add(mailbox)
        return found

    def ensure(self, mailbox: str) -> bool:
        """Create ``mailbox`` when missing. True when it was created."""
        if self.exists(mailbox):
            return False
        conn = self.connection()
        typ, data = conn.create(wire_name(mailbox))
        if typ != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            if "ALREADYEXISTS" not in text.upper() and not self.exists(mailbox):
                raise TransportError(
                    f"cannot create IMAP folder {mailbox!r} for {self.username}: {text} "
                    "(create it by hand or ask the mail admin for permission)"
                )
        with contextlib.suppress(Exception):
            conn.subscribe(wire_name(mailbox))
        self._known_folders.add(mailbox)
        log.info("created IMAP folder %s", mailbox)
        return True

    def select(self, mailbox: str, *, readonly: bool = False, force: bool = False) -> None:
        """Select ``mailbox``; ``force`` re-selects (fresh UIDNEXT, UIDVALIDITY)."""
        if self._selected == (mailbox, readonly) and not force:
            return
        typ, data = self.connection().select(wire_name(mailbox), readonly=readonly)
        ok(f"select {mailbox}", typ, data)
        self._selected = (mailbox, readonly)

    def untagged_int(self, name: str) -> int | None:
        """A number the server sent untagged (``UIDVALIDITY``, ``UIDNEXT``) on the last select."""
        vals = self.connection().untagged_responses.get(name)
        if not vals:
            return None
        last = vals[-1]
        try:
            return int(last) if isinstance(last, (bytes, str)) else None
        except ValueError:
            return None

    def has(self, capability: str) -> bool:
        return capability in self.connection().capabilities

    # ------------------------------------------------------------------ messages
    def append(self, mailbox: str, flags: str, date: str, data: bytes) -> None:
        """APPEND ``data`` to ``mailbox`` (created on first use)."""
        self.ensure(mailbox)
        typ, resp = self.connection().append(wire_name(mailbox), flags, date, data)
        ok(f"append to {mailbox}", typ, resp)

    def fetch(self, mailbox: str, uids: list[int], items: str) -> list[Any]:
        """UID FETCH ``items`` of ``uids`` in the selected ``mailbox``, checked."""
        typ, data = self.connection().uid("FETCH", ",".join(map(str, uids)), items)
        return ok(f"fetch {mailbox}", typ, data)

    def delete(self, uid: int, what: str = "message") -> None:
        """Remove ``uid`` from the selected mailbox: STORE \\Deleted, then UID
        EXPUNGE (or EXPUNGE where the server has no UIDPLUS)."""
        conn = self.connection()
        typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        ok(f"flag {what} as deleted", typ, data)
        typ, data = conn.uid("EXPUNGE", str(uid)) if "UIDPLUS" in conn.capabilities else conn.expunge()
        ok(f"expunge {what}", typ, data)

    def move(self, uid: int, target: str, what: str = "message") -> None:
        """Move ``uid`` from the selected mailbox to ``target`` (created on first
        use): UID MOVE, or COPY + STORE \\Deleted + EXPUNGE without MOVE."""
        self.ensure(target)
        conn = self.connection()
        if "MOVE" in conn.capabilities:
            typ, data = conn.uid("MOVE", str(uid), wire_name(target))
            ok(f"move {what} to {target}", typ, data)
            return
        typ, data = conn.uid("COPY", str(uid), wire_name(target))
        ok(f"copy {what} to {target}", typ, data)
        self.delete(uid, what)

    # ------------------------------------------------------------------ check
    def check(self, folders: dict[str, str]) -> list[Check]:
        """Log in, open INBOX and each of ``folders`` (label -> configured name)
        and say what does not work. Creates nothing."""
        name = f"IMAP {self.host}:{self.port}"
        self.drop()
        try:
            self.connection()
        except TransportError as exc:
            return [Check(name, False, str(exc))]
        except imaplib.IMAP4.error as exc:
            return [Check(name, False, f"server error: {describe(exc)}")]
        except OSError as exc:
            return [Check(name, False, connection_problem("IMAP", self.host, self.port, self.security, self.timeout, exc))]
        checks = [Check(name, True, f"logged in as {self.username} ({self.security}); separator {self._delim!r}")]
        try:
            self.select("INBOX", force=True)
            checks.append(Check("IMAP INBOX", True, "readable and writable"))
        except imaplib.IMAP4.readonly:
            self.drop()
            checks.append(Check("IMAP INBOX", False, "INBOX is read-only for this user: handled mail cannot be moved"))
            return checks
        except (imaplib.IMAP4.error, OSError) as exc:
            checks.append(Check("IMAP INBOX", False, f"cannot open INBOX: {exc}"))
        for which, configured in folders.items():
            mailbox = self.mailbox(configured)
            label = f"IMAP folder {which} ({mailbox})"
            try:
                if not self.exists(mailbox):  # check changes nothing: report, don't create
                    checks.append(Check(label, True, "does not exist yet; created on first use"))
                    continue
                self._selected = None
                typ, data = self.connection().select(wire_name(mailbox))
                if typ != "OK":
                    checks.append(Check(label, False, f"cannot open: {data}"))
                else:
                    checks.append(Check(label, True, "exists, writable"))
            except imaplib.IMAP4.readonly:
                self.drop()
                checks.append(Check(label, False, "read-only for this user: ask the mail admin for write permission"))
            except TransportError as exc:
                checks.append(Check(label, False, str(exc)))
            except (imaplib.IMAP4.error, OSError) as exc:
                checks.append(Check(label, False, f"{exc}"))
        return checks
