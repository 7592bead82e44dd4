"""Calendar responses (iTIP METHOD:REPLY): who answered what to which meeting."""

from __future__ import annotations

import re

from icalendar import Calendar

from kcg_mail.core.inbound.decode import decode_bytes
from kcg_mail.core.inbound.message import CalendarReply

_PARTSTAT_SUBJECT = [
    (re.compile(r"^\s*(?:tentatively\s+accepted|tentative|preliminärt(?:\s+accepterat)?|preliminär|"
                r"mit\s+vorbehalt(?:\s+angenommen)?)\s*:", re.I), "TENTATIVE"),
    (re.compile(r"^\s*(?:accepted|accepterat|accepterad|godkänd|godkänt|accepterade|zugesagt|angenommen)\s*:", re.I),
     "ACCEPTED"),
    (re.compile(r"^\s*(?:declined|avböjt|avböjd|avböjde|abgelehnt)\s*:", re.I), "DECLINED"),
]


def subject_partstat(subject: str) -> str | None:
    for rx, status in _PARTSTAT_SUBJECT:
        if rx.search(subject or ""):
            return status
    return None


def _attendee_address(value: object) -> str:
    return re.sub(r"^mailto:", "", str(value), flags=re.I).strip().lower()


def parse_ics_reply(data: bytes | str, fallback_email: str = "") -> CalendarReply | None:
    """A CalendarReply from an iCalendar object with METHOD:REPLY (or COUNTER),
    None for anything else (an invitation, a cancellation, garbage).

    Parsed with ``icalendar``; the attendee chosen is the sender's own entry
    when the reply lists several (Outlook sends only the responder's)."""
    text = data if isinstance(data, str) else decode_bytes(data, "utf-8")
    if "BEGIN:VCALENDAR" not in text.upper():
        return None
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except Exception:  # noqa: BLE001 - parse never raises: broken calendar content is not a reply
        return None
    for cal in calendars:
        method = str(cal.get("METHOD", "")).strip().upper()
        if method not in {"REPLY", "COUNTER"}:
            continue
        uid: str | None = None
        attendees: list[tuple[str, str]] = []
        for comp in cal.walk():
            if comp.name not in {"VEVENT", "VTODO"}:
                continue
            if uid is None and comp.get("UID") is not None:
                uid = str(comp.get("UID")).strip() or None
            found = comp.get("ATTENDEE")
            for att in found if isinstance(found, list) else ([found] if found is not None else []):
                partstat = str(getattr(att, "params", {}).get("PARTSTAT", "")).upper()
                attendees.append((_attendee_address(att), partstat))
        fallback = (fallback_email or "").lower()
        chosen = next(((a, ps) for a, ps in attendees if a == fallback and ps), None)
        if chosen is None:
            with_ps = [a for a in attendees if a[1]]
            chosen = with_ps[0] if with_ps else (attendees[0] if attendees else (fallback, ""))
        addr, ps = chosen
        if not ps:
            ps = "TENTATIVE" if method == "COUNTER" else "NEEDS-ACTION"
        return CalendarReply(uid=uid, attendee_email=addr or fallback, partstat=ps)
    return None


TNEF_RESPONSE = {
    "ipm.schedule.meeting.resp.pos": "ACCEPTED",
    "ipm.schedule.meeting.resp.neg": "DECLINED",
    "ipm.schedule.meeting.resp.tent": "TENTATIVE",
}
