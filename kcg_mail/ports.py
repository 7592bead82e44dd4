"""The ports of the shell: mail transport (and its push source), archive and state store.

Every adapter in ``kcg_mail/adapters/`` implements one of these abstract classes.
The flows and the service layer only ever talk to these interfaces, so the same
flow runs on Maildir or Exchange, on a local folder or Dropbox. What a port
offers beyond its abstract methods is declared here with a default, so no
caller ever asks an adapter what it can do (no ``getattr``/``hasattr``).

The value types below are plain frozen dataclasses with no I/O.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formataddr
from pathlib import Path
from typing import Any, Literal

#: Header carried by every message we send. Its value is the idempotency key of
#: the action that sent it; it is how a sent copy is found again after a crash.
MARKER_HEADER = "X-KCG-Mail"

Folder = Literal["processed", "quarantine"]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    def formatted(self) -> str:
        return formataddr((self.name, self.email))


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def message_id_for(key: str, domain: str) -> str:
    """A stable RFC 5322 Message-ID derived from an idempotency key."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<kcg.{digest}@{domain}>"


@dataclass(frozen=True)
class OutgoingMessage:
    """One mail we send. ``key`` is the deterministic idempotency key
    (``meeting:action:recipient[:version]``); the Message-ID and the marker
    header are derived from it, so a resend after a crash is recognisable."""

    key: str
    action: str
    meeting_id: str | None
    sender: Address
    to: tuple[Address, ...]
    subject: str
    text: str
    html: str | None = None
    cc: tuple[Address, ...] = ()
    reply_to: Address | None = None
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    #: Adds ``Auto-Submitted: auto-generated`` and ``X-Auto-Response-Suppress``.
    #: False for invitations (we want their accept/decline responses).
    auto_submitted: bool = True
    #: The Date header: the run's "now" (set by the Outbox; simulated in the demo).
    date: datetime | None = None
    #: The Message-ID, set by the Outbox from the reply key (an HMAC with the
    #: network's secret, not computable from public data). None: derived from ``key``.
    msgid: str | None = None

    @property
    def message_id(self) -> str:
        if self.msgid:
            return self.msgid
        domain = self.sender.email.rpartition("@")[2] or "kcg-mail.invalid"
        return message_id_for(self.key, domain)

    @property
    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc


@dataclass(frozen=True)
class Invitation:
    """A calendar invitation (or its update or cancellation) for one meeting.

    ``message`` carries key, subject, bodies, organizer (sender) and attendees
    (to). ``ics`` is the complete RFC 5545 object with METHOD set, built by the
    core; MIME transports attach it as ``text/calendar; method=...``, Exchange
    and Graph create real calendar items from the fields instead.
    """

    message: OutgoingMessage
    uid: str
    sequence: int
    method: Literal["REQUEST", "CANCEL"]
    summary: str
    description: str
    location: str
    start: datetime
    end: datetime
    tzid: str
    ics: bytes


@dataclass(frozen=True)
class IncomingMessage:
    """A message found in the inbox. ``ref`` is the transport's handle used to
    move it (Maildir key, ``uidvalidity:uid``, EWS item id, Graph id). ``raw``
    is the full RFC 822 message; every transport delivers MIME so one parser
    (``kcg_mail.core.inbound``) handles mail from all of them."""

    ref: str
    raw: bytes
    received_at: datetime | None = None


@dataclass(frozen=True)
class FetchResult:
    messages: list[IncomingMessage]
    #: Opaque resume point (IMAP ``uidvalidity:uid``, EWS sync state, Graph delta
    #: link). Stored by the caller only after every message is handled.
    cursor: str | None


@dataclass(frozen=True)
class Check:
    """One line of ``kcg check --connect``."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class StoredFile:
    path: str
    rev: str
    content_hash: str
    size: int
    #: False when identical content was already there (no-op).
    created: bool = True


class TransportError(RuntimeError):
    """A mail or archive service failed in a way a person must look at.
    The message says what happened and what to do."""


class TransientError(TransportError):
    """A fault worth retrying later (server down, throttled)."""


# --------------------------------------------------------------------------- ports


class MailSource(abc.ABC):
    """Push: what the listener waits on for new mail (``kcg serve``).

    A source has a connection of its own (never the intake's) and blocks in
    ``wait`` until something may have arrived; the listener then marks and
    triggers an intake run, which decides what the mail is. ``stop`` is the
    listener's stop event: a source that polls waits on it ``interval`` s
    between two looks (``pause``)."""

    #: shown in the listener's log lines
    name: str = "source"

    def __init__(self, interval: float, stop: threading.Event | None = None) -> None:
        self.interval = interval
        self.stop = stop or threading.Event()

    def pause(self, timeout: float) -> bool:
        """Wait between two polls: ``interval`` s, ``timeout`` s at most. True when
        the listener stopped meanwhile."""
        return self.stop.wait(min(timeout, self.interval))

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True when new mail may have arrived.
        Raises on connection problems (the listener backs off and retries)."""

    @abc.abstractmethod
    def mark(self) -> None:
        """Remember what is there now; called right before each intake
        trigger, so mail arriving while that run works wakes the next wait."""

    def close(self) -> None:  # noqa: B027 - nothing to close by default
        """Release the connection; may be called from another thread while ``wait`` blocks."""


#: How often a transport without push is asked for new mail (Graph delta, EWS sync state).
POLL_SECONDS = 10.0


class PollSource(MailSource):
    """The push source of a transport that cannot push: a short-interval
    ``fetch_new`` with the listener's own cursor (seeded from the intake's
    stored one), waking when anything new is returned. Only the port is used."""

    name = "poll"

    def __init__(self, transport: MailTransport, interval: float = POLL_SECONDS, cursor: str | None = None,
                 stop: threading.Event | None = None) -> None:
        super().__init__(interval, stop)
        self.transport = transport
        self.cursor = cursor
        self._first = True

    def mark(self) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        if not self._first and self.pause(timeout):
            return False
        self._first = False
        batch = self.transport.fetch_new(self.cursor)
        if batch.cursor is not None:
            self.cursor = batch.cursor
        return bool(batch.messages)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.close()


class MailTransport(abc.ABC):
    """Everything the flows need from a mailbox."""

    #: How long a sent mail's copy may take to show up for ``was_sent`` (Graph's
    #: asynchronous sendMail, the SMTP own copy in delivery): a run recovering an
    #: interrupted send waits this long, counted from the intent (``Outbox``).
    settle_seconds: float = 0.0
    #: The clock that wait runs on; None: the Outbox's own (tests inject one).
    settle_sleep: Callable[[float], None] | None = None

    @abc.abstractmethod
    def send(self, message: OutgoingMessage) -> None:
        """Send a message. Must set Message-ID to ``message.message_id`` (or
        carry it in an extended property where the server assigns its own),
        the marker header, and keep a copy in Sent."""

    @abc.abstractmethod
    def send_invitation(self, invitation: Invitation) -> None:
        """Send, update (same uid, higher sequence) or cancel a meeting."""

    @abc.abstractmethod
    def fetch_new(self, cursor: str | None) -> FetchResult:
        """Messages that arrived after ``cursor`` (all unhandled ones when None)."""

    @abc.abstractmethod
    def move(self, ref: str, folder: Folder) -> None:
        """Move a handled message out of the inbox. Idempotent: moving a
        message that is already gone is not an error."""

    @abc.abstractmethod
    def was_sent(self, key: str) -> bool:
        """Whether a message with this idempotency key is in Sent (marker header)."""

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        """(marker key, raw message) of every copy in Sent that carries our marker
        header, for ``kcg state rebuild``. Transports that cannot list Sent raise
        NotImplementedError (the state is then restored from a backup)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot list the Sent folder for a rebuild; restore the state from a backup "
            "with `kcg state restore`"
        )

    def restore(self, folder: Folder, match: Callable[[bytes], bool]) -> bool | None:
        """Move a message for which ``match(raw)`` is true from ``folder`` back
        to the inbox (the coordinator re-files a quarantined message). True:
        moved; False: not found; None: not supported here, a person moves it
        in the mail program."""
        return None

    def check(self) -> list[Check]:
        return [Check(type(self).__name__, True, "no connection needed")]

    def recent_headers(self, limit: int = 20) -> list[bytes] | None:
        """The header blocks of up to ``limit`` recent incoming mails (inbox,
        processed, quarantine), newest first, for ``kcg check --connect`` to
        show which authserv-ids write Authentication-Results. None: not
        supported by this transport."""
        return None

    def close(self) -> None:  # noqa: B027 - nothing to close by default
        """Close the connection (every run closes its transport at its end)."""

    def verify_own_copies(self, is_ours: Callable[[str, str], bool]) -> None:  # noqa: B027
        """A transport that recognises copies of our own mail among incoming mail
        (``SmtpImapTransport.own_copy``) accepts one only when ``is_ours(marker
        key, Message-ID)``: the marker header and our address in From can be
        forged, the Message-ID's HMAC cannot. Default: nothing to verify."""

    def mail_source(self, *, stop: threading.Event | None = None, cursor: str | None = None) -> MailSource:
        """The push source of this mailbox for the listener. Call it on a transport
        of its own, not the intake's (``bootstrap.make_source`` does): a source may
        use that transport's connection and closes it with its own. Default: a
        ``PollSource`` every ``POLL_SECONDS`` from ``cursor`` (the intake's)."""
        return PollSource(self, POLL_SECONDS, cursor, stop=stop)

    def usage_evidence(self) -> list[str]:
        """What this mailbox shows of earlier runs that a fresh state record would
        not know about (the state guard refuses to start from an empty record
        then). Only a local mailbox can tell cheaply; default: nothing."""
        return []


class Archive(abc.ABC):
    """Where filed minutes live: a local folder or Dropbox, same layout."""

    @abc.abstractmethod
    def store(self, path: str, data: bytes, *, overwrite: bool = False) -> StoredFile:
        """Store ``data`` at ``path`` (creating folders). Same content at the path
        or at one of its versions: no-op, returns that file with created=False.
        Different content at an existing path: stored as the next version name
        (``kcg_mail.core.naming.version_path``), never overwritten, unless
        ``overwrite`` is asked for explicitly (running logs)."""

    @abc.abstractmethod
    def read(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def list(self, folder: str) -> list[StoredFile]: ...

    @abc.abstractmethod
    def shared_link(self, path: str) -> str:
        """Make or reuse a link to the file for a distribution mail."""

    @abc.abstractmethod
    def add_member(self, folder: str, email: str) -> None:
        """Give a person access to the shared folder (onboarding)."""

    def check(self) -> builtins.list[Check]:  # `list` is a method of this class
        return [Check(type(self).__name__, True, "no connection needed")]

    def close(self) -> None:  # noqa: B027 - nothing to close by default
        """Close the connection (every run closes its archive at its end)."""


# ------------------------------------------------------------------ state record


@dataclass(frozen=True)
class ActionRecord:
    key: str
    meeting_id: str | None
    action: str
    status: Literal["intent", "done", "skipped", "failed"]
    detail: dict[str, Any] = field(default_factory=dict)
    at: str = ""


@dataclass(frozen=True)
class MessageRecord:
    msg_key: str
    ref: str
    meeting_id: str | None
    outcome: str
    reason: str
    sender: str
    subject: str
    status: Literal["seen", "done"]
    at: str = ""


@dataclass(frozen=True)
class FilingRecord:
    meeting_id: str
    version: int
    path: str
    rev: str
    content_hash: str
    link: str | None
    source_msg_key: str
    at: str = ""


class StateStore(abc.ABC):
    """The durable state record. Every mail, filing and incoming message goes
    through it; it is what makes runs idempotent and crash-safe."""

    #: The file that holds the record; its folder is the work directory (the
    #: intake lock lives there). None: not kept in a file.
    path: Path | None = None

    def close(self) -> None:  # noqa: B027 - nothing to close by default
        """Close the record (every run closes its state at its end)."""

    def keep_backup(self) -> Path | None:
        """Keep a copy of the record as this run left it (rotated, only when it
        changed). Returns the copy made, None when none was (default: none)."""
        return None

    # actions (outgoing mail, filings, skips), keyed deterministically
    @abc.abstractmethod
    def action(self, key: str) -> ActionRecord | None: ...

    @abc.abstractmethod
    def record_action(
        self, key: str, meeting_id: str | None, action: str, status: str, detail: dict[str, Any] | None = None
    ) -> None: ...

    @abc.abstractmethod
    def actions(self, meeting_id: str | None = None) -> list[ActionRecord]: ...

    # incoming messages
    @abc.abstractmethod
    def message(self, msg_key: str) -> MessageRecord | None: ...

    @abc.abstractmethod
    def record_message(self, record: MessageRecord) -> None: ...

    @abc.abstractmethod
    def messages(self, outcome: str | None = None) -> list[MessageRecord]: ...

    # filings of minutes
    @abc.abstractmethod
    def record_filing(self, record: FilingRecord) -> None: ...

    @abc.abstractmethod
    def filings(self, meeting_id: str | None = None) -> list[FilingRecord]: ...

    # decisions read from minutes
    @abc.abstractmethod
    def replace_decisions(self, meeting_id: str, decisions: Iterable[dict[str, str]]) -> None: ...

    @abc.abstractmethod
    def decisions(self, meeting_id: str | None = None) -> list[dict[str, str]]: ...

    # attendance from calendar responses
    @abc.abstractmethod
    def record_attendance(self, meeting_id: str, email: str, response: str) -> None: ...

    @abc.abstractmethod
    def attendance(self, meeting_id: str) -> dict[str, str]: ...

    # small key/value settings: transport cursors, sync states, template hash
    @abc.abstractmethod
    def get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def put(self, key: str, value: str) -> None: ...
