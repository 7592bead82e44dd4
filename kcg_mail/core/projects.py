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
from dataclasses import dataclass
from datetime import date, timedelta

from kcg_mail.core.plan import Meeting
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


@dataclass(frozen=True)
class StatusRequest:
    group: ProjectGroup
    meeting: Meeting
    send_on: date


def active_at(group: ProjectGroup, d: date) -> bool:
    return group.start <= d and (group.end is None or d <= group.end)


def status_requests_due(groups: Sequence[ProjectGroup], meetings: Sequence[Meeting], today: date,
                        request_days: int) -> list[StatusRequest]:
    """Requests to send ``today``: for each confirmed meeting from ``request_days`` before
    it until two days before it (so a reply can still reach the template), each group
    active on the request day and started before the meeting."""
    out = []
    for m in meetings:
        if m.tentative:
            continue
        send_on = m.date - timedelta(days=request_days)
        if not (send_on <= today <= m.date - timedelta(days=2)):
            continue
        out += [StatusRequest(g, m, send_on) for g in groups if active_at(g, send_on) and g.start < m.date]
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
