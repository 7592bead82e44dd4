"""Project groups ("Projektgrupp"): the model of ``config/projects.yaml`` and the
pure rules around them.

A group has a name, members (person ids from ``network.yaml``), a lead (one of
the members), a purpose and a start date (and optionally an end date). Before
each confirmed meeting the lead gets a short request to reply with a status
line or two; the reply (from the lead or a group member) is put under the
report-back point of that meeting's protocol template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from kcg_mail.core.plan import MONTHS_SV, Meeting
from kcg_mail.core.projects_model import ProjectGroup, Projects


def cross_check(projects: Projects, member_ids: Iterable[str]) -> list[str]:
    """Problems with person ids (``groups[i].field: problem (fix: ...)``)."""
    ids = set(member_ids)
    out = []
    for i, g in enumerate(projects.groups):
        if g.lead not in ids:
            out.append(f"groups[{i}] ({g.name}).lead: '{g.lead}' is not a member id in network.yaml "
                       f"(fix: use one of {', '.join(sorted(ids))})")
        for m in g.members:
            if m not in ids:
                out.append(f"groups[{i}] ({g.name}).members: '{m}' is not a member id in network.yaml "
                           f"(fix: use one of {', '.join(sorted(ids))}, or add the person to network.yaml)")
    return out


def active_at(group: ProjectGroup, d: date) -> bool:
    return group.start <= d and (group.end is None or d <= group.end)


def status_requests_due(groups: Sequence[ProjectGroup], meetings: Sequence[Meeting], today: date,
                        request_days: int) -> list[tuple[ProjectGroup, Meeting]]:
    """Requests to send ``today``, as (group, meeting): for each confirmed meeting from
    ``request_days`` before it until two days before it (so a reply can still reach the
    template), each group active on the request day and started before the meeting."""
    out = []
    for m in meetings:
        if m.tentative:
            continue
        send_on = m.date - timedelta(days=request_days)
        if not (send_on <= today <= m.date - timedelta(days=2)):
            continue
        out += [(g, m) for g in groups if active_at(g, send_on) and g.start < m.date]
    return out


_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}.*(?:original|ursprungligt|vidarebefordrat|forwarded).*|_{10,}|"
    r"(?:från|from|skickat|sent)\s*:.*|on .{0,200} wrote\s*:|den .{0,200} skrev.{0,120}:)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SIGNOFF = re.compile(r"^\s*(?:hälsningar|mvh|med vänlig hälsning|vänliga hälsningar|/\w+|--)\b.*$", re.I | re.M)

MAX_STATUS_CHARS = 600


def status_text(body: str) -> str:
    """The new text of a status reply: without the quoted request, greeting and
    sign-off, on one paragraph, at most ``MAX_STATUS_CHARS`` characters."""
    m = _QUOTE_START.search(body)
    if m:
        body = body[: m.start()]
    s = _SIGNOFF.search(body)
    if s:
        body = body[: s.start()]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith(">")]
    if lines and re.match(r"^(hej|hejsan|hallå|tjena)\b[^.]{0,40}[!,.]?$", lines[0], re.I):
        lines = lines[1:]
    text = " ".join(lines)
    return text if len(text) <= MAX_STATUS_CHARS else text[: MAX_STATUS_CHARS - 1].rstrip() + "…"


_NAMED_MEETING = re.compile(
    r"\b(?:mötet|möte|träffen|månadsmötet)\s+i\s+(" + "|".join(MONTHS_SV) + r")\b", re.IGNORECASE)


def stale_meeting_note(text: str, written: date, meetings: Sequence[Meeting], at: date) -> str | None:
    """A status line written on ``written`` that names a month's meeting ("rapport på
    mötet i oktober"), read again for a meeting on ``at``: the Swedish note that says
    the named meeting no longer lies ahead (it has been held, or none took place that
    month), or None when it still does (or the line names none). The month is the
    first one of that name on or after the month the line was written."""
    for found in _NAMED_MEETING.finditer(text):
        name = found.group(1).lower()
        month = MONTHS_SV.index(name) + 1
        year = written.year if month >= written.month else written.year + 1
        ym = f"{year}-{month:02d}"  # the plan's month of a meeting (a study trip "v 39" may fall in September)
        held = [m for m in meetings if not m.tentative and m.month == ym]
        if any(m.date >= at for m in held):
            continue
        if held:
            return f"mötet i {name} har redan hållits; be gruppen om en ny lägesrapport"
        if (year, month) < (at.year, at.month):
            return f"inget möte hölls i {name}; be gruppen om en ny lägesrapport"
        if any(m.tentative and m.month == ym for m in meetings):
            return f"mötet i {name} har ännu inget bekräftat datum"
        last = max((m.date for m in meetings), default=None)
        if last is not None and (year, month) <= (last.year, last.month):  # beyond the plans: nothing to say yet
            return f"det finns inget möte i {name} i årsplanen"
    return None
