"""``kcg check --connect`` for SMTP/IMAP: log in to both servers and say in
plain words what does not work (wrong password, wrong host or port, TLS)."""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import socket
import ssl

from kcg_mail.ports import (
    Check,
    TransportError,
)

from .imap_wire import _describe, _encode_mutf7, _quote


class SmtpImapCheck:
    """Connection checks of an ``SmtpImapTransport``."""

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
