"""Between meetings: open decisions and project groups (the run logic).

The rules are pure in ``kcg_mail.core.decisions`` and ``kcg_mail.core.projects``;
this module keeps their state in the state record and sends their mails
through the outbox:

- ``decision:<ref>``          the follow-up state of one decision (JSON);
- ``projects:approved``       groups started from a "Projektgrupp:" decision
                              with the coordinator's approval (JSON list);
- ``project_status:<slug>``   the status lines a group sent (JSON list).

Mail keys: ``<meeting>:decision_reminder:<ref>:<email>`` (one reminder per decision and
owner), ``<meeting>:project_status_request:<slug>:<lead email>`` (one request per
group and meeting). Both are sent by :func:`run_followups`, called from the
daily run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from kcg_mail.core import decisions as rules
from kcg_mail.core.decisions import Decision, Mark
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.inbound.verdict import StatusRequestRef
from kcg_mail.core.plan import Meeting, date_text
from kcg_mail.core.projects import stale_meeting_note, status_requests_due, status_text
from kcg_mail.core.projects_model import ProjectGroup, slug
from kcg_mail.ports import ActionRecord
from kcg_mail.services.app import App
from kcg_mail.services.compose import person_ctx

REPORT_BACK_WORDS = ("återrapport", "projekt")


# ------------------------------------------------------------------ decisions


def _meeting_dates(app: App) -> dict[str, date]:
    return {m.id: m.date for m in app.meetings}


def all_decisions(app: App) -> list[Decision]:
    """Every filed decision with its follow-up state, in meeting and row order."""
    dates = _meeting_dates(app)
    rows: dict[str, list[dict[str, str]]] = {}
    for d in app.state.decisions():
        rows.setdefault(d["meeting_id"], []).append(d)
    out: list[Decision] = []
    for mid, rs in rows.items():
        if mid not in dates:
            continue
        states: dict[str, tuple[Any, str]] = {}
        for i, r in enumerate(rs, start=1):
            st = app.ledger.decision_states.get(f"{mid}/{i}")
            if st:
                if st.get("text") == r.get("decision", "").strip():  # a changed row is a new decision
                    states[f"{mid}/{i}"] = (st["state"], st.get("settled_in", ""))
        out += rules.decisions_of(mid, dates[mid], rs, states)
    return out


def set_state(app: App, d: Decision) -> None:
    app.ledger.decision_states.put(d.ref, {"state": d.state, "settled_in": d.settled_in, "text": d.decision})


def open_for(app: App, m: Meeting) -> list[Decision]:
    return rules.open_before(all_decisions(app), _meeting_dates(app), m.date)


def report_back_point(agenda: list[str]) -> int:
    """1-based index of the standing agenda's report-back point (0: none)."""
    for i, point in enumerate(agenda, start=1):
        if all(w in point.lower() for w in REPORT_BACK_WORDS):
            return i
    for i, point in enumerate(agenda, start=1):
        if "återrapport" in point.lower() or "projekt" in point.lower():
            return i
    return 0


def followup_context(app: App, m: Meeting) -> dict[str, Any]:
    """The template's ``followup`` key for meeting ``m``."""
    decisions = [{"ref": d.ref, "decision": d.decision, "owner": d.owner, "due": d.due, "meeting": d.meeting_id}
                 for d in open_for(app, m)]
    people = {p.id: p for p in app.cfg.network.members}
    projects = []
    for g in groups(app):
        if not (g.start < m.date and (g.end is None or g.end >= m.date)):
            continue
        last = latest_status(app, g, before=m.date)
        lead = people.get(g.lead)
        status = last["text"] if last else ""
        if last:  # a line that promises a report "på mötet i oktober" must not outlive October
            note = stale_meeting_note(status, date.fromisoformat(last["at"][:10]), app.meetings, m.date)
            status = f"{status} (Obs: {note}.)" if note else status
        projects.append({"name": g.name, "lead": lead.name if lead else g.lead,
                         "status": status, "when": last["at"][:10] if last else ""})
    return {"point": report_back_point(list(app.cfg.meetings.agenda)), "decisions": decisions, "projects": projects}


def minutes_filed(app: App, m: Meeting, followups: list[tuple[str, str]]) -> list[Decision]:
    """The returned minutes of ``m`` close or carry the open decisions they list.
    Idempotent (a rerun sets the same states)."""
    marks = [Mark(ref, rules.parse_mark(text)) for ref, text in followups]
    changed = rules.apply_marks(open_for(app, m) + _settled_in(app, m), marks, m.id)
    for d in changed:
        set_state(app, d)
    return changed


def _settled_in(app: App, m: Meeting) -> list[Decision]:
    # a new version of the same minutes may correct a mark it set before
    return [d for d in all_decisions(app) if d.settled_in == m.id]


def send_reminders(app: App, now: datetime) -> list[tuple[str, str]]:
    net = app.cfg.network
    due = rules.reminders_due(
        [d for d in all_decisions(app) if d.state == rules.OPEN], [m.date for m in app.meetings if not m.tentative],
        net.active_members, now.date(), extra=frozenset(app.cfg.meetings.extra_non_working_days))
    out = []
    for r in due:
        m = app.meeting(r.decision.meeting_id)
        if m is None:  # minutes of a meeting no longer in the plan: nothing to remind of
            continue
        due_text = date_text(r.decision.due_date) if r.decision.due_date else r.decision.due
        msg = app.composer.message(
            "decision_reminder", f"{r.decision.meeting_id}:decision_reminder:{r.key_part}", m, [r.person],
            {"person": person_ctx(r.person), "decision": {"ref": r.decision.ref, "decision": r.decision.decision,
                                                           "owner": r.decision.owner, "due": due_text},
             "meeting": app.composer.meeting_ctx(m, app.meetings)},
        )
        out.append((f"decision_reminder {r.decision.ref} {r.person.email}", app.outbox.send(msg)))
    return out


# ------------------------------------------------------------------ projects


def approved_groups(app: App) -> list[ProjectGroup]:
    return [ProjectGroup.model_validate(g) for g in app.ledger.approved_groups.get()]


def groups(app: App) -> list[ProjectGroup]:
    """The groups of config/projects.yaml plus the ones approved from minutes
    (the file wins when both have the same name)."""
    cfg = list(app.cfg.projects.groups)
    names = {g.slug for g in cfg}
    return cfg + [g for g in approved_groups(app) if g.slug not in names]


def proposals(app: App) -> list[tuple[Decision, rules.ProjectProposal]]:
    """"Projektgrupp: …" decisions in filed minutes not yet started as groups."""
    started = {g.slug for g in groups(app)}
    declined = app.ledger.declined_proposals.get()
    out = []
    for d in all_decisions(app):
        p = rules.project_proposal(d, app.cfg.network.members)
        if p is not None and slug(p.name) not in started and d.ref not in declined:
            out.append((d, p))
    return out


class ProjectProblem(ValueError):
    pass


@dataclass
class Started:
    group: ProjectGroup
    created: bool
    yaml: str

    def markdown(self) -> str:
        g = self.group
        return "\n".join([
            f"# Projektgrupp {g.name}: {'startad' if self.created else 'var redan startad'}", "",
            f"- Ledare: {g.lead}; medlemmar: {', '.join(g.members)}; start {g.start.isoformat()}.",
            f"- Syfte: {g.purpose or '–'}",
            "- Ledaren får en förfrågan om status inför varje möte.", "",
            "För att ha gruppen i konfigurationen, lägg till under `groups:` i `config/projects.yaml`:", "",
            "```yaml", self.yaml, "```", ""])


def start_group(app: App, ref: str, *, lead: str | None = None) -> Started:
    """The coordinator approves the "Projektgrupp: …" decision ``ref`` (e.g. ``2023-04/3``):
    the group is started from the meeting's date. Idempotent."""
    d = next((x for x in all_decisions(app) if x.ref == ref), None)
    if d is None:
        raise ProjectProblem(f"inget beslut {ref} i de arkiverade protokollen (se översikten)")
    p = rules.project_proposal(d, app.cfg.network.members)
    if p is None:
        raise ProjectProblem(f"beslut {ref} börjar inte med 'Projektgrupp:' ({d.decision!r})")
    lead_id = lead or p.lead
    ids = {x.id for x in app.cfg.network.members}
    if lead_id not in ids:
        raise ProjectProblem(f"ingen ledare för {p.name}: ange --lead med ett medlems-id ({', '.join(sorted(ids))})"
                             + (f"; okända namn i Ansvarig: {', '.join(p.unknown)}" if p.unknown else ""))
    existing = next((g for g in groups(app) if g.slug == slug(p.name)), None)
    meeting = app.meeting(d.meeting_id)
    group = existing or ProjectGroup(name=p.name, lead=lead_id, members=list(dict.fromkeys([lead_id, *p.members])),
                                     purpose=p.purpose, start=meeting.date if meeting else date.today())
    if existing is None:
        approved = [g.model_dump(mode="json") for g in approved_groups(app)] + [group.model_dump(mode="json")]
        app.ledger.approved_groups.put(approved)
        app.state.record_action(f"project_start:{group.slug}", d.meeting_id, "project_start", "done",
                                {"ref": ref, "name": group.name, "lead": group.lead})
        set_state(app, rules.replace_state(d, rules.DONE, d.meeting_id))
    line = "  - " + json.dumps({k: v for k, v in group.model_dump(mode="json").items() if v is not None},
                               ensure_ascii=False)
    return Started(group, existing is None, line)


def decline_group(app: App, ref: str) -> str:
    """The coordinator says no to a proposed group: it is no longer listed for approval."""
    if not any(d.ref == ref for d, _ in proposals(app)):
        raise ProjectProblem(f"{ref} är inget förslag om projektgrupp som väntar på godkännande (se översikten)")
    app.ledger.declined_proposals.put(app.ledger.declined_proposals.get() | {ref})
    return f"Förslaget {ref} är avslaget och visas inte längre."


def statuses(app: App, g: ProjectGroup) -> list[dict[str, str]]:
    return app.ledger.project_statuses.get(g.slug)


def latest_status(app: App, g: ProjectGroup, before: date | None = None) -> dict[str, str] | None:
    found = [s for s in statuses(app, g) if before is None or s["at"][:10] < before.isoformat()]
    return found[-1] if found else None


def send_status_requests(app: App, now: datetime) -> list[tuple[str, str]]:
    people = {p.id: p for p in app.cfg.network.active_members}
    out = []
    for group, m in status_requests_due(groups(app), app.meetings, now.date(), app.cfg.projects.request_days):
        lead = people.get(group.lead)
        if lead is None:
            continue
        msg = app.composer.message(
            "project_status_request", f"{m.id}:project_status_request:{group.slug}:{lead.email}", m, [lead],
            {"person": person_ctx(lead), "meeting": app.composer.meeting_ctx(m, app.meetings),
             "project": {"name": group.name, "purpose": group.purpose}},
        )
        out.append((f"project_status_request {group.slug} {m.id}", app.outbox.send(msg)))
    return out


def request_ids(actions: Iterable[ActionRecord]) -> dict[str, StatusRequestRef]:
    """Our project groups' status requests by Message-ID, for the intake's classifier."""
    return {str(r.detail["message_id"]): StatusRequestRef(r.key, r.meeting_id) for r in actions
            if r.action == "project_status_request" and r.status == "done" and r.detail.get("message_id")}


def status_reply(app: App, mail: Any, rec: StatusRequestRef, now: datetime) -> tuple[Outcome, str]:
    """A reply to a status request (``rec``): stored as the group's status when it comes
    from the group's lead or a member; quarantined otherwise.

    The intake routes it here only after the trust rules passed (one From mailbox,
    authenticated by our receiving server, a member of the network)."""
    slug = rec.key.split(":project_status_request:")[1].split(":")[0]
    g = next((x for x in groups(app) if x.slug == slug), None)
    if g is None:
        return Outcome.UNMATCHED, f"svar om projektgruppen {slug}, som inte längre finns"
    emails = {p.email for p in app.cfg.network.members if p.id in g.everyone}
    if mail.sender not in emails:
        return Outcome.NOT_ALLOWED, f"status för {g.name} från {mail.sender}, som inte är med i gruppen"
    text = status_text(mail.text)
    if not text:
        return Outcome.UNMATCHED, f"svar om {g.name} utan någon statustext"
    entries = statuses(app, g)
    entry = {"meeting_id": rec.meeting_id or "", "text": text, "sender": mail.sender,
             "at": (mail.date or now).date().isoformat() if (mail.date or now) else ""}
    if entry not in entries:
        entries.append(entry)
        app.ledger.project_statuses.put(g.slug, entries)
    return Outcome.PROJECT_STATUS, f"status för projektgruppen {g.name}: {text[:80]}"


# ------------------------------------------------------------------ daily


def run_followups(app: App, now: datetime) -> list[tuple[str, str]]:
    """What the daily run does between meetings: decision reminders, status
    requests to project leads, and the year's calendar feed kept current."""
    from kcg_mail.services.calendar_feed import publish

    out = send_reminders(app, now) + send_status_requests(app, now)
    feed = publish(app, now)
    if feed.changed:
        out.append(("calendar_feed", f"uppdaterad ({', '.join(feed.changed)})"))
    return out


def next_followup_day(app: App, after: date) -> date | None:
    """The first day after ``after`` on which a reminder or a status request not yet
    sent may become due (for simulations such as the demo, which only runs on such days)."""
    from datetime import timedelta

    extra = frozenset(app.cfg.meetings.extra_non_working_days)
    done = {r.key for r in app.state.actions() if r.status == "done"
            and r.action in ("decision_reminder", "project_status_request")}
    mdates = [m.date for m in app.meetings if not m.tentative]
    days = []
    for d in all_decisions(app):
        if d.state != rules.OPEN or not d.due_date or d.for_everyone \
                or any(k.startswith(f"{d.meeting_id}:decision_reminder:{d.ref}:") for k in done):
            continue
        send_on = rules.working_days_before(d.due_date, rules.REMIND_WORKING_DAYS, extra)
        if not any(send_on <= x <= d.due_date for x in mdates):  # else a meeting follows it up first
            days.append(send_on)
    for g in groups(app):
        days += [m.date - timedelta(days=app.cfg.projects.request_days) for m in app.meetings
                 if not m.tentative and not any(k.startswith(f"{m.id}:project_status_request:{g.slug}:") for k in done)]
    later = [d for d in days if d > after]
    return min(later) if later else None
