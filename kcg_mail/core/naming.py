"""The naming convention: one pattern for the template, the filed minutes and
the archive folder ("Använd samma namnprinciper"). Pure functions."""

from __future__ import annotations

import re
import unicodedata
from string import Formatter

DASHED = re.compile(r"[\\/:]")  # separators become a dash: "A/B" -> "A-B"
DROPPED = re.compile(r'[<>"|?*\x00-\x1f\x7f]')
MAX_NAME = 200  # Dropbox allows 255; leave room for " (v12)" and the extension
_VERSION = re.compile(r"^(?P<stem>.*) \(v(?P<n>\d+)\)$")


def safe_name(name: str, max_len: int = MAX_NAME) -> str:
    """A file or folder name that is valid on Dropbox and Windows:
    NFC-normalised, no ``/\\<>:"|?*`` or control characters, no trailing dot
    or space, bounded length, never empty. Emoji and other characters outside
    the Basic Multilingual Plane are dropped (Dropbox rejects some)."""
    name = unicodedata.normalize("NFC", name)
    name = DROPPED.sub("", DASHED.sub("-", name))
    name = "".join(ch for ch in name if ord(ch) <= 0xFFFF)
    name = re.sub(r"\s+", " ", name).strip()
    if len(name) > max_len:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 5:
            name = stem[: max_len - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:max_len]
    name = name.rstrip(" .")
    if name in {"", ".", ".."}:
        name = "namnlös"
    return name


def safe_path(path: str) -> str:
    """Normalise an archive path: leading slash, each component made safe."""
    parts = [safe_name(p) for p in path.replace("\\", "/").split("/") if p.strip() not in {"", ".", ".."}]
    return "/" + "/".join(parts)


def version_path(path: str, n: int) -> str:
    """The n-th version of a file name: ``x.docx`` -> ``x (v2).docx``. n=1 is the path itself."""
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    m = _VERSION.match(stem)
    if m:
        stem = m.group("stem")
    new = stem if n <= 1 else f"{stem} (v{n})"
    return f"{folder}/{new}{'.' + ext if dot else ''}"


def pattern_fields(pattern: str) -> set[str]:
    return {f for _, f, _, _ in Formatter().parse(pattern) if f}


def render_name(pattern: str, values: dict[str, object]) -> str:
    """Fill a ``str.format`` pattern (validated at config load) and make it safe."""
    return safe_name(pattern.format(**values))
