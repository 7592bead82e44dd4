"""The values of a parsed incoming mail: ``ParsedMail`` and the calendar
response it may carry (``CalendarReply``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from kcg_mail.ports import Attachment


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
    #: every address in every From header field; ``sender`` is set only when
    #: there is exactly one (Reply-To and Sender never stand in for From)
    from_addresses: tuple[str, ...] = ()
    #: the ``Authentication-Results`` field bodies, top first
    auth_results: tuple[str, ...] = ()
    #: candidate reply keys (our Message-ID in In-Reply-To/References, kcg+KEY@ in To/Cc)
    reply_keys: tuple[str, ...] = ()
    #: the transport skipped the body of a mail above the size limit (headers only)
    oversize: bool = False


def msg_key(raw: bytes) -> str:
    """A received message's key in the state record: its bytes' SHA-256 (40 hex digits)."""
    return hashlib.sha256(raw).hexdigest()[:40]
