"""What the coordinator sees: the year plan with each meeting's status, and a
summary of one run with what needs a person. Read-only views of the state
record, used by the Prefect artifacts, ``kcg status`` and the demo."""

from __future__ import annotations

from datetime import date
from typing import Any

from kcg_mail.core.cycle import is_history
from kcg_mail.core.years import missing_plan_items, plan_years
from kcg_mail.services.app import App, now_local

#: the state value of a meeting held before the go-live date
BEFORE_START = "före start"


def meeting_rows(app: App) -> list[dict[str, Any]]:
    done = {}
    for rec in app.state.actions():
        if rec.status in ("done", "skipped") and rec.meeting_id:
            done.setdefault(rec.meeting_id, {})[rec.key] = rec
    rows = []
    go_live = app.go_live()
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
            "läge": BEFORE_START if is_history(m, go_live) else "",
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


def go_live_line(app: App) -> str:
    """Where the cycle started, in one Swedish line."""
    day = app.go_live()
    if day is None:
        return "Start: ingen körning än; den första dagliga körningen blir startdagen (eller sätt go_live: i meetings.yaml)."
    source = "meetings.yaml go_live" if app.cfg.meetings.go_live else "första körningen"
    return f"Start: {day.isoformat()} ({source}); möten före dess visas som \"{BEFORE_START}\" och får inga utskick."


def today_of(app: App) -> date:
    """The run's day (simulated runs included), else today."""
    return (app.outbox.now if app.outbox is not None and app.outbox.now is not None else now_local(app.cfg)).date()


def needs_a_person(app: App, today: date | None = None) -> list[str]:
    """Open items for the coordinator, each with what to do."""
    today = today or today_of(app)
    items = list(app.template_problems)
    ahead = any(m.date >= today for m in app.meetings)
    items += missing_plan_items(plan_years(app.cfg.plans), today, ahead)
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
