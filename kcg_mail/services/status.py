"""What the coordinator sees: the year plan with each meeting's status, and a
summary of one run with what needs a person. Read-only views of the state
record, used by the Prefect artifacts, ``kcg status`` and the demo."""

from __future__ import annotations

from typing import Any

from kcg_mail.services.app import App


def meeting_rows(app: App) -> list[dict[str, Any]]:
    done = {}
    for rec in app.state.actions():
        if rec.status in ("done", "skipped") and rec.meeting_id:
            done.setdefault(rec.meeting_id, {})[rec.key] = rec
    rows = []
    for m in app.meetings:
        recs = done.get(m.id, {})
        steps = {r.action: r.status for k, r in recs.items() if ":step:" in k}
        inv = app.invitation(m.id)
        att = app.state.attendance(m.id)
        filings = app.state.filings(m.id)
        distributed = [k for k, r in recs.items() if r.action == "distribute" and r.status == "done"]
        last = filings[-1] if filings else None
        rows.append({
            "möte": m.id,
            "datum": m.date.isoformat() + (" (prel.)" if m.tentative else ""),
            "tema": m.theme_label,
            "värd": m.host.name,
            "värd informerad": _mark(steps.get("brief_host")),
            "inbjudan": ("inställd" if inv.cancelled else f"skickad (v{inv.sequence + 1})") if inv else _mark(steps.get("invite")),
            "svar": f"{sum(v == 'ACCEPTED' for v in att.values())} ja / {sum(v == 'DECLINED' for v in att.values())} nej" if att else "",
            "mall skickad": _mark(steps.get("send_template")),
            "protokoll": f"version {last.version}" if last else "",
            "arkiverat": last.path if last else "",
            "länk": (last.link or "") if last else "",
            "revision": last.rev if last else "",
            "innehållshash": last.content_hash[:16] if last else "",
            "utskickat": f"{len(distributed)} utskick" if distributed else "",
            "påmint": "ja" if steps.get("chase_host") == "done" else "",
            "eskalerat": "ja" if steps.get("escalate") == "done" else "",
        })
    return rows


def _mark(status: str | None) -> str:
    return {"done": "ja", "skipped": "hoppades över"}.get(status or "", "")


def needs_a_person(app: App) -> list[str]:
    """Open items for the coordinator, each with what to do."""
    items = list(app.template_problems)
    for rec in app.state.messages():
        if rec.outcome in ("not_allowed", "unmatched", "bad_minutes", "no_minutes") and rec.status == "done":
            items.append(f"Meddelande i karantän från {rec.sender} ({rec.subject!r}): {rec.reason}. "
                         f"Gör: titta på det och kör flödet 'kcg-refile' om det ska arkiveras.")
    from kcg_mail.services.approval import pending  # issue 13: held mail

    for p in pending(app):
        items.append(f"Väntar på godkännande: {p.line()}")
    for m in app.meetings:
        if m.tentative:
            items.append(f"Mötet {m.id} ({m.theme_label}) har bara ett preliminärt datum ({m.proposed}). "
                         f"Gör: sätt date: och tentative: false i plan-filen när datumet är bestämt.")
    return items


def run_summary(title: str, lines: list[str], attention: list[str]) -> str:
    md = [f"# {title}", ""]
    md += [f"- {line}" for line in lines] or ["- Inget att göra i den här körningen."]
    md += ["", "## Behöver en människa", ""]
    md += [f"- {a}" for a in attention] or ["- Inget."]
    return "\n".join(md) + "\n"
