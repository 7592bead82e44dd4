"""``kcg demo``: the whole 2023 meeting cycle on the embedded defaults.

Runs the real Prefect flows in simulated time, day by day where something is
due, and plays each host: after the meeting the host answers the template
mail with a real MIME reply from their own address, the template filled in
(decisions table) and attached. Every confirmed meeting ends with its
minutes filed and distributed. Run twice on the same work directory, the
second run sends nothing new.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

from kcg_mail.core.plan import Meeting
from kcg_mail.documents.fill import decisions_table, edit_decisions  # noqa: F401  (re-exported)
from kcg_mail.services.app import App

DEMO_DECISIONS = [
    ("Ta fram ett gemensamt underlag om {theme}", "{host}", "{due}"),
    ("Dela goda exempel i Dropbox-mappen före nästa möte", "Alla", "{next}"),
]

# Between meetings: February gets a decision due before March's meeting
# (its owner is reminded), April starts a project group (approved by the
# coordinator), and the group's lead reports back before September's meeting.
DEMO_EXTRA = {
    "2023-02": [("Sammanställ medlemsenkäten om trygghet och skicka ut den", "Lisa Thörn", "2023-02-27")],
    "2023-04": [("Projektgrupp: Trygghet i stadskärnan – gemensam kartläggning av trygghetsarbetet",
                 "Lisa Thörn, Pia Sandin, Hanna Candell", "löpande")],
}
DEMO_STATUS_MEETING = "2023-09"
DEMO_STATUS = ("Hej!\n\nKartläggningen är klar i tio av tretton städer; vi visar en första sammanställning "
               "på mötet i oktober.\n\nHälsningar\nLisa\n")


@dataclass
class DemoResult:
    flow_runs: int
    sent_before: int
    sent_after: int
    seconds: float


def fill_protocol(docx_bytes: bytes, m: Meeting, extra=(), marks=None) -> bytes:
    """What a host does in Word: write the decisions into the table (``extra``: more
    rows), and, with ``marks(ref, owner) -> text``, mark the open decisions of earlier
    meetings in the follow-up table's column Läge."""
    # the host's own decision is due in two months: never before the next meeting (the
    # longest gap in the plan is nine weeks), so it is followed up there, not by a reminder
    values = {"theme": m.theme.lower(), "host": m.host.name, "due": (m.date + timedelta(days=63)).isoformat(),
              "next": (m.date + timedelta(days=28)).isoformat()}

    def write(table) -> None:
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


def mark_followups(docx_bytes: bytes, marks) -> bytes:
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


def demo_marks(meetings: list[Meeting], m: Meeting):
    """The host's judgement in the demo: an "Alla" decision of the previous meeting
    carries on, an older one is struck; everything else is done."""
    earlier = [x.id for x in meetings if x.date < m.date]
    previous = earlier[-1] if earlier else None

    def mark(ref: str, owner: str) -> str:
        if owner.strip().lower() == "alla":
            return "fortsätter" if ref.rpartition("/")[0] == previous else "struken"
        return "klar"

    return mark


def host_reply(app: App, m: Meeting, when: datetime, extra=(), marks=None) -> bytes | None:
    """The host's reply to the template mail in the Maildir sent folder, as our
    receiving server hands it over (authenticated)."""
    from email import message_from_bytes, policy

    from kcg_mail.adapters.maildir import _key_name

    path = Path(app.mail.root) / "sent" / "cur" / _key_name(f"{m.id}:send_template:{m.host.email}")
    if not path.exists():
        return None
    original = message_from_bytes(path.read_bytes(), policy=policy.default)
    att = next(p for p in original.iter_attachments() if p.get_filename().endswith(".docx"))
    raw = reply_to_template(m, when, to=str(original["Reply-To"] or original["From"]),
                            subject=str(original["Subject"]), message_id=str(original["Message-ID"]),
                            filename=att.get_filename(), docx=att.get_content(), extra=extra, marks=marks)
    trusted = app.cfg.transport.inbound.trusted_authserv_ids
    return stamp_authentication(raw, trusted[0]) if trusted else raw


def reply_to_template(m: Meeting, when: datetime, *, to: str, subject: str, message_id: str, filename: str,
                      docx: bytes, filled: bytes | None = None,
                      content_type: str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                      extra=(), marks=None) -> bytes:
    """What the host's mail program sends: "SV:", In-Reply-To the template
    mail, the template filled in (``filled``: a document the host made some
    other way, e.g. with LibreOffice, under ``filename``)."""
    reply = EmailMessage(policy=SMTP)
    reply["From"] = f"{m.host.name} <{m.host.email}>"
    reply["To"] = to
    reply["Subject"] = "SV: " + subject
    reply["Date"] = format_datetime(when)
    reply["Message-ID"] = make_msgid(domain=m.host.email.rpartition("@")[2])
    reply["In-Reply-To"] = message_id
    reply["References"] = message_id
    reply.set_content(f"Hej!\n\nHär kommer protokollet från mötet.\n\nHälsningar\n{m.host.name}\n")
    maintype, _, subtype = content_type.partition("/")
    reply.add_attachment(filled if filled is not None else fill_protocol(docx, m, extra, marks), maintype=maintype,
                         subtype=subtype, filename=filename)
    return reply.as_bytes()


def reply_to_sent(app: App, key: str, sender, when: datetime, text: str) -> bytes | None:
    """A person's plain reply to one of our mails (found in Sent by its key), as
    our receiving server hands it over (authenticated)."""
    from email import message_from_bytes, policy

    from kcg_mail.adapters.maildir import _key_name

    path = Path(app.mail.root) / "sent" / "cur" / _key_name(key)
    if not path.exists():
        return None
    original = message_from_bytes(path.read_bytes(), policy=policy.default)
    reply = EmailMessage(policy=SMTP)
    reply["From"] = f"{sender.name} <{sender.email}>"
    reply["To"] = original["Reply-To"] or original["From"]
    reply["Subject"] = "SV: " + str(original["Subject"])
    reply["Date"] = format_datetime(when)
    reply["Message-ID"] = make_msgid(domain=sender.email.rpartition("@")[2])
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = original["Message-ID"]
    quoted = "\n".join("> " + ln for ln in original.get_body(("plain",)).get_content().splitlines())
    reply.set_content(f"{text}\nDen {when:%Y-%m-%d} skrev {original['From']}:\n{quoted}\n")
    trusted = app.cfg.transport.inbound.trusted_authserv_ids  # as our receiving server hands it over
    return stamp_authentication(reply.as_bytes(), trusted[0]) if trusted else reply.as_bytes()


def _sent_count(app: App) -> int:
    return len(list((Path(app.mail.root) / "sent" / "cur").iterdir()))


def _status_request(app: App):
    """(key, lead) of the status request before DEMO_STATUS_MEETING, once it is sent."""
    from kcg_mail.services.followup import groups

    for g in groups(app):
        lead = next((p for p in app.cfg.network.members if p.id == g.lead), None)
        key = f"{DEMO_STATUS_MEETING}:project_status_request:{g.slug}:{lead.email}" if lead else ""
        rec = app.state.action(key) if lead else None
        if rec is not None and rec.status == "done":
            return key, lead, rec
    return None


def _status_reply_day(app: App) -> date | None:
    req = _status_request(app)
    m = app.meeting(DEMO_STATUS_MEETING)
    if req is None or m is None:
        return None
    # on the day the host is reminded (a day the demo runs anyway), before the template goes out
    return m.date - timedelta(days=app.cfg.meetings.lead_days.remind_host)


def _lead_reports_back(app: App, day: date) -> bool:
    """The group's lead answers September's status request a few days before the meeting."""
    req = _status_request(app)
    if req is None or _status_reply_day(app) != day:
        return False
    from kcg_mail.services.followup import groups, statuses

    key, lead, _ = req
    if any(s["meeting_id"] == DEMO_STATUS_MEETING for g in groups(app) for s in statuses(app, g)):
        return False  # already reported (a second run of the demo)
    m = app.meeting(DEMO_STATUS_MEETING)
    raw = reply_to_sent(app, key, lead, datetime.combine(day, datetime.min.time(), m.start.tzinfo).replace(hour=9),
                        DEMO_STATUS)
    if raw is None:
        return False
    app.mail.deliver(raw, "project-status-reply.eml")
    return True


def _coordinator_approves(app: App, workdir: Path, config_dir: Path | None) -> int:
    """The coordinator approves a "Projektgrupp:" decision once its minutes are filed
    (the kcg-start-project flow, as from the Prefect UI)."""
    import os

    from flows.manual import start_project
    from kcg_mail.services.followup import proposals

    # a manual flow works where its deployment binds it (KCG_WORKDIR, KCG_CONFIG_DIR), as under kcg serve
    bound = {"KCG_WORKDIR": str(workdir), **({"KCG_CONFIG_DIR": str(config_dir)} if config_dir else {})}
    before = {k: os.environ.get(k) for k in bound}
    os.environ.update(bound)
    runs = 0
    try:
        for d, _ in proposals(app):
            start_project(ref=d.ref)
            runs += 1
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return runs


def run_demo(workdir: Path, config_dir: Path | None = None, *, until: date | None = None, echo=print) -> DemoResult:
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir, quiet=True)
    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.cycle import due_dates, next_due_date
    from kcg_mail.services.followup import next_followup_day

    t0 = time.monotonic()
    app = bootstrap(workdir, config_dir)
    if app.cfg.transport.mail.kind != "maildir":
        raise SystemExit("kcg demo plays the hosts through the Maildir inbox: use the embedded defaults")
    lead = app.cfg.meetings.lead_days
    confirmed = [m for m in app.meetings if not m.tentative]
    extra = app.extra_days
    # go-live: the day before the first step of the year (a fresh work
    # directory records it on the first run; a second run keeps it)
    first = app.go_live() or min(due_dates(m, lead, extra)["brief_host"] for m in app.meetings) - timedelta(days=1)
    last = until or max(due_dates(m, lead, extra)["escalate"] for m in app.meetings) + timedelta(days=1 + 2 * lead.spacing)
    reply_day = {m.id: m.date + timedelta(days=1) for m in confirmed}
    sent_before = _sent_count(app)
    runs = 0
    with prefect_env.without_heartbeats():
        day = first
        while day is not None and day <= last:
            daily_flow(date=day.isoformat(), workdir=str(workdir), config_dir=str(config_dir) if config_dir else None)
            runs += 1
            filed = {f.meeting_id for f in app.state.filings()}
            replied = False
            for m in confirmed:
                if reply_day[m.id] == day and m.id not in filed:
                    raw = host_reply(app, m, datetime.combine(day, datetime.min.time(), m.start.tzinfo).replace(hour=11),
                                     DEMO_EXTRA.get(m.id, ()), demo_marks(app.meetings, m))
                    if raw is not None:
                        app.mail.deliver(raw, f"{m.id}-reply.eml")
                        replied = True
            replied |= _lead_reports_back(app, day)
            if replied:
                intake_flow(now=f"{day.isoformat()}T12:00", workdir=str(workdir),
                            config_dir=str(config_dir) if config_dir else None)
                runs += 1
            runs += _coordinator_approves(app, workdir, config_dir)
            states = app.meeting_states()
            filed = {f.meeting_id for f in app.state.filings()}
            candidates = [d for d in (next_due_date(app.meetings, states, day, lead, go_live=app.go_live(), extra=extra),
                                      next_followup_day(app, day)) if d]
            candidates += [d for mid, d in reply_day.items() if d > day and mid not in filed]
            candidates += [d for d in (_status_reply_day(app),) if d and d > day]
            day = min(candidates) if candidates else None
        if runs == 0:  # nothing left to do: one daily run shows that nothing is sent again
            daily_flow(date=last.isoformat(), workdir=str(workdir), config_dir=str(config_dir) if config_dir else None)
            runs += 1
    return DemoResult(runs, sent_before, _sent_count(app), time.monotonic() - t0)
