"""SMTP + IMAP transport: any standard mail server (Dovecot/Postfix, hosted IMAP).

The transport holds its parts (like httpx's ``HTTPTransport`` holds its pool):
an ``SmtpSender`` sends, an ``ImapSession`` reads and files, one ``Retry``
policy serves both. What is left here is the mailbox logic of kcg-mail:

* Sending goes over SMTP; a copy of every sent message is APPENDed to the Sent
  folder, where ``was_sent`` finds it again by the marker header.
* Every mail also goes (envelope only, like Bcc) to the sender's own mailbox
  (``own_copy``): if the process dies between the SMTP transaction and the Sent
  copy, ``was_sent`` finds that copy and no second mail goes out. ``fetch_new``
  never hands these copies to the intake (it files them in Sent when the Sent
  copy is missing, else deletes them). See README, "Crash safety".
* Incoming mail is read from INBOX by UID with a ``uidvalidity:lastuid``
  cursor; handled messages are moved to the processed or quarantine folder.
* Push: ``mail_source()`` gives an ``ImapIdleSource`` (IMAP IDLE) on a
  connection of its own.

Errors: transient network faults (refused or dropped connections, timeouts, 4xx
SMTP replies) are retried ``retries`` times with exponential backoff, then
raised as ``TransientError``; everything a person must fix (wrong password, TLS
problems, missing permissions) raises ``TransportError`` with a plain message.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import imaplib
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from email.headerregistry import AddressHeader

from kcg_mail.core.config_model import SmtpImapSettings
from kcg_mail.core.mime import build_invitation, build_message
from kcg_mail.ports import (
    MARKER_HEADER,
    Check,
    FetchResult,
    Folder,
    IncomingMessage,
    Invitation,
    MailSource,
    MailTransport,
    OutgoingMessage,
    TransportError,
)

from .imap_idle import ImapIdleSource
from .imap_session import FETCH_BATCH, ImapSession, fetch_items, ok, oversized, quote, uids_of
from .mail_faults import Retry
from .maildir import incoming_limit, oversize_headers
from .smtp_sender import SmtpSender

log = logging.getLogger(__name__)

_UID_RE = re.compile(rb"UID (\d+)")


def parse_cursor(cursor: str | None) -> tuple[int | None, int]:
    """(UIDVALIDITY, last UID) of a cursor; (None, 0): read the whole INBOX."""
    if not cursor:
        return None, 0
    try:
        v, _, u = cursor.partition(":")
        return int(v), int(u)
    except ValueError:
        log.warning("ignoring unreadable IMAP cursor %r; reading the whole INBOX", cursor)
        return None, 0


def parse_ref(ref: str) -> tuple[int, int]:
    """(UIDVALIDITY, UID) of a message reference."""
    try:
        v, _, u = ref.partition(":")
        return int(v), int(u)
    except ValueError:
        raise TransportError(f"not an IMAP message reference: {ref!r} (expected 'uidvalidity:uid')") from None


def _sender_of(hdr: email.message.Message) -> str:
    """The address in From, lower case ('' when there is none)."""
    value = hdr["From"]  # a headerregistry.AddressHeader under policy.default
    if isinstance(value, AddressHeader) and value.addresses:
        return value.addresses[0].addr_spec.lower()
    return ""


class SmtpImapTransport(MailTransport):
    #: size cap for incoming mail in bytes (RFC822.SIZE); None: ``MAX_INCOMING``.
    #: Bigger messages are fetched as BODY.PEEK[HEADER] only (``oversize_headers``).
    max_incoming: int | None = None

    def __init__(
        self,
        settings: SmtpImapSettings,
        password: str,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
        own_copy: bool = True,
        settle_seconds: float = 30.0,
    ) -> None:
        """``settings``: transport.yaml's ``mail:`` section with ``username`` set
        (bootstrap fills in the network mailbox's address); ``password``: the
        secret ``smtp_password``, for both servers."""
        if not settings.username:
            raise TransportError("SMTP/IMAP needs a user name: transport.yaml mail.username or the network mailbox")
        context = ssl_context or ssl.create_default_context()
        #: shared by the sender and the session; tests swap its ``sleep``
        self.retry = Retry(max(0, int(retries)), float(backoff), sleep)
        self.username = settings.username
        self.smtp = SmtpSender(settings.smtp_host, settings.smtp_port, self.username, password,
                               security=settings.smtp_security, ssl_context=context, timeout=settings.timeout,
                               retry=self.retry)
        self.imap = ImapSession(settings.imap_host or settings.smtp_host, settings.imap_port, self.username, password,
                                security=settings.imap_security, ssl_context=context, timeout=settings.timeout,
                                retry=self.retry)
        self.folder_names: dict[str, str] = {"sent": settings.sent_folder, "processed": settings.processed_folder,
                                             "quarantine": settings.quarantine_folder}
        #: Send every mail to our own mailbox too (see the module's docstring).
        self.own_copy = own_copy
        #: How long the own copy may take to arrive: a run recovering an
        #: interrupted send waits this long from the intent (Outbox).
        self.settle_seconds = settle_seconds if own_copy else 0.0
        self.settle_sleep: Callable[[float], None] | None = sleep
        #: ``is_ours(marker key, Message-ID)`` of ``verify_own_copies``; None: not verified
        self._own_copy_check: Callable[[str, str], bool] | None = None

    def __repr__(self) -> str:  # never show the password
        return (f"SmtpImapTransport({self.username}@{self.imap.host}:{self.imap.port}, "
                f"smtp {self.smtp.host}:{self.smtp.port})")

    def folder(self, which: str) -> str:
        """The server's mailbox for ``sent``, ``processed`` or ``quarantine``."""
        return self.imap.mailbox(self.folder_names[which])

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.imap.close()

    def __enter__(self) -> SmtpImapTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mail_source(self, *, stop: threading.Event | None = None, cursor: str | None = None) -> MailSource:
        """IMAP IDLE on a connection of its own, without retries (the listener backs off)."""
        return ImapIdleSource(self.imap.twin(Retry(0, self.retry.backoff, self.retry.sleep)), stop=stop)

    # ------------------------------------------------------------------ sending
    def _deliver(self, msg: OutgoingMessage, mime: email.message.EmailMessage) -> None:
        data = mime.as_bytes(policy=email.policy.SMTP)
        recipients = [a.email for a in msg.recipients]
        if self.own_copy and recipients and msg.sender.email.lower() not in {r.lower() for r in recipients}:
            recipients.append(msg.sender.email)  # the own copy: in the envelope only, no Bcc header
        self.smtp.send(msg.key, msg.sender.email, recipients, data)
        try:
            self.imap.run(f"save {msg.key} to Sent", lambda _conn: self._append_sent(data))
        except TransportError as exc:
            # The mail is out. Raising would make the caller send it again.
            log.error("%s was sent but its copy could not be stored in Sent: %s", msg.key, exc)

    def send(self, message: OutgoingMessage) -> None:
        self._deliver(message, build_message(message))

    def send_invitation(self, invitation: Invitation) -> None:
        self._deliver(invitation.message, build_invitation(invitation))

    def _append_sent(self, data: bytes) -> None:
        self.imap.append(self.folder("sent"), r"(\Seen)", imaplib.Time2Internaldate(time.time()), data)

    # ------------------------------------------------------------------ INBOX
    def fetch_new(self, cursor: str | None) -> FetchResult:
        old_validity, last_uid = parse_cursor(cursor)

        def attempt(conn: imaplib.IMAP4) -> FetchResult:
            imap = self.imap
            imap.select("INBOX", force=True)
            validity = imap.untagged_int("UIDVALIDITY")
            uidnext = imap.untagged_int("UIDNEXT")
            if validity is None:
                raise TransportError("IMAP server sent no UIDVALIDITY for INBOX; cannot read it by UID")
            since = last_uid
            if old_validity is not None and old_validity != validity:
                log.warning("INBOX UIDVALIDITY changed (%s -> %s): reading the whole INBOX again", old_validity, validity)
                since = 0
            if uidnext is not None and uidnext <= since + 1:
                return FetchResult([], f"{validity}:{since}")
            typ, data = conn.uid("SEARCH", f"UID {since + 1}:*")
            # "n:*" always matches the highest UID, even when it is <= n.
            uids = sorted(u for u in uids_of(ok("search INBOX", typ, data)) if u > since)
            messages: list[IncomingMessage] = []
            own: list[tuple[int, str]] = []
            seen_uids: list[int] = []
            for i in range(0, len(uids), FETCH_BATCH):
                chunk = uids[i : i + FETCH_BATCH]
                big = oversized(imap.fetch("sizes in INBOX", chunk, "(UID RFC822.SIZE)"), incoming_limit(self.max_incoming))
                for what, part in (("(UID INTERNALDATE BODY.PEEK[])", [u for u in chunk if u not in big]),
                                   ("(UID INTERNALDATE BODY.PEEK[HEADER])", [u for u in chunk if u in big])):
                    if not part:
                        continue
                    for uid, raw, when in fetch_items(imap.fetch("INBOX", part, what)):
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
                self._file_own_copy(uid, key)
            messages.sort(key=lambda m: parse_ref(m.ref)[1])
            top = max([since, *seen_uids])
            return FetchResult(messages, f"{validity}:{top}")

        return self.imap.run("read INBOX", attempt)

    def move(self, ref: str, folder: Folder) -> None:
        if folder not in ("processed", "quarantine"):
            raise ValueError(f"unknown folder {folder!r}")
        validity, uid = parse_ref(ref)

        def attempt(conn: imaplib.IMAP4) -> None:
            target = self.folder(folder)
            self.imap.select("INBOX", force=True)
            current = self.imap.untagged_int("UIDVALIDITY")
            if current != validity:
                log.warning(
                    "not moving %s: INBOX UIDVALIDITY is now %s, the reference is stale "
                    "(the message will be read again with a new reference)", ref, current)
                return
            typ, data = conn.uid("SEARCH", f"UID {uid}")
            if uid not in uids_of(ok("search INBOX", typ, data)):
                log.info("%s is no longer in INBOX; nothing to move", ref)
                return
            self.imap.move(uid, target)

        self.imap.run(f"move {ref} to {folder}", attempt)

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        def attempt(conn: imaplib.IMAP4) -> list[bytes]:
            out: list[tuple[datetime | None, bytes]] = []
            for name in ("INBOX", self.folder("processed"), self.folder("quarantine")):
                try:
                    self.imap.select(name, readonly=True, force=True)
                except Exception:
                    continue
                typ, data = conn.uid("SEARCH", "ALL")
                if typ != "OK":
                    continue
                uids = uids_of(data)[-limit:]
                if not uids:
                    continue
                typ, data = conn.uid("FETCH", ",".join(map(str, uids)),
                                     "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (AUTHENTICATION-RESULTS FROM DATE)])")
                if typ == "OK":
                    out += [(when, raw) for _, raw, when in fetch_items(data)]
            out.sort(key=lambda t: t[0].timestamp() if t[0] else 0, reverse=True)
            return [raw for _, raw in out[:limit]]

        return self.imap.run("read recent headers", attempt)

    # ------------------------------------------------------------------ Sent and own copies
    def _find_key(self, mailbox: str, key: str) -> list[int]:
        """UIDs in ``mailbox`` whose marker header is exactly ``key``."""
        if not self.imap.exists(mailbox):
            return []
        self.imap.select(mailbox, readonly=True, force=True)
        conn = self.imap.connection()
        if key.isascii():
            typ, data = conn.uid("SEARCH", "HEADER", MARKER_HEADER, quote(key))
        else:
            conn.literal = key.encode("utf-8")  # type: ignore[assignment]  # imaplib sends bytes as they are
            typ, data = conn.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", MARKER_HEADER)
        uids = uids_of(ok(f"search {mailbox}", typ, data))
        if not uids:
            return []
        # HEADER search is a substring match: confirm the exact key.
        out = []
        for item in self.imap.fetch(f"{mailbox} headers", uids, f"(UID BODY.PEEK[HEADER.FIELDS ({MARKER_HEADER})])"):
            if isinstance(item, tuple):
                hdr = email.message_from_bytes(item[1], policy=email.policy.default)
                m = _UID_RE.search(item[0])
                if m and any(str(v).strip() == key for v in hdr.get_all(MARKER_HEADER) or []):
                    out.append(int(m.group(1)))
        return out

    def _own_copy(self, key: str) -> bytes | None:
        """The own copy of the mail ``key`` (see ``own_copy``): in the inbox,
        or already moved by the intake to processed/quarantine."""
        for mailbox in ("INBOX", self.folder("processed"), self.folder("quarantine")):
            for uid in self._find_key(mailbox, key):
                data = self.imap.fetch(mailbox, [uid], "(BODY.PEEK[])")
                raw = next((item[1] for item in data if isinstance(item, tuple)), None)
                if raw is None:
                    continue
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                if "@" in self.username and _sender_of(msg) != self.username.lower():
                    continue  # not from us: someone else's mail carrying our header
                if not self._is_ours(key, msg):
                    continue  # our header and address, but not our Message-ID: forged
                return bytes(raw)
        return None

    def was_sent(self, key: str) -> bool:
        def attempt(conn: imaplib.IMAP4) -> bool:
            if self._find_key(self.folder("sent"), key):
                return True
            if not self.own_copy:
                return False
            raw = self._own_copy(key)
            if raw is None:
                return False
            # Sent through SMTP, but the process died before the Sent copy: write it now.
            log.warning("%s: found our own copy of it; it went out before a crash, storing the Sent copy now", key)
            self._append_sent(raw)
            return True

        return self.imap.run(f"look up {key} in Sent", attempt)

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        """Every message in Sent with our marker header (``kcg state rebuild``)."""

        def attempt(conn: imaplib.IMAP4) -> list[tuple[str, bytes]]:
            sent = self.folder("sent")
            if not self.imap.exists(sent):
                return []
            self.imap.select(sent, readonly=True, force=True)
            typ, data = conn.uid("SEARCH", "HEADER", MARKER_HEADER, '""')
            uids = uids_of(ok("search Sent", typ, data))
            out: list[tuple[str, bytes]] = []
            for i in range(0, len(uids), FETCH_BATCH):
                for item in self.imap.fetch("Sent", uids[i : i + FETCH_BATCH], "(BODY.PEEK[])"):
                    if isinstance(item, tuple):
                        hdr = email.message_from_bytes(item[1], policy=email.policy.default)
                        key = hdr.get(MARKER_HEADER)
                        if key:
                            out.append((str(key).strip(), item[1]))
            return out

        return iter(self.imap.run("list Sent", attempt))

    def verify_own_copies(self, is_ours: Callable[[str, str], bool]) -> None:
        self._own_copy_check = is_ours

    def _is_ours(self, key: str, hdr: email.message.Message) -> bool:
        check = self._own_copy_check
        return check is None or check(key, str(hdr.get("Message-ID") or ""))

    def _own_copy_key(self, raw: bytes) -> str | None:
        """The key of ``raw`` when it is our own copy of a mail we sent (see ``own_copy``)."""
        if not self.own_copy:
            return None
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        if MARKER_HEADER.encode().lower() not in head.lower():
            return None
        hdr = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.default)
        key = str(hdr.get(MARKER_HEADER) or "").strip()
        if not key or ("@" in self.username and _sender_of(hdr) != self.username.lower()):
            return None
        if not self._is_ours(key, hdr):
            log.warning("%s: a mail with our marker and address but not our Message-ID; read as incoming mail", key)
            return None
        return key

    def _file_own_copy(self, uid: int, key: str) -> None:
        """Our own copy is not incoming mail: it completes Sent when the Sent
        copy is missing (a crash came between SMTP and Sent), else it goes."""
        sent = self.folder("sent")
        self.imap.ensure(sent)
        have = bool(self._find_key(sent, key))
        self.imap.select("INBOX", force=True)
        if have:
            self.imap.delete(uid, "own copy")
            return
        log.warning("%s: the Sent copy was missing (interrupted send); filing our own copy in Sent", key)
        self.imap.connection().uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")
        self.imap.move(uid, sent, "own copy")

    # ------------------------------------------------------------------ check
    def check(self) -> list[Check]:
        return [self.smtp.check(), *self.imap.check(self.folder_names)]
