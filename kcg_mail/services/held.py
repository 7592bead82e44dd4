"""Held is not published: what waits for the coordinator stays out of the archive.

A version of a meeting's minutes that may not go out by itself (over the day's
allowance of mail-outs, a late copy, a file that held something unsafe) is kept
in the *held area*, ``<workdir>/held/<meeting>/<content hash>.<kind>``, never in
the shared archive (Dropbox or the local archive folder) the network reads. The
state record (``kcg_mail.services.ledger``) says why and what became of it; on
approval ``kcg_mail.services.filing.release_held_version`` files and distributes
exactly those bytes. A message held before anything was read (a sender we could
not confirm) stays in the mail quarantine; approving it lets the next intake read it.

``prepare_version`` is the one place where the bytes that would be filed are made
from the bytes received: everything downstream (the held area, the archive, the
distribution) gets its result.

The reasons, in Swedish, one text per cause (``reason_text``):

- ``sender``: avsändaren kunde inte bekräftas
- ``filer``:  avsändaren får inte lämna protokoll för mötet
- ``member``: avsändaren är inte medlem i nätverket
- ``cap``:    tredje versionen i dag (högst 2 utskick per möte och dag)
- ``late``:   kom in efter att protokollet redan skickats ut (en äldre version än den utskickade)
- ``safety``: filen innehöll ett inbäddat objekt som togs bort (what the rebuild took out
  that holds a version: ``UNSAFE_REMOVED``; other removals, such as a hyperlink or a
  field replaced by its text, do not hold it)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kcg_mail.services.app import App
from kcg_mail.services.ledger import HeldVersion, HoldCause
from kcg_mail.services.lock import lock_dir
from kcg_mail.services.originals import accept_document

#: a rule of ``kcg_mail.core.inbound.rules`` that holds a message -> the cause
RULE_CAUSE: dict[str, HoldCause] = {
    "one-from-mailbox": "sender", "authenticated": "sender", "reply-key": "sender",
    "allowed-filer": "filer", "member-sender": "member",
}

#: causes about the message's sender (the other causes are about the file or the day)
SENDER_CAUSES: frozenset[str] = frozenset({"sender", "filer", "member"})

SENDER_TEXT: dict[str, str] = {
    "sender": "avsändaren kunde inte bekräftas",
    "filer": "avsändaren får inte lämna protokoll för mötet",
    "member": "avsändaren är inte medlem i nätverket",
}

_ORDINALS = ("första", "andra", "tredje", "fjärde", "femte", "sjätte", "sjunde", "åttonde", "nionde", "tionde")


def ordinal(n: int) -> str:
    return _ORDINALS[n - 1] if 1 <= n <= len(_ORDINALS) else f"{n}:e"


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " och " + words[-1]


def sender_reason(rule: str) -> str:
    return SENDER_TEXT[RULE_CAUSE.get(rule, "sender")]


def cap_reason(nth_today: int, limit: int) -> str:
    return f"{ordinal(nth_today)} versionen i dag (högst {limit} utskick per möte och dag)"


def late_reason() -> str:
    return "kom in efter att protokollet redan skickats ut (en äldre version än den utskickade)"


def safety_reason(findings: Sequence[str], removed: bool) -> str:
    what = _join(list(dict.fromkeys(findings)))
    return f"filen innehöll {what} som togs bort" if removed else \
        f"filen innehåller {what}; godkänns den skickas filen ut som den är"


def reason_text(cause: HoldCause, *, rule: str = "", nth_today: int = 0, limit: int = 0,
                findings: Sequence[str] = (), removed: bool = False) -> str:
    """The one Swedish reason text of a cause (module docstring)."""
    if cause in SENDER_TEXT:
        return SENDER_TEXT[cause]
    if cause == "cap":
        return cap_reason(nth_today, limit)
    if cause == "late":
        return late_reason()
    return safety_reason(findings, removed)


# ------------------------------------------------------------------ the bytes that would be filed


@dataclass(frozen=True)
class Prepared:
    """The bytes that would be filed and distributed (the rebuilt file), their kind,
    and what the rebuild took out that holds the version for approval (``findings``,
    in Swedish; ``removed``: they are no longer in ``data``)."""

    data: bytes
    kind: str
    findings: tuple[str, ...] = ()
    removed: bool = True


#: what the rebuild leaves out that makes a version wait for the coordinator
#: (its words start so), and how the reason names it
UNSAFE_REMOVED: dict[str, str] = {
    "inbäddat objekt": "ett inbäddat objekt",
    "inbäddade filer och objekt": "ett inbäddat objekt",
    "ActiveX": "en ActiveX-kontroll",
    "skript och makron": "skript eller makron",
    "importerat innehåll": "importerat innehåll",
    "underdokument": "ett underdokument",
    "PDF-JavaScript": "skript",
    "PDF-JS": "skript",
    "PDF-Launch": "en åtgärd som startar program",
    "PDF-EmbeddedFile": "en bifogad fil",
}


def unsafe_findings(removed: Sequence[str]) -> tuple[str, ...]:
    """The reason words for what of ``removed`` (the rebuild's words) holds a version."""
    out = [words for prefix, words in UNSAFE_REMOVED.items() for r in removed if r.startswith(prefix)]
    return tuple(dict.fromkeys(out))


def prepare_version(app: App, meeting_id: str, msg_key: str, filename: str, data: bytes) -> Prepared:
    """The one call site that turns a received (already vetted) file into the file
    that is filed and distributed: the content-disarming rebuild
    (``kcg_mail.services.originals``, which keeps the host's original in local
    quarantine). Raises ``MinutesRejected`` for a file that cannot be rebuilt."""
    rebuilt, kind, removed = accept_document(app, meeting_id, msg_key, filename, data)
    return Prepared(rebuilt, kind, unsafe_findings(removed))


# ------------------------------------------------------------------ the held area


class HeldArea:
    """Files kept out of the archive: ``<workdir>/held/<meeting>/<content hash>.<kind>``.
    Written atomically (temporary file, fsync, rename); named by content, so a
    rewrite after a crash gives the same file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, meeting_id: str, content_hash: str, kind: str) -> Path:
        return self.root / meeting_id / f"{content_hash}.{kind}"

    def keep(self, meeting_id: str, content_hash: str, kind: str, data: bytes) -> str:
        target = self.path(meeting_id, content_hash, kind)
        if target.is_file() and target.read_bytes() == data:
            return target.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target.name

    def read(self, held: HeldVersion) -> bytes:
        return (self.root / held.meeting_id / held.filename).read_bytes()

    def relative(self, held: HeldVersion) -> str:
        return f"held/{held.meeting_id}/{held.filename}"


def held_area(app: App) -> HeldArea:
    """The held area of an App built by ``kcg_mail.bootstrap`` (next to ``state.sqlite``)."""
    return HeldArea(lock_dir(app) / "held")
