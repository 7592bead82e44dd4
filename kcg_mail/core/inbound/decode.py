"""Decoding the pieces of a MIME message: charsets, RFC 2047 headers,
parameters and file names, payloads, HTML to text."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import html
import quopri
import re
import unicodedata
from collections.abc import Iterable
from email.message import Message

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


def decode_bytes(data: bytes, charset: str | None = None) -> str:
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


def unsurrogate(value: str) -> str:
    """Header text parsed from bytes keeps raw 8-bit bytes as surrogates; decode them."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return decode_bytes(value.encode("ascii", "surrogateescape"))
    return value


def decode_header_text(value: object) -> str:
    """RFC 2047 decoding that tolerates what real clients send. Whitespace is unfolded.

    For well-formed headers the result equals ``email.policy.default``'s
    (``tests/core/test_inbound.py::test_header_decoding_matches_stdlib`` checks it
    over the whole corpus). Two corpus shapes need more, and are why this is
    hand-written rather than the standard library's:

    - ``18_encoded_word_split_token.eml``: a multibyte character (and the
      meeting token) split over two adjacent encoded words; the stdlib decodes
      each word alone and inserts a space (``[KCG-2023 -04]``, ``Vä sterås``).
      Adjacent words of one charset are joined as bytes before decoding.
    - ``58_malformed_bad_charset_base64_date.eml``: a charset label the bytes
      are not in; the stdlib yields U+FFFD, we fall back to UTF-8, then
      Windows-1252 (``decode_bytes``).
    """
    try:
        if value is None:
            return ""
        if not isinstance(value, str):
            value = str(value)
        value = unsurrogate(value)
        value = re.sub(r"\r?\n[ \t]", " ", value).replace("\r", "").replace("\n", "")
        if "=?" not in value:
            return value
        out: list[str] = []
        pos = 0
        pending: tuple[str, bytearray] | None = None  # (charset, bytes) of adjacent words

        def flush() -> None:
            nonlocal pending
            if pending is not None:
                out.append(decode_bytes(bytes(pending[1]), pending[0]))
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
            if pending is not None and adjacent and pending[0].lower() == charset.lower():
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


def raw_headers(msg: Message, name: str) -> list[str]:
    """All raw values of a header (case-insensitive), as str, never raising."""
    values: list[str] = []
    lname = name.lower()
    items: Iterable[tuple[str, object]]
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


def header_value(msg: Message, name: str) -> str:
    vals = raw_headers(msg, name)
    return vals[0] if vals else ""


def hdr_text(msg: Message, name: str) -> str:
    return decode_header_text(header_value(msg, name)).strip()


_MSGID_RE = re.compile(r"<[^<>\s]+>")


def msgids(value: str) -> tuple[str, ...]:
    value = unsurrogate(value or "")
    if "=?" in value:
        # Python's email package (and clients built on it) RFC 2047-encodes an
        # In-Reply-To/References longer than a line, as the reply keys in our
        # Message-IDs make them; the ids are inside the encoded words.
        value = decode_header_text(value)
    ids = _MSGID_RE.findall(value)
    if ids:
        return tuple(ids)
    return tuple(f"<{t.strip('<>')}>" for t in value.split() if "@" in t)


def norm_id(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def content_type(part: Message) -> str:
    try:
        return (part.get_content_type() or "text/plain").lower()
    except Exception:
        return "application/octet-stream"


def param(part: Message, name: str, header: str = "content-type") -> str | None:
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


def content_disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        v = header_value(part, "content-disposition")
        return v.split(";", 1)[0].strip().lower()


def part_filename(part: Message) -> str | None:
    name: str | None = None
    try:
        # Raw 8-bit (UTF-8) parameter values arrive as surrogates; decode them first.
        raw_cd = raw_headers(part, "content-disposition")
        raw_ct = raw_headers(part, "content-type")
        if any(unsurrogate(v) != v for v in raw_cd + raw_ct):
            tmp = Message()
            for v in raw_cd[:1]:
                tmp["Content-Disposition"] = unsurrogate(v)
            for v in raw_ct[:1]:
                tmp["Content-Type"] = unsurrogate(v)
            part = tmp
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        name = param(part, "name")
    if not name:
        return None
    name = decode_header_text(name).strip().strip('"').strip()
    # Some clients send a path ("C:\\Users\\...\\file.docx").
    name = re.split(r"[\\/]", name)[-1]
    name = unicodedata.normalize("NFC", name)  # Apple Mail sends decomposed å/ä/ö
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    return name or None


def part_payload(part: Message) -> bytes:
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


def part_text(part: Message) -> str:
    return decode_bytes(part_payload(part), param(part, "charset"))


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
