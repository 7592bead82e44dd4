"""``kcg demo``: the whole 2023 meeting cycle on the embedded defaults.

Runs the real Prefect flows in simulated time, day by day where something is
due, and plays each host: after the meeting the host answers the template
mail with a real MIME reply from their own address, the template filled in
(decisions table) and attached. It plays the coordinator too: asked by mail for
the date of a meeting he decides (the physical meetings, the open meeting, the
study trip's tentative date), he answers by reply from his phone (``DEMO_DATES``);
the members get a save-the-date, then the invitation as an update of the same
calendar event. Every meeting whose date is set ends with its minutes filed and
distributed. The coordinator answers every other question he is asked by reply
(guests, held minutes); after the planning round he adds a member by mail
(``add_demo_member``). Run twice on the same work directory, the second run
resumes on the last day the first ran and sends nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from kcg_mail.core.config_model import Person
from kcg_mail.core.plan import Meeting
from kcg_mail.entrypoints.demo_hosts import Marks, host_reply, maildir, reply_to_sent
from kcg_mail.ports import ActionRecord
from kcg_mail.services.app import App

# Between meetings: February gets a decision due before March's meeting
# (its owner is reminded), April starts a project group (approved by the
# coordinator), and the group's lead reports back before September's meeting.
DEMO_EXTRA = {
    "2023-02": [("Sammanställ medlemsenkäten om trygghet och skicka ut den", "Lisa Thörn", "2023-02-27")],
    "2023-04": [("Projektgrupp: Trygghet i stadskärnan – gemensam kartläggning av trygghetsarbetet",
                 "Lisa Thörn, Pia Sandin, Hanna Candell", "löpande")],
}
#: the coordinator's answers, by reply from his phone, to the questions about the dates he
#: decides (a list: one answer per question, in turn): January's physical meeting in
#: Västerås, the open meeting in August, the study trip moved a day (its tentative date was
#: "Förslag v 39"), and January 2024's date first, its place a week later
DEMO_DATES = {
    "2023-01": ["måndag 16 januari kl 10–16, Stadshuset, Västerås"],
    "2023-08": ["21/8 10-15 Kulturhuset, Stockholm"],
    "2023-10": ["Flytta till tisdag 26 september kl 9–17, Innerstaden Göteborg, samling Centralstationen"],
    "2024-01": ["2024-01-15 10.00–16.00", "Plats: Scandic Täljehus, Södertälje"],
}
DEMO_STATUS_MEETING = "2023-09"
DEMO_STATUS = ("Hej!\n\nKartläggningen är klar i tio av tretton städer; vi visar en första sammanställning "
               "på mötet i oktober.\n\nHälsningar\nLisa\n")


@dataclass
class DemoResult:
    flow_runs: int
    sent_before: int
    sent_after: int
    seconds: float


def demo_marks(meetings: list[Meeting], m: Meeting) -> Marks:
    """The host's judgement in the demo: an "Alla" decision of the previous meeting
    carries on, an older one is struck; everything else is done."""
    earlier = [x.id for x in meetings if x.date < m.date]
    previous = earlier[-1] if earlier else None

    def mark(ref: str, owner: str) -> str:
        if owner.strip().lower() == "alla":
            return "fortsätter" if ref.rpartition("/")[0] == previous else "struken"
        return "klar"

    return mark


def _sent_count(app: App) -> int:
    return len(list((maildir(app).root / "sent" / "cur").iterdir()))


def _status_request(app: App) -> tuple[str, Person, ActionRecord] | None:
    """(key, lead) of the status request before DEMO_STATUS_MEETING, once it is sent."""
    from kcg_mail.services.followup import groups

    for g in groups(app):
        lead = next((p for p in app.cfg.network.members if p.id == g.lead), None)
        if lead is None:
            continue
        key = f"{DEMO_STATUS_MEETING}:project_status_request:{g.slug}:{lead.email}"
        rec = app.state.action(key)
        if rec is not None and rec.status == "done":
            return key, lead, rec
    return None


def _status_reply_day(app: App) -> date | None:
    req = _status_request(app)
    m = app.meeting(DEMO_STATUS_MEETING)
    if req is None or m is None:
        return None
    # the working day before the template goes out (the reply goes into the template)
    from kcg_mail.core.cycle import due_dates
    from kcg_mail.core.plan import add_working_days

    return add_working_days(due_dates(m, app.cfg.meetings.lead_for(m.kind), app.extra_days)["send_template"], -1, app.extra_days)


def _lead_reports_back(app: App, day: date) -> bool:
    """The group's lead answers September's status request a few days before the meeting."""
    req = _status_request(app)
    if req is None or _status_reply_day(app) != day:
        return False
    from kcg_mail.services.followup import groups, statuses

    key, lead, _ = req
    if any(s["meeting_id"] == DEMO_STATUS_MEETING for g in groups(app) for s in statuses(app, g)):
        return False  # already reported (a second run of the demo)
    m = app.meeting(DEMO_STATUS_MEETING)
    if m is None:
        return False
    raw = reply_to_sent(app, key, lead, datetime.combine(day, datetime.min.time(), m.start.tzinfo).replace(hour=9),
                        DEMO_STATUS)
    if raw is None:
        return False
    maildir(app).deliver(raw, "project-status-reply.eml")
    return True


#: the member the coordinator adds in the demo, by a mail to the network and a "ja"
DEMO_NEW_MEMBER = ("Maria Lund", "maria.lund@kalmar.example.se", "Kalmar City")
DEMO_NEW_MEMBER_DAY = date(2024, 1, 19)  # after the year, the planning round and the plan's adoption


def _open_questions(app: App) -> list[str]:
    """The Outbox keys of our questions to the coordinator that still wait for his answer."""
    from kcg_mail.services import answers, members, project_start
    from kcg_mail.services.approval import pending

    waiting = {p.msg_key for p in pending(app)}
    actions = app.state.actions()
    asked = answers.question_ids(app, actions)
    out = []
    for r in actions:
        q = asked.get(str(r.detail.get("message_id", ""))) if r.status == "done" else None
        if q is None:
            continue
        if q.what in (members.KIND_ADD, members.KIND_REMOVE):
            open_ = (app.ledger.member_requests.get(q.ref) or {}).get("state") == "asked"
        elif q.what == project_start.WHAT:
            open_ = project_start.waiting(app, q)
        else:
            open_ = q.ref in waiting
        if open_:
            out.append(r.key)
    return out


def _coordinator_answers_by_mail(app: App, day: date) -> bool:
    """The coordinator answers "Ja" to each question he was asked (a guest's invitation,
    held minutes, a project group proposed in minutes, a member to add), by replying from his phone (the intake reads it:
    services/answers.py)."""
    coord = app.cfg.network.coordinator
    when = datetime.combine(day, datetime.min.time(), ZoneInfo(app.cfg.meetings.timezone)).replace(hour=10)
    answered = False
    for key in _open_questions(app):
        raw = reply_to_sent(app, key, coord, when, "Ja, gärna.\n\nBjörn")
        if raw is not None:
            maildir(app).deliver(raw, f"answer-{abs(hash(key))}.eml")
            answered = True
    return answered


def _coordinator_sets_dates(app: App, day: date) -> bool:
    """The coordinator answers each question about a date the day it comes, by replying
    from his phone (``DEMO_DATES``; the intake reads it: services/meeting_dates.py)."""
    coord = app.cfg.network.coordinator
    answered = False
    for m in app.meetings:
        asked = [q for q in app.ledger.date_questions(m.id) if q["what"] == m.awaiting]
        if not m.awaiting or not asked or asked[-1]["on"] != day.isoformat():
            continue
        place_only = m.awaiting == "set_place"
        text = next((a for a in DEMO_DATES.get(m.id, []) if a.lower().startswith("plats") == place_only), None)
        if text is None:
            continue
        when = datetime.combine(day, datetime.min.time(), ZoneInfo(app.cfg.meetings.timezone)).replace(hour=10)
        key = f"{m.id}:date_question:{coord.email}:{m.awaiting}:n{len(asked) - 1}"
        raw = reply_to_sent(app, key, coord, when, f"{text}\n\nSkickat från min iPhone")
        if raw is not None:
            maildir(app).deliver(raw, f"{m.id}-{m.awaiting}-{len(asked)}-date.eml")
            answered = True
    return answered


def add_demo_member(workdir: Path, config_dir: Path | None = None) -> int:
    """After the year and the planning round: the coordinator mails the network "Ny medlem: …",
    the product answers with what it understood and asks for his "ja", he answers by reply,
    and the new member is welcomed (through the real intake flow, twice: the request, the
    answer). Returns the flow runs; a second call finds it done and runs nothing."""
    from flows.intake import intake_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.config_loader import read_members_overlay
    from kcg_mail.entrypoints.demo_hosts import coordinator_mail

    name, email, org = DEMO_NEW_MEMBER
    if any(x.get("email") == email for x in read_members_overlay(workdir)["added"]):
        return 0
    day = DEMO_NEW_MEMBER_DAY
    cfg_dir = str(config_dir) if config_dir else None
    with bootstrap(workdir, config_dir) as app:
        when = datetime.combine(day, datetime.min.time(), ZoneInfo(app.cfg.meetings.timezone)).replace(hour=9)
        raw = coordinator_mail(app, app.cfg.network.coordinator, when, "Ny medlem",
                               f"Hej!\n\nNy medlem: {name}, {email}, {org}\n\nBjörn")
        maildir(app).deliver(raw, "new-member.eml")
    from flows.daily import daily_flow

    runs = 0
    for hour in (10, 11):  # the request is answered with a question; his "Ja" to it is read
        intake_flow(now=f"{day.isoformat()}T{hour}:00", workdir=str(workdir), config_dir=cfg_dir)
        runs += 1
        with bootstrap(workdir, config_dir) as app:
            if not _coordinator_answers_by_mail(app, day):
                break
    with bootstrap(workdir, config_dir) as app:
        app.ledger.demo_day.put(day)  # a rerun of the year resumes here, with her a member
    daily_flow(date=day.isoformat(), workdir=str(workdir), config_dir=cfg_dir)  # the day's scheduled run
    return runs + 1


def run_demo(workdir: Path, config_dir: Path | None = None, *, until: date | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir, quiet=True)
    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.cycle import due_dates, next_due_date
    from kcg_mail.services import meeting_dates
    from kcg_mail.services.followup import next_followup_day
    from kcg_mail.services.pacing import next_release_day

    t0 = time.monotonic()
    app = bootstrap(workdir, config_dir)
    if app.cfg.transport.mail.kind != "maildir":
        raise SystemExit("kcg demo plays the hosts through the Maildir inbox: use the embedded defaults")
    rules = app.cfg.meetings
    lead, extra = rules.lead_days, app.extra_days
    kind_lead = {k: rules.lead_for(k) for k in ("digital", "physical", "all_members", "study_trip")}
    # the year of config/plan-*.yaml (a plan the demo's workshop adopted, plans/plan-2024.yaml, is not replayed)
    in_config = [p for p in app.cfg.plans if (Path(app.cfg.directory) / f"plan-{p.year}.yaml").exists()]
    year_ids = {pm.meeting_id for p in in_config for pm in p.meetings}

    def year() -> list[Meeting]:
        """The year's meetings with the dates the coordinator set so far."""
        app.refresh_meetings()
        return [m for m in app.meetings if m.id in year_ids]

    def steps(m: Meeting) -> dict[str, date]:
        return due_dates(m, kind_lead.get(m.kind, lead), extra)

    def last_day() -> date:
        return until or max(steps(m)["escalate"] for m in year()) + timedelta(days=1 + 2 * lead.spacing)

    # go-live: the day before the first step of the year (a fresh work
    # directory records it on the first run; a second run keeps it)
    first = app.go_live() or min(steps(m)["brief_host"] for m in year()) - timedelta(days=1)
    sent_before = _sent_count(app)
    runs = 0
    with prefect_env.without_heartbeats():
        # a rerun resumes on the last day the demo ran: replaying the year with today's members
        # (the coordinator added one in November) would update every past invitation
        day: date | None = app.ledger.demo_day.get() or first
        while day is not None and day <= last_day():
            app.ledger.demo_day.put(day)
            daily_flow(date=day.isoformat(), workdir=str(workdir), config_dir=str(config_dir) if config_dir else None)
            runs += 1
            if _coordinator_sets_dates(app, day):  # his answer first: a date set today is acted on today
                intake_flow(now=f"{day.isoformat()}T10:30", workdir=str(workdir),
                            config_dir=str(config_dir) if config_dir else None)
                runs += 1
            replied = False
            confirmed = [m for m in year() if not m.tentative]
            reply_day = {m.id: m.date + timedelta(days=1) for m in confirmed}
            filed = {f.meeting_id for f in app.state.filings()}
            for m in confirmed:
                if reply_day[m.id] == day and m.id not in filed:
                    raw = host_reply(app, m, datetime.combine(day, datetime.min.time(), m.start.tzinfo).replace(hour=11),
                                     DEMO_EXTRA.get(m.id, ()), demo_marks(app.meetings, m))
                    if raw is not None:
                        maildir(app).deliver(raw, f"{m.id}-reply.eml")
                        replied = True
            replied |= _lead_reports_back(app, day)
            replied |= _coordinator_answers_by_mail(app, day)
            for hour in (12, 13, 14):  # the coordinator answers the questions this intake asks, the same day
                if not replied:
                    break
                intake_flow(now=f"{day.isoformat()}T{hour}:00", workdir=str(workdir),
                            config_dir=str(config_dir) if config_dir else None)
                runs += 1
                replied = _coordinator_answers_by_mail(app, day)
            app.refresh_meetings()
            states = app.meeting_states()
            filed = {f.meeting_id for f in app.state.filings()}
            candidates = [d for d in (next_due_date(app.meetings, states, day, lead, go_live=app.go_live(), extra=extra,
                                                    kind_lead=kind_lead),
                                      next_followup_day(app, day), meeting_dates.next_day(app, day)) if d]
            candidates += [d for mid, d in reply_day.items() if d > day and mid not in filed]
            candidates += [m.date + timedelta(days=1) for m in year()
                           if not m.tentative and m.date + timedelta(days=1) > day and m.id not in filed]
            candidates += [d for d in (_status_reply_day(app), next_release_day(app.state, day)) if d and d > day]
            day = min(candidates) if candidates else None
        last = last_day()
        if runs == 0:  # nothing left to do: one daily run shows that nothing is sent again
            again = max(last, app.ledger.demo_day.get() or last)
            daily_flow(date=again.isoformat(), workdir=str(workdir), config_dir=str(config_dir) if config_dir else None)
            runs += 1
    return DemoResult(runs, sent_before, _sent_count(app), time.monotonic() - t0)
