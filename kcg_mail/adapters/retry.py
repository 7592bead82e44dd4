"""One retry idiom for every adapter: which client errors are worth another try,
how long to wait, and when to stop.

Two halves:

* ``classify(exc)`` maps an exception of any client we use to a verdict,
  :class:`Transient` or :class:`Permanent` (in the spirit of httpx's exception
  table): httpx transport errors and HTTP statuses 408/429/500/502/503/504,
  ``dropbox.exceptions`` (RateLimitError, InternalServerError, ApiError...),
  requests, smtplib, imaplib, socket and ssl errors. A transient verdict says
  how long the server asked us to wait (Retry-After, Dropbox's ``backoff``) and
  whether the request *may have reached the server* (``maybe_sent``: a read
  timeout, a dropped connection after the request went out, a 504).
* ``call_with_retry(fn, policy)`` (and the decorator ``retrying(policy)``)
  runs ``fn`` under tenacity: transient errors are retried with exponential
  backoff (1, 2, 4... s up to ``backoff_max``) or the server's own wait, at
  most ``max_retries`` times; a wait longer than ``max_wait`` stops at once.
  An error that may have reached the server is retried only when the policy
  says the call is ``idempotent``: an ambiguous send is never retried blindly
  (the caller's durable state record decides on the next run). When retrying
  stops, :class:`GaveUp` (a :class:`~kcg_mail.ports.TransientError`) is
  raised from the last error; permanent errors pass through unchanged.

Our own :class:`~kcg_mail.ports.TransportError` (and ``TransientError``) are
verdicts an adapter already made, possibly after its own retries: they are
classified permanent here, so retries never nest.

exchangelib keeps its own policy (``FaultTolerance``), which honours EWS's
BackOffMilliseconds; this module is for the clients that have none we trust.
"""

from __future__ import annotations

import errno
import imaplib
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import wraps
from typing import ParamSpec, TypeVar

import dropbox.exceptions
import httpx
import requests
import tenacity

from ..ports import TransientError, TransportError

__all__ = [
    "DROPBOX_DEFAULT_BACKOFF",
    "RETRY_STATUS",
    "GaveUp",
    "Permanent",
    "Delays",
    "RetryPolicy",
    "until_stopped",
    "Transient",
    "Verdict",
    "call_with_retry",
    "classify",
    "retry_after",
    "retrying",
    "status_verdict",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Transient:
    """Worth another try. ``wait``: seconds the server asked for (None: our own
    backoff). ``maybe_sent``: the request may have reached the server, so a
    repeat could do the thing twice."""

    reason: str
    wait: float | None = None
    maybe_sent: bool = False


@dataclass(frozen=True)
class Permanent:
    """Another try gives the same answer: a person or the caller must act."""

    reason: str


Verdict = Transient | Permanent

#: HTTP statuses worth another try, and whether the request may have been acted on.
#: 408/429/503: the server did not take the request; 500/502/504: it may have.
RETRY_STATUS: Mapping[int, bool] = {408: False, 429: False, 503: False, 500: True, 502: True, 504: True}

#: Dropbox's documented wait for a 429 that names none (its SDK uses the same).
DROPBOX_DEFAULT_BACKOFF = 5.0

_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNREFUSED, errno.EADDRNOTAVAIL}
)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta seconds or an HTTP date); None
    when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def status_verdict(status: int, headers: Mapping[str, str] | None = None) -> Verdict:
    """The verdict on an HTTP status (Retry-After read from ``headers``)."""
    if status in RETRY_STATUS:
        wait = retry_after((headers or {}).get("Retry-After"))
        return Transient(f"HTTP {status}", wait=wait, maybe_sent=RETRY_STATUS[status])
    return Permanent(f"HTTP {status}")


def _httpx(exc: httpx.HTTPError) -> Verdict:
    if isinstance(exc, httpx.HTTPStatusError):
        return status_verdict(exc.response.status_code, exc.response.headers)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.DecodingError, httpx.TooManyRedirects)):
        return Permanent(type(exc).__name__)
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)):
        return Transient(type(exc).__name__)  # nothing went out yet
    if isinstance(exc, httpx.TransportError):  # read/write timeouts, dropped connections, protocol faults
        return Transient(type(exc).__name__, maybe_sent=True)
    return Permanent(type(exc).__name__)


def _dropbox(exc: dropbox.exceptions.DropboxException) -> Verdict:
    if isinstance(exc, dropbox.exceptions.RateLimitError):
        wait = float(exc.backoff) if exc.backoff is not None else DROPBOX_DEFAULT_BACKOFF
        return Transient("Dropbox HTTP 429", wait=wait)
    if isinstance(exc, dropbox.exceptions.InternalServerError):
        return Transient(f"Dropbox HTTP {exc.status_code}", maybe_sent=True)
    # ApiError (a route error: not found, conflict...), AuthError, BadInputError,
    # PathRootError, other HttpError: the answer will not change.
    return Permanent(type(exc).__name__)


def _requests(exc: requests.RequestException) -> Verdict:
    if isinstance(exc, requests.ConnectTimeout):
        return Transient(type(exc).__name__)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return Transient(type(exc).__name__, maybe_sent=True)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return status_verdict(exc.response.status_code, exc.response.headers)
    return Permanent(type(exc).__name__)


def _smtp(exc: smtplib.SMTPException) -> Verdict:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Transient("SMTP connection lost", maybe_sent=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= c < 500 for c in codes):
            return Transient(f"SMTP recipients deferred ({', '.join(map(str, sorted(set(codes))))})")
        return Permanent("SMTP recipients refused")
    if isinstance(exc, smtplib.SMTPResponseException):
        # A reply is a definite answer: 4xx "not now" (nothing was accepted), 5xx "never".
        if 400 <= exc.smtp_code < 500:
            return Transient(f"SMTP {exc.smtp_code}")
        return Permanent(f"SMTP {exc.smtp_code}")
    return Permanent(type(exc).__name__)


def _imap(exc: imaplib.IMAP4.error) -> Verdict:
    if isinstance(exc, imaplib.IMAP4.abort):  # connection dropped (readonly is a subclass)
        return Transient(f"IMAP {type(exc).__name__}", maybe_sent=True)
    return Permanent("IMAP NO/BAD")  # the server answered NO or BAD


def _os(exc: OSError) -> Verdict:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Permanent("TLS certificate not trusted")
    if isinstance(exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
        return Transient("TLS connection closed", maybe_sent=True)
    if isinstance(exc, ssl.SSLError):
        return Permanent(f"TLS error ({exc.reason or exc})")
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or exc.errno in _NETWORK_ERRNOS:
        return Transient(type(exc).__name__)  # no connection, nothing sent
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Transient(type(exc).__name__, maybe_sent=True)
    return Permanent(type(exc).__name__)  # a file error, a bad argument...


def classify(exc: BaseException) -> Verdict:
    """Transient or Permanent, for the errors of every client kcg-mail uses."""
    if isinstance(exc, TransportError):
        return Permanent(f"already decided by the adapter: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return _httpx(exc)
    if isinstance(exc, dropbox.exceptions.DropboxException):
        return _dropbox(exc)
    if isinstance(exc, requests.RequestException):
        return _requests(exc)
    if isinstance(exc, smtplib.SMTPException):  # before OSError: it is one
        return _smtp(exc)
    if isinstance(exc, imaplib.IMAP4.error):
        return _imap(exc)
    if isinstance(exc, OSError):
        return _os(exc)
    return Permanent(type(exc).__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How one kind of call is retried.

    ``max_retries``: tries after the first. Backoff ``backoff_base * 2**n``
    capped at ``backoff_max`` unless the server named a wait; a named wait over
    ``max_wait`` gives up at once. ``idempotent``: a repeat is harmless, so
    errors that may have reached the server are retried too (never for a send).
    ``sleep`` is injected by tests. ``what`` names the call in log lines.
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_wait: float = 300.0
    idempotent: bool = False
    sleep: Callable[[float], None] = time.sleep
    what: str = ""
    classify: Callable[[BaseException], Verdict] = field(default=classify)


class GaveUp(TransientError):
    """Retrying stopped. ``last``: the last error; ``verdict``: its
    classification; ``attempts``: how many calls were made; ``why``:
    ``"attempts"`` (bound reached), ``"wait"`` (server asked for more than
    ``max_wait``, see ``wait``) or ``"ambiguous"`` (the request may have reached
    the server and the call is not idempotent: not retried)."""

    last: BaseException
    verdict: Transient
    attempts: int
    why: str
    wait: float

    def __init__(self, message: str, *, last: BaseException, verdict: Transient, attempts: int, why: str, wait: float) -> None:
        super().__init__(message)
        self.last = last
        self.verdict = verdict
        self.attempts = attempts
        self.why = why
        self.wait = wait


def _backoff(policy: RetryPolicy, verdict: Transient, retry_no: int) -> float:
    if verdict.wait is not None:
        return verdict.wait
    return float(min(policy.backoff_base * 2**retry_no, policy.backoff_max))


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """``fn()`` with ``policy``: its value, a permanent error unchanged, or
    :class:`GaveUp` from the last transient one."""
    verdicts: dict[int, Transient] = {}

    def verdict_of(state: tenacity.RetryCallState) -> Transient | None:
        if state.attempt_number in verdicts:
            return verdicts[state.attempt_number]
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return None
        v = policy.classify(exc)
        if isinstance(v, Transient) and (policy.idempotent or not v.maybe_sent):
            verdicts[state.attempt_number] = v
            return v
        return None

    def should_retry(state: tenacity.RetryCallState) -> bool:
        return verdict_of(state) is not None

    def wait(state: tenacity.RetryCallState) -> float:
        v = verdict_of(state)
        return _backoff(policy, v, state.attempt_number - 1) if v is not None else 0.0

    def stop(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number > policy.max_retries or (state.upcoming_sleep or 0.0) > policy.max_wait

    def before_sleep(state: tenacity.RetryCallState) -> None:
        v = verdicts[state.attempt_number]
        log.warning(
            "%s: %s, retry %d/%d in %.1f s",
            policy.what or "call",
            v.reason,
            state.attempt_number,
            policy.max_retries,
            state.upcoming_sleep,
        )

    def give_up(state: tenacity.RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome is not None else None
        v = verdicts[state.attempt_number]
        assert exc is not None
        delay = state.upcoming_sleep or 0.0
        why = "wait" if state.attempt_number <= policy.max_retries else "attempts"
        text = f"{policy.what or 'call'}: {v.reason} after {state.attempt_number} attempts"
        if why == "wait":
            text += f" (server asks to wait {delay:.0f} s)"
        raise GaveUp(text, last=exc, verdict=v, attempts=state.attempt_number, why=why, wait=delay) from exc

    retrying_ = tenacity.Retrying(
        retry=should_retry,
        wait=wait,
        stop=stop,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )
    try:
        return retrying_(fn)
    except TransientError:
        raise
    except Exception as exc:
        v = policy.classify(exc)
        if isinstance(v, Transient) and v.maybe_sent and not policy.idempotent:
            raise GaveUp(
                f"{policy.what or 'call'}: {v.reason} after the request was sent; the outcome is unknown",
                last=exc,
                verdict=v,
                attempts=len(verdicts) + 1,
                why="ambiguous",
                wait=0.0,
            ) from exc
        raise


def retrying(policy: RetryPolicy) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of :func:`call_with_retry`."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retry(lambda: fn(*args, **kwargs), policy)

        return wrapper

    return decorate


def until_stopped(fn: Callable[[], T], stop: threading.Event, *, initial: float, maximum: float,
                  on_error: Callable[[BaseException, float], None] | None = None) -> T | None:
    """Call ``fn`` until it returns, or until ``stop`` is set: for the push listener,
    which must not give up while the service runs (waiting for mail, starting an
    intake run). The same tenacity wait as every retry here, exponential from
    ``initial`` doubling up to ``maximum``, slept on ``stop`` so a stop ends it at
    once; a success starts the next call's waits from ``initial`` again. Every
    error is retried: what is called is a whole step of the listener, not one
    request. ``on_error(exc, delay)`` is told each failure before the wait.
    Returns ``fn``'s result, or None when stopped."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_error is not None and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_error(exc, float(state.next_action.sleep))

    retrying_ = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Exception),
        wait=tenacity.wait_exponential(multiplier=initial, max=maximum),
        stop=lambda state: stop.is_set(),
        sleep=lambda seconds: None if stop.wait(seconds) else None,  # a stop ends the wait
        before_sleep=before_sleep,
        reraise=False,
    )
    if stop.is_set():
        return None
    try:
        return retrying_(fn)
    except tenacity.RetryError:
        return None


class Delays:
    """Successive waits of the same exponential policy (tenacity's ``wait_exponential``:
    ``initial``, doubling, at most ``maximum``), for a loop that waits on more than a
    timer: the intake trigger retries a failed run after the next delay, or at once
    when new mail comes first."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._wait = tenacity.wait_exponential(multiplier=initial, max=maximum)
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        self._attempt += 1
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self._attempt
        return float(self._wait(state))
