"""Small rules about what our own mails may carry: the key that
makes one problem one alert a day, and which link a distribution may show."""

from __future__ import annotations

import re

#: Replacements applied in order to an error's first line, so the text of one problem
#: is the same on every run: temp-file names, paths and URLs, message ids, long ids,
#: hex and numbers.
_NORMALISE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"<[^<>\s]+@[^<>\s]+>"), "<msgid>"),
    (re.compile(r"(?:\b[a-z]:)?(?:[\\/][^\\/\s'\"<>:,;()\[\]]+)+[\\/]?", re.I), "<path>"),
    (re.compile(r"\b(?:tmp|temp)[\w.-]*", re.I), "<tmp>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b(?=[\w+=-]*\d)(?=[\w+=-]*[a-z])[\w+=-]{16,}\b", re.I), "<id>"),
    (re.compile(r"\b[0-9a-f]{6,}\b", re.I), "#"),
    (re.compile(r"\d+"), "#"),
)


def normalise_problem(text: str) -> str:
    """The first line of ``text`` with everything that changes between runs of the same
    problem blanked: temp-file names, paths, URLs, message ids, ids and numbers."""
    first = (text.strip().splitlines() or [""])[0]
    for pattern, repl in _NORMALISE:
        first = pattern.sub(repl, first)
    return " ".join(first.split())


def shareable_link(link: str | None) -> str | None:
    """A link a member can open: an ``https://`` (or ``http://``) URL. A ``file://`` URI
    or a bare path names a file on our server and is never put in a mail."""
    if link and re.match(r"^https?://", link.strip(), re.I):
        return link.strip()
    return None


def distribution_content(configured: str, link: str | None) -> tuple[bool, str | None]:
    """(attach the file?, link to show) for a distribution: without a shareable link
    (the local archive) the file is attached, whatever ``distribution`` says."""
    usable = shareable_link(link)
    return configured == "attach" or usable is None, usable
