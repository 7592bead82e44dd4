"""Alerts for the coordinator: one mail per problem, never a storm.

A failed flow run sends one alert keyed by flow and error, through the same
exactly-once outbox as every other mail, so a problem that repeats on every
run is reported once. Overdue minutes are escalated by the cycle's
``escalate`` step (one mail per meeting) and listed in the run summary."""

from __future__ import annotations

import hashlib
from datetime import datetime

from kcg_mail.service import App

TODO = {
    "TransientError": "Servern svarade inte eller bad oss vänta. Nästa körning försöker igen; kvarstår felet, kontrollera att servern är uppe.",
    "TransportError": "Läs felet ovan: oftast ett lösenord eller en behörighet som behöver ses över. Kör `kcg check --connect`.",
    "ConfigError": "Rätta filen och fältet som felet nämner i config/ och kör `kcg check`.",
    "MissingSecret": "Sätt den hemlighet som nämns (miljövariabel eller Prefect Secret-block).",
    "TemplateProblem": "Mallen i templates/ har ett fel; rätta den eller återställ den senaste fungerande versionen och kör `kcg check`.",
}


def send_failure_alert(app: App, flow_name: str, flow_run, state) -> str:
    message = str(getattr(state, "message", "") or "")
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # result not retrievable
        exc = e
    kind = type(exc).__name__ if isinstance(exc, BaseException) else "Error"
    detail = str(exc) if isinstance(exc, BaseException) else message
    problem = hashlib.sha256(f"{flow_name}|{kind}|{detail.splitlines()[0] if detail else ''}".encode()).hexdigest()[:12]
    coord = app.cfg.network.coordinator
    url = f"{app.cfg.transport.prefect_ui_url.rstrip('/')}/runs/flow-run/{flow_run.id}"
    msg = app.composer.message(
        "alert", f"alert:{flow_name}:{problem}", None, [coord],
        {"alert": {"title": f"{flow_name} misslyckades: {kind}", "what": f"{flow_run.name}: {detail[:800]}",
                   "todo": TODO.get(kind, "Öppna körningen i Prefect och läs loggen. Nästa schemalagda körning försöker igen."),
                   "url": url}},
    )
    return app.outbox.send(msg)


def overdue_alerts(app: App, now: datetime) -> list[str]:
    filed = {f.meeting_id for f in app.state.filings()}
    out = []
    for rec in app.state.actions():
        if rec.action == "escalate" and rec.status == "done" and ":step:" in rec.key and rec.meeting_id not in filed:
            m = app.meeting(rec.meeting_id)
            if m is not None:
                out.append(f"Protokollet från {m.id} ({m.theme_label}, värd {m.host.name}) saknas sedan {m.date.isoformat()}. "
                           f"Gör: kontakta värden, eller svara på påminnelsen med protokollet bifogat.")
    return out
