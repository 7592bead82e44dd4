"""Sending over SMTP: connect (STARTTLS, implicit TLS or plain on loopback),
log in (UTF-8 passwords through AUTH PLAIN), hand over one message, and say in
plain words why a connection does not work (``kcg check --connect``)."""

from __future__ import annotations

import base64
import contextlib
import logging
import smtplib
from dataclasses import dataclass

from kcg_mail.ports import Check, TransportError

from .mail_faults import connection_problem, describe
from .server_login import Security, ServerLogin, closed_on_failure

log = logging.getLogger(__name__)

SmtpSecurity = Security


@dataclass(eq=False, repr=False)
class SmtpSender(ServerLogin):
    """One SMTP account. Each ``send`` opens its own connection (mail goes out
    rarely; a connection held open would only time out between sends)."""

    protocol = "smtp"

    @property
    def login_name(self) -> str:
        return f"SMTP login as {self.username!r} on {self.host}:{self.port}"

    def connect(self) -> smtplib.SMTP:
        """A logged-in SMTP connection (the caller quits it)."""
        smtp = self.open_connection(smtplib.SMTP, smtplib.SMTP_SSL, context_arg="context")
        with closed_on_failure(smtp.close):
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self.no_starttls(tls_port=465)
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if not smtp.has_extn("auth"):
                raise TransportError(
                    f"SMTP server {self.host}:{self.port} offers no AUTH on this connection "
                    f"(security={self.security}); use the submission port (587 with starttls or 465 with tls)"
                )
            self._login(smtp)
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        creds = self.plain_credentials()
        if creds is None:
            smtp.login(self.username, self.password)
            return
        # smtplib encodes credentials as ASCII; AUTH PLAIN is UTF-8 (RFC 4616).
        mechs = (smtp.esmtp_features.get("auth") or "").upper().split()
        if "PLAIN" not in mechs:
            raise TransportError(
                f"the SMTP server offers no AUTH PLAIN ({' '.join(mechs)}), needed for a password with non-ASCII letters"
            )
        token = base64.b64encode(creds).decode("ascii")
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
            with closed_on_failure(smtp.close):
                options = []
                if any(not r.isascii() for r in [sender, *recipients]) and smtp.has_extn("smtputf8"):
                    options.append("SMTPUTF8")
                refused = smtp.sendmail(sender, recipients, data, mail_options=options)
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
