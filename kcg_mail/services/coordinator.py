"""More of what the coordinator does by hand from the Prefect UI (the flows
in ``flows/manual.py`` wire these): set a meeting's date, times and place
(confirming a tentative date is setting the date: stored in the state, no
file is edited), and send a meeting's filed
minutes again to one member."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from kcg_mail.core.meeting_dates import SET_MEETING
from kcg_mail.core.outreach import distribution_content
from kcg_mail.core.plan import DateDecision, date_text
from kcg_mail.services.app import App
from kcg_mail.services.compose import folder_words
from kcg_mail.services.manual import ManualProblem
from kcg_mail.services.meeting_dates import Decided, decide


def set_meeting(app: App, meeting_id: str, day: date | None, start: str, end: str, place: str,
                now: datetime) -> Decided:
    """The coordinator sets a meeting's date, times and place in the Prefect form
    (``kcg-set-meeting``): the same decision as his reply (``services/meeting_dates``)."""
    from datetime import time


    m = app.meeting(meeting_id)
    if m is None:
        raise ManualProblem(f"mötet {meeting_id!r} finns inte i årsplanen; ange ett id som 2024-01")
    if day is not None and day < now.date():
        raise ManualProblem(f"{date_text(day)} har redan varit; ange mötets kommande datum")
    try:
        t0 = time.fromisoformat(start.replace(".", ":")) if start.strip() else None
        t1 = time.fromisoformat(end.replace(".", ":")) if end.strip() else None
    except ValueError:
        raise ManualProblem("skriv tiderna som 10:00 och 16:00") from None
    if t0 and t1 and t1 <= t0:
        raise ManualProblem("mötet kan inte sluta innan det börjar")
    if day is None and m.awaiting == SET_MEETING:
        raise ManualProblem(f"{m.kind_label} {m.id} har inget datum än; ange datumet")
    if day is None and not place.strip() and not m.tentative:
        raise ManualProblem("ange ett datum, en plats eller båda")
    new = DateDecision(date=day, start=t0, end=t1, place=place.strip(), confirmed=day is not None or m.tentative)
    return decide(app, meeting_id, new, now)


def resend_distribution(app: App, meeting_id: str, email: str, request_id: str, now: datetime) -> dict[str, Any]:
    """Send the latest filed minutes of a meeting again, to one member."""
    from kcg_mail.ports import Attachment
    from kcg_mail.services.filing import MIME_BY_KIND

    m = app.meeting(meeting_id)
    if m is None:
        raise ManualProblem(f"mötet {meeting_id!r} finns inte i årsplanen; ange ett id som 2023-05")
    person = next((p for p in app.cfg.network.members + app.cfg.network.guests
                   if p.email.lower() == email.strip().lower()), None)
    if person is None:
        raise ManualProblem(f"{email} finns inte i nätverket; lägg till personen som medlem först")
    filings = app.state.filings(meeting_id)
    if not filings:
        raise ManualProblem(f"inget protokoll är arkiverat för {meeting_id} än")
    filing = filings[-1]
    data = app.archive.read(filing.path)
    kind = filing.path.rpartition(".")[2]
    filename = filing.path.rpartition("/")[2]
    attach, link = distribution_content(app.cfg.meetings.distribution, filing.link)  # no file:// link in a mail
    atts = (Attachment(filename, MIME_BY_KIND.get(kind, "application/octet-stream"), data),) if attach else ()
    key = f"{meeting_id}:distribute:{person.email}:v{filing.version}:resend:{request_id}"
    app.outbox.now = now
    msg = app.composer.message(
        "distribute", key, m, [person],
        {"meeting": app.composer.meeting_ctx(m, app.meetings), "version": filing.version, "filename": filename,
         "link": link, "decisions": app.state.decisions(meeting_id), "attached": attach,
         "folder": folder_words(filing.path.rpartition("/")[0])},
        attachments=atts,
    )
    outcome = app.outbox.send(msg)
    return {"meeting": meeting_id, "to": person.email, "version": filing.version, "outcome": outcome, "key": key}
