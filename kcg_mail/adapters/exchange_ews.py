"""Exchange Web Services through exchangelib: our extended properties (the
marker, Auto-Submitted, the invitation UID and sequence), a bounded retry
policy, the account and its credentials (OAuth, NTLM, basic), a rejected token
refreshed once, and exchangelib's errors turned into clear ones: ``EwsSession``,
which ``exchange.ExchangeTransport`` holds. Retries stay exchangelib's own
(``FaultTolerance``, which honours EWS's BackOffMilliseconds), bounded here."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import requests
from exchangelib import (
    DELEGATE,
    IMPERSONATION,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    ExtendedProperty,
    FaultTolerance,
    Identity,
    Message,
    OAuth2Credentials,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.fields import InvalidField
from exchangelib.transport import BASIC, NTLM, OAUTH2
from exchangelib.version import Build
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from ..ports import (
    MARKER_HEADER,
    TransientError,
    TransportError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


AuthKind = Literal["oauth", "ntlm", "basic"]


#: Build names accepted for ``version`` (exchangelib's ``Version(build=...)``).
VERSIONS: dict[str, Build] = {
    "Exchange2010_SP2": Build(14, 2),
    "Exchange2013": Build(15, 0),
    "Exchange2013_SP1": Build(15, 0, 847),
    "Exchange2016": Build(15, 1),
    "Exchange2019": Build(15, 2),
    # Exchange Online answers as 15.20 and speaks the Exchange2016 schema.
    "ExchangeOnline": Build(15, 20),
}


#: Named property (private to us) holding the iCalendar UID of a meeting.
UID_PROPERTY = "X-KCG-Invitation-UID"


#: Named property holding the last SEQUENCE we sent for that meeting.
SEQUENCE_PROPERTY = "X-KCG-Invitation-Sequence"


def _extended_property(set_id: str, name: str, kind: str = "String") -> type[ExtendedProperty]:
    """An exchangelib extended property class: an Internet header (``InternetHeaders``)
    or a named property private to us (``PublicStrings``)."""
    attrs = {"distinguished_property_set_id": set_id, "property_name": name, "property_type": kind}
    return type(f"Kcg{name.replace('-', '')}", (ExtendedProperty,), attrs)


#: our marker header (``X-KCG-Mail: <idempotency key>``) as an Internet header
KcgMarker = _extended_property("InternetHeaders", MARKER_HEADER)
KcgInvitationUid = _extended_property("PublicStrings", UID_PROPERTY)
KcgInvitationSequence = _extended_property("PublicStrings", SEQUENCE_PROPERTY, "Integer")

_REGISTRATIONS = (
    (Message, "kcg_marker", KcgMarker),
    (Message, "kcg_auto_submitted", _extended_property("InternetHeaders", "Auto-Submitted")),
    (Message, "kcg_auto_response_suppress", _extended_property("InternetHeaders", "X-Auto-Response-Suppress")),
    (CalendarItem, "kcg_marker", KcgMarker),
    (CalendarItem, "kcg_uid", KcgInvitationUid),
    (CalendarItem, "kcg_sequence", KcgInvitationSequence),
)


def register_extended_properties() -> None:
    """Register our extended properties on exchangelib's item classes (idempotent;
    exchangelib keeps them on the classes, process-wide)."""
    for cls, attr, prop in _REGISTRATIONS:
        try:
            field = cls.get_field_by_fieldname(attr)
        except InvalidField:
            cls.register(attr, prop)
        else:
            if getattr(field, "value_cls", None) is not prop:
                raise RuntimeError(f"{cls.__name__}.{attr} is registered with another property class")


#: what an HTTP status wrapped in exchangelib's MalformedResponseError means here
_HTTP_ANSWERS = {
    "403": "403 Forbidden: EWS is disabled for this organisation, mailbox or app. Exchange Online blocks EWS by "
           "default from 2026-10-01 (EWSEnabled, EwsAllowedAppIDs) and turns it off on 2027-04-01; use the Graph "
           "transport. On-premises: check Set-CASMailbox -EwsEnabled.",
    "404": "404: wrong service endpoint. It normally ends in /EWS/Exchange.asmx "
           "(Exchange Online: https://outlook.office365.com/EWS/Exchange.asmx).",
}

#: exchangelib's and oauthlib's faults, tried in this order: the classes, our error (worth a later
#: run, or someone must act) and its message ({what}: the operation, {where}: server and mailbox,
#: {e}: the fault, {fault}: its class name)
_FAULTS: tuple[tuple[tuple[type[Exception], ...], type[TransportError], str], ...] = (
    ((ews_errors.RateLimitError,), TransientError,
     "{what}: {where} is throttling and did not recover within {max_wait:g} s ({e}). Nothing more was sent; "
     "run again later."),
    ((ews_errors.ErrorServerBusy, ews_errors.ErrorInternalServerTransientError, ews_errors.ErrorTimeoutExpired,
      ews_errors.ErrorTooManyObjectsOpened, ews_errors.ErrorExceededConnectionCount,
      ews_errors.ErrorMailboxStoreUnavailable, ews_errors.ErrorMailboxMoveInProgress,
      requests.ConnectionError, requests.Timeout), TransientError,
     "{what}: {where} is unavailable ({fault}: {e}); run again later."),
    ((oauth_errors.InvalidClientError, oauth_errors.UnauthorizedClientError, oauth_errors.InvalidClientIdError),
     TransportError,
     "{what}: Microsoft Entra ID refused the app credentials ({e.error}: {e.description}). Check mail.client_id "
     "and mail.tenant_id in transport.yaml (or KCG_MAIL__CLIENT_ID / KCG_MAIL__TENANT_ID) and "
     "KCG_EWS_CLIENT_SECRET (secrets expire; create a new one under Certificates & secrets)."),
    ((oauth_errors.OAuth2Error,), TransportError, "{what}: OAuth token request failed ({e.error}: {e.description})."),
    ((ews_errors.ErrorImpersonateUserDenied, ews_errors.ErrorImpersonationFailed), TransportError,
     "{what}: {where} refused impersonation of {mailbox} ({e}). Exchange Online: grant the app the application "
     "permission full_access_as_app (Office 365 Exchange Online) and admin consent. On-premises: give the service "
     "account the ApplicationImpersonation role or full access to the mailbox."),
    ((ews_errors.ErrorNonExistentMailbox,), TransportError, "{what}: mailbox {mailbox} does not exist on {where} ({e})."),
    ((ews_errors.ErrorAccessDenied,), TransportError,
     "{what}: {where} denied access ({e}). Check the app's full_access_as_app permission (Exchange Online) or the "
     "account's rights on the mailbox (on-premises). If EWS is blocked for the tenant (EWSEnabled / "
     "EwsAllowedAppIDs), an administrator must allow this app."),
    ((ews_errors.RedirectError, ews_errors.CASError, ews_errors.MalformedResponseError, ews_errors.SOAPError),
     TransportError, "{what}: {where} did not answer like EWS ({fault}: {e}). Check the service endpoint URL."),
    ((ews_errors.EWSError,), TransportError, "{what}: {where} failed: {fault}: {e}"),
)


class BoundedRetry(FaultTolerance):  # type: ignore[misc]  # exchangelib is untyped
    """exchangelib's fault-tolerant policy with two changes:

    * waits go through an injectable ``sleep`` (exchangelib itself would call
      ``time.sleep`` later, in ``post_ratelimited``) and are bounded by
      ``max_wait`` seconds *in total* per operation, not per wait: a server that
      keeps answering ``ErrorServerBusy`` with a short back-off cannot keep us
      looping forever;
    * HTTP 401 is a login failure, not a throttling hint (FaultTolerance retries
      401s, which would turn a wrong password into a five-minute wait).
    """

    _sleep: Callable[[float], None]
    waited: float
    waits: list[float]

    def __init__(self, max_wait: float, sleep: Callable[[float], None]) -> None:
        super().__init__(max_wait=max_wait)
        self._sleep = sleep
        self.waited = 0.0
        self.waits = []

    def reset(self) -> None:
        self.waited = 0.0

    def back_off(self, seconds: float | None) -> None:
        if seconds is None:
            seconds = self.DEFAULT_BACKOFF
        if self.waited + seconds > self.max_wait:
            raise ews_errors.RateLimitError(
                f"Exchange kept asking us to back off; waited {self.waited:.1f} s of max_wait={self.max_wait} s",
                wait=seconds,
            )
        self.waited += seconds
        self.waits.append(seconds)
        log.warning("Exchange is throttling; waiting %.2f s before retrying", seconds)
        self._sleep(seconds)
        # back_off_until stays None, so exchangelib does not sleep a second time.

    def raise_response_errors(self, response: Any) -> Any:
        if response.status_code == 401 and b"locked out" not in response.content:
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url} (HTTP 401)")
        return super().raise_response_errors(response)


class EwsSession:
    """One mailbox's EWS account: credentials (OAuth, NTLM, basic), the
    bounded retry policy, a rejected OAuth token refreshed once, and
    exchangelib's faults translated into clear errors (:meth:`call`)."""

    mailbox: str
    auth: AuthKind
    service_endpoint: str
    version: str | None
    autodiscover: bool
    max_wait: float
    retry_policy: BoundedRetry
    #: how often a rejected access token was replaced (for tests and logs)
    token_refreshes: int
    _client_id: str | None
    _client_secret: str | None
    _tenant_id: str | None
    _username: str | None
    _password: str | None
    _account: Account | None

    def __init__(
        self,
        mailbox: str,
        auth: AuthKind,
        service_endpoint: str,
        version: str | None = "Exchange2016",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        tenant_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        autodiscover: bool = False,
        max_wait: float = 300,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if "@" not in mailbox:
            raise ValueError(f"mailbox must be an e-mail address, got {mailbox!r}")
        if auth not in ("oauth", "ntlm", "basic"):
            raise ValueError(f"auth must be 'oauth', 'ntlm' or 'basic', got {auth!r}")
        if auth == "oauth":
            missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret),
                                      ("tenant_id", tenant_id)) if not v]
            if missing:
                raise ValueError(
                    f"auth='oauth' needs {', '.join(missing)} (transport.yaml mail.client_id and mail.tenant_id "
                    "or KCG_MAIL__CLIENT_ID / KCG_MAIL__TENANT_ID; the secret in KCG_EWS_CLIENT_SECRET)"
                )
        elif not username or not password:
            raise ValueError(f"auth={auth!r} needs username and password (transport.yaml mail.username or "
                             "KCG_MAIL__USERNAME; the password in KCG_EWS_PASSWORD)")
        if not service_endpoint and not autodiscover:
            raise ValueError("service_endpoint is required unless autodiscover=True")
        if version is not None and version not in VERSIONS:
            raise ValueError(f"unknown Exchange version {version!r}; use one of {sorted(VERSIONS)} or None")
        self.mailbox = mailbox
        self.auth = auth
        self.service_endpoint = service_endpoint
        self.version = version
        self.autodiscover = autodiscover
        self.max_wait = max_wait
        self._client_id, self._client_secret, self._tenant_id = client_id, client_secret, tenant_id
        self._username, self._password = username, password
        self.retry_policy = BoundedRetry(max_wait=max_wait, sleep=sleep)
        self._account = None
        self.token_refreshes = 0

    @property
    def username(self) -> str | None:
        return self._username

    def _credentials(self) -> Any:
        if self.auth == "oauth":
            return OAuth2Credentials(
                client_id=self._client_id,
                client_secret=self._client_secret,
                tenant_id=self._tenant_id,
                identity=Identity(primary_smtp_address=self.mailbox),
            )
        return Credentials(self._username, self._password)

    @property
    def account(self) -> Account:
        if self._account is None:
            credentials = self._credentials()
            access_type = IMPERSONATION if self.auth == "oauth" else DELEGATE
            auth_type = {"oauth": OAUTH2, "ntlm": NTLM, "basic": BASIC}[self.auth]
            config = Configuration(
                credentials=credentials,
                # autodiscover finds the endpoint itself; otherwise pin it (no discovery traffic)
                service_endpoint=None if self.autodiscover else self.service_endpoint,
                auth_type=auth_type,
                version=Version(build=VERSIONS[self.version]) if self.version else None,
                retry_policy=self.retry_policy,
            )
            account = Account(
                primary_smtp_address=self.mailbox,
                config=config,
                autodiscover=self.autodiscover,
                access_type=access_type,
                default_timezone=None,
            )
            # exchangelib caches Protocol objects per (endpoint, credentials); a cached one
            # keeps the retry policy it was created with. Ours must be the one in force.
            account.protocol.config.retry_policy = self.retry_policy
            self._account = account
        return self._account

    def close(self) -> None:
        if self._account is not None:
            self._account.protocol.close()
        self._account = None

    def refresh_token(self) -> None:
        """Drop the access token and every pooled session built on it; the
        next request fetches a new token (client credentials)."""
        if self._account is None:
            return
        proto = self._account.protocol
        with proto.credentials.lock:
            proto.credentials.access_token = None
        stale = []
        while True:
            try:
                stale.append(proto._session_pool.get(block=False))
            except queue.Empty:
                break
        for session in stale:
            proto.release_session(proto.renew_session(session))
        self.token_refreshes += 1

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` under :meth:`translating`. OAuth: a token the server rejects
        before its expiry (revoked, rotated keys, a tenant policy change) is
        fetched anew once and ``fn`` repeated, as the Graph transport does; a
        second 401 is reported. A request answered 401 did nothing on the
        server, so the repeat sends nothing twice."""
        try:
            with self.translating(what):
                return fn()
        except TransportError as e:
            if self.auth != "oauth" or not isinstance(e.__cause__, ews_errors.UnauthorizedError):
                raise
            log.warning("Exchange rejected the access token; fetching a new one and retrying once")
            self.refresh_token()
            with self.translating(what):
                return fn()

    @contextmanager
    def translating(self, what: str) -> Iterator[None]:
        """Reset the wait budget and translate exchangelib faults into ours."""
        self.retry_policy.reset()
        try:
            yield
        except TransportError:
            raise
        except Exception as e:  # noqa: BLE001 - everything is translated, nothing swallowed
            raise self._translate(e, what) from e

    def _translate(self, e: Exception, what: str) -> TransportError:
        where = f"Exchange ({self.service_endpoint or 'autodiscover'}, mailbox {self.mailbox})"
        if isinstance(e, ews_errors.UnauthorizedError):
            return TransportError(f"{what}: {where} answered 401 Unauthorized; {self._login_hint()}.")
        if isinstance(e, ews_errors.MalformedResponseError):
            for code, answer in _HTTP_ANSWERS.items():
                if f"Code: {code}" in str(e):
                    return TransportError(f"{what}: {where} answered {answer}")
        for kinds, error, text in _FAULTS:
            if isinstance(e, kinds):
                return error(text.format(what=what, where=where, e=e, fault=type(e).__name__, mailbox=self.mailbox,
                                         max_wait=self.max_wait))
        return TransportError(f"{what}: unexpected error talking to {where}: {type(e).__name__}: {e}")

    def _login_hint(self) -> str:
        """What to check when EWS answered 401: the app's permission (OAuth) or the account."""
        if self.auth == "oauth":
            return (("a newly fetched access token was refused too" if self.token_refreshes else
                     "the access token was refused") + ": check that the app has the Exchange application permission "
                    "full_access_as_app with admin consent, and that EWS is allowed for the app (EwsAllowedAppIDs)")
        return (f"check the user name ({self._username!r}: transport.yaml mail.username or KCG_MAIL__USERNAME), "
                "the password in KCG_EWS_PASSWORD, and that the server allows "
                f"{self.auth.upper()} authentication on EWS")
