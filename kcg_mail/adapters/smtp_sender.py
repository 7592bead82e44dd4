"""Sending over SMTP: connect (STARTTLS, implicit TLS or plain on loopback),
log in (UTF-8 passwords through AUTH PLAIN), hand over one message, and say in
plain words why a connection does not work (``kcg check --connect``)."""

from __future__ import annotations

import base64
import contextlib
import logging
import smtplib
import ssl
from typing import Literal

from kcg_mail.ports import Check, TransportError

from .mail_faults import Retry, connection_problem, describe

log = logging.getLogger(__name__)

SmtpSecurity = Literal["starttls", "tls", "none"]


class SmtpSender:
    """One SMTP account. Each ``send`` opens its own connection (mail goes out
    rarely; a connection held open would only time out between sends)."""

    def __init__(self, host: str, port: int, username: str, password: str, *, security: SmtpSecurity,
                 ssl_context: ssl.SSLContext, timeout: float, retry: Retry) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"smtp_security must be starttls, tls or none, not {security!r}")
        self.host, self.port = host, int(port)
        self.username, self.password = username, password
        self.security: SmtpSecurity = security
        self.ssl_context = ssl_context
        self.timeout = float(timeout)
        self.retry = retry

    def __repr__(self) -> str:  # never show the password
        return f"SmtpSender({self.username}@{self.host}:{self.port})"

    @property
    def login_name(self) -> str:
        return f"SMTP login as {self.username!r} on {self.host}:{self.port}"

    def connect(self) -> smtplib.SMTP:
        """A logged-in SMTP connection (the caller quits it)."""
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP server {self.host}:{self.port} does not offer STARTTLS; "
                        "use smtp_security='tls' for an implicit-TLS port (465), or 'none' only for a "
                        "server on this machine (loopback)"
                    )
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if not smtp.has_extn("auth"):
                raise TransportError(
                    f"SMTP server {self.host}:{self.port} offers no AUTH on this connection "
                    f"(security={self.security}); use the submission port (587 with starttls or 465 with tls)"
                )
            self._login(smtp)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        user, password = self.username, self.password
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

    def send(self, key: str, sender: str, recipients: list[str], data: bytes) -> None:
        """Hand ``data`` to the server for ``recipients``, retried on transient
        faults. Returns once the server accepted it; a failure after that (the
        QUIT) never leads to a second send."""
        if not recipients:
            raise TransportError(f"{key}: message has no recipients")

        def attempt() -> None:
            smtp = self.connect()
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

        self.retry.run(f"send {key}", attempt, idempotent=False, smtp_login=self.login_name)

    def check(self) -> Check:
        """Log in once and say what does not work."""
        name = f"SMTP {self.host}:{self.port}"
        try:
            smtp = self.connect()
        except smtplib.SMTPAuthenticationError as exc:
            return Check(name, False, f"login as {self.username!r} refused: wrong user or password ({describe(exc)})")
        except TransportError as exc:
            return Check(name, False, str(exc))
        except smtplib.SMTPResponseException as exc:
            return Check(name, False, f"server refused: {describe(exc)}")
        except (OSError, smtplib.SMTPException) as exc:
            return Check(name, False, connection_problem("SMTP", self.host, self.port, self.security, self.timeout, exc))
        with contextlib.suppress(Exception):
            smtp.noop()
            smtp.quit()
        return Check(name, True, f"logged in as {self.username} ({self.security})")
