"""Push: IMAP IDLE on its own connection (RFC 2177), for the listener."""

from __future__ import annotations

import imaplib
import select
import ssl
import time

from kcg_mail.ports import (
    TransportError,
)

from .imap_wire import _untagged_int


class ImapIdle:
    """IDLE of an ``SmtpImapTransport``."""

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
