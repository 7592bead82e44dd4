"""Reply keys: the unguessable proof that a mail answers one of ours.

Every mail we send carries a key over (meeting, action, recipient): an HMAC
with the network's secret (``KCG_REPLY_SECRET``), in our Message-ID (replies
name it in In-Reply-To/References) and in a plus-address Reply-To
(``kcg+<key>@domain``). Like Discourse and GitHub: nobody who did not get the
mail can make a valid key, a key made for one meeting or one recipient is not
valid for another, and Message-IDs are no longer computable from public data.

The key is ``<meeting>.<action>.<mac>``, all lower case (some mail systems
lower-case local parts). ``recipient`` is the third field of the idempotency key
(``2023-02:send_template:anna@x.se`` -> ``anna@x.se``; ``members`` for a mail
to the whole network, valid for any member's reply).

Pure: the secret comes in as bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

GROUP = "members"
_MAC_LEN = 20  # base32 characters: 100 bits
KEY_RE = re.compile(r"([a-z0-9][a-z0-9-]{0,31})\.([a-z][a-z_]{0,31})\.([a-z2-7]{20})", re.IGNORECASE)
#: in a Message-ID: <kcg.KEY.TAG@domain>
MSGID_RE = re.compile(r"kcg\.([a-z0-9][a-z0-9-]{0,31}\.[a-z][a-z_]{0,31}\.[a-z2-7]{20})\.[a-z2-7]+@", re.IGNORECASE)
#: in an address: local+KEY@domain
ADDR_RE = re.compile(r"\+([a-z0-9][a-z0-9-]{0,31}\.[a-z][a-z_]{0,31}\.[a-z2-7]{20})@", re.IGNORECASE)


def _mac(secret: bytes, *parts: str) -> str:
    msg = "\x1f".join(p.strip().lower() for p in parts).encode("utf-8")
    digest = hmac.new(secret, msg, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def split_key(idempotency_key: str) -> tuple[str, str, str]:
    """(meeting, action, recipient) of an idempotency key ``meeting:action:recipient[:...]``."""
    parts = (idempotency_key.split(":") + ["", "", ""])[:3]
    return parts[0] or "-", parts[1] or "mail", parts[2] or GROUP


def _safe(value: str, pattern: str, fallback: str) -> str:
    v = value.strip().lower()
    return v if re.fullmatch(pattern, v) else fallback


def reply_key(secret: bytes, meeting_id: str, action: str, recipient: str) -> str:
    meeting = _safe(meeting_id, r"[a-z0-9][a-z0-9-]{0,31}", "x")
    act = _safe(action, r"[a-z][a-z_]{0,31}", "mail")
    return f"{meeting}.{act}.{_mac(secret, meeting_id, action, recipient)[:_MAC_LEN]}"


def message_id(secret: bytes, idempotency_key: str, domain: str) -> str:
    """Our Message-ID for a mail: carries the reply key, unique per idempotency key."""
    meeting, action, recipient = split_key(idempotency_key)
    key = reply_key(secret, meeting, action, recipient)
    tag = _mac(secret, "msgid", idempotency_key)[:12]
    return f"<kcg.{key}.{tag}@{domain or 'kcg-mail.invalid'}>"


def is_our_message_id(secret: bytes, idempotency_key: str, message_id_value: str) -> bool:
    """True when ``message_id_value`` is the Message-ID we gave the mail
    ``idempotency_key`` (``message_id``, whatever the domain): a mail that only
    carries our marker header and our address in From is not one of ours."""
    mid = "".join(message_id_value.split())
    domain = mid.rstrip(">").rpartition("@")[2]
    if not mid or not domain:
        return False
    expected = message_id(secret, idempotency_key, domain)
    return hmac.compare_digest(expected.lower().encode(), mid.lower().encode())


def reply_address(mailbox: str, key: str) -> str:
    """``kcg@domain`` + key -> ``kcg+key@domain``."""
    local, _, domain = mailbox.partition("@")
    return f"{local.split('+')[0]}+{key}@{domain}"


@dataclass(frozen=True)
class ReplyKey:
    meeting_id: str
    action: str
    recipient: str  # the sender's address, or "members" for a key of a mail to all


def verify(secret: bytes, key: str, sender: str, meeting_ids: Iterable[str] = ()) -> ReplyKey | None:
    """The key's meeting when ``key`` is valid for a reply from ``sender``.
    ``meeting_ids`` maps the lower-case meeting in the key back to the plan's id."""
    if not secret:
        return None
    m = KEY_RE.fullmatch((key or "").strip())
    if not m:
        return None
    meeting, action, mac = (g.lower() for g in m.groups())
    ids = {i.lower(): i for i in meeting_ids}
    real_id = ids.get(meeting, meeting)
    for recipient in ((sender or "").strip().lower(), GROUP):
        if not recipient:
            continue
        want = reply_key(secret, real_id, action, recipient).rpartition(".")[2]
        if hmac.compare_digest(want, mac):
            return ReplyKey(real_id, action, recipient)
    return None


def keys_in(message_ids: Iterable[str], addresses: Iterable[str]) -> tuple[str, ...]:
    """Candidate reply keys in a mail's In-Reply-To/References and To/Cc/Delivered-To."""
    out: list[str] = []
    for v in message_ids:
        out += [k.lower() for k in MSGID_RE.findall(v or "")]
    for a in addresses:
        out += [k.lower() for k in ADDR_RE.findall(a or "")]
    return tuple(dict.fromkeys(out))
