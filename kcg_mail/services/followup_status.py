"""The coordinator's view of what happens between meetings: open
decisions per owner, project groups with their last status, and the
"Projektgrupp:" decisions waiting for approval. Read-only; used by
``kcg status`` (a section of its own) and can be added to the Prefect
status artifact next to ``kcg_mail.services.status.meeting_rows``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from kcg_mail.core import decisions as rules
from kcg_mail.services.app import App
from kcg_mail.services.followup import all_decisions, groups, latest_status, proposals


def open_decision_rows(app: App, today: date | None = None) -> list[dict[str, Any]]:
    """One row per open decision, grouped by owner (``Alla`` last), oldest first."""
    today = today or date.today()
    people = app.cfg.network.members
    rows = []
    for d in all_decisions(app):
        if d.state != rules.OPEN or rules.project_name(d.decision) is not None:
            continue
        found, unknown = rules.owners(d.owner, people)
        owner = "Alla" if d.for_everyone else ", ".join([p.name for p in found] + unknown) or d.owner or "(ingen)"
        rows.append({"ansvarig": owner, "beslut": d.decision, "klart till": d.due, "möte": d.meeting_id,
                     "ref": d.ref, "försenat": "ja" if d.due_date and d.due_date < today else ""})
    return sorted(rows, key=lambda r: (r["ansvarig"] == "Alla", r["ansvarig"], r["ref"]))


def open_by_owner(app: App, today: date | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in open_decision_rows(app, today):
        out.setdefault(r["ansvarig"], []).append(r)
    return out


def project_rows(app: App) -> list[dict[str, Any]]:
    people = {p.id: p.name for p in app.cfg.network.members}
    rows = []
    for g in groups(app):
        last = latest_status(app, g)
        rows.append({"projektgrupp": g.name, "ledare": people.get(g.lead, g.lead),
                     "medlemmar": ", ".join(people.get(m, m) for m in g.everyone), "start": g.start.isoformat(),
                     "senaste status": last["text"] if last else "", "datum": last["at"] if last else ""})
    return rows


def followup_attention(app: App) -> list[str]:
    """What needs the coordinator: project groups proposed in minutes."""
    out = []
    for d, p in proposals(app):
        who = ", ".join(p.members) or "ingen känd medlem"
        out.append(f"Protokollet {d.meeting_id} föreslår projektgruppen '{p.name}' ({who}). "
                   f"Svara ja på frågan i mejlet för att starta den (eller Starta projektgrupp i Prefect, "
                   f"beslut {d.ref})"
                   + (f"; okända namn i Ansvarig: {', '.join(p.unknown)}" if p.unknown else "") + ".")
    return out


def between_meetings_markdown(app: App, today: date | None = None) -> str:
    """The coordinator's view as markdown (the Prefect artifact ``kcg-between-meetings``)."""
    md = ["# Mellan mötena", "", "## Öppna beslut per ansvarig", ""]
    by_owner = open_by_owner(app, today)
    if not by_owner:
        md.append("Inga öppna beslut.")
    for owner, rows in by_owner.items():
        md.append(f"**{owner}**")
        md += [f"- {r['beslut']} (klart till {r['klart till'] or '–'}, möte {r['möte']}, ref {r['ref']})"
               + (" – försenat" if r["försenat"] else "") for r in rows]
        md.append("")
    md += ["", "## Projektgrupper", ""]
    rows = project_rows(app)
    md += [f"- **{r['projektgrupp']}** (ledare {r['ledare']}, sedan {r['start']}): "
           + (f"{r['senaste status']} ({r['datum']})" if r["senaste status"] else "ingen status ännu") for r in rows] \
        or ["Inga projektgrupper."]
    attention = followup_attention(app)
    if attention:
        md += ["", "## Att godkänna", ""] + [f"- {a}" for a in attention]
    return "\n".join(md) + "\n"
