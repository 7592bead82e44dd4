"""The dates the coordinator decides: asking him, reading his answer, the save-the-date.

A kind whose date he decides (``meetings.yaml`` ``kinds.<kind>.date_by:
coordinator``) and a tentative date in the plan are questions to him
(``kcg_mail.core.meeting_dates`` says which and when). This module:

- ``sync`` (each daily run): asks him by mail (``date_question``; a reply to it
  answers), reminds him, tells the alert channel once when he stays silent, and
  sends the members a save-the-date as soon as the date is set (a calendar
  request under the meeting's own UID: the invitation later is an update of the
  same event, SEQUENCE raised) and an update of it when the date moves;
- ``handle_answer``: his reply (passed the coordinator's rule chain, a reply to
  our question or to our receipt) is read in the core (``read_reply``); what is
  clear is stored as the meeting's ``DateDecision`` through the ledger and gets a
  receipt, what is unclear gets a one-line question back and changes nothing;
- ``decide``: the same decision from the Prefect form (``kcg-set-meeting``,
  ``kcg_mail.services.coordinator.set_meeting``).

The plan is resolved with the stored decisions (``App.refresh_meetings``); the
cycle then sends the invitation at the kind's invite lead, and its updates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from kcg_mail.core.config_model import Person
from kcg_mail.core.cycle import SAVE_THE_DATE, due_dates, invitation_snapshot, invite_days
from kcg_mail.core.inbound import ParsedMail, QuestionRef
from kcg_mail.core.inbound.answer import Answer
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.meeting_dates import (
    CONFIRM_DATE,
    SET_MEETING,
    SET_PLACE,
    DateStep,
    Reading,
    date_steps,
    next_ask_day,
    read_reply,
)
from kcg_mail.core.plan import (
    MONTHS_SV,
    PLACE_LATER,
    DateDecision,
    Meeting,
    add_working_days,
    date_text,
    is_working_day,
)
from kcg_mail.ports import ActionRecord
from kcg_mail.services import questions
from kcg_mail.services.app import App

#: ``QuestionRef.what`` of this module's questions (a reply to a receipt: "meeting_date")
RECEIPT = "meeting_date"
QUESTION_KINDS = (SET_MEETING, CONFIRM_DATE, SET_PLACE, RECEIPT)
EXAMPLES = {
    SET_MEETING: "måndag 15 januari kl 10–16, Stadshuset, Norrköping",
    CONFIRM_DATE: "ja – eller: 26/9 9–17, Göteborg",
    SET_PLACE: "Plats: Stadshuset, Norrköping",
}


# ------------------------------------------------------------------ reading the state


def decision(app: App, meeting_id: str) -> DateDecision | None:
    raw = app.ledger.meeting_dates().get(meeting_id)
    return DateDecision.from_dict(raw) if raw else None


def asked_days(app: App, m: Meeting) -> list[date]:
    """The days the meeting's open question (``m.awaiting``) was sent."""
    return [date.fromisoformat(q["on"]) for q in app.ledger.date_questions(m.id) if q["what"] == m.awaiting]


def _asked(app: App) -> dict[str, list[date]]:
    return {m.id: asked_days(app, m) for m in app.meetings if m.awaiting}


def _earlier(app: App) -> dict[str, date]:
    """Per meeting with an open question: the last day another question about it went out."""
    out = {}
    for m in app.meetings:
        other = [date.fromisoformat(q["on"]) for q in app.ledger.date_questions(m.id) if q["what"] != m.awaiting]
        if m.awaiting and other:
            out[m.id] = max(other)
    return out


def _alerted(app: App) -> frozenset[str]:
    return frozenset(m.id for m in app.meetings if m.awaiting and app.ledger.date_alerted(m.id, m.awaiting))


def _question(r: ActionRecord) -> QuestionRef | None:
    if r.action not in ("date_question", "date_receipt") or not r.meeting_id:
        return None
    parts = r.key.split(":")
    what = parts[3] if r.action == "date_question" and len(parts) > 4 else RECEIPT
    return QuestionRef(r.meeting_id, r.meeting_id, what)


def question_ids(app: App, actions: list[ActionRecord]) -> dict[str, QuestionRef]:
    """Our questions about dates (and our receipts, which he may answer with the place):
    Message-ID -> the question."""
    return questions.ids_from_actions(actions, _question)


def next_day(app: App, after: date) -> date | None:
    """The next day a question, a reminder, an alert or a save-the-date is due (for simulations)."""
    asked = next_ask_day(app.meetings, _asked(app), _alerted(app), after, app.cfg.meetings, app.go_live(),
                         _earlier(app))
    following = add_working_days(after, 1, app.extra_days)
    noon = datetime.combine(following, time(12), ZoneInfo(app.cfg.meetings.timezone))
    if any(_save_the_date_wanted(app, m, noon) is not None for m in app.meetings):
        return following if asked is None else min(asked, following)
    return asked


# ------------------------------------------------------------------ the members' save-the-date


def _invite_day(app: App, m: Meeting) -> date:
    invites = invite_days(app.meetings, lambda x: app.cfg.meetings.lead_for(x.kind), app.extra_days)
    return due_dates(m, app.cfg.meetings.lead_for(m.kind), app.extra_days, invites.get(m.id))["invite"]


def inv_day_ahead(app: App, m: Meeting, now: datetime) -> bool:
    """The members' invitation is not due yet (a save-the-date comes first)."""
    return not m.tentative and m.date_by == "coordinator" and _invite_day(app, m) > now.date()


def _save_the_date_wanted(app: App, m: Meeting, now: datetime) -> list[Person] | None:
    """The members a save-the-date (or its update) should reach now, or None: the date is
    set, the invitation is not due yet, and nothing was sent or the date or members changed."""
    if m.tentative or m.date_by != "coordinator" or now >= m.start:
        return None
    prev = app.invitation(m.id)
    people = [p for p in app.attendees(m) if p.role != "guest"]  # as on the invitation (services/daily)
    if prev is None:
        if now.date() >= _invite_day(app, m):
            return None  # the invitation itself is due: the cycle sends it
    elif prev.stage != SAVE_THE_DATE or prev.cancelled:
        return None  # the invitation is out (its updates are the cycle's)
    else:
        cur = invitation_snapshot(m, [p.email for p in people], prev.uid, prev.sequence)
        if (cur.start, cur.end, cur.attendees) == (prev.start, prev.end, prev.attendees):
            return None
    return people


def save_the_date(app: App, m: Meeting, now: datetime) -> str | None:
    """Send (or update) the members' save-the-date when the date is set and the
    invitation is not due yet, on a day with room within the member caps (it is
    not urgent: a later daily run sends it); None when nothing went out."""
    people = _save_the_date_wanted(app, m, now)
    if people is None:
        return None
    emails = [p.email for p in people]
    pacer = app.outbox.pacer
    if pacer is not None and not pacer.room_today(emails, now.date()):
        return None
    prev = app.invitation(m.id)
    seq = 0 if prev is None else prev.sequence + 1
    app.outbox.now = now
    # the date and times only: the place and the programme come with the invitation
    shown = replace(m, place=PLACE_LATER)
    inv = app.composer.invitation(shown, app.meetings, people, seq, cancel=False, now=now, stage=SAVE_THE_DATE)
    outcome = app.outbox.send_invitation(inv)
    app.set_invitation(m.id, replace(invitation_snapshot(shown, emails, inv.uid, seq), stage=SAVE_THE_DATE))
    return outcome


# ------------------------------------------------------------------ asking


def _planned(m: Meeting) -> str:
    return f"{MONTHS_SV[m.date.month - 1]} {m.date.year}"


def ask(app: App, m: Meeting, step: DateStep, now: datetime) -> str:
    """The question (or its reminder) to the coordinator; the day is recorded once it went out."""
    coord = app.cfg.network.coordinator
    app.outbox.now = now
    msg = app.composer.message(
        "date_question", f"{m.id}:date_question:{coord.email}:{step.what}:n{step.n}", m, [coord],
        {"meeting": app.composer.meeting_ctx(m, app.meetings), "what": step.what, "n": step.n,
         "example": EXAMPLES[step.what], "planned": _planned(m)},
    )
    outcome = app.outbox.send(msg)
    app.ledger.add_date_question(m.id, step.what, now.date())
    return outcome


def alert(app: App, m: Meeting, step: DateStep, now: datetime) -> str:
    """Tell the alert channel (once) that the coordinator has not answered."""
    from kcg_mail.services.alerts import deliver_alert, ui_url

    coord = app.cfg.network.coordinator
    question = {SET_MEETING: "datum, tid och plats", CONFIRM_DATE: "om det preliminära datumet gäller",
                SET_PLACE: "platsen"}[step.what]
    alert_ = {
        "key": f"alert:meeting-date:{m.id}:{step.what}",
        "title": f"{m.kind_label} {m.id}: datumet är inte bestämt",
        "what": (f"{coord.name} har fått frågan om {question} för {m.kind_label.lower()} ({m.theme_label}) "
                 f"{step.n} gånger utan svar. Planerat: {m.date_text()}. Ingen inbjudan går ut förrän det är bestämt."),
        "todo": "Svara på frågan i mejlet (eller i Prefect, formuläret Sätt datum och plats).",
        "url": ui_url(app),
    }
    channels = deliver_alert(app, alert_)  # "webhook: sent, mail: sent", "already", or a channel FAILED (retried)
    app.ledger.mark_date_alerted(m.id, step.what, now.date())
    return "already" if channels == "already" else "failed" if "FAILED" in channels else "sent"


def sync(app: App, now: datetime) -> list[tuple[str, str, str]]:
    """Questions, reminders, alerts and save-the-dates due today: (meeting, what, outcome)."""
    out: list[tuple[str, str, str]] = []
    if not is_working_day(now.date(), app.extra_days):
        return out  # like every step of the cycle: no mail on a weekend or a public holiday
    for m in app.meetings:
        sent = save_the_date(app, m, now)
        if sent is not None:
            out.append((m.id, "save_the_date", sent))
    by_id = {m.id: m for m in app.meetings}
    for step in date_steps(app.meetings, _asked(app), _alerted(app), now.date(), app.cfg.meetings, app.go_live(now),
                           _earlier(app)):
        m = by_id[step.meeting_id]
        if step.action == "ask":
            out.append((m.id, f"date_question {step.what} {step.n}", ask(app, m, step, now)))
        else:
            out.append((m.id, f"date_alert {step.what}", alert(app, m, step, now)))
    return out


# ------------------------------------------------------------------ deciding


@dataclass(frozen=True)
class Decided:
    meeting: Meeting
    done: str  # what was done, in words (the receipt's line)
    place_missing: bool

    def markdown(self) -> str:
        m = self.meeting
        return (f"# {m.kind_label} {m.id}: {m.date_text()}, {m.start:%H:%M}–{m.end:%H:%M}\n\n- {self.done}.\n"
                + ("- Platsen saknas än.\n" if self.place_missing else ""))


def decide(app: App, meeting_id: str, new: DateDecision, now: datetime) -> Decided:
    """Store the coordinator's decision (over any earlier one), resolve the plan with
    it and send the save-the-date if it is due now."""
    before = app.meeting(meeting_id)
    old = decision(app, meeting_id) or DateDecision()
    app.ledger.set_meeting_date(meeting_id, old.merged(new).to_dict())
    app.refresh_meetings()
    m = app.meeting(meeting_id)
    if m is None:  # the caller checked the meeting is in the plan
        raise LookupError(meeting_id)
    sent = save_the_date(app, m, now)
    if m.tentative:  # a place before the date: kept, the date is still his to set
        return Decided(m, f"platsen för {m.kind_label.lower()} blir {m.place}; datumet är inte bestämt än", False)
    when = f"{m.kind_label.lower()} {m.date_text()} kl {m.start:%H:%M}–{m.end:%H:%M}"
    place = m.place if m.awaiting != SET_PLACE else ""
    done = f"{when}" + (f", {place}" if place else "")
    moved = before is not None and (before.start, before.end) != (m.start, m.end) and not before.tentative
    if sent is not None:
        done += "; medlemmarna får " + ("en uppdaterad save-the-date nu" if moved else "en save-the-date nu")
    elif inv_day_ahead(app, m, now) and (app.invitation(m.id) is None or moved):
        done += "; medlemmarna får en save-the-date en av de närmaste dagarna"
    elif moved and app.invitation(m.id) is not None:
        done += "; medlemmarnas kalenderbokning uppdateras"
    inv_day = _invite_day(app, m)
    if inv_day > now.date():
        done += f", inbjudan med plats och program {date_text(inv_day)}"
    elif app.invitation(m.id) is not None and not moved and before is not None and before.place != m.place:
        done += "; inbjudan uppdateras med platsen"
    return Decided(m, done, m.awaiting == SET_PLACE)


def handle_answer(app: App, mail: ParsedMail, q: QuestionRef, key: str, now: datetime) -> tuple[Outcome, str]:
    """His reply to our question about a date (or to our receipt)."""
    m = app.meeting(q.meeting_id or "")
    if m is None:
        out = _receipt(app, mail, q, key, understood=False, done="",
                       question="Mötet finns inte längre i årsplanen, så svaret ändrade inget.")
        return Outcome.COORDINATOR_ANSWER, f"mötet {q.meeting_id} finns inte i planen ({out})"
    asked = q.what if q.what != RECEIPT else (m.awaiting or SET_PLACE)
    times = app.cfg.meetings.times[m.kind]
    reading: Reading = read_reply(mail.text or "", asked=asked, ref=m.date, today=now.date(),
                                  default=(times.start, times.end))
    if not reading.clear:
        out = _receipt(app, mail, q, key, understood=False, done="", question=reading.question)
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"”{reading.text[:80]}”: {reading.question} ({out})"
    if reading.declined:
        done = "inget ändrat; frågan kommer igen tills datumet är bestämt"
        out = _receipt(app, mail, q, key, understood=True, done=done)
        return Outcome.COORDINATOR_ANSWER, f"nej till {m.id}: {done} ({out})"
    d = decide(app, m.id, reading.decision(), now)
    out = _receipt(app, mail, q, key, understood=True, done=d.done, place_missing=d.place_missing)
    return Outcome.COORDINATOR_ANSWER, f"{m.id}: {d.done} ({out})"


def yes_no_answer(app: App, q: QuestionRef, answer: Answer, now: datetime) -> str:
    """A plain yes or no to one of these questions (the registry's handler, e.g. from a form):
    yes confirms the proposed date; anything else changes nothing (a date comes by reply or
    in the form kcg-set-meeting)."""
    m = app.meeting(q.meeting_id or "")
    if m is None or answer.choice != "yes" or m.awaiting != CONFIRM_DATE:
        return "inget ändrat; datum, tid och plats sätts med ett svar på frågan eller i formuläret Sätt datum och plats"
    return decide(app, m.id, DateDecision(confirmed=True), now).done


def _receipt(app: App, mail: ParsedMail, q: QuestionRef, key: str, *, understood: bool, done: str,
             question: str = "", place_missing: bool = False) -> str:
    coord = app.cfg.network.coordinator
    subject = (mail.subject or "").removeprefix("SV: ").removeprefix("Re: ").removeprefix("RE: ")[:150]
    m = app.meeting(q.meeting_id) if q.meeting_id else None
    msg = app.composer.message(
        "date_receipt", f"{q.meeting_id or '-'}:date_receipt:{coord.email}:{key[:16]}", m, [coord],
        {"understood": understood, "done": done, "again": question, "place_missing": place_missing,
         "subject": subject or "Mötets datum"},
        in_reply_to=mail.message_id)
    return app.outbox.send(msg)
