"""Drive the whole meeting cycle without Prefect, on any (mail transport, archive) pair.

The driver does what ``kcg_mail.entrypoints.demo.run_demo`` does, but calls the shell
directly (``kcg_mail.services.daily.run_daily`` / ``kcg_mail.services.intake.run_intake``) and
steps the days with ``kcg_mail.core.cycle.next_due_date``. It plays each host the way
a person does: the day after the meeting the host opens the template mail *as
it arrived* (the recipient's mailbox on the IMAP server, the fake Exchange /
Graph sent items, the Maildir sent folder), fills the decisions table
(``kcg_mail.entrypoints.demo_hosts.fill_protocol``) and answers with a real MIME reply
("SV: " subject, In-Reply-To the template's Message-ID) that is delivered into
the transport's inbox (Maildir deliver, LMTP, the fakes' deliver helpers).

Each transport is described by a :class:`Harness`: how to deliver incoming
mail, how to find the template mail a host received, and what went out (a
transport-neutral list of :class:`Out`). ``assert_cycle`` then checks the
cycle's promises the same way for every transport.
"""

from __future__ import annotations

import base64
import email
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from zoneinfo import ZoneInfo

from kcg_mail.core.cycle import due_dates, next_due_date
from kcg_mail.core.plan import Meeting, archive_folder, protocol_filename
from kcg_mail.entrypoints.demo_hosts import reply_to_template
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.app import App
from kcg_mail.services.compose import meeting_uid
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake
from support.basics import at, rule_dated  # noqa: F401  (the suite's one at())
from support.helpers import authenticated

TZ = ZoneInfo("Europe/Stockholm")
EWS_T = "http://schemas.microsoft.com/exchange/services/2006/types"


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Out:
    """One thing that left the mailbox, transport-neutral."""

    kind: str  # "mail" | "invitation"
    key: str | None  # X-KCG-Mail marker (None where the server does not keep it, e.g. EWS meeting requests)
    to: frozenset[str]
    subject: str = ""
    method: str | None = None  # REQUEST / CANCEL for invitations
    uid: str | None = None  # calendar UID for invitations
    attachments: tuple[str, ...] = ()
    required: bool = True  # all invitation attendees are required attendees
    in_reply_to: str | None = None

    @property
    def action(self) -> str | None:
        parts = (self.key or "").split(":")
        return parts[1] if len(parts) > 1 else None

    @property
    def meeting_id(self) -> str | None:
        return (self.key or "").split(":")[0] or None


@dataclass(frozen=True)
class Template:
    """The template mail as the host received it."""

    message_id: str
    subject: str
    reply_to: str
    filename: str
    data: bytes


@dataclass
class Harness:
    name: str
    app: App
    #: put an incoming RFC 822 message into the network mailbox's inbox
    deliver: Callable[[bytes, str], None]
    #: the template mail as ``m``'s host received it (None if it never arrived)
    template: Callable[[Meeting], Template | None]
    #: everything that went out so far
    outgoing: Callable[[], list[Out]]
    #: optional extra checks at the end (e.g. mail really arrived in each member's INBOX)
    extra_checks: Callable[[CycleResult], None] | None = None


@dataclass
class CycleResult:
    days: list[date] = field(default_factory=list)
    daily_sent: int = 0
    intake_runs: int = 0
    replies: dict[str, bytes] = field(default_factory=dict)  # meeting id -> host reply
    errors: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)


# ---------------------------------------------------------------------------- the host


def host_reply(t: Template, m: Meeting, when: datetime) -> bytes:
    """What the host's mail program sends (kcg_mail.entrypoints.demo_hosts builds it), as our
    receiving server hands it over (authenticated)."""
    return authenticated(reply_to_template(m, when, to=t.reply_to, subject=t.subject, message_id=t.message_id,
                                           filename=t.filename, docx=t.data))


def template_key(m: Meeting) -> str:
    return f"{m.id}:send_template:{m.host.email}"


def template_from_mime(raw: bytes, fallback_to: str) -> Template:
    msg = email.message_from_bytes(raw, policy=policy.default)
    att = next(p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".docx"))
    return Template(
        message_id=str(msg["Message-ID"]),
        subject=str(msg["Subject"]),
        reply_to=str(msg["Reply-To"] or msg["From"] or fallback_to),
        filename=att.get_filename(),
        data=att.get_content(),
    )


# ---------------------------------------------------------------------------- the run


def run_cycle(h: Harness, *, until: date | None = None) -> CycleResult:
    """The whole plan of ``h.app`` in simulated time: every day something is
    due a daily run at 07:00; the day after each confirmed meeting the host
    replies and an intake run at 12:00 handles it."""
    app = h.app
    # the transports run the year of a network whose dates all follow the calendar rule (the
    # dates the coordinator decides are tests/e2e/test_meeting_dates.py's subject)
    app.cfg = rule_dated(app.cfg)
    app.refresh_meetings()
    lead = app.cfg.meetings.lead_days
    confirmed = [m for m in app.meetings if not m.tentative]
    extra = app.extra_days
    # go-live: the first run, the day before the year's first step
    first = app.go_live() or min(due_dates(m, lead, extra)["brief_host"] for m in app.meetings) - timedelta(days=1)
    last = until or max(due_dates(m, lead, extra)["escalate"] for m in app.meetings) + timedelta(days=1 + 2 * lead.spacing)
    reply_day = {m.id: m.date + timedelta(days=1) for m in confirmed}
    res = CycleResult()
    day: date | None = first
    while day is not None and day <= last:
        res.days.append(day)
        report = run_daily(app, at(day, 7))
        res.daily_sent += report.sent
        res.errors += [f"{day} {r.meeting_id} {r.action}: {r.outcome}" for r in report.results
                       if r.outcome not in ("sent", "already", "recovered", "waiting")]
        filed = {f.meeting_id for f in app.state.filings()}
        replied = False
        for m in confirmed:
            if reply_day[m.id] == day and m.id not in filed:
                tpl = h.template(m)
                if tpl is None:
                    res.errors.append(f"{day} {m.id}: the host never received the template")
                    continue
                raw = host_reply(tpl, m, at(day, 11))
                h.deliver(raw, f"{m.id}-reply.eml")
                res.replies[m.id] = raw
                replied = True
        if replied:
            intake = run_intake(app, at(day, 12))
            res.intake_runs += 1
            res.errors += intake.errors
            res.outcomes.update(x.outcome for x in intake.handled)
        states = app.meeting_states()
        filed = {f.meeting_id for f in app.state.filings()}
        candidates = [d for d in (next_due_date(app.meetings, states, day, lead, go_live=app.go_live(),
                                                extra=extra),) if d]
        candidates += [d for mid, d in reply_day.items() if d > day and mid not in filed]
        day = min(candidates) if candidates else None
    # a final intake: nothing may be left in the inbox
    intake = run_intake(app, at(last, 13))
    res.intake_runs += 1
    res.errors += intake.errors
    res.outcomes.update(x.outcome for x in intake.handled)
    return res


# ---------------------------------------------------------------------------- assertions


def network_emails(app: App) -> set[str]:
    net = app.cfg.network
    return {p.email for p in net.members + net.guests} | {net.mailbox.email} | {e.lower() for e in net.filers}


def assert_cycle(h: Harness, res: CycleResult) -> list[Out]:
    """The promises of one cycle, the same for every transport."""
    app, cfg = h.app, h.app.cfg
    assert not res.errors, res.errors
    outs = h.outgoing()
    members = {p.email for p in cfg.network.active_members}
    allowed = network_emails(app)
    confirmed = [m for m in app.meetings if not m.tentative]
    assert confirmed

    for o in outs:
        assert o.to and o.to <= allowed, f"{h.name}: {o.key or o.subject} went to {sorted(o.to - allowed)}"
    # nobody approved a guest's invitation here: no guest hears anything
    guests = {g.email for g in cfg.network.guests}
    assert not [o for o in outs if o.to & guests], f"{h.name}: mail to a guest without the coordinator's yes"

    invitations = [o for o in outs if o.kind == "invitation"]
    for m in app.meetings:
        uid = meeting_uid(cfg, m.id)
        mine = [o for o in invitations if o.uid == uid]
        if m.tentative:
            assert not mine, f"{h.name}: {m.id} is tentative but an invitation went out"
            continue
        assert len(mine) == 1, f"{h.name}: {m.id}: {len(mine)} invitations {mine}"
        (inv,) = mine
        assert inv.method == "REQUEST"
        assert inv.required
        assert inv.to == members, f"{h.name}: {m.id} invitation to {sorted(inv.to)}"
        if inv.key is not None:
            assert inv.key == f"{m.id}:invite:members:s0"

    mails = [o for o in outs if o.kind == "mail"]
    keys = Counter(o.key for o in mails)
    assert all(n == 1 for n in keys.values()), f"{h.name}: sent twice: {[k for k, n in keys.items() if n > 1]}"
    by_key = {o.key: o for o in mails}
    for m in confirmed:
        tpl = [o for o in mails if o.action == "send_template" and o.meeting_id == m.id]
        assert len(tpl) == 1, f"{h.name}: {m.id}: {len(tpl)} template mails"
        assert tpl[0].key == template_key(m)
        assert m.host.email in tpl[0].to
        assert [a for a in tpl[0].attachments if a.endswith(".docx")] == [protocol_filename(cfg, m)]

        dist = [o for o in mails if o.action == "distribute" and o.meeting_id == m.id]
        assert len(dist) == 1, f"{h.name}: {m.id}: {len(dist)} distributions"
        assert dist[0].key == f"{m.id}:distribute:members:v1"
        assert dist[0].to == members, f"{h.name}: {m.id} distributed to {sorted(dist[0].to)}"

        # filed once, in the archive, under the naming convention
        filings = app.state.filings(m.id)
        assert len(filings) == 1, f"{h.name}: {m.id}: {len(filings)} filings"
        folder = archive_folder(cfg, m)
        expected = f"{folder}/{protocol_filename(cfg, m)}"
        assert filings[0].path == expected, (filings[0].path, expected)
        listed = [f.path for f in app.archive.list(folder) if f.path.endswith(".docx")]
        assert listed.count(expected) == 1, listed
        mine = [p for p in listed if p.rpartition("/")[2].startswith(m.date.isoformat())]
        assert mine == [expected], f"{h.name}: {m.id}: archive holds {mine}"
        # the filed file is the host's filled-in document as rebuilt by us (never the host's own bytes)
        filed = app.archive.read(expected)
        reply = email.message_from_bytes(res.replies[m.id], policy=policy.default) if m.id in res.replies else None
        if reply is not None:
            from kcg_mail.documents.rebuild import rebuild

            att = next(p for p in reply.iter_attachments())
            assert filed == rebuild(att.get_filename(), att.get_content()).data
        assert len(app.state.decisions(m.id)) >= 1

        # the rest of the cycle for a meeting whose minutes came in on time
        assert f"{m.id}:brief_host:{m.host.email}" in by_key
        # the reminder goes with the template: one mail, no separate reminder
        assert f"{m.id}:send_template:{m.host.email}" in by_key
        assert f"{m.id}:remind_host:{m.host.email}" not in by_key
        assert f"{m.id}:chase_host:{m.host.email}" not in by_key
        assert f"{m.id}:escalate:{cfg.network.coordinator.email}" not in by_key

    assert res.outcomes["minutes"] == len(confirmed), res.outcomes
    assert set(res.outcomes) == {"minutes"}, res.outcomes
    if h.extra_checks:
        h.extra_checks(res)
    return outs


def assert_second_pass_sends_nothing(h: Harness, first: list[Out]) -> CycleResult:
    again = run_cycle(h)
    assert not again.errors, again.errors
    assert again.daily_sent == 0
    assert again.replies == {}, "every meeting's minutes are already filed"
    after = h.outgoing()
    assert len(after) == len(first), f"{h.name}: second pass sent {len(after) - len(first)} more"
    return again


# ---------------------------------------------------------------------------- MIME views


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def _addrs(msg: EmailMessage, *headers: str) -> frozenset[str]:
    vals = [str(v) for h in headers for v in (msg.get_all(h) or [])]
    return frozenset(a.lower() for _, a in getaddresses(vals) if a)


def out_from_mime(raw: bytes) -> Out:
    msg = parse(raw)
    # an invitation's calendar part carries a method; an attached .ics (the welcome's year plan) is an attachment
    cal = [p for p in msg.walk() if p.get_content_type() == "text/calendar" and p.get_param("method")]
    key = str(msg[MARKER_HEADER]).strip() if msg[MARKER_HEADER] is not None else None
    atts = tuple(p.get_filename() for p in msg.iter_attachments() if p.get_filename())
    to = _addrs(msg, "To", "Cc")
    if cal:
        body = cal[0].get_content()
        body = body.decode("utf-8") if isinstance(body, bytes) else body
        unfolded = re.sub(r"\r?\n[ \t]", "", body)
        found = re.search(r"^UID:(.+?)\r?$", unfolded, re.M)
        uid = found.group(1).strip() if found else None  # a year plan (PUBLISH) may hold no event
        method = cal[0].get_param("method")
        assert re.search(rf"^METHOD:{method}\r?$", unfolded, re.M), "METHOD in the ics differs from the MIME part"
        attendees = re.findall(r"^ATTENDEE[^:]*ROLE=REQ-PARTICIPANT[^:]*:mailto:(.+?)\r?$", unfolded, re.M | re.I)
        required = {a.lower() for a in attendees} == set(to)
        return Out("invitation", key, to, str(msg["Subject"]), method, uid, atts, required)
    irt = str(msg["In-Reply-To"]) if msg["In-Reply-To"] else None
    return Out("mail", key, to, str(msg["Subject"]), attachments=atts, in_reply_to=irt)


def maildir_harness(app: App, name: str = "maildir") -> Harness:
    root = Path(app.mail.root)

    def sent_raw() -> list[bytes]:
        return [p.read_bytes() for p in sorted((root / "sent" / "cur").iterdir())]

    def template(m: Meeting) -> Template | None:
        for raw in sent_raw():
            if parse(raw)[MARKER_HEADER] == template_key(m):
                return template_from_mime(raw, app.cfg.network.mailbox.email)
        return None

    return Harness(name, app, deliver=lambda raw, n: app.mail.deliver(raw, n), template=template,
                   outgoing=lambda: [out_from_mime(r) for r in sent_raw()])


def imap_harness(app: App, server, mailbox_user: str) -> Harness:
    """SmtpImapTransport against tests/support/mailserver.py: incoming mail over LMTP,
    the template read from the host's own INBOX, what went out from Sent."""

    def deliver(raw: bytes, name: str) -> None:
        sender = parse(raw)["From"].addresses[0].addr_spec
        server.deliver(raw, mailbox_user, mail_from=sender)

    def template(m: Meeting) -> Template | None:
        server.wait_queue()  # what Postfix accepted has arrived
        for raw in server.messages(m.host.email, "INBOX"):
            if parse(raw)[MARKER_HEADER] == template_key(m):
                return template_from_mime(raw, app.cfg.network.mailbox.email)
        return None

    def outgoing() -> list[Out]:
        return [out_from_mime(r) for r in server.messages(mailbox_user, "Sent")]

    def arrived(res: CycleResult) -> None:
        # what Sent says went out really arrived: every member has each invitation and distribution
        outs = outgoing()
        for person in app.cfg.network.active_members:
            got = Counter(str(parse(r)[MARKER_HEADER]) for r in server.messages(person.email, "INBOX"))
            for o in outs:
                if person.email in o.to:
                    assert got[o.key] == 1, f"{person.email}: {o.key} arrived {got[o.key]} times"
        server.wait_queue()
        left = [r for r in server.messages(mailbox_user, "INBOX")
                if not (parse(r)[MARKER_HEADER] and mailbox_user in str(parse(r)["From"]))]
        assert left == [], "the network inbox is empty after the intake (but for own copies of the last mails)"
        assert len(server.messages(mailbox_user, "processed")) == len(res.replies)
        # the own copies (SmtpImapTransport.own_copy) never reach the intake: Sent is complete, nothing twice
        sent_keys = Counter(str(parse(r)[MARKER_HEADER]) for r in server.messages(mailbox_user, "Sent"))
        assert sent_keys and set(sent_keys.values()) == {1}, sent_keys

    return Harness("smtp_imap", app, deliver=deliver, template=template, outgoing=outgoing, extra_checks=arrived)


# ---------------------------------------------------------------------------- Exchange (fake EWS)


def _ews_ext(elem, name: str) -> str | None:
    for prop in elem.iter(f"{{{EWS_T}}}ExtendedProperty"):
        uri = prop.find(f"{{{EWS_T}}}ExtendedFieldURI")
        if uri is not None and uri.get("PropertyName") == name:
            return prop.findtext(f"{{{EWS_T}}}Value")
    return None


def _ews_attachments(elem) -> list[tuple[str, bytes]]:
    out = []
    for att in elem.iter(f"{{{EWS_T}}}FileAttachment"):
        content = att.findtext(f"{{{EWS_T}}}Content")
        out.append((att.findtext(f"{{{EWS_T}}}Name"), base64.b64decode(content) if content else b""))
    return out


def ews_harness(app: App, fake) -> Harness:
    def template(m: Meeting) -> Template | None:
        for s in fake.sent:
            if s["kind"] == "message" and _ews_ext(s["elem"], MARKER_HEADER) == template_key(m) \
                    and m.host.email in s["to"]:
                elem = s["elem"]
                name, data = next((n, d) for n, d in _ews_attachments(elem) if n.endswith(".docx"))
                msgid = elem.findtext(f"{{{EWS_T}}}InternetMessageId")
                assert msgid, "the template went out without our Message-ID"
                return Template(msgid, s["subject"], fake.mailbox, name, data)
        return None

    def outgoing() -> list[Out]:
        outs = []
        for s in fake.sent:
            if s["kind"] == "message":
                elem = s["elem"]
                outs.append(Out("mail", _ews_ext(elem, MARKER_HEADER), frozenset(a.lower() for a in s["to"] + s["cc"]),
                                s["subject"] or "", attachments=tuple(n for n, _ in _ews_attachments(elem)),
                                in_reply_to=elem.findtext(f"{{{EWS_T}}}InReplyTo")))
            elif s["kind"] == "request":
                item = next(i for i in fake.items.values() if i.kind == "CalendarItem" and i.text("UID") == s["uid"])
                optional = item.elem.find(f"{{{EWS_T}}}OptionalAttendees")
                outs.append(Out("invitation", None, frozenset(a.lower() for a in s["to"]), item.text("Subject") or "",
                                "REQUEST", s["uid"], required=optional is None or len(optional) == 0))
            else:  # update / cancel
                outs.append(Out("invitation", None, frozenset(a.lower() for a in s.get("to", [])), "",
                                "CANCEL" if s["kind"] == "cancel" else "UPDATE", s.get("uid")))
        return outs

    def deliver(raw: bytes, name: str) -> None:
        fake.deliver(raw)

    def calendar(res: CycleResult) -> None:
        cal = fake.folder_by_name("calendar").id
        items = [i for i in fake.items.values() if i.folder == cal]
        confirmed = [m for m in app.meetings if not m.tentative]
        assert sorted(i.text("UID") for i in items) == sorted(meeting_uid(app.cfg, m.id) for m in confirmed)
        assert all(i.text("IsCancelled") == "false" for i in items)
        assert fake.items_in("inbox") == []

    return Harness("exchange", app, deliver=deliver, template=template, outgoing=outgoing, extra_checks=calendar)


# ---------------------------------------------------------------------------- Graph (fake)


def graph_harness(app: App, fake) -> Harness:
    def template(m: Meeting) -> Template | None:
        for o in fake.outbox:
            if o["kind"] == "mail" and parse(o["mime"])[MARKER_HEADER] == template_key(m):
                return template_from_mime(o["mime"], fake.mailbox)
        return None

    def outgoing() -> list[Out]:
        outs = []
        for o in fake.outbox:
            if o["kind"] == "mail":
                outs.append(out_from_mime(o["mime"]))
            elif o["kind"].startswith("meeting-"):
                ev = o["event"]
                att = ev.get("attendees", [])
                method = {"meeting-request": "REQUEST", "meeting-cancel": "CANCEL"}.get(o["kind"], o["kind"])
                outs.append(Out("invitation", None, frozenset(a.lower() for a in o["to"]), ev.get("subject", ""),
                                method, ev.get("transactionId"),
                                required=bool(att) and all(a.get("type") == "required" for a in att)))
        return outs

    def deliver(raw: bytes, name: str) -> None:
        fake.deliver(raw)

    def calendar(res: CycleResult) -> None:
        confirmed = [m for m in app.meetings if not m.tentative]
        evs = list(fake.events.values())
        assert sorted(e["json"]["transactionId"] for e in evs) == sorted(meeting_uid(app.cfg, m.id) for m in confirmed)
        for e in evs:
            assert e["json"]["attendees"] and all(a["type"] == "required" for a in e["json"]["attendees"])
        assert fake.in_folder("inbox") == []

    return Harness("graph", app, deliver=deliver, template=template, outgoing=outgoing, extra_checks=calendar)
