"""One login on a mail server: where it is, who logs in, how the connection is
secured, how long a reply may take and how faults are retried. What the SMTP
sender (``smtp_sender``) and the IMAP session (``imap_session``) share."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Literal, TypeVar

from kcg_mail.ports import TransportError

from .mail_faults import Retry


@contextlib.contextmanager
def closed_on_failure(close: Callable[[], object]) -> Iterator[None]:
    """Close a connection (quietly) when the block that sets it up or uses it fails;
    the failure itself goes on."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            close()
        raise


C = TypeVar("C")

#: implicit TLS, STARTTLS on the plain port, or no TLS (a server on this machine only)
Security = Literal["starttls", "tls", "none"]


@dataclass(eq=False, repr=False)
class ServerLogin:
    host: str
    port: int
    username: str
    password: str
    _: KW_ONLY
    security: Security
    ssl_context: ssl.SSLContext
    timeout: float
    retry: Retry

    #: the protocol's name in messages and settings ("smtp", "imap")
    protocol: ClassVar[str]

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError(f"{self.protocol}_security must be starttls, tls or none, not {self.security!r}")
        self.port, self.timeout = int(self.port), float(self.timeout)

    def __repr__(self) -> str:  # never show the password
        return f"{type(self).__name__}({self.username}@{self.host}:{self.port})"

    def open_connection(self, plain: Callable[..., C], tls: Callable[..., C], *, context_arg: str) -> C:
        """A connection by the library's ``plain`` or implicit-TLS ``tls`` class, as
        ``security`` says (``context_arg``: the name of the TLS class's context argument)."""
        if self.security == "tls":
            return tls(self.host, self.port, timeout=self.timeout, **{context_arg: self.ssl_context})
        return plain(self.host, self.port, timeout=self.timeout)

    def no_starttls(self, *, tls_port: int) -> TransportError:
        """The server does not offer the STARTTLS that ``security`` asks for."""
        return TransportError(
            f"{self.protocol.upper()} server {self.host}:{self.port} does not offer STARTTLS; "
            f"use {self.protocol}_security='tls' for an implicit-TLS port ({tls_port}), or 'none' only for a "
            "server on this machine (loopback)"
        )

    def plain_credentials(self) -> bytes | None:
        """The SASL PLAIN message (RFC 4616, UTF-8) when the user name or password has
        non-ASCII letters, which the protocols' plain login (ASCII only) cannot carry;
        None when that login will do."""
        if (self.username + self.password).isascii():
            return None
        return b"\0" + self.username.encode("utf-8") + b"\0" + self.password.encode("utf-8")
