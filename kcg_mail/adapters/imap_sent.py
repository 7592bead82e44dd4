"""What we sent, as the IMAP server keeps it: the Sent copy (appended after
SMTP), our own copy to the network mailbox that closes the window between the
two, and finding a mail again by its marker (crash recovery, ``kcg state
rebuild``)."""

from __future__ import annotations

import email
import email.policy
import imaplib
import logging
import re
import time
from collections.abc import Callable, Iterator

from kcg_mail.ports import (
    MARKER_HEADER,
)

from .imap_wire import _encode_mutf7, _quote

log = logging.getLogger(__name__)





class ImapSent:
    """Sent copies of an ``SmtpImapTransport``."""

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
                if not self._is_ours(key, msg):
                    continue  # our header and address, but not our Message-ID: forged
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
        if not self._is_ours(key, hdr):
            log.warning("%s: a mail with our marker and address but not our Message-ID; read as incoming mail", key)
            return None
        return key

    def verify_own_copies(self, is_ours: Callable[[str, str], bool]) -> None:
        self._own_copy_check = is_ours

    def _is_ours(self, key: str, hdr: email.message.Message) -> bool:
        check = getattr(self, "_own_copy_check", None)
        return check is None or check(key, str(hdr.get("Message-ID") or ""))

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
