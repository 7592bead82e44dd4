"""Faults of a mail server connection (SMTP and IMAP), told in plain words and
retried when they may pass.

``Retry.run`` runs one attempt and, on a transient fault (refused or dropped
connection, timeout, a 4xx SMTP reply, an IMAP ``abort``), waits with
exponential backoff and runs it again, ``retries`` times, then raises
``TransientError``. Everything a person must fix (wrong password, TLS problems,
missing permissions, a 5xx reply) raises ``TransportError`` at once.
"""

from __future__ import annotations

import imaplib
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kcg_mail.ports import TransientError, TransportError

log = logging.getLogger(__name__)

T = TypeVar("T")


def describe(exc: BaseException | None) -> str:
    """A fault in one line: the server's own words where it gave some."""
    if exc is None:
        return "no answer"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, imaplib.IMAP4.error) and exc.args and isinstance(exc.args[0], bytes):
        text = exc.args[0].decode("utf-8", "replace")
    if isinstance(exc, smtplib.SMTPResponseException):
        err = exc.smtp_error
        msg = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
        text = f"{exc.smtp_code} {msg}"
    return text


def connection_problem(proto: str, host: str, port: int, security: str, timeout: float, exc: BaseException) -> str:
    """Why a connection to ``host:port`` failed, and what to check (``kcg check --connect``)."""
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
        return f"no answer from {host}:{port} within {timeout:.0f}s: wrong host/port or blocked{extra}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{host}:{port} closed the connection: wrong port or security setting? ({exc})"
    if isinstance(exc, OSError):
        return f"cannot connect to {host}:{port}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _nothing() -> None:
    return None


@dataclass
class Retry:
    """The retry policy one transport's SMTP sender and IMAP session share."""

    retries: int = 3
    backoff: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def run(self, what: str, fn: Callable[[], T], *, on_fault: Callable[[], None] = _nothing,
            smtp_login: str = "SMTP login") -> T:
        """``fn()``, retried on transient faults. ``on_fault`` runs after any
        fault of the connection (the IMAP session drops its connection, so the
        next attempt opens a fresh one). ``smtp_login`` names the SMTP login in
        the message of a refused password."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * (2 ** (attempt - 1))
                log.info("%s: retry %d/%d in %.1fs after: %s", what, attempt, self.retries, delay, describe(last))
                self.sleep(delay)
            try:
                return fn()
            except TransportError:
                on_fault()
                raise
            except (smtplib.SMTPAuthenticationError, ssl.SSLCertVerificationError) as exc:
                on_fault()
                raise permanent(what, exc, smtp_login) from exc
            except smtplib.SMTPResponseException as exc:
                if not 400 <= exc.smtp_code < 500:
                    raise permanent(what, exc, smtp_login) from exc
                last = exc
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                if not codes or not all(400 <= c < 500 for c in codes):
                    raise permanent(what, exc, smtp_login) from exc
                last = exc
            except smtplib.SMTPNotSupportedError as exc:
                raise permanent(what, exc, smtp_login) from exc
            except imaplib.IMAP4.readonly as exc:
                on_fault()
                raise TransportError(
                    f"{what}: {exc}: this user may only read the mailbox; ask the mail admin for write permission"
                ) from exc
            except ssl.SSLError as exc:
                on_fault()
                if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    last = exc
                else:
                    raise permanent(what, exc, smtp_login) from exc
            except imaplib.IMAP4.abort as exc:
                on_fault()
                last = exc
            except imaplib.IMAP4.error as exc:
                on_fault()
                raise permanent(what, exc, smtp_login) from exc
            except (OSError, smtplib.SMTPException, EOFError) as exc:
                # refused, reset, timeout, DNS hiccup, server disconnected
                on_fault()
                last = exc
        raise TransientError(
            f"{what}: mail server not reachable after {self.retries + 1} attempts ({describe(last)}); will retry later"
        ) from last


def permanent(what: str, exc: BaseException, smtp_login: str = "SMTP login") -> TransportError:
    """The ``TransportError`` for a fault a person must fix."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TransportError(f"{what}: {smtp_login} refused: wrong user or password ({describe(exc)})")
    if isinstance(exc, ssl.SSLError):
        return TransportError(f"{what}: TLS problem: {describe(exc)} — check the host name, port and security setting")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return TransportError(f"{what}: the SMTP server refused the recipients: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return TransportError(f"{what}: the SMTP server refused: {describe(exc)}")
    return TransportError(f"{what}: {describe(exc)}")
