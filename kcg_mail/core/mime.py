"""Turn our outgoing value types into RFC 5322 MIME messages.

Used by every transport that speaks MIME (Maildir, SMTP/IMAP). Header values
come from config and plan text, so every one is checked for CR/LF: a newline
in a header value would let a subject inject headers.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime, formatdate

from kcg_mail.ports import MARKER_HEADER, Address, Invitation, OutgoingMessage


class HeaderInjection(ValueError):
    pass


def _clean(value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderInjection(f"line break in header value {value[:60]!r}")
    return value


def _addresses(addrs: tuple[Address, ...]) -> str:
    return ", ".join(_clean(a.formatted()) for a in addrs)


def build_message(msg: OutgoingMessage, *, date: str | None = None) -> EmailMessage:
    m = EmailMessage(policy=SMTP)
    m["From"] = _clean(msg.sender.formatted())
    m["To"] = _addresses(msg.to)
    if msg.cc:
        m["Cc"] = _addresses(msg.cc)
    if msg.reply_to:
        m["Reply-To"] = _clean(msg.reply_to.formatted())
    m["Subject"] = _clean(msg.subject)
    m["Date"] = date or (format_datetime(msg.date) if msg.date else formatdate(localtime=False, usegmt=True))
    m["Message-ID"] = msg.message_id
    if msg.in_reply_to:
        m["In-Reply-To"] = _clean(msg.in_reply_to)
    if msg.references:
        m["References"] = _clean(" ".join(msg.references))
    m[MARKER_HEADER] = _clean(msg.key)
    if msg.auto_submitted:
        m["Auto-Submitted"] = "auto-generated"
        m["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    m.set_content(msg.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if msg.html:
        m.add_alternative(msg.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for att in msg.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        m.add_attachment(att.data, maintype=maintype, subtype=subtype or "octet-stream", filename=att.filename)
    return m


def build_invitation(inv: Invitation, *, date: str | None = None) -> EmailMessage:
    """A meeting request (or cancellation) as Outlook, Gmail and Apple Mail
    expect it: multipart/alternative with text, HTML and a
    ``text/calendar; method=...`` part carrying the same METHOD as the ics."""
    m = build_message(inv.message, date=date)
    body = m.get_body(("html",)) if inv.message.html else m.get_body(("plain",))
    if m.get_content_type() != "multipart/alternative" and not m.is_multipart():
        m.make_alternative()
    target: MIMEPart | None = m if m.get_content_type() == "multipart/alternative" else None
    if target is None:
        # multipart/mixed (attachments): add the calendar to the alternative part
        for part in m.iter_parts():
            if part.get_content_type() == "multipart/alternative":
                target = part
                break
        else:  # pragma: no cover - text-only mixed message
            if body is None:
                raise ValueError("invitation message without a text body")
            target = body
            target.make_alternative()
    cal = EmailMessage(policy=SMTP)
    cal.set_content(inv.ics, maintype="text", subtype="calendar", cte="base64")
    del cal["Content-Type"]
    cal["Content-Type"] = f'text/calendar; charset="utf-8"; method={inv.method}'
    assert target is not None
    target.attach(cal)
    return m


def stamp(dt: datetime) -> str:
    return format_datetime(dt)
