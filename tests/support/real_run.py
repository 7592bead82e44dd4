"""A real run of the shipped plan, for tests that answer what the product sent.

:func:`run_shipped_year` runs the daily flow body (``services.daily.run_daily``)
over the whole shipped plan (config/plan-2023.yaml) on the embedded defaults
(Maildir + local folder), every day something is due, with nobody answering.
:func:`index_sent` then reads what was *really* sent from the Maildir sent
folder: Message-ID, Date, Subject, recipients per idempotency key. Nothing
here computes a Message-ID: whatever the product puts in them (a reply key, a
MAC), the index holds it.

:func:`readdress` puts a hand-written corpus message (tests/corpus: Outlook,
Gmail, Apple Mail, TNEF, RFC 2231 ...) on top of that run: its In-Reply-To /
References and quoted ids pointing at the corpus' hand-made Message-IDs now
point at the mails the product sent, and its Date moves with the meeting
from the corpus' plan to the shipped plan's date. The shapes stay as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from kcg_mail.ports import MARKER_HEADER
from support.basics import at, shipped_config
from support.helpers import authenticated, close, make_app, sent_mails


@dataclass(frozen=True)
class SentMail:
    key: str
    message_id: str
    date: str
    subject: str
    to: tuple[str, ...]


def run_shipped_year(workdir: Path) -> None:
    from kcg_mail.core.cycle import next_due_date
    from kcg_mail.services.daily import run_daily

    app = make_app(workdir, shipped_config())
    try:
        lead = app.cfg.meetings.lead_days
        day: date | None = min(m.date for m in app.meetings) - timedelta(days=lead.brief_host + 1)
        last = max(m.date for m in app.meetings) + timedelta(days=lead.escalate + 1)
        while day is not None and day <= last:
            run_daily(app, at(day, 7))
            day = next_due_date(app.meetings, app.meeting_states(), day, lead)
    finally:
        close(app)


def index_sent(workdir: Path) -> dict[str, SentMail]:
    out = {}
    for m in sent_mails(workdir):
        key = str(m[MARKER_HEADER]).strip()
        to = tuple(a.addr_spec.lower() for h in ("To", "Cc") if m[h] is not None for a in m[h].addresses)
        out[key] = SentMail(key, str(m["Message-ID"]).strip(), str(m["Date"]), str(m["Subject"]), to)
    return out


def corpus_id_map(index: dict[str, SentMail]) -> tuple[dict[str, str], dict[str, timedelta]]:
    """The corpus' hand-made Message-IDs -> the real ones, and per meeting the
    shift from the corpus' plan date to the shipped plan's date."""
    from support.corpus import DOMAIN, PLAN

    real = {m.id: m for m in make_meetings()}
    ids, shift = {}, {}
    for mid, (d, host, _backup) in PLAN.items():
        m = real[mid]
        shift[mid] = timedelta(days=(m.date - d).days)
        # the host answers the template mail; for a tentative meeting (never
        # invited, no template) the one mail the host got: the briefing
        tpl = index.get(f"{mid}:send_template:{m.host.email}") or index.get(f"{mid}:brief_host:{m.host.email}")
        inv = index.get(f"{mid}:invite:members:s0")
        if tpl:
            ids[message_id_for(f"{mid}:template:{host}", DOMAIN)] = tpl.message_id
        if inv:
            ids[message_id_for(f"{mid}:invitation", DOMAIN)] = inv.message_id
    return ids, shift


def message_id_for(key: str, domain: str) -> str:
    """The hand-made Message-IDs written into tests/corpus (a fixed format of
    the corpus files, not whatever the product derives today)."""
    import hashlib

    return f"<kcg.{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def make_meetings():
    from support.basics import meetings

    return meetings(shipped_config())


_DATE = re.compile(rb"^Date:[ \t]*(.*(?:\r?\n[ \t].*)*)\r?$", re.M | re.I)


def readdress(raw: bytes, meeting_id: str | None, ids: dict[str, str], shift: dict[str, timedelta]) -> bytes:
    """The corpus message answering what the real run sent (see module doc), as
    our receiving server hands it over: with its Authentication-Results (pass for
    the From domain) on top, like every genuine mail (SECURITY.md)."""
    for old, new in ids.items():
        raw = raw.replace(old.strip("<>").encode(), new.strip("<>").encode())
    delta = shift.get(meeting_id or "")
    if delta:
        head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
        m = _DATE.search(head)
        if m:
            when = parsedate_to_datetime(m.group(1).decode("ascii", "replace").strip()) + delta
            head = head[: m.start(1)] + format_datetime(when).encode() + head[m.end(1):]
        raw = head + sep + body
    return authenticated(raw)
