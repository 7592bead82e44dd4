"""Push for SMTP/IMAP: IMAP IDLE (RFC 2177) on a connection of its own.

``SmtpImapTransport.mail_source()`` makes one on a twin of its ``ImapSession``
without retries: the listener does the backoff. ``mark()`` reads UIDNEXT, and
``wait`` compares UIDNEXT with it before it IDLEs, so mail that arrived between
a trigger and the next IDLE is reported at once (the server announces it only
once). Without IDLE on the server it polls UIDNEXT every ``interval`` s.
"""

from __future__ import annotations

import imaplib
import itertools
import logging
import select
import ssl
import threading
import time

from kcg_mail.ports import MailSource

from .imap_session import ImapSession

log = logging.getLogger(__name__)

#: Re-issue IDLE well before the 29 minutes of RFC 2177 and before NAT boxes
#: forget a silent connection.
IDLE_TIMEOUT = 300.0

_tags = itertools.count(1)


class NoIdle(Exception):
    """The server cannot push: it has no IDLE, or refused it."""


class ImapIdleSource(MailSource):
    name = "imap-idle"

    def __init__(self, session: ImapSession, idle_timeout: float = IDLE_TIMEOUT, interval: float = 30.0,
                 stop: threading.Event | None = None) -> None:
        super().__init__(interval, stop)
        self.session = session
        self.idle_timeout = idle_timeout
        #: False once the server turned out not to push: poll UIDNEXT instead
        self.push = True
        #: UIDNEXT of INBOX at the last ``mark()``
        self._marked: int | None = None

    def _uidnext(self) -> int | None:
        def read(conn: imaplib.IMAP4) -> int | None:
            self.session.select("INBOX", readonly=True, force=True)
            return self.session.untagged_int("UIDNEXT")

        return self.session.run("read INBOX UIDNEXT", read)

    def mark(self) -> None:
        self._marked = self._uidnext()

    def wait(self, timeout: float) -> bool:
        if self.push:
            try:
                return self.session.run("wait for new mail", lambda conn: self._wait_idle(conn, min(timeout, self.idle_timeout)))
            except NoIdle as exc:
                log.warning("IMAP server cannot push (%s): polling every %.0f s", exc, self.interval)
                self.push = False
        # poll fallback: compare UIDNEXT with the last mark
        if self.pause(timeout):
            return False
        now = self._uidnext()
        return self._marked is None or (now is not None and now > self._marked)

    def close(self) -> None:
        # May be called from another thread while IDLE blocks in select():
        # shut the socket down (no LOGOUT exchange racing the IDLE reader).
        self.session.drop()

    def _wait_idle(self, conn: imaplib.IMAP4, timeout: float) -> bool:
        if "IDLE" not in conn.capabilities:
            raise NoIdle(f"IMAP server {self.session.host} does not support IDLE")
        # Mail that came in after the last mark, before this IDLE, is not
        # announced again: compare UIDNEXT first.
        self.session.select("INBOX", force=True)
        uidnext = self.session.untagged_int("UIDNEXT")
        if self._marked is not None and uidnext is not None and uidnext > self._marked:
            return True
        return self._idle(conn, timeout)

    def _idle(self, conn: imaplib.IMAP4, timeout: float) -> bool:
        tag = b"KCGIDLE%d" % next(_tags)  # never one of imaplib's own tags
        conn.send(tag + b" IDLE\r\n")
        news = False
        while True:
            line = conn.readline()
            if not line:
                raise imaplib.IMAP4.abort("connection closed during IDLE")
            if line.startswith(b"+"):
                break
            if line.startswith(tag):
                raise NoIdle(f"IDLE refused: {line.decode(errors='replace').strip()}")
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
