"""A project group proposed in minutes: the coordinator starts it by replying "ja".

When filed minutes carry a "Projektgrupp: …" decision (``followup.proposals``),
the coordinator gets one short question (kind ``start_project``, asked with
``questions.ask``, ref = the decision's ref, e.g. ``2023-04/3``): what the group
is, who proposed it, what a yes does. "ja" starts the group as the Prefect form
``kcg-start-project`` does (``followup.start_group``), "nej" declines the proposal
(``followup.decline_group``); both are idempotent, so a second answer finds
nothing to do. The form stays the other path to the same decision.
"""

from __future__ import annotations

from datetime import datetime

from kcg_mail.core.inbound.verdict import QuestionRef
from kcg_mail.services import followup, questions
from kcg_mail.services.app import App
from kcg_mail.services.manual import ManualProblem

WHAT = "start_project"


def _names(app: App, ids: tuple[str, ...] | list[str]) -> str:
    people = {p.id: p.name for p in app.cfg.network.members}
    names = [people.get(i, i) for i in ids]
    if len(names) < 2:
        return "".join(names)
    return ", ".join(names[:-1]) + " och " + names[-1]


def ask_proposals(app: App, now: datetime) -> list[str]:
    """Ask about every proposed group that waits (once each: the Outbox key)."""
    out = []
    for d, p in followup.proposals(app):
        m = app.meeting(d.meeting_id)
        if m is None:
            continue
        members = _names(app, [x for x in p.members if x != p.lead])
        details = [f"Grupp: {p.name}", f"Syfte: {p.purpose or '(inget angivet i protokollet)'}",
                   f"Föreslagen ledare: {_names(app, [p.lead]) if p.lead else '(ingen känd medlem)'}"]
        if members:
            details.append(f"Övriga i gruppen: {members}")
        if p.unknown:
            details.append(f"Namn som inte är medlemmar: {', '.join(p.unknown)}")
        q = questions.Question(
            subject=f"Starta projektgruppen {p.name}?",
            lead=(f"Protokollet från mötet {m.date_text()} (värd {m.host.name}) föreslår en projektgrupp, ansvarig {d.owner or 'inte angiven'}:"),
            details=tuple(details),
            yes=("starta gruppen (ledaren får en förfrågan om status inför varje möte, och gruppen "
                 "redovisas i dagordningen)"),
            no="låta bli (förslaget läggs åt sidan)")
        out.append(questions.ask(app, WHAT, d.ref, m, q))
    return out


def waiting(app: App, q: QuestionRef) -> bool:
    """The question still waits for an answer (the proposal is neither started nor declined)."""
    return any(d.ref == q.ref for d, _ in followup.proposals(app))


def on_yes(app: App, q: QuestionRef, now: datetime) -> str:
    try:
        started = followup.start_group(app, q.ref)
    except followup.ProjectProblem as exc:
        raise ManualProblem(str(exc)) from None
    g = started.group
    return f"projektgruppen {g.name} är startad" if started.created else f"projektgruppen {g.name} var redan startad"


def on_no(app: App, q: QuestionRef, now: datetime) -> str:
    try:
        followup.decline_group(app, q.ref)
    except followup.ProjectProblem as exc:
        raise ManualProblem(str(exc)) from None
    return "projektgruppen startas inte"
