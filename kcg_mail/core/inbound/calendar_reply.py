"""Calendar responses (iTIP METHOD:REPLY): who answered what to which meeting."""

from __future__ import annotations

import re

from kcg_mail.core.inbound.decode import _decode_bytes
from kcg_mail.core.inbound.message import CalendarReply

_PARTSTAT_SUBJECT = [
    (re.compile(r"^\s*(?:tentatively\s+accepted|tentative|preliminärt(?:\s+accepterat)?|preliminär|"
                r"mit\s+vorbehalt(?:\s+angenommen)?)\s*:", re.I), "TENTATIVE"),
    (re.compile(r"^\s*(?:accepted|accepterat|accepterad|godkänd|godkänt|accepterade|zugesagt|angenommen)\s*:", re.I),
     "ACCEPTED"),
    (re.compile(r"^\s*(?:declined|avböjt|avböjd|avböjde|abgelehnt)\s*:", re.I), "DECLINED"),
]


def _subject_partstat(subject: str) -> str | None:
    for rx, status in _PARTSTAT_SUBJECT:
        if rx.search(subject or ""):
            return status
    return None


def _ics_lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line[1:]
        else:
            lines.append(line)
    return lines


def _ics_prop(line: str) -> tuple[str, dict[str, str], str]:
    """Split ``NAME;P=V;Q="x:y":value`` (quotes may hold ':' and ';')."""
    i, n, quoted = 0, len(line), False
    while i < n:
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif c == ":" and not quoted:
            break
        i += 1
    head, value = line[:i], line[i + 1 :]
    parts: list[str] = []
    buf, quoted = "", False
    for c in head:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            parts.append(buf)
            buf = ""
        else:
            buf += c
    parts.append(buf)
    params: dict[str, str] = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip().upper()] = v.strip().strip('"')
    return parts[0].strip().upper(), params, value.strip()


def parse_ics_reply(data: bytes | str, fallback_email: str = "") -> CalendarReply | None:
    """A CalendarReply from an iCalendar object with METHOD:REPLY (or COUNTER),
    None for anything else (an invitation, a cancellation, garbage)."""
    try:
        text = data if isinstance(data, str) else _decode_bytes(data, "utf-8")
        if "BEGIN:VCALENDAR" not in text.upper():
            return None
        method = uid = None
        attendees: list[tuple[str, str]] = []
        in_event = False
        for line in _ics_lines(text):
            if not line.strip():
                continue
            name, params, value = _ics_prop(line)
            if name == "METHOD" and method is None:
                method = value.upper()
            elif name == "BEGIN" and value.upper() in {"VEVENT", "VTODO"}:
                in_event = True
            elif name == "END" and value.upper() in {"VEVENT", "VTODO"}:
                in_event = False
            elif in_event and name == "UID" and uid is None:
                uid = value
            elif in_event and name == "ATTENDEE":
                addr = re.sub(r"^mailto:", "", value, flags=re.I).strip().lower()
                attendees.append((addr, params.get("PARTSTAT", "").upper()))
        if method not in {"REPLY", "COUNTER"}:
            return None
        fallback = (fallback_email or "").lower()
        chosen = None
        for addr, ps in attendees:
            if addr == fallback and ps:
                chosen = (addr, ps)
                break
        if chosen is None:
            with_ps = [a for a in attendees if a[1]]
            chosen = with_ps[0] if with_ps else (attendees[0] if attendees else (fallback, ""))
        addr, ps = chosen
        if not ps:
            ps = "TENTATIVE" if method == "COUNTER" else "NEEDS-ACTION"
        return CalendarReply(uid=uid or None, attendee_email=addr or fallback, partstat=ps)
    except Exception:
        return None


_TNEF_RESPONSE = {
    "ipm.schedule.meeting.resp.pos": "ACCEPTED",
    "ipm.schedule.meeting.resp.neg": "DECLINED",
    "ipm.schedule.meeting.resp.tent": "TENTATIVE",
}
