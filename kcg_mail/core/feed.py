"""The year's calendar feed (a subscribable .ics of every meeting): which
events it holds and with what SEQUENCE. Pure: the previous feed state and the
plan in, the new state out; ``kcg_mail.core.ical.feed`` turns it into bytes.

Each meeting keeps the UID of its invitations. An event whose content
changed gets SEQUENCE raised (never below the invitation's) and a new
DTSTAMP; an unchanged event keeps both, so an unchanged plan gives a
byte-identical feed. A meeting cancelled in the plan, or removed from it,
stays in the feed as STATUS:CANCELLED.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime

FIELDS = ("start", "end", "summary", "description", "location", "status")


@dataclass(frozen=True)
class FeedEvent:
    meeting_id: str
    uid: str
    start: str  # ISO datetime with offset
    end: str
    summary: str
    description: str
    location: str
    status: str  # CONFIRMED | TENTATIVE | CANCELLED
    sequence: int = 0
    stamp: str = ""  # ISO datetime of the last change

    def fingerprint(self) -> str:
        data = json.dumps([getattr(self, f) for f in FIELDS], ensure_ascii=False)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FeedEvent:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]


def update(current: Iterable[FeedEvent], previous: Mapping[str, FeedEvent], invitation_seq: Mapping[str, int],
           now: datetime) -> tuple[dict[str, FeedEvent], list[str]]:
    """The feed's events now, and the ids of the events that changed.

    ``current`` are the plan's meetings (cancelled ones with status CANCELLED),
    ``previous`` the events last published, ``invitation_seq`` the SEQUENCE of
    each meeting's last invitation."""
    out: dict[str, FeedEvent] = {}
    changed: list[str] = []
    stamp = now.isoformat()
    for ev in current:
        prev = previous.get(ev.meeting_id)
        floor = invitation_seq.get(ev.meeting_id, 0)
        if prev is None:
            out[ev.meeting_id] = replace(ev, sequence=floor, stamp=stamp)
            changed.append(ev.meeting_id)
        elif prev.fingerprint() != ev.fingerprint() or prev.uid != ev.uid:
            out[ev.meeting_id] = replace(ev, sequence=max(prev.sequence + 1, floor), stamp=stamp)
            changed.append(ev.meeting_id)
        else:
            out[ev.meeting_id] = prev
    for mid, prev in previous.items():
        if mid in out:
            continue
        if prev.status == "CANCELLED":
            out[mid] = prev
        else:  # removed from the plan: keep it, cancelled
            out[mid] = replace(prev, status="CANCELLED", sequence=max(prev.sequence + 1, invitation_seq.get(mid, 0)),
                               stamp=stamp)
            changed.append(mid)
    return dict(sorted(out.items(), key=lambda kv: kv[1].start)), changed
