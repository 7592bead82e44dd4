"""What is this incoming email? The pure core of intake.

``parse`` turns raw RFC 822 bytes into a :class:`ParsedMail` (decoded subject,
sender, body text, every attachment including those inside forwarded messages
and Outlook's winmail.dat, a calendar response if there is one, and why the
mail is automatic if it is). ``classify`` ties a parsed mail to a meeting of
the plan and says what to do with it (:class:`Verdict`).

No I/O, no network, no clock: everything the decision needs comes in through
the arguments (``MatchContext.today``). ``parse`` never raises on malformed
input; it degrades (an undecodable part is skipped, an unknown charset falls
back to UTF-8 / Windows-1252, a broken date becomes None).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import html
import quopri
import re
from functools import lru_cache
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Iterable, Iterator, Mapping

from kcg_mail.ports import Attachment

__all__ = [
    "CalendarReply",
    "ParsedMail",
    "MeetingRef",
    "MatchContext",
    "Verdict",
    "KINDS",
    "DOCUMENT_EXTENSIONS",
    "parse",
    "is_automatic",
    "classify",
    "subject_token",
    "find_token",
    "is_document_candidate",
]

KINDS = ("minutes", "no_minutes", "calendar_response", "automatic", "not_allowed", "unmatched", "own")
DOCUMENT_EXTENSIONS = (".docx", ".docm", ".doc", ".pdf", ".odt")

#: How far back / ahead of a mail's date a meeting may lie for the sender+date match.
MATCH_DAYS_BEFORE = 30
MATCH_DAYS_AFTER = 2

_MAX_DEPTH = 5  # nesting of forwarded messages / TNEF we follow


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class CalendarReply:
    """A response to one of our invitations. ``uid`` is the iCalendar UID when
    the mail carried an iCalendar object, None when only the subject said so.
    ``partstat`` is upper case: ACCEPTED, DECLINED, TENTATIVE (or another
    RFC 5545 value such as DELEGATED)."""

    uid: str | None
    attendee_email: str
    partstat: str


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    sender: str
    sender_name: str
    date: datetime | None
    auto_reason: str | None
    text: str
    attachments: tuple[Attachment, ...]
    calendar_reply: CalendarReply | None


@dataclass(frozen=True)
class MeetingRef:
    meeting_id: str
    token: str
    date: date
    #: lower-case addresses allowed to file minutes: host, backup host, coordinator, extra
    filers: frozenset[str]
    invitation_uid: str


@dataclass(frozen=True)
class MatchContext:
    meetings: tuple[MeetingRef, ...]
    #: our Message-ID -> meeting_id
    sent_ids: Mapping[str, str]
    members: frozenset[str]
    own_addresses: frozenset[str]
    today: date
    #: the network's short name in subject tokens: [KCG-2023-02]
    tag: str = "KCG"


@dataclass(frozen=True)
class Verdict:
    kind: str
    meeting_id: str | None
    reason: str
    attachments: tuple[Attachment, ...] = ()
    calendar_reply: CalendarReply | None = None


# --------------------------------------------------------------------------- tokens

_TOKEN_PATTERN = r"""(?<![A-Za-z0-9])      # not glued to a preceding word
        \[?\s*{tag}           # optional bracket, the network's tag (KCG)
        [\s\-_:#./]*          # any separator, or none
        (?P<year>(?:19|20)\d\d)
        [\s\-_./]*            # separator between year and month
        (?P<month>1[0-2]|0?[1-9])
        (?!\d)                # month is not the start of a longer number
    """


@lru_cache(maxsize=16)
def _token_re(tag: str) -> re.Pattern[str]:
    return re.compile(_TOKEN_PATTERN.replace("{tag}", re.escape(tag)), re.IGNORECASE | re.VERBOSE)


def subject_token(meeting_id: str, tag: str = "KCG") -> str:
    """The token we put in every subject: ``2023-02`` -> ``[KCG-2023-02]``."""
    return f"[{tag}-{meeting_id}]"


def _tokens(text: str, tag: str) -> Iterator[str]:
    if not text:
        return
    # Unfold and collapse whitespace so tokens broken over lines still match.
    flat = re.sub(r"\s+", " ", text)
    for m in _token_re(tag).finditer(flat):
        yield f"{m.group('year')}-{int(m.group('month')):02d}"


def find_token(text: str | None, tag: str = "KCG") -> str | None:
    """The meeting id of the first token of the network ``tag`` in ``text``
    (tolerant of case, missing brackets, spaces and other separators), or None."""
    try:
        return next(_tokens(text or "", tag), None)
    except Exception:  # pragma: no cover - defensive
        return None


# --------------------------------------------------------------------------- decoding helpers

_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gbk",
}


def _decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode with the declared charset; fall back to UTF-8, then Windows-1252
    (what mislabelled Swedish mail almost always is), never raising."""
    candidates: list[str] = []
    if charset:
        cs = charset.strip().strip('"').lower()
        cs = _CHARSET_ALIASES.get(cs, cs)
        # ASCII/Latin-1 labels on UTF-8 bytes are common: try UTF-8 first then.
        if cs in {"ascii", "iso-8859-1", "latin-1", "latin1"}:
            candidates += ["utf-8", "cp1252" if cs != "ascii" else "ascii"]
        candidates.append(cs)
    candidates += ["utf-8", "cp1252"]
    for cs in candidates:
        try:
            return data.decode(cs)
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
    return data.decode("latin-1", errors="replace")


_EW_RE = re.compile(r"=\?([^?\s]+?)\?([bBqQ])\?([^?]*?)\?=")


def _ew_bytes(enc: str, text: str) -> bytes | None:
    try:
        if enc.lower() == "b":
            t = re.sub(r"[^A-Za-z0-9+/=]", "", text)
            t = t.rstrip("=")
            t += "=" * (-len(t) % 4)
            return base64.b64decode(t)
        return quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=False)
    except (binascii.Error, ValueError):
        return None


def _unsurrogate(value: str) -> str:
    """Header text parsed from bytes keeps raw 8-bit bytes as surrogates; decode them."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return _decode_bytes(value.encode("ascii", "surrogateescape"))
    return value


def decode_header_text(value: object) -> str:
    """RFC 2047 decoding that tolerates what real clients send: encoded words
    glued to text, multibyte characters split over two encoded words, unknown
    charsets, raw 8-bit UTF-8. Whitespace is unfolded."""
    try:
        if value is None:
            return ""
        if not isinstance(value, str):
            value = str(value)
        value = _unsurrogate(value)
        value = re.sub(r"\r?\n[ \t]", " ", value).replace("\r", "").replace("\n", "")
        if "=?" not in value:
            return value
        out: list[str] = []
        pos = 0
        pending: tuple[str, bytearray] | None = None  # (charset, bytes) of adjacent words

        def flush() -> None:
            nonlocal pending
            if pending is not None:
                out.append(_decode_bytes(bytes(pending[1]), pending[0]))
                pending = None

        for m in _EW_RE.finditer(value):
            between = value[pos : m.start()]
            raw = _ew_bytes(m.group(2), m.group(3))
            charset = m.group(1).split("*", 1)[0]  # RFC 2231 language suffix
            pos = m.end()
            if raw is None:
                flush()
                out.append(between + m.group(0))
                continue
            adjacent = pending is not None and not between.strip()
            if adjacent and pending[0].lower() == charset.lower():
                pending[1].extend(raw)  # whitespace between adjacent words is dropped
                continue
            flush()
            if not adjacent:
                out.append(between)
            pending = (charset, bytearray(raw))
        flush()
        out.append(value[pos:])
        return "".join(out)
    except Exception:
        try:
            return str(value)
        except Exception:  # pragma: no cover
            return ""


def _raw_headers(msg: Message, name: str) -> list[str]:
    """All raw values of a header (case-insensitive), as str, never raising."""
    values: list[str] = []
    lname = name.lower()
    try:
        items = msg.raw_items()
    except Exception:
        try:
            items = msg.items()
        except Exception:
            return values
    for k, v in items:
        try:
            if str(k).lower() == lname:
                values.append(v if isinstance(v, str) else str(v))
        except Exception:
            continue
    return values


def _header(msg: Message, name: str) -> str:
    vals = _raw_headers(msg, name)
    return vals[0] if vals else ""


def _hdr_text(msg: Message, name: str) -> str:
    return decode_header_text(_header(msg, name)).strip()


_MSGID_RE = re.compile(r"<[^<>\s]+>")


def _msgids(value: str) -> tuple[str, ...]:
    value = _unsurrogate(value or "")
    ids = _MSGID_RE.findall(value)
    if ids:
        return tuple(ids)
    return tuple(f"<{t.strip('<>')}>" for t in value.split() if "@" in t)


def _norm_id(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def _content_type(part: Message) -> str:
    try:
        return (part.get_content_type() or "text/plain").lower()
    except Exception:
        return "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        v = part.get_param(name, header=header)
    except Exception:
        return None
    if v is None:
        return None
    try:
        if isinstance(v, tuple):
            v = email.utils.collapse_rfc2231_value(v)
        return decode_header_text(str(v)).strip()
    except Exception:
        return None


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        v = _header(part, "content-disposition")
        return v.split(";", 1)[0].strip().lower()


def _filename(part: Message) -> str | None:
    name: str | None = None
    try:
        # Raw 8-bit (UTF-8) parameter values arrive as surrogates; decode them first.
        raw_cd = _raw_headers(part, "content-disposition")
        raw_ct = _raw_headers(part, "content-type")
        if any(_unsurrogate(v) != v for v in raw_cd + raw_ct):
            tmp = Message()
            for v in raw_cd[:1]:
                tmp["Content-Disposition"] = _unsurrogate(v)
            for v in raw_ct[:1]:
                tmp["Content-Type"] = _unsurrogate(v)
            part = tmp
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        name = _param(part, "name")
    if not name:
        return None
    name = decode_header_text(name).strip().strip('"').strip()
    # Some clients send a path ("C:\\Users\\...\\file.docx").
    name = re.split(r"[\\/]", name)[-1]
    name = unicodedata.normalize("NFC", name)  # Apple Mail sends decomposed å/ä/ö
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    return name or None


def _payload(part: Message) -> bytes:
    """The decoded body of a leaf part. Tolerates bad base64 / quoted-printable."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    try:
        p = part.get_payload()
    except Exception:
        return b""
    if isinstance(p, str):
        return p.encode("utf-8", "surrogateescape")
    return b""


def _part_text(part: Message) -> str:
    return _decode_bytes(_payload(part), _param(part, "charset"))


_BLOCK_TAGS = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|/blockquote|p|div|tr|li)\b[^>]*>", re.I)


def html_to_text(markup: str) -> str:
    """A small, fast HTML -> text conversion good enough for token search and
    for showing a pasted-in protocol to a person."""
    try:
        t = re.sub(r"(?is)<(head|style|script|title)\b.*?</\1\s*>", " ", markup)
        t = re.sub(r"(?s)<!--.*?-->", " ", t)
        t = _BLOCK_TAGS.sub("\n", t)
        t = re.sub(r"(?s)<[^>]*>", "", t)
        t = html.unescape(t).replace("\xa0", " ")
        t = re.sub(r"[ \t]+", " ", t)
        t = re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", t)
        return t.strip()
    except Exception:
        return markup


# --------------------------------------------------------------------------- automatic mail

_OOF_SUBJECT = re.compile(
    r"""^\s*(?:
        fr[åa]nvaro\b | fr[åa]nvarande\b | autosvar\b | automatiskt\s+svar\b |
        out\s+of\s+(?:the\s+)?office\b | automatic\s+reply\b | auto(?:matic)?[\s\-]?reply\b |
        auto[\s\-]?response\b | autoresponse\b | abwesenheit | automatische\s+antwort\b |
        fraværende\b | fravær\b | poissa\b | automaattinen\s+vastaus\b |
        r[ée]ponse\s+automatique\b |
        undeliverable\b | olevererbar | kan\s+inte\s+levereras\b | ej\s+levererat\b |
        delivery\s+status\s+notification\b | mail\s+delivery\s+(?:failed|failure|subsystem)\b |
        returned\s+mail\b | delivery\s+failure\b | failure\s+notice\b |
        read:\s | läst:\s | not\s+read:\s | ej\s+läst:\s
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_OOF_ANYWHERE = re.compile(r"\b(?:out of (?:the )?office|frånvaromeddelande|autoreply|auto-reply)\b", re.I)
_DAEMON_LOCALPARTS = {
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
    "no_reply",
    "bounce",
    "bounces",
}


def is_automatic(msg: Message) -> str | None:
    """Why ``msg`` is an automatic message (RFC 3834 and common practice), or
    None for a message written by a person.

    ``X-Auto-Response-Suppress`` alone does not make a message automatic (it
    asks others not to auto-reply; Outlook and we put it on ordinary mail)."""
    try:
        return _is_automatic(msg)
    except Exception:  # pragma: no cover - defensive
        return None


def _is_automatic(msg: Message) -> str | None:
    for v in _raw_headers(msg, "auto-submitted"):
        token = re.split(r"[;\s(]", v.strip(), maxsplit=1)[0].lower()
        if token and token != "no":
            return f"Auto-Submitted: {token}"
    for h in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autogenerated", "x-auto-reply"):
        for v in _raw_headers(msg, h):
            if v.strip().lower() not in {"no", "false", "0"}:
                return f"{h.title()}: {v.strip()}"[:120]
    for v in _raw_headers(msg, "precedence"):
        p = v.strip().lower()
        if p in {"bulk", "junk", "list", "auto_reply"}:
            return f"Precedence: {p}"
    for v in _raw_headers(msg, "return-path"):
        if re.fullmatch(r"\s*<\s*>\s*", v or ""):
            return "empty Return-Path <> (bounce or notification)"
    ct = _content_type(msg)
    if ct == "multipart/report":
        rt = (_param(msg, "report-type") or "").lower()
        return f"multipart/report ({rt or 'report'})"
    if ct in {"message/delivery-status", "message/disposition-notification"}:
        return ct
    if _raw_headers(msg, "list-id"):
        return "List-Id (mailing list)"
    if _raw_headers(msg, "list-unsubscribe"):
        return "List-Unsubscribe (newsletter)"
    _, addr = parseaddr(decode_header_text(_header(msg, "from")))
    local = addr.rpartition("@")[0].lower() if "@" in addr else addr.lower()
    if local in _DAEMON_LOCALPARTS:
        return f"sender is {local}"
    subject = decode_header_text(_header(msg, "subject"))
    if _OOF_SUBJECT.search(subject) or _OOF_ANYWHERE.search(subject):
        return f"subject looks automatic: {subject.strip()[:80]}"
    return None


# --------------------------------------------------------------------------- calendar

_PARTSTAT_SUBJECT = [
    (re.compile(r"^\s*(?:tentatively\s+accepted|tentative|preliminärt(?:\s+accepterat)?|preliminär|"
                r"mit\s+vorbehalt(?:\s+angenommen)?)\s*:", re.I), "TENTATIVE"),
    (re.compile(r"^\s*(?:accepted|accepterat|accepterad|godkänd|godkänt|accepterade|zugesagt|angenommen)\s*:", re.I),
     "ACCEPTED"),
    (re.compile(r"^\s*(?:declined|avböjt|avböjd|avböjde|abgelehnt)\s*:", re.I), "DECLINED"),
]


def _subject_partstat(subject: str) -> str | None:
    for rx, status in _PARTSTAT_SUBJECT:
        if rx.search(subject or ""):
            return status
    return None


def _ics_lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line[1:]
        else:
            lines.append(line)
    return lines


def _ics_prop(line: str) -> tuple[str, dict[str, str], str]:
    """Split ``NAME;P=V;Q="x:y":value`` (quotes may hold ':' and ';')."""
    i, n, quoted = 0, len(line), False
    while i < n:
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif c == ":" and not quoted:
            break
        i += 1
    head, value = line[:i], line[i + 1 :]
    parts: list[str] = []
    buf, quoted = "", False
    for c in head:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            parts.append(buf)
            buf = ""
        else:
            buf += c
    parts.append(buf)
    params: dict[str, str] = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip().upper()] = v.strip().strip('"')
    return parts[0].strip().upper(), params, value.strip()


def parse_ics_reply(data: bytes | str, fallback_email: str = "") -> CalendarReply | None:
    """A CalendarReply from an iCalendar object with METHOD:REPLY (or COUNTER),
    None for anything else (an invitation, a cancellation, garbage)."""
    try:
        text = data if isinstance(data, str) else _decode_bytes(data, "utf-8")
        if "BEGIN:VCALENDAR" not in text.upper():
            return None
        method = uid = None
        attendees: list[tuple[str, str]] = []
        in_event = False
        for line in _ics_lines(text):
            if not line.strip():
                continue
            name, params, value = _ics_prop(line)
            if name == "METHOD" and method is None:
                method = value.upper()
            elif name == "BEGIN" and value.upper() in {"VEVENT", "VTODO"}:
                in_event = True
            elif name == "END" and value.upper() in {"VEVENT", "VTODO"}:
                in_event = False
            elif in_event and name == "UID" and uid is None:
                uid = value
            elif in_event and name == "ATTENDEE":
                addr = re.sub(r"^mailto:", "", value, flags=re.I).strip().lower()
                attendees.append((addr, params.get("PARTSTAT", "").upper()))
        if method not in {"REPLY", "COUNTER"}:
            return None
        fallback = (fallback_email or "").lower()
        chosen = None
        for addr, ps in attendees:
            if addr == fallback and ps:
                chosen = (addr, ps)
                break
        if chosen is None:
            with_ps = [a for a in attendees if a[1]]
            chosen = with_ps[0] if with_ps else (attendees[0] if attendees else (fallback, ""))
        addr, ps = chosen
        if not ps:
            ps = "TENTATIVE" if method == "COUNTER" else "NEEDS-ACTION"
        return CalendarReply(uid=uid or None, attendee_email=addr or fallback, partstat=ps)
    except Exception:
        return None


_TNEF_RESPONSE = {
    "ipm.schedule.meeting.resp.pos": "ACCEPTED",
    "ipm.schedule.meeting.resp.neg": "DECLINED",
    "ipm.schedule.meeting.resp.tent": "TENTATIVE",
}


# --------------------------------------------------------------------------- documents

_DOC_TYPES = {
    "application/pdf": ".pdf",
    "application/x-pdf": ".pdf",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.ms-word.document.macroenabled.12": ".docm",
    "application/vnd.oasis.opendocument.text": ".odt",
}
_EXT_TYPES = {ext: ct for ct, ext in _DOC_TYPES.items() if ct != "application/x-pdf"}
_EXT_TYPES.update(
    {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".txt": "text/plain",
        ".ics": "text/calendar",
        ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ".rtf": "application/rtf",
        ".eml": "message/rfc822",
    }
)


def _ext(filename: str) -> str:
    name = (filename or "").strip().lower()
    i = name.rfind(".")
    return name[i:] if i >= 0 else ""


def _sniff(data: bytes) -> str | None:
    """The document extension the content looks like, or None."""
    head = data[:1024]
    if b"%PDF-" in head:
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        if b"mimetypeapplication/vnd.oasis.opendocument.text" in data[:200]:
            return ".odt"
        if b"word/" in data:
            return ".docm" if b"vbaProject" in data else ".docx"
        return None
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        # OLE: a .doc, or an encrypted .docx/.docm (the shell tells them apart).
        return ".doc"
    if data.startswith(b"{\\rtf"):
        return None
    return None


_NOT_DOCUMENTS = {
    ".xls", ".xlsx", ".xlsm", ".ppt", ".pptx", ".pptm", ".msg", ".zip", ".ics", ".vcs", ".vcf",
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".emz", ".wmz", ".txt", ".html", ".htm",
}


def is_document_candidate(att: Attachment) -> bool:
    """Could this attachment be the minutes? By name, declared type or content.
    Images (signature logos) and files named as another kind (.xlsx, .msg,
    .ics ...) never are. Validation is the shell's job."""
    ct = (att.content_type or "").lower()
    if ct.startswith("image/"):
        return False
    ext = _ext(att.filename)
    if ext in DOCUMENT_EXTENSIONS:
        return True
    if ext in _NOT_DOCUMENTS:
        return False
    if ct in _DOC_TYPES:
        return True
    return _sniff(att.data or b"") is not None


# --------------------------------------------------------------------------- parse


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
    if ct in _DOC_TYPES:
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
    ct = _content_type(part)
    if ct.startswith("multipart/"):
        return
    if ct == "message/rfc822" or (ct.startswith("message/") and part.is_multipart()):
        # A forwarded message: its attachments count, its body does not.
        inner = part.get_payload()
        if isinstance(inner, list):
            for sub in inner:
                for p in sub.walk():
                    skip.add(id(p))
                if isinstance(sub, Message):
                    sub_acc = _Acc([], [], [], [])
                    _walk(sub, sub_acc, depth + 1)
                    # Attachments count; a forwarded calendar object is not a response of the sender.
                    acc.attachments.extend(sub_acc.attachments)
                    # quoted text of the forwarded mail helps token search
                    inner_text = "\n".join(sub_acc.plain) or "\n".join(html_to_text(h) for h in sub_acc.htmls)
                    subj = _hdr_text(sub, "subject")
                    acc.plain.append(f"\n> Subject: {subj}\n" + "\n".join("> " + ln for ln in inner_text.splitlines()))
        elif isinstance(inner, (str, bytes)):
            raw = inner if isinstance(inner, bytes) else _payload(part)
            sub = email.message_from_bytes(raw, policy=email.policy.compat32)
            sub_acc = _Acc([], [], [], [])
            _walk(sub, sub_acc, depth + 1)
            acc.attachments.extend(sub_acc.attachments)
        return
    disp = _disposition(part)
    filename = _filename(part)
    data_ct = ct
    if ct in {"application/ms-tnef", "application/vnd.ms-tnef"} or (
        filename and filename.lower() in {"winmail.dat", "win.dat"}
    ):
        data = _payload(part)
        if _tnef(data, acc, depth):
            return
        acc.attachments.append(Attachment(filename or "winmail.dat", "application/ms-tnef", data))
        return
    if ct in {"text/calendar", "application/ics", "text/x-vcalendar"} or _ext(filename or "") in {".ics", ".vcs"}:
        acc.calendars.append(_payload(part))
        if disp != "attachment" and not filename:
            return
    if _is_attachment_part(part, ct, disp, filename):
        data = _payload(part)
        if not filename:
            ext = _DOC_TYPES.get(ct) or _sniff(data) or ""
            filename = f"attachment{ext}" if ext else "attachment"
        acc.attachments.append(Attachment(filename, data_ct, data))
        return
    if ct == "text/plain":
        acc.plain.append(_part_text(part))
    elif ct == "text/html":
        acc.htmls.append(_part_text(part))


def _tnef(data: bytes, acc: _Acc, depth: int) -> bool:
    """Unpack Outlook's winmail.dat. True when it could be read."""
    if len(data) < 6 or data[:4] != b"\x78\x9f\x3e\x22":
        return False
    try:
        from tnefparse import TNEF  # imported lazily: only Outlook-on-Exchange needs it
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
                    sub.attachments.append(Attachment(ename, _EXT_TYPES.get(_ext(ename), "application/octet-stream"), edata))
                acc.attachments.extend(sub.attachments)
                continue
            ct = _EXT_TYPES.get(_ext(name), "application/octet-stream")
            acc.attachments.append(Attachment(name, ct, payload))
        except Exception:
            continue
    try:
        body = tnef.body
        if isinstance(body, bytes):
            body = _decode_bytes(body)
        hb = tnef.htmlbody
        if isinstance(hb, bytes):
            hb = _decode_bytes(hb)
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
            name = _decode_bytes(raw.rstrip(b"\x00"), "cp1252")
        else:
            name = str(raw)
    if isinstance(name, bytes):
        name = _decode_bytes(name.rstrip(b"\x00"), "cp1252")
    name = unicodedata.normalize("NFC", (name or "").strip("\x00").strip())
    name = re.split(r"[\\/]", name)[-1]
    return name or "attachment"


def _parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        d = parsedate_to_datetime(_unsurrogate(value).strip())
    except Exception:
        return None
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d


def _sender(msg: Message) -> tuple[str, str]:
    for h in ("from", "sender", "reply-to", "return-path"):
        raw = _header(msg, h)
        if not raw:
            continue
        try:
            pairs = getaddresses([_unsurrogate(raw)])
        except Exception:
            pairs = [parseaddr(_unsurrogate(raw))]
        for name, addr in pairs:
            addr = (addr or "").strip().strip("<>").strip().lower()
            if "@" in addr:
                return addr, decode_header_text(name).strip().strip('"').strip()
        m = re.search(r"[\w.+'\-]+@[\w\-]+(?:\.[\w\-]+)+", decode_header_text(raw))
        if m:
            return m.group(0).lower(), ""
    return "", ""


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
                message_id=next(iter(_msgids(_header(msg, "message-id"))), None),
                in_reply_to=None,
                references=(),
                subject=_hdr_text(msg, "subject"),
                sender=sender,
                sender_name=name,
                date=_parse_date(_header(msg, "date")),
                auto_reason=is_automatic(msg),
                text="",
                attachments=(),
                calendar_reply=None,
            )
        except Exception:
            return _empty()


def _parse_msg(msg: Message) -> ParsedMail:
    sender, sender_name = _sender(msg)
    subject = _hdr_text(msg, "subject")
    mids = _msgids(_header(msg, "message-id"))
    irt = _msgids(_header(msg, "in-reply-to"))
    refs = tuple(r for v in _raw_headers(msg, "references") for r in _msgids(v))

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
        ps = _TNEF_RESPONSE.get(acc.tnef_class.lower())
        if ps:
            cal = CalendarReply(uid=None, attendee_email=sender, partstat=ps)
    if cal is None and not acc.calendars:
        ps = _subject_partstat(subject)
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
        date=_parse_date(_header(msg, "date")),
        auto_reason=is_automatic(msg),
        text=text,
        attachments=tuple(acc.attachments),
        calendar_reply=cal,
    )


# --------------------------------------------------------------------------- classify

_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprungligt meddelande|originalmeddelande|forwarded message|"
    r"vidarebefordrat meddelande|ursprüngliche nachricht)\s*-{2,}|_{10,}|"
    r"(?:från|from|von|skickat|sent|gesendet)\s*:|"
    r"on .{0,200} wrote\s*:|den .{0,200} skrev .{0,120}:|am .{0,200} schrieb .{0,120}:|"
    r"begin forwarded message\s*:|vidarebefordrat brev\s*:)",
    re.IGNORECASE | re.MULTILINE,
)


def _body_token(text: str, tag: str = "KCG") -> str | None:
    if not text:
        return None
    quoted = [ln for ln in text.splitlines() if ln.lstrip().startswith(">")]
    m = _QUOTE_START.search(text)
    tail = text[m.start():] if m else ""
    for chunk in ("\n".join(quoted), tail, text):
        tok = find_token(chunk, tag)
        if tok:
            return tok
    return None


def _meeting(ctx: MatchContext, meeting_id: str | None) -> MeetingRef | None:
    for m in ctx.meetings:
        if m.meeting_id == meeting_id:
            return m
    return None


def _match_by_ids(mail: ParsedMail, ctx: MatchContext) -> str | None:
    if not ctx.sent_ids:
        return None
    sent = {_norm_id(k): v for k, v in ctx.sent_ids.items()}
    candidates: list[str] = []
    if mail.in_reply_to:
        candidates.append(mail.in_reply_to)
    candidates.extend(reversed(mail.references))  # most recent first
    for c in candidates:
        mid = sent.get(_norm_id(c))
        if mid:
            return mid
    return None


def _mail_day(mail: ParsedMail, ctx: MatchContext) -> date:
    if mail.date is None:
        return ctx.today
    d = mail.date.date()
    # A broken phone clock must not pull the window into the future.
    if d > ctx.today + timedelta(days=MATCH_DAYS_AFTER) or d < ctx.today - timedelta(days=3650):
        return ctx.today
    return d


def _match(mail: ParsedMail, ctx: MatchContext) -> tuple[str | None, str]:
    mid = _match_by_ids(mail, ctx)
    if mid:
        return mid, "In-Reply-To/References name our message"
    tok = find_token(mail.subject, ctx.tag)
    if tok:
        return tok, f"token {subject_token(tok, ctx.tag)} in subject"
    tok = _body_token(mail.text, ctx.tag)
    if tok:
        return tok, f"token {subject_token(tok, ctx.tag)} in quoted text"
    day = _mail_day(mail, ctx)
    lo, hi = day - timedelta(days=MATCH_DAYS_BEFORE), day + timedelta(days=MATCH_DAYS_AFTER)
    hits = [m for m in ctx.meetings if mail.sender and mail.sender in m.filers and lo <= m.date <= hi]
    if len(hits) == 1:
        return hits[0].meeting_id, f"sender files for {hits[0].meeting_id} held {hits[0].date.isoformat()}"
    if len(hits) > 1:
        return None, f"sender files for {len(hits)} recent meetings ({', '.join(h.meeting_id for h in hits)}): ambiguous"
    return None, "no token, no reference to our mail, no recent meeting the sender files for"


def _lower_set(values: Iterable[str]) -> set[str]:
    return {v.strip().lower() for v in values if v}


def classify(mail: ParsedMail, ctx: MatchContext) -> Verdict:
    """Decide what ``mail`` is. Order: own, automatic, calendar response,
    meeting match, allowed sender, minutes or no minutes."""
    sender = (mail.sender or "").lower()
    who = sender or "(no sender)"

    if sender and sender in _lower_set(ctx.own_addresses):
        return Verdict("own", None, f"sent from our own address {sender}")

    if mail.auto_reason:
        return Verdict("automatic", None, f"automatic message: {mail.auto_reason}")

    if mail.calendar_reply is not None:
        cal = mail.calendar_reply
        meeting_id = None
        how = ""
        if cal.uid:
            for m in ctx.meetings:
                if m.invitation_uid and m.invitation_uid.strip() == cal.uid.strip():
                    meeting_id, how = m.meeting_id, "invitation UID"
                    break
        if meeting_id is None:
            meeting_id = _match_by_ids(mail, ctx)
            how = "reference to our invitation" if meeting_id else ""
        if meeting_id is None:
            meeting_id = find_token(mail.subject, ctx.tag)
            how = "token in subject" if meeting_id else ""
        reason = f"{cal.partstat.lower()} from {cal.attendee_email or who}"
        reason += f" ({how})" if meeting_id else " (no meeting found)"
        return Verdict("calendar_response", meeting_id, reason, calendar_reply=cal)

    meeting_id, how = _match(mail, ctx)
    if meeting_id is None:
        status = "member" if sender in _lower_set(ctx.members) else "stranger"
        return Verdict("unmatched", None, f"{how}; {status} {who}")
    meeting = _meeting(ctx, meeting_id)
    if meeting is None:
        return Verdict("unmatched", None, f"{how}, but meeting {meeting_id} is not in the plan; from {who}")

    if sender not in _lower_set(meeting.filers):
        status = "a member but not a filer" if sender in _lower_set(ctx.members) else "not a member"
        return Verdict("not_allowed", meeting_id, f"{who} is {status} for {meeting_id} ({how})")

    docs = tuple(a for a in mail.attachments if is_document_candidate(a))
    if docs:
        names = ", ".join(a.filename for a in docs)
        return Verdict("minutes", meeting_id, f"{len(docs)} document(s) from {who} ({how}): {names}", attachments=docs)
    return Verdict("no_minutes", meeting_id, f"no document attached by {who} ({how})")
