"""The meeting token in subjects and bodies, e.g. ``[KCG-2023-02]``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

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
