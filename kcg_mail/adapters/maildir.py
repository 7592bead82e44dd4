"""Maildir transport: the embedded default, no server needed.

Layout under ``root`` (``<workdir>/mail``)::

    sent/        every message we send (Maildir: tmp/ new/ cur/)
    inbox/       incoming mail; Maildir new/ and cur/, or plain *.eml files
                 dropped straight into inbox/
    processed/   handled messages
    quarantine/  rejected or unknown messages

A sent message's file name is derived from its idempotency key, so
``was_sent`` is a single ``stat`` and a crash between writing and recording
is recognised on the next run.

Push: ``mail_source()`` gives a ``MaildirWatchSource``, which watches the inbox
directories (mtime, then the file names) every ``interval`` seconds (0.5 s: a
``stat`` per tick).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from kcg_mail import ports
from kcg_mail.core.mime import build_invitation, build_message

MAX_INCOMING = 50 * 1024 * 1024
MAILDIR_TICK_SECONDS = 0.5


def header_block(data: bytes) -> bytes:
    """The header of a raw message (up to the first empty line), capped at 256 KiB."""
    data = data[:256 * 1024]
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return data[:i + len(sep) // 2]
    return data


def incoming_limit(override: int | None = None) -> int:
    """The size cap for incoming mail: a transport's own ``max_incoming`` when
    set, else ``MAX_INCOMING`` (read at call time)."""
    return MAX_INCOMING if override is None else override


def oversize_headers(head: bytes) -> bytes:
    """An oversized message as its headers only (``head``: the raw header, or
    the raw message's start), marked ``X-KCG-Oversize``: the intake still knows
    who wrote about what and can answer. Every transport builds it here."""
    return b"X-KCG-Oversize: 1\r\n" + header_block(head).rstrip(b"\r\n") + b"\r\n\r\n"


def oversize_from_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """:func:`oversize_headers` from a server's header list (EWS
    ``InternetMessageHeaders``, Graph ``internetMessageHeaders``): one line per
    field, in the order given; folded values are unfolded, names that are not
    valid field names are left out."""
    lines: list[str] = []
    for name, value in fields:
        name = (name or "").strip()
        if not name or any(ch in name for ch in ": \t\r\n") or not name.isprintable():
            continue
        lines.append(f"{name}: {' '.join(str(value or '').split())}\r\n")
    return oversize_headers("".join(lines).encode("utf-8", "replace"))


def oversize_stub(path: Path) -> bytes:
    """An oversized file as :func:`oversize_headers` (reads at most 256 KiB)."""
    with open(path, "rb") as fh:
        return oversize_headers(fh.read(256 * 1024))


def sent_name(key: str) -> str:
    """The file name of the sent mail with idempotency key ``key`` (in sent/cur/)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".kcg:2,S"


def _atomic_write(folder: Path, name: str, data: bytes) -> Path:
    tmp = folder / "tmp" / name
    final = folder / "cur" / name
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dfd = os.open(folder / "cur", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


class MaildirTransport(ports.MailTransport):
    #: size cap for incoming mail in bytes; None: ``MAX_INCOMING``. Bigger
    #: messages reach the intake as headers only (:func:`oversize_headers`).
    max_incoming: int | None = None

    def __init__(self, root: Path | str, *, create: bool = True):
        """``create=False`` (``kcg check --connect``) leaves the file system alone."""
        self.root = Path(root)
        if create:
            for box in ("sent", "inbox", "processed", "quarantine"):
                for sub in ("tmp", "new", "cur"):
                    (self.root / box / sub).mkdir(parents=True, exist_ok=True)

    # outgoing -------------------------------------------------------------
    def _store_sent(self, key: str, data: bytes) -> None:
        _atomic_write(self.root / "sent", sent_name(key), data)

    def send(self, message: ports.OutgoingMessage) -> None:
        self._store_sent(message.key, build_message(message).as_bytes())

    def send_invitation(self, invitation: ports.Invitation) -> None:
        self._store_sent(invitation.message.key, build_invitation(invitation).as_bytes())

    def was_sent(self, key: str) -> bool:
        return (self.root / "sent" / "cur" / sent_name(key)).exists()

    def sent_messages(self) -> list[Path]:
        return sorted((self.root / "sent" / "cur").iterdir())

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        from email.parser import BytesHeaderParser
        from email.policy import default

        parser = BytesHeaderParser(policy=default)
        for path in self.sent_messages():
            if not path.is_file():
                continue
            raw = path.read_bytes()
            key = parser.parsebytes(raw).get(ports.MARKER_HEADER)
            if key:
                yield str(key).strip(), raw

    # incoming -------------------------------------------------------------
    def _inbox_files(self) -> list[Path]:
        inbox = self.root / "inbox"
        files = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]
        for sub in ("new", "cur"):
            files += [p for p in (inbox / sub).iterdir() if p.is_file() and not p.name.startswith(".")]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def fetch_new(self, cursor: str | None) -> ports.FetchResult:
        # Handled messages leave the inbox, so everything still there is new.
        out: list[ports.IncomingMessage] = []
        for p in self._inbox_files():
            ref = str(p.relative_to(self.root / "inbox"))
            if p.stat().st_size > incoming_limit(self.max_incoming):
                raw = oversize_stub(p)
            else:
                raw = p.read_bytes()
            received = datetime.fromtimestamp(p.stat().st_mtime, tz=UTC)
            out.append(ports.IncomingMessage(ref=ref, raw=raw, received_at=received))
        return ports.FetchResult(messages=out, cursor=None)

    def move(self, ref: str, folder: ports.Folder) -> None:
        src = (self.root / "inbox" / ref).resolve()
        inbox = (self.root / "inbox").resolve()
        if inbox not in src.parents:
            raise ValueError(f"ref {ref!r} is outside the inbox")
        if not src.exists():
            return  # already moved (idempotent)
        name = src.name if ":2," in src.name else src.name + ":2,S"
        os.replace(src, self.root / folder / "cur" / name)

    def restore(self, folder: ports.Folder, match: Callable[[bytes], bool]) -> bool:
        for sub in ("cur", "new"):
            for p in sorted((self.root / folder / sub).iterdir()):
                if p.is_file() and match(p.read_bytes()):
                    os.replace(p, self.root / "inbox" / "cur" / p.name)
                    return True
        return False

    def deliver(self, raw: bytes, name: str) -> Path:
        """Put a message into the inbox (tests and the demo play the hosts this way)."""
        return _atomic_write(self.root / "inbox", name, raw)

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        files: list[Path] = []
        for box in ("inbox", "processed", "quarantine"):
            for sub in ("", "new", "cur"):
                d = self.root / box / sub
                if d.is_dir():
                    files += [p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
        files.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        out: list[bytes] = []
        for p in files[:limit]:
            with open(p, "rb") as fh:
                out.append(header_block(fh.read(256 * 1024)))
        return out

    def mail_source(self, *, stop: threading.Event | None = None, cursor: str | None = None) -> ports.MailSource:
        return MaildirWatchSource(self.root, stop=stop)

    def usage_evidence(self) -> list[str]:
        n = _count_files(self.root / "sent" / "cur")
        return [f"{n} sent mail(s) in {self.root / 'sent'}"] if n else []

    def check(self) -> list[ports.Check]:
        if not self.root.exists():
            parent = self.root.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            ok = parent.is_dir() and os.access(parent, os.W_OK)
            return [ports.Check("maildir", ok, f"{self.root} does not exist yet; " + (
                "it will be created on the first run" if ok else f"it cannot be created ({parent} is not writable)"))]
        ok = os.access(self.root, os.W_OK)
        return [ports.Check("maildir", ok, f"{self.root} {'is writable' if ok else 'is not writable: check permissions'}")]


def _count_files(folder: Path, limit: int = 1000) -> int:
    n = 0
    if folder.is_dir():
        for p in folder.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                n += 1
                if n >= limit:
                    break
    return n


class MaildirWatchSource(ports.MailSource):
    """Watch ``<root>/inbox`` (and its new/ cur/) for files that were not
    there at the last ``mark()``: a ``stat`` of three directories per tick,
    a listing only when an mtime changed."""

    name = "maildir-watch"

    def __init__(self, root: Path | str, interval: float = MAILDIR_TICK_SECONDS,
                 stop: threading.Event | None = None) -> None:
        super().__init__(interval, stop)
        self.inbox = Path(root) / "inbox"
        self.dirs = [self.inbox, self.inbox / "new", self.inbox / "cur"]
        self._mtimes: tuple[int, ...] | None = None
        self._names: frozenset[str] = frozenset()

    def _stat(self) -> tuple[int, ...]:
        out: list[int] = []
        for d in self.dirs:
            try:
                out.append(d.stat().st_mtime_ns)
            except FileNotFoundError:
                out.append(-1)
        return tuple(out)

    def _list(self) -> frozenset[str]:
        names: set[str] = set()
        for d in self.dirs:
            with contextlib.suppress(FileNotFoundError):
                for e in os.scandir(d):
                    if e.is_file() and not e.name.startswith("."):
                        names.add(f"{d.name}/{e.name}")
        return frozenset(names)

    def mark(self) -> None:
        self._mtimes, self._names = self._stat(), self._list()

    def wait(self, timeout: float) -> bool:
        if self._mtimes is None:
            self.mark()
            if self._names:
                return True  # mail was waiting when we started
        deadline = time.monotonic() + timeout
        while True:
            m = self._stat()
            if m != self._mtimes:
                names = self._list()
                self._mtimes = m
                if names - self._names:
                    return True
                self._names = names  # only removals (the intake moved mail out)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.pause(remaining):
                return False
