"""Faults of a mail server connection (SMTP and IMAP), told in plain words and
retried with the one retry idiom of the adapters (``retry.call_with_retry``).

``Retry.run`` runs one attempt and, on a transient fault (refused connection,
a dropped IMAP connection, a 4xx SMTP reply), waits 1, 2, 4... s and runs it
again, ``retries`` times, then raises ``TransientError``. A fault after which
an SMTP message may have reached the server (a connection lost during the
transaction) is not retried: the Outbox's record and ``was_sent`` decide on
the next run, so nothing goes out twice. Everything a person must fix (wrong
password, TLS problems, missing permissions, a 5xx reply) raises
``TransportError`` at once, with a plain message.
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

from .retry import GaveUp, Permanent, RetryPolicy, Transient, Verdict, call_with_retry, classify

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


def mail_verdict(exc: BaseException) -> Verdict:
    """``retry.classify`` with what it does not know of mail servers: a read-only
    mailbox is a permission (imaplib raises it as an ``abort``), and a connection
    closed under imaplib's reader (``EOFError``) is a dropped connection."""
    if isinstance(exc, imaplib.IMAP4.readonly):
        return Permanent("IMAP mailbox is read-only")
    if isinstance(exc, EOFError):
        return Transient("connection closed", maybe_sent=True)
    return classify(exc)


#: What the client libraries raise; anything else (a bug, our own signals) passes through.
_CLIENT_ERRORS = (imaplib.IMAP4.error, smtplib.SMTPException, OSError, EOFError)


@dataclass
class Retry:
    """The retry policy one transport's SMTP sender and IMAP session share."""

    retries: int = 3
    backoff: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def run(self, what: str, fn: Callable[[], T], *, on_fault: Callable[[], None] = _nothing,
            idempotent: bool = True, smtp_login: str = "SMTP login") -> T:
        """``fn()``, retried on transient faults. ``on_fault`` runs after any
        fault (the IMAP session drops its connection, so the next attempt opens
        a fresh one). ``idempotent=False`` (a send): a fault after which the
        server may have acted is not retried. ``smtp_login`` names the SMTP
        login in the message of a refused password."""

        def attempt() -> T:
            try:
                return fn()
            except BaseException:
                on_fault()
                raise

        policy = RetryPolicy(max_retries=self.retries, backoff_base=self.backoff, backoff_max=3600.0,
                             idempotent=idempotent, sleep=self.sleep, what=what, classify=mail_verdict)
        try:
            return call_with_retry(attempt, policy)
        except GaveUp as exc:
            if exc.why == "ambiguous":
                raise TransientError(
                    f"{what}: {describe(exc.last)}; the server may have taken it, so it is not repeated now "
                    "(the next run checks Sent before anything goes out again)") from exc.last
            raise TransientError(
                f"{what}: mail server not reachable after {exc.attempts} attempts ({describe(exc.last)}); "
                "will retry later") from exc.last
        except TransportError:
            raise
        except imaplib.IMAP4.readonly as exc:
            raise TransportError(
                f"{what}: {exc}: this user may only read the mailbox; ask the mail admin for write permission"
            ) from exc
        except _CLIENT_ERRORS as exc:
            raise permanent(what, exc, smtp_login) from exc


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
