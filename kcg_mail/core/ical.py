"""iCalendar objects (RFC 5545 / RFC 6047 iTIP) for invitations, updates,
cancellations and the onboarding year plan. Pure: values in, bytes out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar, Event, Timezone, vCalAddress, vText

from kcg_mail.ports import Address

PRODID = "-//Svenska Stadskärnor//kcg-mail//SV"


def _address(addr: Address, *, role: str | None = None, rsvp: bool = False) -> vCalAddress:
    a = vCalAddress(f"mailto:{addr.email}")
    a.params["CN"] = vText(addr.name)
    if role:
        a.params["ROLE"] = vText(role)
        a.params["PARTSTAT"] = vText("NEEDS-ACTION")
        a.params["CUTYPE"] = vText("INDIVIDUAL")
    if rsvp:
        a.params["RSVP"] = vText("TRUE")
    return a


def event(
    *,
    uid: str,
    sequence: int,
    summary: str,
    description: str,
    location: str,
    start: datetime,
    end: datetime,
    organizer: Address,
    attendees: Iterable[Address],
    dtstamp: datetime,
    status: str = "CONFIRMED",
    url: str | None = None,
) -> Event:
    ev = Event()
    ev.add("uid", uid)
    ev.add("sequence", sequence)
    ev.add("dtstamp", dtstamp.astimezone(UTC))
    ev.add("dtstart", start)
    ev.add("dtend", end)
    ev.add("summary", summary)
    ev.add("description", description)
    if location:
        ev.add("location", location)
    if url:
        ev.add("url", url)
    ev.add("status", status)
    ev.add("transp", "OPAQUE")
    ev.add("organizer", _address(organizer))
    for a in attendees:
        ev.add("attendee", _address(a, role="REQ-PARTICIPANT", rsvp=status != "CANCELLED"), encode=False)
    return ev


def calendar(events: Iterable[Event], *, method: str | None, tzid: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    evs = list(events)
    if evs:
        first = min(e.decoded("dtstart") for e in evs)
        last = max(e.decoded("dtend") for e in evs)
        # a whole-year span so the VTIMEZONE carries both STANDARD and DAYLIGHT rules
        span = (date(first.year, 1, 1), date(last.year + 1, 1, 1))
        cal.add_component(Timezone.from_tzid(tzid, first_date=span[0], last_date=span[1]))
    for e in evs:
        cal.add_component(e)
    return bytes(cal.to_ical())


def feed(events: Iterable[Event], *, name: str, description: str, tzid: str, ttl_hours: int = 12) -> bytes:
    """A subscribable calendar (METHOD:PUBLISH) with its display name and refresh interval."""
    cal = Calendar.from_ical(calendar(events, method="PUBLISH", tzid=tzid))
    cal.add("x-wr-calname", name)
    cal.add("x-wr-caldesc", description)
    cal.add("x-wr-timezone", tzid)
    cal.add("refresh-interval", timedelta(hours=ttl_hours), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", f"PT{ttl_hours}H")
    data: bytes = cal.to_ical()
    return data
