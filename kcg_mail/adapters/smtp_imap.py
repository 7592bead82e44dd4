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
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import datetime

from kcg_mail.core.mime import build_invitation, build_message
from kcg_mail.ports import (
    FetchResult,
    Folder,
    IncomingMessage,
    Invitation,
    MailTransport,
    OutgoingMessage,
    TransientError,
    TransportError,
)

from .imap_folders import ImapFolders
from .imap_idle import ImapIdle
from .imap_sent import ImapSent
from .imap_wire import (
    FETCH_BATCH,
    ImapSecurity,
    SmtpSecurity,
    T,
    _describe,
    _encode_mutf7,
    _fetch_items,
    _is_transient_smtp,
    _oversized,
    _parse_cursor,
    _parse_ref,
    _quote,
    _untagged_int,
)
from .maildir import incoming_limit, oversize_headers
from .smtp_imap_check import SmtpImapCheck

log = logging.getLogger(__name__)






# --------------------------------------------------------------------------- helpers


























# --------------------------------------------------------------------------- transport


class SmtpImapTransport(ImapFolders, ImapSent, ImapIdle, SmtpImapCheck, MailTransport):
    #: size cap for incoming mail in bytes (RFC822.SIZE); None: ``MAX_INCOMING``.
    #: Bigger messages are fetched as BODY.PEEK[HEADER] only (``oversize_headers``).
    max_incoming: int | None = None

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
                big = _oversized(data, incoming_limit(self.max_incoming))
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
                            raw = oversize_headers(raw)
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






