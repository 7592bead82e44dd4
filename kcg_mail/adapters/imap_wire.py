"""IMAP and SMTP on the wire: mailbox names (quoting, modified UTF-7), our cursor
and message refs (``UIDVALIDITY:UID``), and reading FETCH responses."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
import re
import smtplib
from datetime import datetime
from typing import Literal, TypeVar

from kcg_mail.ports import (
    TransportError,
)

log = logging.getLogger(__name__)


T = TypeVar("T")


SmtpSecurity = Literal["starttls", "tls", "none"]


ImapSecurity = Literal["tls", "starttls", "none"]


#: How many messages one UID FETCH asks for.
FETCH_BATCH = 50


_UID_RE = re.compile(rb"\bUID (\d+)")


_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')


_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return _decode_mutf7(raw)


def _encode_mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 5.1.3) for mailbox names."""
    out, buf = [], []

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


def _decode_mutf7(raw: bytes) -> str:
    s = raw.decode("ascii", errors="replace")
    out, i = [], 0
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


def _parse_cursor(cursor: str | None) -> tuple[int | None, int]:
    if not cursor:
        return None, 0
    try:
        v, _, u = cursor.partition(":")
        return int(v), int(u)
    except ValueError:
        log.warning("ignoring unreadable IMAP cursor %r; reading the whole INBOX", cursor)
        return None, 0


def _parse_ref(ref: str) -> tuple[int, int]:
    try:
        v, _, u = ref.partition(":")
        return int(v), int(u)
    except ValueError:
        raise TransportError(f"not an IMAP message reference: {ref!r} (expected 'uidvalidity:uid')") from None


def _untagged_int(conn: imaplib.IMAP4, name: str) -> int | None:
    vals = conn.untagged_responses.get(name)
    if not vals:
        return None
    try:
        return int(vals[-1])
    except (TypeError, ValueError):
        return None


_SIZE_RE = re.compile(rb"UID (\d+).*?RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*?UID (\d+)")


def _oversized(data: list, limit: int) -> set[int]:
    """UIDs whose RFC822.SIZE is above ``limit`` (the incoming size cap)."""
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


def _fetch_items(data: list) -> list[tuple[int, bytes, datetime | None]]:
    """Parse imaplib's UID FETCH (BODY.PEEK[] INTERNALDATE) answer robustly:
    the server may put UID and INTERNALDATE before or after the literal."""
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


def _is_transient_smtp(exc: smtplib.SMTPResponseException) -> bool:
    return 400 <= exc.smtp_code < 500


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, imaplib.IMAP4.error) and exc.args and isinstance(exc.args[0], bytes):
        text = exc.args[0].decode("utf-8", "replace")
    if isinstance(exc, smtplib.SMTPResponseException):
        msg = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        text = f"{exc.smtp_code} {msg}"
    return text
