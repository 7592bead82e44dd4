"""SMTP + IMAP transport: any standard mail server (Dovecot/Postfix, hosted IMAP).

Sending goes over SMTP (STARTTLS, implicit TLS or plain, with AUTH); a copy of
every sent message is APPENDed to the Sent folder, where ``was_sent`` finds it
again by the marker header. Incoming mail is read from INBOX by UID with a
``uidvalidity:lastuid`` cursor; handled messages are moved to the processed or
quarantine folder (UID MOVE, or COPY + STORE \\Deleted + UID EXPUNGE).

Folder names are given with ``/`` as the hierarchy separator and without the
personal namespace prefix (``"processed"``, ``"Archive/kcg"``); the transport
asks the server for its prefix and separator, so ``"processed"`` becomes
``INBOX.processed`` on a Courier-style server and ``processed`` on Dovecot.
A name that already starts with the server's prefix is used as it is.

Errors: transient network faults (refused or dropped connections, timeouts, 4xx
SMTP replies) are retried ``retries`` times with exponential backoff, then
raised as ``TransientError``; everything a person must fix (wrong password, TLS
problems, missing permissions) raises ``TransportError`` with a plain message.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import imaplib
import logging
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Literal, TypeVar

from kcg_mail.core.mime import build_invitation, build_message
from kcg_mail.ports import (
    MARKER_HEADER,
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

T = TypeVar("T")

SmtpSecurity = Literal["starttls", "tls", "none"]
ImapSecurity = Literal["tls", "starttls", "none"]

#: How many messages one UID FETCH asks for.
FETCH_BATCH = 50

_UID_RE = re.compile(rb"\bUID (\d+)")
_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


# --------------------------------------------------------------------------- helpers


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


def _oversized(data: list) -> set[int]:
    """UIDs whose RFC822.SIZE is above the incoming size limit."""
    from kcg_mail.adapters.maildir import MAX_INCOMING

    out = set()
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        m = _SIZE_RE.search(line)
        if m:
            uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            if int(size) > MAX_INCOMING:
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


# --------------------------------------------------------------------------- transport


class SmtpImapTransport(MailTransport):
    def __init__(
        self,
        smtp_host: str,
        smtp_port: int,
        imap_host: str,
        imap_port: int,
        username: str,
        password: str,
        *,
        smtp_security: SmtpSecurity = "starttls",
        imap_security: ImapSecurity = "tls",
        sent_folder: str = "Sent",
        processed_folder: str = "processed",
        quarantine_folder: str = "quarantine",
        timeout: float = 30,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
        smtp_username: str | None = None,
        smtp_password: str | None = None,
        own_copy: bool = True,
        settle_seconds: float = 30.0,
    ):
        if smtp_security not in ("starttls", "tls", "none"):
            raise ValueError(f"smtp_security must be starttls, tls or none, not {smtp_security!r}")
        if imap_security not in ("tls", "starttls", "none"):
            raise ValueError(f"imap_security must be tls, starttls or none, not {imap_security!r}")
        self.smtp_host, self.smtp_port = smtp_host, int(smtp_port)
        self.imap_host, self.imap_port = imap_host, int(imap_port)
        self.username, self.password = username, password
        self.smtp_username = smtp_username or username
        self.smtp_password = smtp_password if smtp_password is not None else password
        self.smtp_security: SmtpSecurity = smtp_security
        self.imap_security: ImapSecurity = imap_security
        self.folder_names = {"sent": sent_folder, "processed": processed_folder, "quarantine": quarantine_folder}
        #: Every mail also goes (envelope only, like Bcc) to the sender's own
        #: mailbox: if the process dies between the SMTP transaction and the
        #: Sent copy, ``was_sent`` finds that copy (in the inbox, or already
        #: filed in Sent) and no second mail goes out. ``fetch_new`` never hands these
        #: copies to the intake (it files them in Sent when the Sent copy is
        #: missing, else deletes them). See README, "Crash safety".
        self.own_copy = own_copy
        #: How long the own copy may take to arrive: a run recovering an
        #: interrupted send waits this long from the intent (Outbox).
        self.settle_seconds = settle_seconds if own_copy else 0.0
        self.settle_sleep = sleep
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.sleep = sleep
        self.ssl_context = ssl_context or ssl.create_default_context()

        self._conn: imaplib.IMAP4 | None = None
        self._selected: str | None = None
        self._delim: str | None = None
        self._prefix: str = ""
        self._resolved: dict[str, str] = {}
        self._known_folders: set[str] = set()
        self._last_uidnext: int | None = None

    def __repr__(self) -> str:  # never show the password
        return f"SmtpImapTransport({self.username}@{self.imap_host}:{self.imap_port}, smtp {self.smtp_host}:{self.smtp_port})"

    # ------------------------------------------------------------------ retries
    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * (2 ** (attempt - 1))
                log.info("%s: retry %d/%d in %.1fs after: %s", what, attempt, self.retries, delay, _describe(last))
                self.sleep(delay)
            try:
                return fn()
            except TransportError:
                self._drop_imap()
                raise
            except (smtplib.SMTPAuthenticationError, ssl.SSLCertVerificationError) as exc:
                self._drop_imap()
                raise self._permanent(what, exc) from exc
            except smtplib.SMTPResponseException as exc:
                if not _is_transient_smtp(exc):
                    raise self._permanent(what, exc) from exc
                last = exc
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                if not codes or not all(400 <= c < 500 for c in codes):
                    raise self._permanent(what, exc) from exc
                last = exc
            except smtplib.SMTPNotSupportedError as exc:
                raise self._permanent(what, exc) from exc
            except imaplib.IMAP4.readonly as exc:
                self._drop_imap()
                raise TransportError(
                    f"{what}: {exc}: this user may only read the mailbox; ask the mail admin for write permission"
                ) from exc
            except ssl.SSLError as exc:
                self._drop_imap()
                if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    last = exc
                else:
                    raise self._permanent(what, exc) from exc
            except imaplib.IMAP4.abort as exc:
                self._drop_imap()
                last = exc
            except imaplib.IMAP4.error as exc:
                self._drop_imap()
                raise self._permanent(what, exc) from exc
            except (OSError, smtplib.SMTPException, EOFError) as exc:
                # refused, reset, timeout, DNS hiccup, server disconnected
                self._drop_imap()
                last = exc
        raise TransientError(
            f"{what}: mail server not reachable after {self.retries + 1} attempts ({_describe(last)}); will retry later"
        ) from last

    def _permanent(self, what: str, exc: BaseException) -> TransportError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return TransportError(
                f"{what}: SMTP login as {self.smtp_username!r} on {self.smtp_host}:{self.smtp_port} refused: "
                f"wrong user or password ({_describe(exc)})"
            )
        if isinstance(exc, ssl.SSLError):
            return TransportError(f"{what}: TLS problem: {_describe(exc)} — check the host name, port and security setting")
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return TransportError(f"{what}: the SMTP server refused the recipients: {exc.recipients}")
        if isinstance(exc, smtplib.SMTPResponseException):
            return TransportError(f"{what}: the SMTP server refused: {_describe(exc)}")
        return TransportError(f"{what}: {_describe(exc)}")

    # ------------------------------------------------------------------ SMTP
    def _smtp_connect(self) -> smtplib.SMTP:
        if self.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.smtp_host, self.smtp_port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.smtp_security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP server {self.smtp_host}:{self.smtp_port} does not offer STARTTLS; "
                        "use smtp_security='tls' for an implicit-TLS port (465), or 'none' only for a "
                        "server on this machine (loopback)"
                    )
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if not smtp.has_extn("auth"):
                raise TransportError(
                    f"SMTP server {self.smtp_host}:{self.smtp_port} offers no AUTH on this connection "
                    f"(security={self.smtp_security}); use the submission port (587 with starttls or 465 with tls)"
                )
            self._smtp_login(smtp)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def _smtp_login(self, smtp: smtplib.SMTP) -> None:
        user, password = self.smtp_username, self.smtp_password
        if (user + password).isascii():
            smtp.login(user, password)
            return
        # smtplib encodes credentials as ASCII; AUTH PLAIN is UTF-8 (RFC 4616).
        mechs = (smtp.esmtp_features.get("auth") or "").upper().split()
        if "PLAIN" not in mechs:
            raise TransportError(
                f"the SMTP server offers no AUTH PLAIN ({' '.join(mechs)}), needed for a password with non-ASCII letters"
            )
        token = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")).decode("ascii")
        code, resp = smtp.docmd("AUTH", "PLAIN " + token)
        if code == 334:  # server wants the response separately
            code, resp = smtp.docmd(token)
        if code in (235, 503):
            return
        if code == 535 or 500 <= code < 600:
            raise smtplib.SMTPAuthenticationError(code, resp)
        raise smtplib.SMTPResponseException(code, resp)

    def _send_bytes(self, key: str, sender: str, recipients: list[str], data: bytes) -> None:
        if not recipients:
            raise TransportError(f"{key}: message has no recipients")

        def attempt() -> None:
            smtp = self._smtp_connect()
            try:
                options = []
                if any(not r.isascii() for r in [sender, *recipients]) and smtp.has_extn("smtputf8"):
                    options.append("SMTPUTF8")
                refused = smtp.sendmail(sender, recipients, data, mail_options=options)
            except BaseException:
                with contextlib.suppress(Exception):
                    smtp.close()
                raise
            # Accepted: from here on a failure must not lead to a second send.
            with contextlib.suppress(Exception):
                smtp.quit()
            if refused:
                log.warning("%s: some recipients were refused: %s", key, refused)

        self._retrying(f"send {key}", attempt)
        try:
            self._retrying(f"save {key} to Sent", lambda: self._append_sent(data))
        except TransportError as exc:
            # The mail is out. Raising would make the caller send it again.
            log.error("%s was sent but its copy could not be stored in Sent: %s", key, exc)

    def _deliver(self, msg: OutgoingMessage, mime: email.message.EmailMessage) -> None:
        data = mime.as_bytes(policy=email.policy.SMTP)
        recipients = [a.email for a in msg.recipients]
        if self.own_copy and recipients and msg.sender.email.lower() not in {r.lower() for r in recipients}:
            recipients.append(msg.sender.email)  # the own copy: in the envelope only, no Bcc header
        self._send_bytes(msg.key, msg.sender.email, recipients, data)

    def send(self, message: OutgoingMessage) -> None:
        self._deliver(message, build_message(message))

    def send_invitation(self, invitation: Invitation) -> None:
        self._deliver(invitation.message, build_invitation(invitation))

    # ------------------------------------------------------------------ IMAP connection
    def _imap_connect(self) -> imaplib.IMAP4:
        if self.imap_security == "tls":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.imap_host, self.imap_port, ssl_context=self.ssl_context, timeout=self.timeout
            )
        else:
            conn = imaplib.IMAP4(self.imap_host, self.imap_port, timeout=self.timeout)
        try:
            if self.imap_security == "starttls":
                if "STARTTLS" not in conn.capabilities:
                    raise TransportError(
                        f"IMAP server {self.imap_host}:{self.imap_port} does not offer STARTTLS; "
                        "use imap_security='tls' for an implicit-TLS port (993), or 'none' only for a "
                        "server on this machine (loopback)"
                    )
                conn.starttls(ssl_context=self.ssl_context)
            try:
                self._imap_login(conn)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                text = _describe(exc)
                if "UNAVAILABLE" in text or "temporar" in text.lower():
                    raise imaplib.IMAP4.abort(text) from exc
                raise TransportError(
                    f"IMAP login as {self.username!r} on {self.imap_host}:{self.imap_port} refused: "
                    f"wrong user or password ({text})"
                ) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise
        return conn

    def _imap_login(self, conn: imaplib.IMAP4) -> None:
        if (self.username + self.password).isascii():
            conn.login(self.username, self.password)
        else:
            # imaplib's LOGIN only sends ASCII; SASL PLAIN carries UTF-8 (RFC 4616).
            creds = b"\0" + self.username.encode("utf-8") + b"\0" + self.password.encode("utf-8")
            conn.authenticate("PLAIN", lambda _challenge: creds)
        # The capabilities before login are a subset (Dovecot adds MOVE, NAMESPACE,
        # UIDPLUS... after it); imaplib does not refresh them itself.
        typ, data = conn.capability()
        if typ == "OK" and data and data[-1]:
            conn.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())

    def _imap(self) -> imaplib.IMAP4:
        if self._conn is None:
            self._conn = self._imap_connect()
            self._selected = None
            self._discover_namespace(self._conn)
        return self._conn

    def _drop_imap(self) -> None:
        conn, self._conn, self._selected = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def close(self) -> None:
        conn, self._conn, self._selected = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.logout()

    def __enter__(self) -> SmtpImapTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _ok(what: str, typ: str, data: list) -> list:
        if typ != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            raise imaplib.IMAP4.error(f"{what}: {typ} {detail}")
        return data

    def _discover_namespace(self, conn: imaplib.IMAP4) -> None:
        if self._delim is not None:
            return
        prefix, delim = "", None
        if "NAMESPACE" in conn.capabilities:
            typ, data = conn.namespace()
            if typ == "OK" and data and data[0]:
                m = re.match(rb'\(\("((?:[^"\\]|\\.)*)" (?:"((?:[^"\\]|\\.)*)"|NIL)', data[0])
                if m:
                    prefix = _unquote(b'"' + m.group(1) + b'"')
                    if m.group(2) is not None:
                        delim = m.group(2).decode().replace("\\\\", "\\")
        if delim is None:
            typ, data = conn.list('""', '""')
            if typ == "OK" and data and data[0]:
                m = _LIST_RE.match(data[0])
                if m and m.group("delim") != b"NIL":
                    delim = m.group("delim")[1:-1].decode().replace("\\\\", "\\")
        self._prefix, self._delim = prefix, delim or "/"

    def _mailbox(self, name: str) -> str:
        """Server mailbox name for a configured ``/``-separated folder name."""
        self._imap()
        if name.upper() == "INBOX":
            return "INBOX"
        if self._prefix and (name.startswith(self._prefix) or name.upper().startswith(self._prefix.upper())):
            return name
        return self._prefix + name.replace("/", self._delim or "/")

    def _folder(self, which: str) -> str:
        if which not in self._resolved:
            self._resolved[which] = self._mailbox(self.folder_names[which])
        return self._resolved[which]

    def _exists(self, conn: imaplib.IMAP4, mailbox: str) -> bool:
        if mailbox in self._known_folders:
            return True
        typ, data = conn.list('""', _quote(_encode_mutf7(mailbox)))
        found = typ == "OK" and any(
            isinstance(d, bytes) and b"\\NonExistent" not in d and b"\\Noselect" not in d for d in data if d
        )
        if found:
            self._known_folders.add(mailbox)
        return found

    def _ensure_folder(self, conn: imaplib.IMAP4, mailbox: str) -> bool:
        """Create ``mailbox`` when missing. True when it was created."""
        if self._exists(conn, mailbox):
            return False
        typ, data = conn.create(_quote(_encode_mutf7(mailbox)))
        if typ != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            if "ALREADYEXISTS" not in text.upper() and not self._exists(conn, mailbox):
                raise TransportError(
                    f"cannot create IMAP folder {mailbox!r} for {self.username}: {text} "
                    "(create it by hand or ask the mail admin for permission)"
                )
        with contextlib.suppress(Exception):
            conn.subscribe(_quote(_encode_mutf7(mailbox)))
        self._known_folders.add(mailbox)
        log.info("created IMAP folder %s", mailbox)
        return True

    def _select(self, conn: imaplib.IMAP4, mailbox: str, *, readonly: bool = False, force: bool = False) -> None:
        if self._selected == (mailbox, readonly) and not force:
            return
        typ, data = conn.select(_quote(_encode_mutf7(mailbox)), readonly=readonly)
        self._ok(f"select {mailbox}", typ, data)
        self._selected = (mailbox, readonly)  # type: ignore[assignment]

    # ------------------------------------------------------------------ Sent
    def _append_sent(self, data: bytes) -> None:
        conn = self._imap()
        sent = self._folder("sent")
        self._ensure_folder(conn, sent)
        typ, resp = conn.append(
            _quote(_encode_mutf7(sent)), r"(\Seen)", imaplib.Time2Internaldate(time.time()), data
        )
        self._ok(f"append to {sent}", typ, resp)

    def _find_key(self, conn: imaplib.IMAP4, mailbox: str, key: str) -> list[bytes]:
        """UIDs in ``mailbox`` whose marker header is exactly ``key``."""
        if not self._exists(conn, mailbox):
            return []
        self._select(conn, mailbox, readonly=True, force=True)
        if key.isascii():
            typ, data = conn.uid("SEARCH", "HEADER", MARKER_HEADER, _quote(key))
        else:
            conn.literal = key.encode("utf-8")
            typ, data = conn.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", MARKER_HEADER)
        uids = self._ok(f"search {mailbox}", typ, data)[0].split() if data and data[0] else []
        if not uids:
            return []
        # HEADER search is a substring match: confirm the exact key.
        typ, data = conn.uid("FETCH", b",".join(uids).decode(), f"(UID BODY.PEEK[HEADER.FIELDS ({MARKER_HEADER})])")
        self._ok(f"fetch {mailbox} headers", typ, data)
        out = []
        for item in data:
            if isinstance(item, tuple):
                hdr = email.message_from_bytes(item[1], policy=email.policy.default)
                m = re.search(rb"UID (\d+)", item[0])
                if m and any(str(v).strip() == key for v in hdr.get_all(MARKER_HEADER) or []):
                    out.append(m.group(1))
        return out

    def _own_copy(self, conn: imaplib.IMAP4, key: str) -> bytes | None:
        """The own copy of the mail ``key`` (see ``own_copy``): in the inbox,
        or already moved by the intake to processed/quarantine."""
        for mailbox in ("INBOX", self._folder("processed"), self._folder("quarantine")):
            for uid in self._find_key(conn, mailbox, key):
                typ, data = conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                self._ok(f"fetch {mailbox}", typ, data)
                raw = next((item[1] for item in data if isinstance(item, tuple)), None)
                if raw is None:
                    continue
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                sender = msg["From"].addresses[0].addr_spec.lower() if msg["From"] and msg["From"].addresses else ""
                if "@" in self.username and sender != self.username.lower():
                    continue  # not from us: someone else's mail carrying our header
                return raw
        return None

    def was_sent(self, key: str) -> bool:
        def attempt() -> bool:
            conn = self._imap()
            if self._find_key(conn, self._folder("sent"), key):
                return True
            if not self.own_copy:
                return False
            raw = self._own_copy(conn, key)
            if raw is None:
                return False
            # Sent through SMTP, but the process died before the Sent copy: write it now.
            log.warning("%s: found our own copy of it; it went out before a crash, storing the Sent copy now", key)
            self._append_sent(raw)
            return True

        return self._retrying(f"look up {key} in Sent", attempt)

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        """Every message in Sent with our marker header (``kcg state rebuild``)."""

        def attempt() -> list[tuple[str, bytes]]:
            conn = self._imap()
            sent = self._folder("sent")
            if not self._exists(conn, sent):
                return []
            self._select(conn, sent, readonly=True, force=True)
            typ, data = conn.uid("SEARCH", "HEADER", MARKER_HEADER, '""')
            uids = self._ok("search Sent", typ, data)[0].split() if data and data[0] else []
            out: list[tuple[str, bytes]] = []
            for i in range(0, len(uids), 50):
                typ, data = conn.uid("FETCH", b",".join(uids[i : i + 50]).decode(), "(BODY.PEEK[])")
                self._ok("fetch Sent", typ, data)
                for item in data:
                    if isinstance(item, tuple):
                        hdr = email.message_from_bytes(item[1], policy=email.policy.default)
                        key = hdr.get(MARKER_HEADER)
                        if key:
                            out.append((str(key).strip(), item[1]))
            return out

        return iter(self._retrying("list Sent", attempt))

    # ------------------------------------------------------------------ INBOX
    def fetch_new(self, cursor: str | None) -> FetchResult:
        old_validity, last_uid = _parse_cursor(cursor)

        def attempt() -> FetchResult:
            conn = self._imap()
            self._select(conn, "INBOX", force=True)
            validity = _untagged_int(conn, "UIDVALIDITY")
            uidnext = _untagged_int(conn, "UIDNEXT")
            if validity is None:
                raise TransportError("IMAP server sent no UIDVALIDITY for INBOX; cannot read it by UID")
            since = last_uid
            if old_validity is not None and old_validity != validity:
                log.warning(
                    "INBOX UIDVALIDITY changed (%s -> %s): reading the whole INBOX again", old_validity, validity
                )
                since = 0
            self._last_uidnext = uidnext
            if uidnext is not None and uidnext <= since + 1:
                return FetchResult([], f"{validity}:{since}")
            typ, data = conn.uid("SEARCH", f"UID {since + 1}:*")
            self._ok("search INBOX", typ, data)
            # "n:*" always matches the highest UID, even when it is <= n.
            uids = sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > since)
            messages: list[IncomingMessage] = []
            own: list[tuple[int, str]] = []
            seen_uids: list[int] = []
            for i in range(0, len(uids), FETCH_BATCH):
                chunk = uids[i : i + FETCH_BATCH]
                typ, data = conn.uid("FETCH", ",".join(map(str, chunk)), "(UID RFC822.SIZE)")
                self._ok("fetch sizes in INBOX", typ, data)
                big = _oversized(data)
                for what, part in (("(UID INTERNALDATE BODY.PEEK[])", [u for u in chunk if u not in big]),
                                   ("(UID INTERNALDATE BODY.PEEK[HEADER])", [u for u in chunk if u in big])):
                    if not part:
                        continue
                    typ, data = conn.uid("FETCH", ",".join(map(str, part)), what)
                    self._ok("fetch INBOX", typ, data)
                    for uid, raw, when in _fetch_items(data):
                        if uid <= since:
                            continue
                        seen_uids.append(uid)
                        key = self._own_copy_key(raw)
                        if key is not None:  # our own copy of a sent mail (see own_copy): not incoming mail
                            own.append((uid, key))
                            continue
                        if uid in big:  # headers only: the intake still answers the sender
                            raw = b"X-KCG-Oversize: 1\r\n" + raw
                        messages.append(IncomingMessage(ref=f"{validity}:{uid}", raw=raw, received_at=when))
            for uid, key in own:
                self._file_own_copy(conn, uid, key)
            messages.sort(key=lambda m: int(m.ref.split(":")[1]))
            top = max([since, *seen_uids])
            self._last_uidnext = max(uidnext or 0, top + 1)
            return FetchResult(messages, f"{validity}:{top}")

        return self._retrying("read INBOX", attempt)

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        def attempt() -> list[bytes]:
            conn = self._imap()
            out: list[tuple[datetime | None, bytes]] = []
            for name in ("INBOX", self._folder("processed"), self._folder("quarantine")):
                try:
                    self._select(conn, name, readonly=True, force=True)
                except Exception:
                    continue
                typ, data = conn.uid("SEARCH", "ALL")
                if typ != "OK":
                    continue
                uids = [int(x) for x in (data[0] or b"").split()][-limit:]
                if not uids:
                    continue
                typ, data = conn.uid("FETCH", ",".join(map(str, uids)),
                                     "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (AUTHENTICATION-RESULTS FROM DATE)])")
                if typ == "OK":
                    out += [(when, raw) for _, raw, when in _fetch_items(data)]
            out.sort(key=lambda t: t[0].timestamp() if t[0] else 0, reverse=True)
            return [raw for _, raw in out[:limit]]

        return self._retrying("read recent headers", attempt)

    def _own_copy_key(self, raw: bytes) -> str | None:
        """The key of ``raw`` when it is our own copy of a mail we sent (see ``own_copy``)."""
        if not self.own_copy:
            return None
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        if MARKER_HEADER.encode().lower() not in head.lower():
            return None
        hdr = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.default)
        key = str(hdr.get(MARKER_HEADER) or "").strip()
        sender = hdr["From"].addresses[0].addr_spec.lower() if hdr["From"] and hdr["From"].addresses else ""
        if not key or ("@" in self.username and sender != self.username.lower()):
            return None
        return key

    def _file_own_copy(self, conn: imaplib.IMAP4, uid: int, key: str) -> None:
        """Our own copy is not incoming mail: it completes Sent when the Sent
        copy is missing (a crash came between SMTP and Sent), else it goes."""
        sent = self._folder("sent")
        self._ensure_folder(conn, sent)
        have = bool(self._find_key(conn, sent, key))
        self._select(conn, "INBOX", force=True)
        if have:
            typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            self._ok("flag own copy as deleted", typ, data)
            typ, data = conn.uid("EXPUNGE", str(uid)) if "UIDPLUS" in conn.capabilities else conn.expunge()
            self._ok("expunge own copy", typ, data)
            return
        log.warning("%s: the Sent copy was missing (interrupted send); filing our own copy in Sent", key)
        conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")
        mbox = _quote(_encode_mutf7(sent))
        if "MOVE" in conn.capabilities:
            typ, data = conn.uid("MOVE", str(uid), mbox)
            self._ok(f"move own copy to {sent}", typ, data)
            return
        typ, data = conn.uid("COPY", str(uid), mbox)
        self._ok(f"copy own copy to {sent}", typ, data)
        typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        self._ok("flag as deleted", typ, data)
        typ, data = conn.uid("EXPUNGE", str(uid)) if "UIDPLUS" in conn.capabilities else conn.expunge()
        self._ok("expunge", typ, data)

    def move(self, ref: str, folder: Folder) -> None:
        if folder not in ("processed", "quarantine"):
            raise ValueError(f"unknown folder {folder!r}")
        validity, uid = _parse_ref(ref)

        def attempt() -> None:
            conn = self._imap()
            target = self._folder(folder)
            self._select(conn, "INBOX", force=True)
            current = _untagged_int(conn, "UIDVALIDITY")
            if current != validity:
                log.warning(
                    "not moving %s: INBOX UIDVALIDITY is now %s, the reference is stale "
                    "(the message will be read again with a new reference)",
                    ref,
                    current,
                )
                return
            typ, data = conn.uid("SEARCH", f"UID {uid}")
            self._ok("search INBOX", typ, data)
            if str(uid).encode() not in (data[0] or b"").split():
                log.info("%s is no longer in INBOX; nothing to move", ref)
                return
            self._ensure_folder(conn, target)
            mbox = _quote(_encode_mutf7(target))
            if "MOVE" in conn.capabilities:
                typ, data = conn.uid("MOVE", str(uid), mbox)
                self._ok(f"move to {target}", typ, data)
                return
            typ, data = conn.uid("COPY", str(uid), mbox)
            self._ok(f"copy to {target}", typ, data)
            typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            self._ok("flag as deleted", typ, data)
            if "UIDPLUS" in conn.capabilities:
                typ, data = conn.uid("EXPUNGE", str(uid))
            else:
                typ, data = conn.expunge()
            self._ok("expunge", typ, data)

        self._retrying(f"move {ref} to {folder}", attempt)

    # ------------------------------------------------------------------ IDLE
    def idle_wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds on INBOX with IMAP IDLE. True when the
        server reports new mail (or when mail arrived since the last
        ``fetch_new``); False on timeout. The caller then calls ``fetch_new``."""

        def attempt() -> bool:
            conn = self._imap()
            if "IDLE" not in conn.capabilities:
                raise TransportError(f"IMAP server {self.imap_host} does not support IDLE; poll instead")
            # Mail that came in after the last fetch_new, before this IDLE, is
            # not announced again: compare UIDNEXT first.
            self._select(conn, "INBOX", force=True)
            uidnext = _untagged_int(conn, "UIDNEXT")
            if self._last_uidnext is not None and uidnext is not None and uidnext > self._last_uidnext:
                return True
            return self._idle(conn, timeout)

        return self._retrying("wait for new mail", attempt)

    def _idle(self, conn: imaplib.IMAP4, timeout: float) -> bool:
        tag = conn._new_tag()  # type: ignore[attr-defined]
        conn.send(tag + b" IDLE\r\n")
        news = False
        while True:
            line = conn.readline()
            if not line:
                raise imaplib.IMAP4.abort("connection closed during IDLE")
            if line.startswith(b"+"):
                break
            if line.startswith(tag):
                raise imaplib.IMAP4.error(f"IDLE refused: {line.decode(errors='replace').strip()}")
            if b"EXISTS" in line or b"RECENT" in line:
                news = True
        sock = conn.sock
        deadline = time.monotonic() + max(0.0, timeout)
        while not news:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                ready, _, _ = select.select([sock], [], [], remaining)
                if not ready:
                    break
            line = conn.readline()
            if not line:
                raise imaplib.IMAP4.abort("connection closed during IDLE")
            if b" EXISTS" in line:
                news = True
            elif line.startswith(b"* BYE"):
                raise imaplib.IMAP4.abort(line.decode(errors="replace").strip())
            else:
                # Any other notice (the EXPUNGE of the intake's MOVE, "Still
                # here"): end this IDLE. An EXISTS that came in the same read
                # sits in imaplib's buffer, where select() cannot see it (it
                # waited for the next notice: two minutes); DONE reads it, and
                # the caller's next wait compares UIDNEXT first.
                break
        conn.send(b"DONE\r\n")
        while True:
            line = conn.readline()
            if not line:
                raise imaplib.IMAP4.abort("connection closed ending IDLE")
            if line.startswith(tag):
                if not line[len(tag) :].strip().startswith(b"OK"):
                    raise imaplib.IMAP4.error(f"IDLE ended with: {line.decode(errors='replace').strip()}")
                break
            if b" EXISTS" in line:
                news = True
        return news

    # ------------------------------------------------------------------ check
    def check(self) -> list[Check]:
        return [self._check_smtp(), *self._check_imap()]

    def _connection_problem(self, proto: str, host: str, port: int, security: str, exc: BaseException) -> str:
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve host {host!r}: check the {proto} host name ({exc})"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection to {host}:{port} refused: wrong host or port, or the server is down"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS certificate of {host}:{port} not trusted: {exc.verify_message or exc}"
        if isinstance(exc, ssl.SSLError):
            hint = (
                "port speaks plain text: use security 'starttls' (or the implicit-TLS port); "
                "'none' only for a server on this machine (loopback)"
                if "WRONG_VERSION_NUMBER" in str(exc).upper() or "wrong version number" in str(exc)
                else "check the port and the security setting"
            )
            return f"TLS problem with {host}:{port} (security={security}): {exc}; {hint}"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            extra = " (a TLS port expects security 'tls')" if security != "tls" else ""
            return f"no answer from {host}:{port} within {self.timeout:.0f}s: wrong host/port or blocked{extra}"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"{host}:{port} closed the connection: wrong port or security setting? ({exc})"
        if isinstance(exc, OSError):
            return f"cannot connect to {host}:{port}: {exc}"
        return f"{type(exc).__name__}: {exc}"

    def _check_smtp(self) -> Check:
        name = f"SMTP {self.smtp_host}:{self.smtp_port}"
        try:
            smtp = self._smtp_connect()
        except smtplib.SMTPAuthenticationError as exc:
            return Check(name, False, f"login as {self.smtp_username!r} refused: wrong user or password ({_describe(exc)})")
        except TransportError as exc:
            return Check(name, False, str(exc))
        except smtplib.SMTPResponseException as exc:
            return Check(name, False, f"server refused: {_describe(exc)}")
        except (OSError, smtplib.SMTPException) as exc:
            return Check(name, False, self._connection_problem("SMTP", self.smtp_host, self.smtp_port, self.smtp_security, exc))
        with contextlib.suppress(Exception):
            smtp.noop()
            smtp.quit()
        return Check(name, True, f"logged in as {self.smtp_username} ({self.smtp_security})")

    def _check_imap(self) -> list[Check]:
        name = f"IMAP {self.imap_host}:{self.imap_port}"
        self._drop_imap()
        try:
            conn = self._imap()
        except TransportError as exc:
            return [Check(name, False, str(exc))]
        except imaplib.IMAP4.error as exc:
            return [Check(name, False, f"server error: {_describe(exc)}")]
        except OSError as exc:
            return [Check(name, False, self._connection_problem("IMAP", self.imap_host, self.imap_port, self.imap_security, exc))]
        checks = [Check(name, True, f"logged in as {self.username} ({self.imap_security}); separator {self._delim!r}")]
        try:
            self._select(conn, "INBOX", force=True)
            checks.append(Check("IMAP INBOX", True, "readable and writable"))
        except imaplib.IMAP4.readonly:
            self._drop_imap()
            checks.append(Check("IMAP INBOX", False, "INBOX is read-only for this user: handled mail cannot be moved"))
            return checks
        except (imaplib.IMAP4.error, OSError) as exc:
            checks.append(Check("IMAP INBOX", False, f"cannot open INBOX: {exc}"))
        for which in ("sent", "processed", "quarantine"):
            mailbox = self._folder(which)
            label = f"IMAP folder {which} ({mailbox})"
            try:
                if not self._exists(conn, mailbox):  # check changes nothing: report, don't create
                    checks.append(Check(label, True, "does not exist yet; created on first use"))
                    continue
                self._selected = None
                typ, data = conn.select(_quote(_encode_mutf7(mailbox)))
                if typ != "OK":
                    checks.append(Check(label, False, f"cannot open: {data}"))
                else:
                    checks.append(Check(label, True, "exists, writable"))
            except imaplib.IMAP4.readonly:
                self._drop_imap()
                conn = self._imap()
                checks.append(Check(label, False, "read-only for this user: ask the mail admin for write permission"))
            except TransportError as exc:
                checks.append(Check(label, False, str(exc)))
            except (imaplib.IMAP4.error, OSError) as exc:
                checks.append(Check(label, False, f"{exc}"))
        return checks
