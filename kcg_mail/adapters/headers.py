"""Authentication-Results as the mail server itself reports them.

Graph (``internetMessageHeaders``) and EWS (``InternetMessageHeaders``) give a
message's transport headers as a list, in the order they stand in the message.
The MIME content of a message may be rebuilt by the server; so the intake reads
the ``Authentication-Results`` fields from the server's list: this module
replaces the fields in the raw message with those, keeping their order
(topmost first), so the rule (``kcg_mail.core.inbound.authres``) reads exactly
what the receiving server stored.
"""

from __future__ import annotations

from collections.abc import Iterable

AR = b"authentication-results"


def _split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i].splitlines(keepends=True), sep, raw[i + len(sep):]
    return raw.splitlines(keepends=True), b"", b""


def with_server_auth_results(raw: bytes, pairs: Iterable[tuple[str, str]]) -> bytes:
    """``raw`` with its Authentication-Results fields replaced by those in
    ``pairs`` (name, value), topmost first. Unchanged when ``pairs`` holds none
    and the raw message has none either."""
    fields = [v for n, v in pairs if (n or "").strip().lower() == "authentication-results"]
    lines, sep, body = _split(raw)
    kept: list[bytes] = []
    skipping = False
    for ln in lines:
        if ln[:1] in (b" ", b"\t") and kept is not None:
            if not skipping:
                kept.append(ln)
            continue
        skipping = ln.split(b":", 1)[0].strip().lower() == AR
        if not skipping:
            kept.append(ln)
    if not fields and len(kept) == len(lines):
        return raw
    eol = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    head = b"".join(f"Authentication-Results: {' '.join(v.split())}".encode("utf-8", "replace") + eol
                    for v in fields)
    return head + b"".join(kept) + (sep or eol) + body
