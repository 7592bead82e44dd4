"""``kcg demo``: the whole 2023 meeting cycle on the embedded defaults.

Runs the real Prefect flows in simulated time, day by day where something is
due, and plays each host: after the meeting the host answers the template
mail with a real MIME reply from their own address, the template filled in
(decisions table) and attached. Every confirmed meeting ends with its
minutes filed and distributed. Run twice on the same work directory, the
second run sends nothing new.
"""

from __future__ import annotations

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


@dataclass
class DemoResult:
    flow_runs: int
    sent_before: int
    sent_after: int
    seconds: float


def fill_protocol(docx_bytes: bytes, m: Meeting) -> bytes:
    """What a host does in Word: write the decisions into the table."""
    values = {"theme": m.theme.lower(), "host": m.host.name, "due": (m.date + timedelta(days=30)).isoformat(),
              "next": (m.date + timedelta(days=28)).isoformat()}

    def write(table) -> None:
        for row, (d, o, due) in zip(table.rows[1:], DEMO_DECISIONS):
            for cell, text in zip(row.cells, (d, o, due)):
                cell.text = text.format(**values)

    return edit_decisions(docx_bytes, write)


def host_reply(app: App, m: Meeting, when: datetime) -> bytes | None:
    """The host's reply to the template mail in the Maildir sent folder."""
    from email import message_from_bytes, policy

    from kcg_mail.adapters.maildir import _key_name

    path = Path(app.mail.root) / "sent" / "cur" / _key_name(f"{m.id}:send_template:{m.host.email}")
    if not path.exists():
        return None
    original = message_from_bytes(path.read_bytes(), policy=policy.default)
    att = next(p for p in original.iter_attachments() if p.get_filename().endswith(".docx"))
    return reply_to_template(m, when, to=str(original["Reply-To"] or original["From"]),
                             subject=str(original["Subject"]), message_id=str(original["Message-ID"]),
                             filename=att.get_filename(), docx=att.get_content())


def reply_to_template(m: Meeting, when: datetime, *, to: str, subject: str, message_id: str, filename: str,
                      docx: bytes, filled: bytes | None = None,
                      content_type: str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                      ) -> bytes:
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
    reply.add_attachment(filled if filled is not None else fill_protocol(docx, m), maintype=maintype,
                         subtype=subtype, filename=filename)
    return reply.as_bytes()


def _sent_count(app: App) -> int:
    return len(list((Path(app.mail.root) / "sent" / "cur").iterdir()))


def run_demo(workdir: Path, config_dir: Path | None = None, *, until: date | None = None, echo=print) -> DemoResult:
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir, quiet=True)
    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.cycle import next_due_date

    t0 = time.monotonic()
    app = bootstrap(workdir, config_dir)
    if app.cfg.transport.mail.kind != "maildir":
        raise SystemExit("kcg demo plays the hosts through the Maildir inbox: use the embedded defaults")
    lead = app.cfg.meetings.lead_days
    confirmed = [m for m in app.meetings if not m.tentative]
    first = min(m.date for m in app.meetings) - timedelta(days=lead.brief_host + 1)
    last = until or max(m.date for m in app.meetings) + timedelta(days=lead.escalate + 1)
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
                    raw = host_reply(app, m, datetime.combine(day, datetime.min.time(), m.start.tzinfo).replace(hour=11))
                    if raw is not None:
                        app.mail.deliver(raw, f"{m.id}-reply.eml")
                        replied = True
            if replied:
                intake_flow(now=f"{day.isoformat()}T12:00", workdir=str(workdir),
                            config_dir=str(config_dir) if config_dir else None)
                runs += 1
            states = app.meeting_states()
            filed = {f.meeting_id for f in app.state.filings()}
            candidates = [d for d in (next_due_date(app.meetings, states, day, lead),) if d]
            candidates += [d for mid, d in reply_day.items() if d > day and mid not in filed]
            day = min(candidates) if candidates else None
        if runs == 0:  # nothing left to do: one daily run shows that nothing is sent again
            daily_flow(date=last.isoformat(), workdir=str(workdir), config_dir=str(config_dir) if config_dir else None)
            runs += 1
    return DemoResult(runs, sent_before, _sent_count(app), time.monotonic() - t0)
