"""Compose the mails people read, from coordinator-editable Jinja2 templates.

Each mail kind has ``templates/mail/<kind>.txt.j2`` (with a ``subject`` and a
``body`` block) and ``templates/mail/<kind>.html.j2``. Templates render in
Jinja's sandbox (the coordinator edits them; they must not reach Python
internals), with StrictUndefined so a typo is an error rather than a blank,
and autoescape on for HTML.

Composing is deterministic: the same meeting, action and recipient give the
same idempotency key and so the same Message-ID.

Dates in a mail's prose are in words ("måndag 6 februari"), with the year only
when it is not the year of the run (``clock``: the run's "now", which the App
gives the composer); the ``datum`` filter does the same for a date a template
gets as text (a decision's "klart till"). ISO dates stay in file names only.
A meeting's context says whether it still lies ahead (``ahead``), and the next
meeting is named only while it does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, overload

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from kcg_mail.core import ical
from kcg_mail.core.config_model import Config, Person
from kcg_mail.core.cycle import due_dates, invite_days, location_of
from kcg_mail.core.plan import MONTHS_SV, WEEKDAYS_SV, Meeting, add_working_days
from kcg_mail.ports import Address, Attachment, Invitation, OutgoingMessage

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MAIL_KINDS = ("brief_host", "invite", "cancel_invitation", "send_template", "distribute",
              "chase_host", "escalate", "reply_problem", "plan_change", "welcome", "alert", "alert_operator",
              "decision_reminder", "project_status_request", "guest_approval", "coordinator_receipt",
              "coordinator_question", "save_the_date", "date_question", "date_receipt")
#: the guests' mails, per language (``<kind>`` Swedish, ``<kind>_en`` English)
GUEST_KINDS = ("guest_invite", "guest_invite_en", "guest_cancel", "guest_cancel_en")

WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")
#: what a meeting is, in a guest's mail ("till nätverkets digitala möte")
KIND_SV = {"physical": "fysiska möte", "digital": "digitala möte", "all_members": "möte", "study_trip": "studieresa"}
#: what a meeting is, in a member's or host's sentence ("nätverkets digitala månadsmöte")
KIND_PHRASE_SV = {"physical": "fysiska möte", "digital": "digitala månadsmöte", "all_members": "möte för alla",
                  "study_trip": "studieresa"}
KIND_EN = {"physical": "in-person meeting", "digital": "online meeting", "all_members": "meeting",
           "study_trip": "study trip"}


def date_en(d: date) -> str:
    """English long date, British order: 'Monday 4 December 2023'."""
    return f"{WEEKDAYS_EN[d.weekday()]} {d.day} {MONTHS_EN[d.month - 1]} {d.year}"


def date_words(d: date, today: date | None) -> str:
    """A date in a Swedish sentence: 'måndag 6 februari', with the year when it is
    not this year's (or when "today" is not known)."""
    text = f"{WEEKDAYS_SV[d.weekday()]} {d.day} {MONTHS_SV[d.month - 1]}"
    return text if today is not None and d.year == today.year else f"{text} {d.year}"


_WEEKDAY, _MONTH = "|".join(WEEKDAYS_SV), "|".join(MONTHS_SV)
_LONG_DATE = re.compile(rf"^((?:{_WEEKDAY}) \d{{1,2}} (?:{_MONTH})) (\d{{4}})$")


def datum(value: object, today: date | None) -> str:
    """The ``datum`` filter: a date, or an ISO date in text ("2023-03-01"), in words;
    a date already in words ("fredag 17 november 2023") loses this year's year;
    any other text (a host's "v 12", "vid behov") stays as it is."""
    if isinstance(value, datetime):
        return date_words(value.date(), today)
    if isinstance(value, date):
        return date_words(value, today)
    text = str(value or "").strip()
    if len(text) == 10:
        try:
            return date_words(date.fromisoformat(text), today)
        except ValueError:
            return text
    long = _LONG_DATE.match(text)
    if long and today is not None and int(long.group(2)) == today.year:
        return long.group(1)
    return text


def folder_words(folder: str) -> str:
    """An archive folder as a reader names it: '/KCG/Protokoll/2023' -> 'KCG / Protokoll / 2023'."""
    return " / ".join(x for x in folder.split("/") if x)


class TemplateProblem(Exception):
    pass


def addr(p: Person) -> Address:
    return Address(p.name, p.email)


@overload
def person_ctx(p: Person) -> dict[str, str]: ...
@overload
def person_ctx(p: None) -> None: ...
def person_ctx(p: Person | None) -> dict[str, str] | None:
    if p is None:
        return None
    return {"name": p.name, "first_name": p.name.split()[0], "organisation": p.organisation, "city": p.city, "email": p.email}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


_ENVIRONMENTS: dict[str, SandboxedEnvironment] = {}


def _environment(folder: Path) -> SandboxedEnvironment:
    """One Jinja environment per template folder and process: its template cache
    outlives a run (``kcg serve`` and ``kcg demo`` run many flows in one process;
    compiling every template again cost tens of milliseconds a run). Jinja checks
    a cached template's file time on every use, so an edited template is read
    again at once."""
    key = str(folder.resolve())
    env = _ENVIRONMENTS.get(key)
    if env is None:
        env = _ENVIRONMENTS[key] = SandboxedEnvironment(
            loader=FileSystemLoader(key),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    return env


class Composer:
    def __init__(self, cfg: Config, templates_dir: Path | None = None):
        self.cfg = cfg
        self.dir = Path(templates_dir or DEFAULT_TEMPLATES)
        self.env = _environment(self.dir / "mail")
        net = cfg.network
        self.sender = Address(net.mailbox.name, net.mailbox.email)
        self.coordinator = net.coordinator
        #: extra per-meeting context from the state (the planning round's workshop groups)
        self.meeting_extras: Callable[[str], dict[str, Any]] | None = None
        #: the run's "now" (the App passes its Outbox's); None: unknown, dates carry their year
        self.clock: Callable[[], datetime | None] = lambda: None
        self.env.filters["datum"] = lambda v: datum(v, self.today())

    def today(self) -> date | None:
        now = self.clock()
        return None if now is None else now.date()

    # ------------------------------------------------------------- rendering
    def render(self, kind: str, ctx: dict[str, Any]) -> Rendered:
        base = self.base_context()
        base.update(ctx)
        try:
            txt = self.env.get_template(f"{kind}.txt.j2")
            tctx = txt.new_context(base)
            subject = "".join(txt.blocks["subject"](tctx)).strip()
            text = "".join(txt.blocks["body"](tctx)).strip() + "\n"
            html = self.env.get_template(f"{kind}.html.j2").render(base)
        except Exception as exc:  # jinja errors: name the template
            raise TemplateProblem(f"templates/mail/{kind}: {type(exc).__name__}: {exc}") from exc
        return Rendered(" ".join(subject.split()), text, html)

    def check(self) -> list[str]:
        """Trial-render every mail template with a sample context."""
        problems = []
        sample = self.sample_context()
        for kind in MAIL_KINDS + GUEST_KINDS:
            try:
                self.render(kind, sample)
            except TemplateProblem as exc:
                problems.append(str(exc))
        return problems

    def base_context(self) -> dict[str, Any]:
        net = self.cfg.network
        return {
            "network": {"name": net.name, "short": net.short, "purpose": net.purpose, "mailbox": net.mailbox.email,
                        "mailbox_name": net.mailbox.name},
            "coordinator": person_ctx(self.coordinator),
            "agenda": list(self.cfg.meetings.agenda),
            "values": list(net.values),
            "rules": list(net.rules),
        }

    def meeting_ctx(self, m: Meeting, meetings: list[Meeting] | None = None) -> dict[str, Any]:
        now, today = self.clock(), self.today()
        lead, extra = self.cfg.meetings.lead_for(m.kind), frozenset(self.cfg.meetings.extra_non_working_days)
        nxt = self.next_ahead(meetings, m)
        planned = due_dates(m, lead, extra, invite_days(meetings or (), lambda x: self.cfg.meetings.lead_for(x.kind), extra).get(m.id))
        return {
            "id": m.id, "token": m.token, "date": m.date.isoformat(), "date_text": m.date_text(),
            "date_words": date_words(m.date, today), "ahead": now is None or m.start > now,
            "start_time": m.start.strftime("%H:%M"), "end_time": m.end.strftime("%H:%M"),
            "place": m.place, "link": m.link, "location": location_of(m), "kind": m.kind, "kind_label": m.kind_label,
            "kind_phrase": KIND_PHRASE_SV.get(m.kind, m.kind_label.lower()),
            "theme_no": m.theme_no, "theme": m.theme, "theme_label": m.theme_label, "title": m.title,
            "host": person_ctx(m.host), "backup_host": person_ctx(m.backup_host), "comment": m.comment,
            "guests": [g.name for g in m.guests], "tentative": m.tentative, "proposed": m.proposed or "",
            # the host's days: the reminder with the template, and the minutes due
            "invite_day": date_words(planned["invite"], today),
            "invite_done": today is not None and planned["invite"] <= today,
            "template_day": date_words(planned["send_template"], today),
            "protocol_due": date_words(add_working_days(m.date, lead.protocol_due, extra), today),
            "next": None if nxt is None else {"date_text": nxt.date_text(), "date_words": date_words(nxt.date, today),
                                              "host_name": nxt.host.name, "theme": nxt.theme,
                                              "theme_label": nxt.theme_label,
                                              "tentative": nxt.tentative},
            "awaiting": m.awaiting, "date_by": m.date_by,
            "audience": [p.organisation or p.name for p in m.audience],
            **(self.meeting_extras(m.id) if self.meeting_extras else {}),
        }

    def next_ahead(self, meetings: list[Meeting] | None, m: Meeting) -> Meeting | None:
        """The meeting after ``m`` that still lies ahead of the run (None when none does)."""
        now = self.clock()
        later = [x for x in meetings or () if x.start > m.start and (now is None or x.start > now)]
        return min(later, key=lambda x: x.start, default=None)

    def sample_context(self) -> dict[str, Any]:
        from kcg_mail.core.plan import resolve_plan

        ms = resolve_plan(self.cfg)
        m = ms[0]
        return {
            "meeting": self.meeting_ctx(m, ms), "person": person_ctx(m.host), "filename": "exempel.docx",
            "link": "https://example.se/x", "decisions": [{"decision": "Beslut", "owner": "Ansvarig", "due": "2023-03-01"}],
            "version": 2, "problem": "Filen saknas.", "days_late": 7, "meetings": [self.meeting_ctx(x) for x in ms],
            "changes": ["datum"], "subject": "Ämne", "alert": {"title": "Fel", "what": "x", "means": "m", "todo": "y", "url": "http://x"},
            "manual_steps": ["Facebook"], "attached": True, "sequence": 0, "updated": False,
            "calendar_link": "https://example.se/kalender.ics",
            "decision": {"ref": f"{m.id}/1", "decision": "Beslut", "owner": m.host.name, "due": "2023-03-01"},
            "folder": "KCG / Protokoll / 2023",
            "project": {"name": "Trygghet i stadskärnan", "purpose": "Kartlägga"},
            "guest": {"name": "Gäst", "organisation": "Organisation", "language": "engelska"}, "ref": "0123456789ab",
            "guest_meeting": self.guest_meeting_ctx(m, "en"), "withdrawn": False,
            "understood": True, "done": "inbjudan skickas", "text": "kanske", "again": "",
            "question": {"subject": "Protokollet väntar", "lead": "Protokollet väntar.", "details": ["Fil: x.docx"],
                         "yes": "skicka ut det", "no": "stoppa det"},
            "what": "set_meeting", "n": 0, "example": "måndag 15 januari kl 10–16, Stadshuset, Norrköping",
            "place_missing": False, "planned": "januari 2024",
        }

    # -------------------------------------------------------------- messages
    def message(self, kind: str, key: str, meeting: Meeting | None, to: Iterable[Person], ctx: dict[str, Any], *,
                cc: Iterable[Person] = (), attachments: tuple[Attachment, ...] = (), in_reply_to: str | None = None,
                to_addresses: Iterable[Address] = ()) -> OutgoingMessage:
        r = self.render(kind, ctx)
        return OutgoingMessage(
            key=key, action=kind, meeting_id=meeting.id if meeting else None, sender=self.sender,
            to=tuple(addr(p) for p in to) + tuple(to_addresses), cc=tuple(addr(p) for p in cc),
            subject=r.subject, text=r.text, html=r.html, reply_to=self.sender, attachments=attachments,
            in_reply_to=in_reply_to, references=(in_reply_to,) if in_reply_to else (),
        )

    def invitation(self, m: Meeting, meetings: list[Meeting], attendees: list[Person], sequence: int, *,
                   cancel: bool, now: datetime, stage: str = "invite", updated: bool | None = None) -> Invitation:
        """The members' calendar request (one UID per meeting, SEQUENCE raised on each
        change); ``stage="save_the_date"``: the date only, the invitation follows.
        ``updated``: the text says the invitation changed (default: SEQUENCE above 0;
        the invitation after a save-the-date is the first one members read)."""
        kind = "cancel_invitation" if cancel else stage
        key = f"{m.id}:{'cancel' if cancel else stage}:members:s{sequence}"
        r = self.render(kind, {"meeting": self.meeting_ctx(m, meetings), "sequence": sequence,
                               "updated": sequence > 0 if updated is None else updated})
        organizer = self.sender
        uid = meeting_uid(self.cfg, m.id)
        # a clean title in the calendar; the token stays in the mail's subject
        # (replies are matched by UID, by reference to the invitation, or by that subject)
        summary = m.title
        event = ical.event(
            uid=uid, sequence=sequence, summary=summary, description=r.text, location=location_of(m),
            start=m.start, end=m.end, organizer=organizer, attendees=[addr(p) for p in attendees], dtstamp=now,
            status="CANCELLED" if cancel else "CONFIRMED", url=m.link or None,
        )
        method: Literal["REQUEST", "CANCEL"] = "CANCEL" if cancel else "REQUEST"
        ics = ical.calendar([event], method=method, tzid=self.cfg.meetings.timezone)
        msg = OutgoingMessage(
            key=key, action=kind, meeting_id=m.id, sender=organizer, to=tuple(addr(p) for p in attendees),
            subject=r.subject, text=r.text, html=r.html, auto_submitted=False,
        )
        return Invitation(message=msg, uid=uid, sequence=sequence, method=method, summary=summary, description=r.text,
                          location=location_of(m), start=m.start, end=m.end, tzid=self.cfg.meetings.timezone, ics=ics)

    def guest_meeting_ctx(self, m: Meeting, language: str) -> dict[str, Any]:
        """What a guest may read about a meeting: when, where, the topic and the host's
        name; never an address, the plan's comment or who else is invited."""
        en = language == "en"
        online = m.kind == "digital" and bool(m.link)
        place = ("Online" if en else "Digitalt") if online else (m.place or "")
        kind = (KIND_EN if en else KIND_SV).get(m.kind, "meeting" if en else "möte")
        return {
            "id": m.id, "token": m.token, "date_text": date_en(m.date) if en else date_words(m.date, self.today()),
            "start_time": m.start.strftime("%H:%M"), "end_time": m.end.strftime("%H:%M"), "place": place,
            "link": m.link, "kind": kind, "theme": m.theme,
            "host": {"name": m.host.name, "organisation": m.host.organisation},
            "summary": f"{self.cfg.network.name}: {kind} – {m.theme}" if en else m.title,
        }

    def guest_invitation(self, m: Meeting, guest: Person, sequence: int, *, uid: str, cancel: bool, now: datetime,
                         withdrawn: bool = False) -> Invitation:
        """A guest's own invitation: the guest is the only attendee, in the guest's language."""
        en = guest.language == "en"
        kind = ("guest_cancel" if cancel else "guest_invite") + ("_en" if en else "")
        gm = self.guest_meeting_ctx(m, guest.language)
        r = self.render(kind, {"guest_meeting": gm, "guest": {"name": guest.name, "organisation": guest.organisation},
                               "sequence": sequence, "withdrawn": withdrawn})
        where = " – ".join(x for x in (gm["place"], m.link) if x)
        event = ical.event(
            uid=uid, sequence=sequence, summary=gm["summary"], description=r.text, location=where,
            start=m.start, end=m.end, organizer=self.sender, attendees=[addr(guest)], dtstamp=now,
            status="CANCELLED" if cancel else "CONFIRMED", url=m.link or None,
        )
        method: Literal["REQUEST", "CANCEL"] = "CANCEL" if cancel else "REQUEST"
        ics = ical.calendar([event], method=method, tzid=self.cfg.meetings.timezone)
        msg = OutgoingMessage(
            key=f"{m.id}:{'guest_cancel' if cancel else 'guest_invite'}:{guest.email}:s{sequence}",
            action="guest_cancel" if cancel else "guest_invite", meeting_id=m.id, sender=self.sender,
            to=(addr(guest),), subject=r.subject, text=r.text, html=r.html, auto_submitted=False,
        )
        return Invitation(message=msg, uid=uid, sequence=sequence, method=method, summary=gm["summary"],
                          description=r.text, location=where, start=m.start, end=m.end,
                          tzid=self.cfg.meetings.timezone, ics=ics)

    def year_calendar(self, meetings: list[Meeting], now: datetime) -> bytes:
        """The remaining year plan as one .ics (onboarding), METHOD:PUBLISH."""
        evs = [
            ical.event(uid=meeting_uid(self.cfg, m.id), sequence=0, summary=m.title,
                       description=f"Värd: {m.host.name}" + (" (preliminärt datum)" if m.tentative else ""),
                       location=location_of(m), start=m.start, end=m.end, organizer=self.sender, attendees=[],
                       dtstamp=now, status="TENTATIVE" if m.tentative else "CONFIRMED")
            for m in meetings
        ]
        return ical.calendar(evs, method="PUBLISH", tzid=self.cfg.meetings.timezone)


def meeting_uid(cfg: Config, meeting_id: str) -> str:
    domain = cfg.network.mailbox.email.rpartition("@")[2]
    return f"{cfg.network.short.lower()}-{meeting_id}@{domain}"
