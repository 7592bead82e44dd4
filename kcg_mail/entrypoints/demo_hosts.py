"""The people the demo plays, as their mail programs and Word would: a host answers
the template mail with the protocol filled in, a member answers the planning round's
mails (in the text, or with the Word form or ballot filled in), a lead replies to a
status request. Each reply is built as real MIME from the person's own address, a
reply to the mail we sent (found in the Maildir's Sent folder), and stamped the way
our receiving server hands it over (``Authentication-Results``).

Used by ``kcg demo`` (``kcg_mail.entrypoints.demo`` and ``demo_round``) and by the tests
that play the same people; nothing in the product's own runs calls it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any, TypedDict

from kcg_mail.adapters.maildir import MaildirTransport, sent_name
from kcg_mail.core.config_model import Person
from kcg_mail.core.plan import Meeting
from kcg_mail.documents.fill import edit_decisions
from kcg_mail.services.app import App

#: more rows of the decisions table: (decision, owner, due)
Rows = Sequence[tuple[str, str, str]]
#: the host's mark in the follow-up table: (ref, owner) -> Läge
Marks = Callable[[str, str], str]


def maildir(app: App) -> MaildirTransport:
    """The demo's mailbox: people are played through the embedded Maildir (their mail lands in
    its inbox, what we sent is read from its Sent folder)."""
    if not isinstance(app.mail, MaildirTransport):
        raise SystemExit("the demo plays people through the Maildir inbox: use the embedded defaults (transport.yaml)")
    return app.mail


DEMO_DECISIONS = [
    ("Ta fram ett gemensamt underlag om {theme}", "{host}", "{due}"),
    ("Dela goda exempel i Dropbox-mappen före nästa möte", "Alla", "{next}"),
]


def fill_protocol(docx_bytes: bytes, m: Meeting, extra: Rows = (), marks: Marks | None = None) -> bytes:
    """What a host does in Word: write the decisions into the table (``extra``: more
    rows), and, with ``marks(ref, owner) -> text``, mark the open decisions of earlier
    meetings in the follow-up table's column Läge."""
    # the host's own decision is due in two months: never before the next meeting (the
    # longest gap in the plan is nine weeks), so it is followed up there, not by a reminder
    values = {"theme": m.theme.lower(), "host": m.host.name, "due": (m.date + timedelta(days=63)).isoformat(),
              "next": (m.date + timedelta(days=28)).isoformat()}

    def write(table: Any) -> None:
        for row, (d, o, due) in zip(table.rows[1:], list(DEMO_DECISIONS) + list(extra)):
            for cell, text in zip(row.cells, (d, o, due)):
                cell.text = text.format(**values)

    data = edit_decisions(docx_bytes, write)
    return data if marks is None else mark_followups(data, marks)


def stamp_authentication(raw: bytes, authserv_id: str, result: str = "pass", domain: str | None = None) -> bytes:
    """``raw`` as our receiving server hands it over: with its own
    ``Authentication-Results`` on top (RFC 8601), here for a sender whose
    SPF, DKIM and DMARC all gave ``result`` for the From domain."""
    from email.utils import getaddresses

    if domain is None:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
        froms = [ln.partition(":")[2] for ln in head.replace("\r\n", "\n").split("\n") if ln.lower().startswith("from:")]
        addrs = [a for _, a in getaddresses(froms) if "@" in a]
        domain = addrs[0].rpartition("@")[2].lower() if addrs else "invalid"
    field = (f"Authentication-Results: {authserv_id};\r\n\tspf={result} smtp.mailfrom={domain};\r\n"
             f"\tdkim={result} header.d={domain};\r\n\tdmarc={result} header.from={domain}\r\n")
    return field.encode("ascii") + raw


def mark_followups(docx_bytes: bytes, marks: Marks) -> bytes:
    """Write ``marks(ref, owner)`` into the Läge column of the follow-up table."""
    import docx

    doc = docx.Document(io.BytesIO(docx_bytes))
    for table in doc.tables:
        head = [c.text.strip().lower() for c in table.rows[0].cells]
        if head[:2] == ["ref", "öppet beslut"]:
            for row in table.rows[1:]:
                cells = row.cells
                cells[-1].text = marks(cells[0].text.strip(), cells[2].text.strip())
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def host_reply(app: App, m: Meeting, when: datetime, extra: Rows = (), marks: Marks | None = None) -> bytes | None:
    """The host's reply to the template mail in the Maildir sent folder, as our
    receiving server hands it over (authenticated)."""
    from email import message_from_bytes, policy


    path = maildir(app).root / "sent" / "cur" / sent_name(f"{m.id}:send_template:{m.host.email}")
    if not path.exists():
        return None
    original = message_from_bytes(path.read_bytes(), policy=policy.default)
    att = next(p for p in original.iter_attachments() if (p.get_filename() or "").endswith(".docx"))
    raw = reply_to_template(m, when, **answering(original), filename=att.get_filename() or "protokoll.docx",
                            docx=att.get_content(), extra=extra, marks=marks)
    trusted = app.cfg.transport.inbound.trusted_authserv_ids
    return stamp_authentication(raw, trusted[0]) if trusted else raw


def reply_header(person: Person, when: datetime, *, to: str, subject: str, message_id: str) -> EmailMessage:
    """The header of ``person``'s reply to the mail ``message_id`` as a mail program
    writes it ("SV:", In-Reply-To and References); the caller adds the body."""
    reply = EmailMessage(policy=SMTP)
    reply["From"] = f"{person.name} <{person.email}>"
    reply["To"] = to
    reply["Subject"] = "SV: " + subject
    reply["Date"] = format_datetime(when)
    reply["Message-ID"] = make_msgid(domain=person.email.rpartition("@")[2])
    reply["In-Reply-To"] = message_id
    reply["References"] = message_id
    return reply


class Answering(TypedDict):
    """Whom a reply goes to, the subject it answers and the Message-ID it answers."""

    to: str
    subject: str
    message_id: str


def answering(original: EmailMessage) -> Answering:
    return Answering(to=str(original["Reply-To"] or original["From"]), subject=str(original["Subject"]),
                     message_id=str(original["Message-ID"]))


def reply_to_template(m: Meeting, when: datetime, *, to: str, subject: str, message_id: str, filename: str,
                      docx: bytes, filled: bytes | None = None,
                      content_type: str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                      extra: Rows = (), marks: Marks | None = None) -> bytes:
    """What the host's mail program sends: "SV:", In-Reply-To the template
    mail, the template filled in (``filled``: a document the host made some
    other way, e.g. with LibreOffice, under ``filename``)."""
    reply = reply_header(m.host, when, to=to, subject=subject, message_id=message_id)
    reply.set_content(f"Hej!\n\nHär kommer protokollet från mötet.\n\nHälsningar\n{m.host.name}\n")
    maintype, _, subtype = content_type.partition("/")
    reply.add_attachment(filled if filled is not None else fill_protocol(docx, m, extra, marks), maintype=maintype,
                         subtype=subtype, filename=filename)
    return reply.as_bytes()


def reply_to_sent(app: App, key: str, sender: Person, when: datetime, text: str) -> bytes | None:
    """A person's plain reply to one of our mails (found in Sent by its key), as
    our receiving server hands it over (authenticated)."""
    from email import message_from_bytes, policy


    path = maildir(app).root / "sent" / "cur" / sent_name(key)
    if not path.exists():
        return None
    original = message_from_bytes(path.read_bytes(), policy=policy.default)
    reply = reply_header(sender, when, **answering(original))
    body = original.get_body(("plain",))
    quoted = "\n".join("> " + ln for ln in (body.get_content() if body is not None else "").splitlines())
    reply.set_content(f"{text}\nDen {when:%Y-%m-%d} skrev {original['From']}:\n{quoted}\n")
    trusted = app.cfg.transport.inbound.trusted_authserv_ids  # as our receiving server hands it over
    return stamp_authentication(reply.as_bytes(), trusted[0]) if trusted else reply.as_bytes()


DOCX_SUBTYPE = "vnd.openxmlformats-officedocument.wordprocessingml.document"


def coordinator_mail(app: App, coord: Person, when: datetime, subject: str, text: str) -> bytes:
    """A new mail of the coordinator's own to the network's mailbox, as our receiving
    server hands it over (authenticated); the same bytes for the same arguments."""
    import hashlib

    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{coord.name} <{coord.email}>"
    msg["To"] = app.cfg.network.mailbox.email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    digest = hashlib.sha1(f"{when.isoformat()}:{subject}:{text}".encode()).hexdigest()[:16]
    msg["Message-ID"] = f"<{digest}@{coord.email.rpartition('@')[2]}>"
    msg.set_content(text)
    trusted = app.cfg.transport.inbound.trusted_authserv_ids
    return stamp_authentication(msg.as_bytes(), trusted[0]) if trusted else msg.as_bytes()


def sent_message(app: App, key: str) -> EmailMessage:

    path = maildir(app).root / "sent" / "cur" / sent_name(key)
    return message_from_bytes(path.read_bytes(), policy=policy.default)


def reply_to(original: EmailMessage, person: Person, text: str, when: datetime,
             attachment: tuple[str, bytes] | None = None) -> bytes:
    """A member's reply as a mail program sends it: quoted original included."""
    reply = reply_header(person, when, **answering(original))
    body = original.get_body(preferencelist=("plain",))
    quoted = "\n".join("> " + line for line in (body.get_content() if body else "").splitlines()[:40])
    reply.set_content(f"{text}\n\nDen {when.day} {when.month} {when.year} skrev {original['From']}:\n{quoted}\n")
    if attachment is not None:
        reply.add_attachment(attachment[1], maintype="application", subtype=DOCX_SUBTYPE, filename=attachment[0])
    return reply.as_bytes()


def docx_attachment(msg: EmailMessage) -> tuple[str, bytes]:
    att = next(p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".docx"))
    return att.get_filename() or "form.docx", att.get_content()


def fill_needs_form(data: bytes, topics: dict[str, list[str]]) -> bytes:
    """What a member does in Word: write suggestions into the area tables."""
    import docx

    doc = docx.Document(io.BytesIO(data))
    for table in doc.tables:
        area = table.rows[0].cells[0].text.strip()
        for row, topic in zip(table.rows[1:], topics.get(area, [])):
            row.cells[0].text = topic
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def ballot_numbers(data: bytes) -> dict[str, int]:
    """Topic text -> number, read from the ballot the member got."""
    import docx

    doc = docx.Document(io.BytesIO(data))
    out = {}
    for table in doc.tables:
        for row in table.rows[1:]:
            out[row.cells[1].text.strip()] = int(row.cells[0].text)
    return out


def fill_ballot(data: bytes, votes: Mapping[int, int | str]) -> bytes:
    """The Röster column filled in as the member types it ("4", "fyra", "2 röster")."""
    import docx

    doc = docx.Document(io.BytesIO(data))
    for table in doc.tables:
        for row in table.rows[1:]:
            n = int(row.cells[0].text)
            if n in votes:
                row.cells[2].text = str(votes[n])
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
