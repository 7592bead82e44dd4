"""A network with something to show: a few days of the 2023 cycle run through
the real services on a temporary workdir (Maildir, local archive, SQLite):
January's minutes never came (escalated; the coordinator had set its date and place), February's were filed and sent out,
three members answered February's invitation, a stranger's mail sits in
quarantine, October's study trip has only a proposed date."""

from __future__ import annotations

from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from support.helpers import TZ, authenticated, plain_mail

SEED_DAYS = ("2023-01-16", "2023-01-23", "2023-02-03", "2023-02-05")
TODAY = "2023-02-20"


def at(day: str, hour: int = 7) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), TZ).replace(hour=hour)


def calendar_reply(app, meeting_id: str, member_email: str, partstat: str, when: datetime) -> bytes:
    """An Outlook-like answer to the invitation (METHOD:REPLY with the invitation's UID)."""
    inv = app.invitation(meeting_id)
    word = {"ACCEPTED": "Accepterat", "DECLINED": "Avböjt"}[partstat]
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Outlook//SV\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
           f"UID:{inv.uid}\r\nSEQUENCE:{inv.sequence}\r\nDTSTAMP:20230204T100000Z\r\n"
           f"ATTENDEE;PARTSTAT={partstat}:mailto:{member_email}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    m = EmailMessage(policy=SMTP)
    m["From"] = member_email
    m["To"] = app.cfg.network.mailbox.email
    m["Subject"] = f"{word}: möte {meeting_id}"
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<reply-{meeting_id}-{member_email.replace('@', '.')}@test>"
    m.set_content(f"{word}.\n")
    m.add_attachment(ics.encode(), maintype="text", subtype="calendar", params={"method": "REPLY"},
                     filename="invite.ics")
    return m.as_bytes()


def seed(work: Path, cfgdir: Path):
    """Run the cycle up to (not including) TODAY; returns the app (open)."""
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.plan import DateDecision
    from kcg_mail.entrypoints.demo_hosts import host_reply
    from kcg_mail.services.daily import run_daily
    from kcg_mail.services.intake import run_intake

    app = bootstrap(work, cfgdir)
    app.state.put("go_live", "2022-12-01")  # live since December: January's steps are not history
    # the coordinator set January's physical meeting in December (services/meeting_dates)
    app.ledger.set_meeting_date("2023-01", DateDecision(date=date(2023, 1, 2), place="Stadshuset, Västerås").to_dict())
    app.refresh_meetings()
    for day in SEED_DAYS:
        run_daily(app, at(day))
    members = [p.email for p in app.cfg.network.active_members if p.email != app.meeting("2023-02").host.email]
    for email, ps in zip(members[:3], ("ACCEPTED", "ACCEPTED", "DECLINED")):
        app.mail.deliver(authenticated(calendar_reply(app, "2023-02", email, ps, at("2023-02-04", 9))), f"cal-{email}.eml")
    app.mail.deliver(plain_mail("okand@example.com", app.cfg.network.mailbox.email, "Erbjudande om annonser",
                                when=at("2023-02-04", 10), msgid="<stranger-1@example.com>"), "stranger.eml")
    run_intake(app, at("2023-02-04", 12))
    feb = app.meeting("2023-02")
    app.mail.deliver(host_reply(app, feb, at("2023-02-07", 11)), "feb-reply.eml")
    run_intake(app, at("2023-02-07", 12))
    return app
