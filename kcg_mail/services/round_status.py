"""What the coordinator sees of the planning round: status lines, answers
per member, the tally table, what needs a person (``kcg status``, the Prefect
artifacts), and the trial render of the planning mails for ``kcg check``.
Read-only views of the state record kept by ``kcg_mail.services.round``."""

from __future__ import annotations

from typing import Any

from kcg_mail.services.app import App
from kcg_mail.services.round import PlanningProblem, current_tally, get_round, round_members, round_value, settings


def years(app: App) -> list[int]:
    try:
        s = settings(app)
    except PlanningProblem:
        return []
    return sorted(y for y in s.rounds if round_value(app, y, "started", None) is not None)


def status_lines(app: App, year: int) -> list[str]:
    s, r = get_round(app, year)
    needs = round_value(app, year, "needs", {})
    ballots = round_value(app, year, "ballots", {})
    members = round_members(app)
    result = round_value(app, year, "result", None)
    lines = [f"Planeringsrunda {year}: startad {str(round_value(app, year, 'started', ''))[:10]}",
             f"Förslag: {len(needs)} av {len(members)} medlemmar (sista dag {r.needs_deadline})"]
    cand = round_value(app, year, "candidates", None)
    if cand:
        lines.append(f"Röstlista: {cand['path']} ({cand['count']} förslag)")
    if round_value(app, year, "topics", []):
        lines.append(f"Röster: {len(ballots)} av {len(members)} medlemmar (sista dag {r.votes_deadline}), "
                     f"{len(round_value(app, year, 'rejected', {}))} ogiltiga svar besvarade, "
                     f"{len(round_value(app, year, 'late', {}))} sena")
    if result:
        lines.append(f"Handlingsplan {year}: {result['path']}; utkast till årsplan: {result['draft']}")
    return lines


def member_rows(app: App, year: int) -> list[dict[str, str]]:
    needs = round_value(app, year, "needs", {})
    ballots = round_value(app, year, "ballots", {})
    late = round_value(app, year, "late", {})
    rejected = round_value(app, year, "rejected", {})
    rows = []
    for p in round_members(app):
        n = sum(len(ts) for e in needs.get(p.id, {}).values() for ts in e["topics"].values())
        bad = sum(1 for x in rejected.values() if x["person"] == p.id and x["what"] == "ballot")
        b = ballots.get(p.id)
        rows.append({"medlem": p.name, "förslag": str(n) if n else "–",
                     "röst": (f"{sum(b['votes'].values())} röster" if b else ("sen" if p.id in late else "–")),
                     "ogiltiga svar": str(bad) if bad else ""})
    return rows


def tally_rows(app: App, year: int) -> list[dict[str, Any]]:
    if not round_value(app, year, "topics", []):
        return []
    t = current_tally(app, year)
    return [{"område": r.area, "nr": r.number, "samverkansområde": r.text, "röster": r.votes,
             "röstande": r.voters, "fokus": "ja" if r.focus else ""} for r in t.rows]


def needs_a_person(app: App) -> list[str]:
    items = []
    for y in years(app):
        if round_value(app, y, "candidates", None) and not round_value(app, y, "topics", []):
            items.append(f"Röstlistan för handlingsplan {y} väntar på samordnaren: svara ja på mejlet om "
                         f"röstlistan (eller formuläret ”Publicera röstlistan”), så går röstsedlarna ut.")
        names = {p.id: p.name for p in app.cfg.network.members}
        if not round_value(app, y, "topics", []):
            for entry in round_value(app, y, "late_needs", {}).values():
                items.append(f"Sena förslag från {names.get(entry['person'], entry['person'])} till röstlistan {y}: "
                             f"{'; '.join(entry['topics'])}. Gör: lägg till dem i röstlistan före publiceringen.")
        result = round_value(app, y, "result", None)
        if result and (result["ties"] or result["late"]):
            items.append(f"Handlingsplan {y}: " + " ".join(result["ties"] + result["late"]) +
                         " Gör: avgör i utkastet till årsplanen.")
    return items


PLANNING_KINDS = ("planning_needs", "planning_ballot", "planning_receipt", "planning_problem",
                  "planning_candidates", "planning_result", "planning_question", "planning_answer")


def template_problems(composer: Any) -> list[str]:
    """Trial-render the planning mails (for ``kcg check``) with a sample context."""
    topic = {"number": 1, "text": "Studieresa", "votes": 11, "focus": True}
    sample = {"year": 2024, "token": "[KCG-PLAN-2024]", "votes": 10, "reminder": True,
              "person": {"name": "Pia Sandin", "first_name": "Pia", "organisation": "", "city": "", "email": "x@y.se"},
              "areas": [{"name": "Omvärldsbevakning", "questions": ["Vad?"], "carry_over": ["Finansiering"],
                         "topics": [topic], "rows": [topic]}],
              "deadline_text": "fredag 17 november 2023", "what": "ballot", "lines": ["1. Studieresa: 4"],
              "subject": "Ämne", "total": 4, "ignored": ["x"], "problems": ["Fel."], "answered": 13,
              "members": 14, "missing": ["Lena"], "count": 20, "path": "/KCG/x.yaml", "ballots": 13,
              "notes": ["Lika röster."], "groups": [["Pia", "Lisa"]], "meeting_text": "måndag 8 januari 2024",
              "votes_text": "tio", "example": "3: 4, 12: 3", "example_one": "3 fyra röster", "understood": ["1. Studieresa – fyra röster"], "done": True, "problem": "Fel.",
              "replaced": True, "member": {"name": "Lena Dalerup", "first_name": "Lena", "genitive": "Lena Dalerups",
                                           "first_genitive": "Lenas"}}
    problems = []
    for kind in PLANNING_KINDS:
        for what in ("needs", "ballot", "late", "corrected"):
            try:
                composer.render(kind, {**sample, "what": what})
            except Exception as exc:  # TemplateProblem names the template
                problems.append(str(exc))
                break
    return problems


