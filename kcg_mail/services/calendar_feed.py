"""The year in every member's calendar: a subscribable .ics of all meetings,
written to the archive (``/<short>/Kalender/<short> möten.ics``) and kept
current by every daily run (a plan change shows up the next day at the
latest). The events carry the invitations' UIDs, so a calendar that has both
the invitation and the subscription shows one meeting. The previous feed is
kept in the state record (``calendar_feed``); the rules are in
``kcg_mail.core.feed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from kcg_mail.core import ical
from kcg_mail.core.cycle import location_of
from kcg_mail.core.feed import FeedEvent, update
from kcg_mail.core.plan import Meeting, resolve_meeting
from kcg_mail.services.app import App
from kcg_mail.services.compose import meeting_uid


@dataclass
class FeedResult:
    path: str
    link: str
    changed: list[str] = field(default_factory=list)
    events: int = 0


def feed_path(app: App) -> str:
    short = app.cfg.network.short
    return f"/{short}/Kalender/{short} möten.ics"


def _event(app: App, m: Meeting, *, cancelled: bool) -> FeedEvent:
    lines = [f"Tema: {m.theme_label}", f"Värd: {m.host.name}" + (f", {m.host.organisation}" if m.host.organisation else "")]
    if m.backup_host:
        lines.append(f"Reservvärd: {m.backup_host.name}")
    if m.awaiting == "set_meeting":  # the coordinator decides it (meetings.yaml kinds)
        lines.append(f"Datumet är inte bestämt än ({app.cfg.network.coordinator.name} bestämmer): "
                     "kallelsen kommer när datumet är bestämt.")
    elif m.tentative:
        lines.append(f"Preliminärt datum{f' ({m.proposed})' if m.proposed else ''}: kallelsen kommer när datumet är bestämt.")
    summary = ("Inställt: " if cancelled else "Preliminärt: " if m.tentative else "") + f"{m.title} – {m.host.name}"
    return FeedEvent(meeting_id=m.id, uid=meeting_uid(app.cfg, m.id), start=m.start.isoformat(), end=m.end.isoformat(),
                     summary=summary, description="\n".join(lines), location=location_of(m),
                     status="CANCELLED" if cancelled else "TENTATIVE" if m.tentative else "CONFIRMED")


def current_events(app: App) -> list[FeedEvent]:
    out = []
    planned = {m.id: m for m in app.meetings}  # with the coordinator's decisions about dates
    for pm in app.cfg.all_meetings():
        m = planned.get(pm.meeting_id) if not pm.cancelled else None
        out.append(_event(app, m or resolve_meeting(app.cfg, pm), cancelled=pm.cancelled))
    return out


def render(app: App, events: list[FeedEvent]) -> bytes:
    net = app.cfg.network
    tz = ZoneInfo(app.cfg.meetings.timezone)

    def local(iso: str) -> datetime:
        return datetime.fromisoformat(iso).astimezone(tz)

    evs = [ical.event(uid=e.uid, sequence=e.sequence, summary=e.summary, description=e.description,
                      location=e.location, start=local(e.start), end=local(e.end),
                      organizer=app.composer.sender, attendees=[], dtstamp=datetime.fromisoformat(e.stamp),
                      status=e.status)
           for e in events]
    return ical.feed(evs, name=f"{net.short} möten", description=f"{net.name}: årets möten med teman och värdar",
                     tzid=app.cfg.meetings.timezone)


def publish(app: App, now: datetime, *, link: bool = False) -> FeedResult:
    """Bring the feed up to date; writes the archive file only when it changed.
    ``link``: also make/reuse the shared link (an API call on Dropbox)."""
    raw = app.ledger.calendar_feed.get()
    previous = {k: FeedEvent.from_dict(v) for k, v in raw.items()} if raw else {}
    current = current_events(app)
    seqs = {}
    for mid in {e.meeting_id for e in current} | set(previous):
        inv = app.invitation(mid)
        if inv is not None:
            seqs[mid] = inv.sequence
    events, changed = update(current, previous, seqs, now)
    path = feed_path(app)
    if changed or raw is None:  # the state record says what was published
        data = render(app, list(events.values()))
        try:
            same = app.archive.read(path) == data
        except Exception:  # not there yet (each archive has its own "not found")
            same = False
        if not same:
            app.archive.store(path, data, overwrite=True)
        app.ledger.calendar_feed.put({k: v.to_dict() for k, v in events.items()})
    return FeedResult(path, app.archive.shared_link(path) if link else "", changed, len(events))

