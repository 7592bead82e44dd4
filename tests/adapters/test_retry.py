"""The one retry idiom (kcg_mail/adapters/retry.py): the classification table on
the clients' real exceptions, and the policy on real calls (httpx through its
own MockTransport, a loopback socket that drops the connection)."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import threading

import dropbox.exceptions
import httpx
import pytest
import requests

from kcg_mail.adapters.retry import (
    DROPBOX_DEFAULT_BACKOFF,
    GaveUp,
    Permanent,
    RetryPolicy,
    Transient,
    call_with_retry,
    classify,
    retry_after,
    retrying,
)
from kcg_mail.ports import TransientError, TransportError

pytestmark = pytest.mark.core


def _status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    req = httpx.Request("GET", "https://graph.example/v1.0/x")
    resp = httpx.Response(status, headers=headers, request=req)
    return httpx.HTTPStatusError(f"{status}", request=req, response=resp)


@pytest.mark.parametrize(
    ("exc", "kind", "maybe_sent"),
    [
        (httpx.ConnectError("refused"), Transient, False),
        (httpx.ConnectTimeout("slow"), Transient, False),
        (httpx.ReadTimeout("slow"), Transient, True),
        (httpx.RemoteProtocolError("dropped"), Transient, True),
        (httpx.UnsupportedProtocol("ftp"), Permanent, False),
        (_status_error(429), Transient, False),
        (_status_error(503), Transient, False),
        (_status_error(504), Transient, True),
        (_status_error(500), Transient, True),
        (_status_error(404), Permanent, False),
        (_status_error(401), Permanent, False),
        (dropbox.exceptions.RateLimitError("rid", backoff=3), Transient, False),
        (dropbox.exceptions.InternalServerError("rid", 500, "oops"), Transient, True),
        (dropbox.exceptions.ApiError("rid", None, "msg", None), Permanent, False),
        (dropbox.exceptions.AuthError("rid", None), Permanent, False),
        (dropbox.exceptions.BadInputError("rid", "bad"), Permanent, False),
        (requests.ConnectTimeout(), Transient, False),
        (requests.ConnectionError(), Transient, True),
        (smtplib.SMTPServerDisconnected("gone"), Transient, True),
        (smtplib.SMTPDataError(451, b"try later"), Transient, False),
        (smtplib.SMTPDataError(554, b"rejected"), Permanent, False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), Permanent, False),
        (smtplib.SMTPRecipientsRefused({"a@b.se": (450, b"greylisted")}), Transient, False),
        (smtplib.SMTPRecipientsRefused({"a@b.se": (550, b"no such user")}), Permanent, False),
        (imaplib.IMAP4.abort("socket error: EOF"), Transient, True),
        (imaplib.IMAP4.error("NO [AUTHENTICATIONFAILED]"), Permanent, False),
        (ConnectionRefusedError(111, "refused"), Transient, False),
        (socket.gaierror(-3, "temporary failure in name resolution"), Transient, False),
        (TimeoutError("timed out"), Transient, True),
        (ConnectionResetError(104, "reset"), Transient, True),
        (ssl.SSLCertVerificationError("certificate verify failed"), Permanent, False),
        (FileNotFoundError(2, "no such file"), Permanent, False),
        (TransientError("already retried by the adapter"), Permanent, False),
        (TransportError("fix the setting"), Permanent, False),
        (ValueError("a bug"), Permanent, False),
    ],
)
def test_classification_table(exc: BaseException, kind: type, maybe_sent: bool) -> None:
    verdict = classify(exc)
    assert isinstance(verdict, kind), verdict
    if isinstance(verdict, Transient):
        assert verdict.maybe_sent is maybe_sent


def test_server_waits_are_read() -> None:
    v = classify(_status_error(429, {"Retry-After": "7"}))
    assert isinstance(v, Transient) and v.wait == 7.0
    v = classify(dropbox.exceptions.RateLimitError("rid", backoff=3))
    assert isinstance(v, Transient) and v.wait == 3.0
    v = classify(dropbox.exceptions.RateLimitError("rid"))
    assert isinstance(v, Transient) and v.wait == DROPBOX_DEFAULT_BACKOFF
    assert retry_after("Wed, 21 Oct 2099 07:28:00 GMT") > 1e9
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


class Server:
    """Answers from a script of (status, headers); counts requests."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        status, headers = self.script.pop(0) if self.script else (200, {})
        return httpx.Response(status, headers=headers, json={"n": self.calls})


def _get(client: httpx.Client) -> int:
    resp = client.get("https://graph.example/v1.0/me")
    resp.raise_for_status()
    n: int = resp.json()["n"]
    return n


def test_retry_after_is_honoured_then_success() -> None:
    server = Server([(429, {"Retry-After": "7"}), (503, {}), (200, {})])
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        assert call_with_retry(lambda: _get(client), RetryPolicy(sleep=sleeps.append)) == 3
    assert sleeps == [7.0, 2.0]  # the server's wait, then our backoff for the second retry


def test_bounded_then_gave_up_from_the_last_error() -> None:
    server = Server([(503, {})] * 10)
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(GaveUp) as e:
            call_with_retry(lambda: _get(client), RetryPolicy(max_retries=3, sleep=sleeps.append, what="GET me"))
    assert sleeps == [1.0, 2.0, 4.0] and server.calls == 4
    assert e.value.attempts == 4 and e.value.why == "attempts"
    assert isinstance(e.value.last, httpx.HTTPStatusError) and "GET me: HTTP 503 after 4 attempts" in str(e.value)
    assert isinstance(e.value, TransientError)


def test_backoff_is_capped() -> None:
    server = Server([(500, {})] * 10)
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(GaveUp):
            call_with_retry(lambda: _get(client), RetryPolicy(max_retries=6, backoff_max=10, idempotent=True, sleep=sleeps.append))
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_long_server_wait_gives_up_at_once() -> None:
    server = Server([(429, {"Retry-After": "3600"})])
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(GaveUp) as e:
            call_with_retry(lambda: _get(client), RetryPolicy(max_wait=60, sleep=sleeps.append))
    assert sleeps == [] and server.calls == 1
    assert e.value.why == "wait" and e.value.wait == 3600 and "3600" in str(e.value)


def test_an_ambiguous_send_is_not_retried_but_an_idempotent_read_is() -> None:
    sleeps: list[float] = []
    server = Server([(504, {})])
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(GaveUp) as e:
            call_with_retry(lambda: _get(client), RetryPolicy(sleep=sleeps.append))
        assert e.value.why == "ambiguous" and "outcome is unknown" in str(e.value)
        assert sleeps == [] and server.calls == 1
        server.script = [(504, {})]
        assert call_with_retry(lambda: _get(client), RetryPolicy(idempotent=True, sleep=sleeps.append)) == 3
    assert sleeps == [1.0]


def test_permanent_errors_pass_through_unchanged() -> None:
    server = Server([(404, {})])
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(httpx.HTTPStatusError):
            call_with_retry(lambda: _get(client), RetryPolicy(sleep=sleeps.append))
    assert sleeps == [] and server.calls == 1


def _dropping_server() -> tuple[socket.socket, threading.Thread, list[int]]:
    """A loopback SMTP server that greets, then drops the first ``n`` connections
    right after the client's EHLO; later ones get a full session to QUIT."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    seen = [0]

    def run() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            seen[0] += 1
            with conn, conn.makefile("rwb") as f:
                f.write(b"220 test ESMTP\r\n")
                f.flush()
                f.readline()
                if seen[0] <= 2:
                    continue  # drop the connection: SMTPServerDisconnected
                f.write(b"250 test\r\n")
                f.flush()
                f.readline()
                f.write(b"221 bye\r\n")
                f.flush()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, t, seen


def test_decorator_on_a_real_smtp_connection() -> None:
    srv, _, seen = _dropping_server()
    port = srv.getsockname()[1]
    sleeps: list[float] = []

    @retrying(RetryPolicy(idempotent=True, sleep=sleeps.append, what="SMTP EHLO"))
    def hello() -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            code, _ = smtp.ehlo()
            return code

    try:
        assert hello() == 250
    finally:
        srv.close()
    assert seen[0] == 3 and sleeps == [1.0, 2.0]


def test_a_refused_connection_is_retried_even_for_a_send() -> None:
    """Nothing went out when the connection was refused: safe to repeat a send."""
    calls: list[int] = []

    def refuse_twice(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(202)

    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(refuse_twice)) as client:
        resp = call_with_retry(lambda: client.post("https://graph.example/v1.0/sendMail"), RetryPolicy(sleep=sleeps.append))
    assert resp.status_code == 202 and len(calls) == 3 and sleeps == [1.0, 2.0]


def test_a_read_timeout_after_sending_is_not_repeated() -> None:
    calls: list[int] = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("no answer", request=request)

    with httpx.Client(transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(GaveUp) as e:
            call_with_retry(lambda: client.post("https://graph.example/v1.0/sendMail"), RetryPolicy(sleep=lambda s: None))
    assert e.value.why == "ambiguous" and e.value.attempts == 1 and len(calls) == 1
