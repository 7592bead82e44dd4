"""``parse`` turns raw RFC 822 bytes into a :class:`ParsedMail` (decoded subject,
sender, body text, every attachment including those inside forwarded messages
and Outlook's winmail.dat, a calendar response if there is one, and why the
mail is automatic if it is). ``parse`` never raises on malformed input; it
degrades (an undecodable part is skipped, an unknown charset falls back to
UTF-8 / Windows-1252, a broken date becomes None)."""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from kcg_mail.core.inbound.attachments import (
    DOC_TYPES,
    EXT_TYPES,
    file_ext,
    is_document_candidate,
    sniff,
)
from kcg_mail.core.inbound.automatic import is_automatic
from kcg_mail.core.inbound.calendar_reply import (
    TNEF_RESPONSE,
    parse_ics_reply,
    subject_partstat,
)
from kcg_mail.core.inbound.decode import (
    content_disposition,
    content_type,
    decode_bytes,
    decode_header_text,
    hdr_text,
    header_value,
    html_to_text,
    msgids,
    part_filename,
    part_payload,
    part_text,
    raw_headers,
    unsurrogate,
)
from kcg_mail.core.inbound.message import CalendarReply, ParsedMail
from kcg_mail.ports import Attachment

_MAX_DEPTH = 5  # nesting of forwarded messages / TNEF we follow


@dataclass
class _Acc:
    attachments: list[Attachment]
    plain: list[str]
    htmls: list[str]
    calendars: list[bytes]
    tnef_class: str | None = None
    tnef_text: list[str] | None = None


def _is_attachment_part(part: Message, ct: str, disp: str, filename: str | None) -> bool:
    if disp == "attachment":
        return True
    if filename:
        return True  # inline with a filename (Apple Mail documents, Outlook logos)
    if ct in DOC_TYPES:
        return True  # a document type without a name
    if ct.startswith(("application/", "image/", "audio/", "video/")) and ct not in {
        "application/ics",
        "application/ms-tnef",
        "application/vnd.ms-tnef",
    }:
        return disp == "inline" or ct == "application/octet-stream"
    return False


def _walk(msg: Message, acc: _Acc, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    try:
        parts = list(msg.walk())
    except Exception:
        parts = [msg]
    skip: set[int] = set()
    for part in parts:
        if id(part) in skip:
            continue
        try:
            _visit(part, acc, depth, skip)
        except Exception:
            continue


def _visit(part: Message, acc: _Acc, depth: int, skip: set[int]) -> None:
    ct = content_type(part)
    if ct.startswith("multipart/"):
        return
    if ct == "message/rfc822" or (ct.startswith("message/") and part.is_multipart()):
        # A forwarded message: its attachments count, its body does not.
        inner = part.get_payload()
        if isinstance(inner, list):
            for sub in inner:
                if not isinstance(sub, Message):
                    continue
                for p in sub.walk():
                    skip.add(id(p))
                if isinstance(sub, Message):
                    sub_acc = _Acc([], [], [], [])
                    _walk(sub, sub_acc, depth + 1)
                    # Attachments count; a forwarded calendar object is not a response of the sender.
                    acc.attachments.extend(sub_acc.attachments)
                    # quoted text of the forwarded mail helps token search
                    inner_text = "\n".join(sub_acc.plain) or "\n".join(html_to_text(h) for h in sub_acc.htmls)
                    subj = hdr_text(sub, "subject")
                    acc.plain.append(f"\n> Subject: {subj}\n" + "\n".join("> " + ln for ln in inner_text.splitlines()))
        elif isinstance(inner, (str, bytes)):
            raw = inner if isinstance(inner, bytes) else part_payload(part)
            sub = email.message_from_bytes(raw, policy=email.policy.compat32)
            sub_acc = _Acc([], [], [], [])
            _walk(sub, sub_acc, depth + 1)
            acc.attachments.extend(sub_acc.attachments)
        return
    disp = content_disposition(part)
    filename = part_filename(part)
    data_ct = ct
    if ct in {"application/ms-tnef", "application/vnd.ms-tnef"} or (
        filename and filename.lower() in {"winmail.dat", "win.dat"}
    ):
        data = part_payload(part)
        if _tnef(data, acc, depth):
            return
        acc.attachments.append(Attachment(filename or "winmail.dat", "application/ms-tnef", data))
        return
    if ct in {"text/calendar", "application/ics", "text/x-vcalendar"} or file_ext(filename or "") in {".ics", ".vcs"}:
        acc.calendars.append(part_payload(part))
        if disp != "attachment" and not filename:
            return
    if _is_attachment_part(part, ct, disp, filename):
        data = part_payload(part)
        if not filename:
            ext = DOC_TYPES.get(ct) or sniff(data) or ""
            filename = f"attachment{ext}" if ext else "attachment"
        acc.attachments.append(Attachment(filename, data_ct, data))
        return
    if ct == "text/plain":
        acc.plain.append(part_text(part))
    elif ct == "text/html":
        acc.htmls.append(part_text(part))


def _tnef(data: bytes, acc: _Acc, depth: int) -> bool:
    """Unpack Outlook's winmail.dat. True when it could be read."""
    if len(data) < 6 or data[:4] != b"\x78\x9f\x3e\x22":
        return False
    try:
        from tnefparse import TNEF  # type: ignore[import-untyped]  # imported lazily: only Outlook-on-Exchange needs it
    except Exception:  # pragma: no cover
        return False
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception:
        return False
    for obj in getattr(tnef, "msgprops", []):
        try:
            if obj.name == TNEF.ATTMESSAGECLASS and isinstance(obj.data, str):
                acc.tnef_class = obj.data.strip("\x00").strip()
        except Exception:
            continue
    for a in getattr(tnef, "attachments", []):
        try:
            name = _tnef_name(a)
            payload = a.data if isinstance(a.data, bytes) else b""
            if getattr(a, "embed", None) is not None and depth < _MAX_DEPTH:
                sub = _Acc([], [], [], [])
                for ea in getattr(a.embed, "attachments", []):
                    ename = _tnef_name(ea)
                    edata = ea.data if isinstance(ea.data, bytes) else b""
                    sub.attachments.append(Attachment(ename, EXT_TYPES.get(file_ext(ename), "application/octet-stream"), edata))
                acc.attachments.extend(sub.attachments)
                continue
            ct = EXT_TYPES.get(file_ext(name), "application/octet-stream")
            acc.attachments.append(Attachment(name, ct, payload))
        except Exception:
            continue
    try:
        body = tnef.body
        if isinstance(body, bytes):
            body = decode_bytes(body)
        hb = tnef.htmlbody
        if isinstance(hb, bytes):
            hb = decode_bytes(hb)
        text = body if isinstance(body, str) and body.strip() else (html_to_text(hb) if isinstance(hb, str) else "")
        if text.strip():
            acc.tnef_text = (acc.tnef_text or []) + [text]
    except Exception:
        pass
    return True


def _tnef_name(a: object) -> str:
    name = ""
    try:
        name = a.long_filename()  # type: ignore[attr-defined]
    except Exception:
        raw = getattr(a, "_name", b"")
        if isinstance(raw, bytes):
            name = decode_bytes(raw.rstrip(b"\x00"), "cp1252")
        else:
            name = str(raw)
    if isinstance(name, bytes):
        name = decode_bytes(name.rstrip(b"\x00"), "cp1252")
    name = unicodedata.normalize("NFC", (name or "").strip("\x00").strip())
    name = re.split(r"[\\/]", name)[-1]
    return name or "attachment"


def _parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        d = parsedate_to_datetime(unsurrogate(value).strip())
    except Exception:
        return None
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d


#: an RFC 2047 encoded word: text for people, never an address
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bq]\?", re.IGNORECASE)
#: RFC 5322 atext (and UTF-8 beyond ASCII, RFC 6532)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_LOCAL = re.compile(rf"(?:{_ATOM}(?:\.{_ATOM})*|\"(?:[^\"\\\r\n]|\\.)*\")")
#: a host name: labels of letters, digits and hyphens (U-labels allowed), at least two
_LABEL = r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def addr_spec(value: str) -> str:
    """``value`` in lower case when it is an RFC 5322 addr-spec (local-part@domain,
    domain a host name), else "". An encoded word is never an address, even when
    it decodes to one: only the undecoded mailbox counts."""
    value = (value or "").strip()
    if not value or _ENCODED_WORD.search(value):
        return ""
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain.rstrip(".")):
        return ""
    return value.lower()


def _from_addresses(msg: Message) -> tuple[list[str], str]:
    """Every address of every From field, and the display name of the first.

    An address is only ever an addr-spec of the field itself (``a@b.se`` or
    ``Name <a@b.se>``): never text found in a display name, a comment or an
    RFC 2047 encoded word (``=?utf-8?q?a=40b.se?=`` decodes to something that
    looks like an address and is not one). A field without one gives no address."""
    addrs: list[str] = []
    first_name = ""
    for raw in raw_headers(msg, "from"):
        try:
            pairs = getaddresses([unsurrogate(raw)])
        except Exception:
            pairs = [parseaddr(unsurrogate(raw))]
        for name, addr in pairs:
            spec = addr_spec(addr)
            if spec:
                if not addrs:
                    first_name = decode_header_text(name).strip().strip('"').strip()
                addrs.append(spec)
    return addrs, first_name


def _sender(msg: Message) -> tuple[str, str]:
    """The one From mailbox; empty when From has none or more than one address.
    Reply-To, Sender and Return-Path never stand in for it."""
    addrs, name = _from_addresses(msg)
    if len(set(addrs)) != 1 or len(addrs) != 1:
        return "", ""
    return addrs[0], name


def _trust_fields(msg: Message) -> dict[str, object]:
    from kcg_mail.core.replykey import keys_in

    addrs, _ = _from_addresses(msg)
    ids = [i for h in ("in-reply-to", "references") for v in raw_headers(msg, h) for i in msgids(v)]
    rcpts = [v for h in ("to", "cc", "delivered-to", "x-original-to") for v in raw_headers(msg, h)]
    return {
        "from_addresses": tuple(addrs),
        "auth_results": tuple(raw_headers(msg, "authentication-results")),
        "reply_keys": keys_in(ids, rcpts),
        "oversize": bool(header_value(msg, "x-kcg-oversize").strip()),
    }


def _empty(reason: str | None = None) -> ParsedMail:
    return ParsedMail(None, None, (), "", "", "", None, reason, "", (), None)


def parse(raw: bytes) -> ParsedMail:
    """Parse a raw message. Never raises: malformed input gives what could be read."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if not isinstance(raw, (bytes, bytearray)):
            return _empty()
        msg = email.message_from_bytes(bytes(raw), policy=email.policy.compat32)
    except Exception:
        return _empty()
    try:
        return _parse_msg(msg)
    except Exception:
        # Last resort: headers only.
        try:
            sender, name = _sender(msg)
            return ParsedMail(
                message_id=next(iter(msgids(header_value(msg, "message-id"))), None),
                in_reply_to=None,
                references=(),
                subject=hdr_text(msg, "subject"),
                sender=sender,
                sender_name=name,
                date=_parse_date(header_value(msg, "date")),
                auto_reason=is_automatic(msg),
                text="",
                attachments=(),
                calendar_reply=None,
                **_trust_fields(msg),  # type: ignore[arg-type]
            )
        except Exception:
            return _empty()


def _parse_msg(msg: Message) -> ParsedMail:
    sender, sender_name = _sender(msg)
    subject = hdr_text(msg, "subject")
    mids = msgids(header_value(msg, "message-id"))
    irt = msgids(header_value(msg, "in-reply-to"))
    refs = tuple(r for v in raw_headers(msg, "references") for r in msgids(v))

    acc = _Acc([], [], [], [])
    _walk(msg, acc, 0)

    text = "\n".join(t for t in acc.plain if t is not None).strip()
    if not text and acc.htmls:
        text = "\n".join(html_to_text(h) for h in acc.htmls).strip()
    if not text and acc.tnef_text:
        text = "\n".join(acc.tnef_text).strip()
    text = text.replace("\r\n", "\n")

    cal: CalendarReply | None = None
    for ics in acc.calendars:
        cal = parse_ics_reply(ics, sender)
        if cal:
            break
    if cal is None and acc.tnef_class:
        ps = TNEF_RESPONSE.get(acc.tnef_class.lower())
        if ps:
            cal = CalendarReply(uid=None, attendee_email=sender, partstat=ps)
    if cal is None and not acc.calendars:
        ps = subject_partstat(subject)
        # A subject alone never outweighs an attached document.
        if ps and not any(is_document_candidate(a) for a in acc.attachments):
            cal = CalendarReply(uid=None, attendee_email=sender, partstat=ps)

    return ParsedMail(
        message_id=mids[0] if mids else None,
        in_reply_to=irt[0] if irt else None,
        references=refs,
        subject=subject,
        sender=sender,
        sender_name=sender_name,
        date=_parse_date(header_value(msg, "date")),
        auto_reason=is_automatic(msg),
        text=text,
        attachments=tuple(acc.attachments),
        calendar_reply=cal,
        **_trust_fields(msg),  # type: ignore[arg-type]
    )
