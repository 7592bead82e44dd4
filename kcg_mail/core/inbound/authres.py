"""Who sent this mail, as proven by our own receiving server (RFC 8601).

A receiving server that checks SPF, DKIM and DMARC writes its verdict into an
``Authentication-Results`` header field, on top of the header, under its own
name (the *authserv-id*)::

    Authentication-Results: mx.example.se; spf=pass smtp.mailfrom=host.se;
        dkim=pass header.d=host.se; dmarc=pass header.from=host.se

Anything below the field our server wrote was written by whoever sent the mail
and proves nothing. So: only the topmost field whose authserv-id is one of
``inbound.trusted_authserv_ids`` counts (Mailman 3, Gmail and every large
receiver do the same); fields of any other authserv-id are ignored.

Exchange Online writes its field without an authserv-id (it starts with
``spf=...``). The configured id ``exchange-online`` stands for such a field,
and only when it is the topmost ``Authentication-Results`` of the mail
(Exchange Online prepends its own to every mail it receives).

Pure: no I/O. ``mail_authenticated`` is the one question the rules ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: The configured id that stands for Exchange Online's field without an authserv-id.
EXCHANGE_ONLINE = "exchange-online"


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` of a field, with its properties (``header.d`` -> ``host.se``)."""

    method: str
    result: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str  # lower case; "" when the field has none (Exchange Online)
    results: tuple[MethodResult, ...]

    def of(self, method: str) -> tuple[MethodResult, ...]:
        return tuple(r for r in self.results if r.method == method)


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments ``( ... )`` (nested), keeping quoted strings."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            if depth == 0:
                out.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            if ch == '"':
                quoted = False
            continue
        if ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
            out.append(" ")
        elif ch == ")" and depth > 0:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _split(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _resinfo(text: str) -> MethodResult | None:
    tokens = [t for t in _split(" ".join(text.split()), " ") if t]
    # "dkim = pass" with spaces around "=": glue them back together
    glued: list[str] = []
    for t in tokens:
        if glued and (t.startswith("=") or glued[-1].endswith("=")):
            glued[-1] += t
        else:
            glued.append(t)
    if not glued or "=" not in glued[0]:
        return None
    method, _, result = glued[0].partition("=")
    method = method.split("/")[0].strip().lower()
    result = _unquote(result).strip().lower()
    if not method or not result:
        return None
    props: dict[str, str] = {}
    for t in glued[1:]:
        k, eq, v = t.partition("=")
        if eq:
            props.setdefault(k.strip().lower(), _unquote(v).strip())
    return MethodResult(method, result, props)


def parse_authentication_results(value: str) -> AuthResults | None:
    """Parse one ``Authentication-Results`` field body; None when it is not one."""
    try:
        text = _strip_comments(" ".join((value or "").split()))
    except Exception:  # pragma: no cover - defensive
        return None
    parts = _split(text, ";")
    head = parts[0].strip()
    if not head:
        return None
    if "=" in head.split()[0]:  # no authserv-id (Exchange Online): the first part is a result
        authserv_id, rest = "", parts
    else:
        authserv_id, rest = head.split()[0].lower(), parts[1:]
    results = tuple(r for r in (_resinfo(p) for p in rest) if r is not None)
    return AuthResults(authserv_id, results)


def trusted_results(fields: Sequence[str], trusted_ids: Iterable[str]) -> AuthResults | None:
    """The topmost field (``fields`` in header order, top first) that our own
    receiving server wrote, or None."""
    trusted = {t.strip().lower() for t in trusted_ids if t and t.strip()}
    if not trusted:
        return None
    for i, raw in enumerate(fields):
        ar = parse_authentication_results(raw)
        if ar is None:
            continue
        if ar.authserv_id and ar.authserv_id in trusted:
            return ar
        if not ar.authserv_id and EXCHANGE_ONLINE in trusted and i == 0:
            return ar
    return None


def _domain(value: str) -> str:
    return value.strip().strip("<>").rpartition("@")[2].strip().rstrip(".").lower()


def aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment without the public suffix list: equal, or one a
    subdomain of the other, and never a bare top-level domain."""
    a, b = _domain(a), _domain(b)
    if not a or not b or "." not in a or "." not in b:
        return False
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def mail_authenticated(
    fields: Sequence[str], trusted_ids: Iterable[str], from_address: str,
    dmarc_without_header_from: Iterable[str] = (),
) -> tuple[bool, str]:
    """(True, how) when our receiving server authenticated the From domain:
    ``dmarc=pass header.from=<the From domain>``, or, when DMARC gave no verdict,
    ``dkim=pass`` or ``spf=pass`` aligned with the From domain. (False, why) otherwise.

    A ``dmarc=pass`` without ``header.from`` says nothing about *which* domain
    passed; it counts only for a receiver named in ``dmarc_without_header_from``
    (``inbound.dmarc_pass_without_header_from``: a receiver documented to write
    its DMARC verdict that way, and always for the From field of the mail)."""
    trusted_ids = tuple(trusted_ids)
    bare_ok = {t.strip().lower() for t in dmarc_without_header_from if t and t.strip()}
    from_domain = _domain(from_address)
    if not from_domain:
        return False, "no From address to authenticate"
    ar = trusted_results(fields, trusted_ids)
    if ar is None:
        ids = ", ".join(sorted({t for t in trusted_ids})) or "(none configured)"
        return False, f"no Authentication-Results from our receiving server ({ids})"
    who = ar.authserv_id or EXCHANGE_ONLINE
    dmarc = ar.of("dmarc")
    if dmarc:
        d = dmarc[0]
        hf = _domain(d.props.get("header.from", ""))
        if d.result == "pass" and hf == from_domain:
            return True, f"dmarc=pass header.from={from_domain} ({who})"
        if d.result == "pass" and not hf:
            if who in bare_ok:
                return True, f"dmarc=pass without header.from, accepted for {who} (inbound.dmarc_pass_without_header_from)"
            return False, (f"dmarc=pass without header.from: not known to be for {from_domain} ({who}; "
                           f"see inbound.dmarc_pass_without_header_from)")
        if d.result == "pass":
            return False, f"dmarc=pass is for {hf}, not for the From domain {from_domain} ({who})"
        if d.result not in ("none", "temperror"):
            return False, f"dmarc={d.result} for {from_domain} ({who})"
    for r in ar.of("dkim"):
        d_dom = r.props.get("header.d") or _domain(r.props.get("header.i", ""))
        if r.result == "pass" and aligned(d_dom, from_domain):
            return True, f"dkim=pass aligned (header.d={d_dom}) ({who})"
    for r in ar.of("spf"):
        mf = r.props.get("smtp.mailfrom", "")
        if r.result == "pass" and aligned(mf, from_domain):
            return True, f"spf=pass aligned (smtp.mailfrom={_domain(mf)}) ({who})"
    summary = "; ".join(f"{r.method}={r.result}" for r in ar.results) or "no results"
    return False, f"not authenticated for {from_domain}: {summary} ({who})"


def authserv_ids(fields: Sequence[str]) -> list[str]:
    """The authserv-ids of a mail's fields, top first (``kcg check --connect``)."""
    out = []
    for raw in fields:
        ar = parse_authentication_results(raw)
        if ar is not None:
            out.append(ar.authserv_id or f"(none: {EXCHANGE_ONLINE}?)")
    return out
