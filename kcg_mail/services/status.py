"""What the coordinator sees: the standing overview (one row per meeting and
what needs a person, ``kcg_mail.core.overview``) fed from the state record,
and the summary of one run. Read-only views, used by the Prefect artifacts,
``kcg status`` and the demo; plus the small health record of connections
and alert channels that failed and have not recovered yet."""

from __future__ import annotations

from datetime import date, datetime, time

from kcg_mail.core import overview
from kcg_mail.core.cycle import is_history
from kcg_mail.core.inbound.outcome import NEEDS_A_LOOK, Outcome, why_of
from kcg_mail.services.app import App, now_local

#: the state value of a meeting held before the go-live date
BEFORE_START = "före start"
#: what (a connection or channel) -> the Swedish name the coordinator reads
HEALTH_NAMES = {"mail": "E-postservern", "archive": "Arkivet", "webhook": "Larm via webhook",
                "alert-mail": "Larm via e-post"}


# ------------------------------------------------------------------ health


def record_problem(app: App, what: str, detail: str, now: datetime | None = None) -> None:
    """Remember that a connection or alert channel failed (kept until it works again)."""
    old = app.ledger.health_problems.get(what)
    since = old["since"] if old else now_local(app.cfg, now).isoformat(timespec="minutes")
    app.ledger.health_problems.put(what, {"what": what, "detail": detail[:300], "since": since})


def clear_problem(app: App, what: str) -> None:
    app.ledger.health_problems.clear(what)


def problems(app: App) -> list[overview.Problem]:
    out = []
    for what, name in HEALTH_NAMES.items():
        d = app.ledger.health_problems.get(what)
        if d:
            out.append(overview.Problem(name, d["detail"], d["since"]))
    return out


# ---------------------------------------------------------------- overview


def meeting_facts(app: App) -> list[overview.MeetingFacts]:
    steps: dict[str, dict[str, str]] = {}
    distributed: set[str] = set()
    for rec in app.state.actions():
        if not rec.meeting_id:
            continue
        if ":step:" in rec.key and rec.status in ("done", "skipped"):
            steps.setdefault(rec.meeting_id, {})[rec.action] = rec.status
        if rec.action == "distribute" and rec.status == "done":
            distributed.add(rec.meeting_id)
    out = []
    go_live = app.go_live()
    for m in app.meetings:
        st = steps.get(m.id, {})
        inv = app.invitation(m.id)
        att = app.state.attendance(m.id)
        filings = app.state.filings(m.id)
        out.append(overview.MeetingFacts(
            id=m.id, date=m.date, kind_label=m.kind_label, theme=m.theme_label, host=m.host.name,
            tentative=m.tentative, proposed=m.proposed,
            host_briefed=st.get("brief_host") == "done",
            invited=inv is not None and not inv.cancelled, cancelled=inv is not None and inv.cancelled,
            template_sent=st.get("send_template") == "done", chased=st.get("chase_host") == "done",
            escalated=st.get("escalate") == "done",
            accepted=sum(v == "ACCEPTED" for v in att.values()), declined=sum(v == "DECLINED" for v in att.values()),
            filed_version=filings[-1].version if filings else None, distributed=m.id in distributed,
            before_start=is_history(m, go_live),
            awaiting=m.awaiting,
            date_asked=sum(q["what"] == m.awaiting for q in app.ledger.date_questions(m.id)) if m.awaiting else 0,
            date_alerted=bool(m.awaiting) and app.ledger.date_alerted(m.id, m.awaiting),
        ))
    return out


def guest_on_hold(app: App, msg_key: str) -> str | None:
    """The guest's name when the held item is a guest's invitation (``services.guests``)."""
    from kcg_mail.services import guests

    note = app.ledger.held_notes.get(msg_key)
    if note is None or note.kind != guests.KIND:
        return None
    g = next((x for x in app.cfg.network.guests if x.email == note.guest), None)
    return g.name if g else str(note.guest)


def overview_inputs(app: App, now: datetime | None = None) -> overview.Inputs:
    held, quarantined = [], []
    for rec in app.state.messages():
        ref = rec.msg_key[:12]
        if rec.outcome == Outcome.HELD:
            note = app.ledger.held_notes.get(rec.msg_key)  # why, in Swedish, one text per cause
            guest = guest_on_hold(app, rec.msg_key)
            held.append(overview.Held(ref, rec.sender, rec.subject, note.why if note else rec.reason, rec.meeting_id,
                                      guest))
        elif rec.outcome in NEEDS_A_LOOK and rec.status == "done":
            quarantined.append(overview.Quarantined(ref, rec.sender, rec.subject, why_of(rec.outcome)))
    return overview.Inputs(
        meetings=tuple(meeting_facts(app)), today=now_local(app.cfg, now).date(),
        held=tuple(held), quarantined=tuple(quarantined), problems=tuple(problems(app)),
        template_problems=tuple(app.template_problems), plan_years=frozenset(p.year for p in app.cfg.plans),
        waited=tuple(waited(app, now_local(app.cfg, now).date())),
    )


def waited(app: App, today: date, lately_days: int = 7) -> list[overview.Waited]:
    """The mails waiting for the member caps, and those sent in the last ``lately_days`` after waiting."""
    from kcg_mail.services.pacing import SENT, WAITING, Waiting

    names = {p.email.lower(): p.name for p in app.cfg.network.members}
    groups: dict[tuple[str, date, str, bool], list[str]] = {}  # one line per mail sent to many
    for rec in app.ledger.waiting_mails():
        w = Waiting.from_record(rec)
        settled = rec.get("settled")
        lately = w.state == SENT and settled and (today - date.fromisoformat(settled)).days <= lately_days
        if w.state != WAITING and not lately:
            continue
        people = groups.setdefault((w.subject, w.until, w.reason, w.state == SENT), [])
        people += [names.get(e.lower(), e) for e in w.to if names.get(e.lower(), e) not in people]
    return [overview.Waited(subject, ", ".join(people) if len(people) <= 3 else f"{len(people)} medlemmar",
                            until, reason, sent=sent)
            for (subject, until, reason, sent), people in groups.items()]


def overview_rows(app: App, now: datetime | None = None) -> list[dict[str, str]]:
    return overview.rows(overview_inputs(app, now))


def overview_needs(app: App, now: datetime | None = None) -> list[overview.Need]:
    return overview.overview_needs(overview_inputs(app, now))


def overview_markdown(app: App, now: datetime | None = None, by: str = "") -> str:
    return overview.markdown(app.cfg.network.short, overview_inputs(app, now), now_local(app.cfg, now), by)


def needs_a_person(app: App, now: datetime | None = None, today: date | None = None) -> list[str]:
    """Open items for the coordinator, each with what to do (one line each)."""
    if today is not None:
        now = datetime.combine(today, time(12, 0))
    return [n.line() for n in overview_needs(app, now)]


def meeting_rows(app: App, now: datetime | None = None) -> list[dict[str, str]]:
    """The overview's rows (möte, datum, värd, läge, …), as ``kcg status`` shows them."""
    return overview_rows(app, now)


def go_live_line(app: App) -> str:
    """Where the cycle started, in one Swedish line."""
    day = app.go_live()
    if day is None:
        return "Start: ingen körning än; den första dagliga körningen blir startdagen (eller sätt go_live: i meetings.yaml)."
    source = "meetings.yaml go_live" if app.cfg.meetings.go_live else "första körningen"
    return f"Start: {day.isoformat()} ({source}); möten före dess visas som \"{BEFORE_START}\" och får inga utskick."


def artifact_slug(app: App) -> str:
    """The network's short name as Prefect artifact keys want it (a-z, 0-9, -)."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", app.cfg.network.short.lower()).strip("-") or "kcg"


def run_summary(title: str, lines: list[str], attention: list[str]) -> str:
    md = [f"# {title}", ""]
    md += [f"- {line}" for line in lines] or ["- Inget att göra i den här körningen."]
    md += ["", "## Behöver en människa", ""]
    md += [f"- {a}" for a in attention] or ["- Inget."]
    return "\n".join(md) + "\n"

