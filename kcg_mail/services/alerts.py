"""Alerts for the coordinator: one mail per problem, never a storm.

A failed flow run sends one alert keyed by flow, day and problem (the error
type and its first line with numbers and ids blanked out), through the same
exactly-once outbox as every other mail. A problem that repeats on every run
(the intake runs every five minutes) is therefore mailed once a day, not 288
times; a new kind of problem is mailed at once. Overdue minutes are escalated
by the cycle's ``escalate`` step (one mail per meeting) and listed in the run
summary.

Two readers. ``transport.yaml`` ``alerts_to`` (default the coordinator) gets
what happened and what it means for the network in plain Swedish, and who
takes care of it: never a command, a file or a flow name. ``operator_contacts``
(optional) and the webhook get the technical side: the error, the commands,
the files. Both lists are chosen deliberately, so the outbox lets them through.

A broken configuration is the most likely failure (a YAML typo) and the one
that most needs a mail, yet it is also the one that stops us from reading
who to mail. So every successful run keeps a copy of the configuration in
``<workdir>/last-good-config/`` and the alert falls back to it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from kcg_mail.ports import Address
from kcg_mail.services.app import App, Outbox, now_local

LAST_GOOD_CONFIG = "last-good-config"
DEFAULT_UI_URL = "http://127.0.0.1:4200"

#: per kind of failure: (subject, what happened, what it means for the network),
#: in words the coordinator reads; no command, file or flow name
PLAIN = {
    "TransientError": ("Mejlservern svarar inte just nu",
                       "Mejlservern svarade inte eller bad oss vänta en stund.",
                       "Nästa körning försöker igen av sig själv, och inget går förlorat."),
    "TransportError": ("Utskicken når inte mejlservern",
                       "Utskicken kommer inte fram till mejlservern, oftast för att ett lösenord eller en behörighet "
                       "har ändrats.",
                       "Inga utskick går ut och inga svar läses in förrän det är åtgärdat."),
    "ConfigError": ("Inställningarna för utskicken har ett fel",
                    "Inställningarna för utskicken har ett fel och kunde inte läsas.",
                    "Inga utskick går ut förrän det är rättat."),
    "MissingSecret": ("Ett lösenord saknas för utskicken",
                      "Ett lösenord eller en nyckel som utskicken behöver saknas.",
                      "Inga utskick går ut förrän det är åtgärdat."),
    "TemplateProblem": ("En mejlmall har ett fel",
                        "En av mallarna för nätverkets mejl har ett fel.",
                        "De mejl som bygger på mallen går inte ut förrän den är rättad."),
    "StateReset": ("Utskicken har stannat av säkerhetsskäl",
                   "Uppgifterna om vad som redan har skickats saknas eller har bytts ut. Ingenting skickades.",
                   "Inga utskick går ut förrän uppgifterna är återställda, så att ingen får samma mejl två gånger."),
    "StateFileError": ("Utskicken har stannat av säkerhetsskäl",
                       "Uppgifterna om vad som redan har skickats går inte att läsa. Ingenting skickades.",
                       "Inga utskick går ut förrän uppgifterna är återställda, så att ingen får samma mejl två gånger."),
    "RecipientNotAllowed": ("Ett mejl stoppades",
                            "Ett mejl skulle ha gått till en adress som inte hör till nätverket och stoppades.",
                            "Det mejlet går inte ut förrän adressen är rättad; övriga utskick går som vanligt."),
}
DEFAULT_PLAIN = ("Ett fel i utskicken", "En av de schemalagda körningarna misslyckades.",
                 "Nästa körning försöker igen; kvarstår felet åtgärdar den tekniska kontakten det.")

#: what each flow does, for the coordinator (who never needs its name)
FLOW_WORDS = {
    "kcg-daily": "den dagliga körningen (inbjudningar, påminnelser och protokoll)",
    "kcg-intake": "inläsningen av inkommande mejl",
    "kcg-housekeeping": "den nattliga städningen",
}

#: per kind of failure: the technical steps, for the operator only
TODO = {
    "TransientError": "Servern svarade inte eller bad oss vänta. Nästa körning försöker igen; kvarstår felet, kontrollera att servern är uppe.",
    "TransportError": "Läs felet ovan: oftast ett lösenord eller en behörighet som behöver ses över. Kör `kcg check --connect`.",
    "ConfigError": "Rätta filen och fältet som felet nämner i config/ och kör `kcg check`. Tills dess körs inget.",
    "MissingSecret": "Sätt den hemlighet som nämns (miljövariabel eller Prefect Secret-block).",
    "TemplateProblem": "Mallen i templates/ har ett fel; rätta den eller återställ den senaste fungerande versionen och kör `kcg check`.",
    "StateReset": "Tillståndsfilen (state.sqlite) saknas, är tom eller utbytt. Inget skickades. Kör `kcg state restore` (senaste automatiska kopian) eller `kcg state rebuild` (från Skickat och arkivet).",
    "StateFileError": "Tillståndsfilen (state.sqlite) kan inte användas; felet ovan säger varför. Kör `kcg state restore` eller `kcg state rebuild`.",
    "RecipientNotAllowed": "Ett mejl skulle gå till någon som inte finns i config/network.yaml. Lägg till personen eller rätta adressen.",
}
DEFAULT_TODO = "Öppna körningen i Prefect och läs loggen. Nästa schemalagda körning försöker igen."


# ------------------------------------------------------------ last good config


def snapshot_config(app: App, workdir: Path | str) -> None:
    """Keep a copy of a configuration that loaded, for alerts about a broken one.
    Cheap (four small files), only written when something changed."""
    src = Path(app.cfg.directory)
    dst = Path(workdir) / LAST_GOOD_CONFIG
    if src.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.yaml")):
        target = dst / f.name
        data = f.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
    for old in dst.glob("*.yaml"):
        if not (src / old.name).exists():
            old.unlink()



# ------------------------------------------------------------------ alerts


def _failure(state: Any) -> tuple[str, str]:
    """(exception type name, message) of a failed Prefect state."""
    message = str(getattr(state, "message", "") or "")
    exc: Any = None
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # result not retrievable: the exception is what we have
        exc = e
    if isinstance(exc, BaseException):
        return type(exc).__name__, str(exc) or message
    m = re.search(r"exception: (\w+): (.*)", message, re.DOTALL)
    if m:
        return m.group(1), m.group(2)
    return "Error", message


def problem_id(flow_name: str, kind: str, detail: str) -> str:
    """Same problem, same id: the first line with temp-file names, paths, URLs, message
    ids, ids and numbers blanked (core.outreach.normalise_problem), so a run number, a
    random temp file or a message id in the text does not make it 'new'."""
    from kcg_mail.core.outreach import normalise_problem

    return hashlib.sha256(f"{flow_name}|{kind}|{normalise_problem(detail)}".encode()).hexdigest()[:12]


def alert_recipients(app: App) -> list[Address]:
    net = app.cfg.network
    people = {p.email: p for p in net.members + net.guests}
    wanted = [e.strip().lower() for e in app.cfg.transport.alerts_to if e.strip()] or [net.coordinator.email]
    return [Address(people[e].name, e) if e in people else Address(e, e) for e in wanted]


def ui_url(app: App) -> str:
    """The Prefect UI: ``transport.yaml`` prefect_ui_url when set to something
    else than the default, else the UI of the server this process talks to."""
    configured = app.cfg.transport.prefect_ui_url.rstrip("/")
    if configured != DEFAULT_UI_URL:
        return configured
    try:
        from prefect.settings import get_current_settings

        derived = get_current_settings().ui_url
        return str(derived).rstrip("/") if derived else configured
    except Exception:  # pragma: no cover - prefect not importable / no settings
        return configured


#: failures that say the mail server (or another connection) is what broke
CONNECTION_KINDS = {"TransientError", "TransportError", "ConnectionError", "ConnectionRefusedError", "TimeoutError",
                    "OSError", "SMTPException", "SMTPServerDisconnected", "IMAP4.error", "ErrorServerBusy"}
ALERT_ACTION = "alert"  # state record: one per problem and day; "failed" = a channel still owes it


def send_failure_alert(app: App, flow_name: str, flow_run: Any, state: Any, *, now: datetime | None = None,
                       note: str | None = None, log: Any = None) -> str:
    """Alert the coordinator about one failed (or crashed) run, once per
    problem and day, on every channel: the webhook (which does not need the
    mail server) and mail. Returns what happened per channel."""
    from kcg_mail.services.status import record_problem

    kind, detail = _failure(state)
    day = now_local(app.cfg, now).date().isoformat()
    problem = problem_id(flow_name, kind, detail)
    if kind in CONNECTION_KINDS:
        first = (detail.strip().splitlines() or [""])[0]
        what = "archive" if re.search(r"dropbox|archive|arkiv", first, re.IGNORECASE) else "mail"
        record_problem(app, what, f"{kind}: {first[:200]}", now)
    detail_text = f"Körningen {getattr(flow_run, 'name', '')!s} av {flow_name} misslyckades med {kind}:\n{detail[:1500]}"
    if note:
        detail_text += f"\n\n{note}"
    title, plain, means = PLAIN.get(kind, DEFAULT_PLAIN)
    where = FLOW_WORDS.get(flow_name, "en av de schemalagda körningarna")
    alert = {"key": f"alert:{flow_name}:{day}:{problem}", "title": title,
             "what": f"{plain} Det hände i {where}.", "means": means,
             "tech_title": f"{flow_name} misslyckades: {kind}", "detail": detail_text,
             "steps": TODO.get(kind, DEFAULT_TODO), "url": f"{ui_url(app)}/runs/flow-run/{flow_run.id}"}
    return deliver_alert(app, alert, log)


#: what an alert record keeps (the technical fields only when there is a technical side)
ALERT_FIELDS = ("key", "title", "what", "means", "todo", "tech_title", "detail", "steps", "url")


def _channels(app: App, alert: dict[str, Any] | None = None) -> list[str]:
    """webhook (the operator's), mail (to ``alerts_to``) and, for an alert with
    technical steps, operator (a mail to ``operator_contacts``)."""
    operator = bool(app.cfg.transport.operator_contacts) and bool((alert or {}).get("steps"))
    return (["webhook"] if app.cfg.transport.alerts.webhook_url else []) + ["mail"] + (["operator"] if operator else [])


def deliver_alert(app: App, alert: dict[str, Any], log: Any = None, channels: list[str] | None = None) -> str:
    """Send ``alert`` on each channel that still owes it. A channel that fails
    is logged as an ERROR (``log``: the run's logger, so it shows in the UI)
    and stays owed in the state record: the next run tries again."""
    from kcg_mail.services.status import clear_problem, record_problem

    log = log or logging.getLogger("kcg.alerts")
    rec = app.state.action(alert["key"] + ":channels")
    if channels is None:
        if rec is not None:  # this problem was alerted (or is owed) today already
            return "already" if rec.status == "done" else "owed: " + ", ".join(rec.detail.get("owed", []))
        channels = _channels(app, alert)
    owed, done = [], []
    for ch in channels:
        try:
            if ch == "webhook":
                post_webhook(app.cfg.transport.alerts.webhook_url, alert, app.cfg.transport.alerts.timeout_seconds)
            elif ch == "operator":
                send_operator_mail(app, alert)
            else:
                send_alert_mail(app, alert)
            done.append(ch)
            clear_problem(app, "webhook" if ch == "webhook" else "alert-mail")
        except Exception as exc:
            owed.append(ch)
            why = f"{type(exc).__name__}: {exc}"
            record_problem(app, "webhook" if ch == "webhook" else "alert-mail", why[:300])
            log.error("the alert %r could not be sent by %s (%s); the next run tries again",
                      alert["title"], "webhook" if ch == "webhook" else "mail", why)
    app.state.record_action(alert["key"] + ":channels", None, ALERT_ACTION, "failed" if owed else "done",
                            {**alert, "owed": owed, "sent": done + (rec.detail.get("sent", []) if rec else [])})
    return ", ".join([f"{c}: sent" for c in done] + [f"{c}: FAILED" for c in owed])


def retry_pending_alerts(app: App, log: Any = None) -> list[str]:
    """Send the alerts an earlier run could not (called at the start of every run)."""
    out = []
    for rec in app.state.actions():
        if rec.action == ALERT_ACTION and rec.status == "failed" and rec.detail.get("owed"):
            alert = {k: rec.detail[k] for k in ALERT_FIELDS if k in rec.detail}
            channels = [c for c in rec.detail["owed"] if c in _channels(app, alert)]
            out.append(deliver_alert(app, alert, log, channels))
    return out


def operator_contacts(app: App) -> list[Address]:
    return [Address(c.name or c.email, c.email) for c in app.cfg.transport.operator_contacts]


def coordinator_todo(app: App, alert: dict[str, Any]) -> str:
    """What the coordinator's mail says about what happens next: his own step
    when the alert has one (answer a question), else who takes care of the
    technical side; never a command or a file."""
    if alert.get("todo"):
        return str(alert["todo"])
    ops = app.cfg.transport.operator_contacts
    names = " och ".join(c.name or c.email for c in ops)
    if ops:
        return (f"Den tekniska kontakten ({names}) har fått ett eget mejl med felet och vad som behöver göras. "
                f"Du behöver inte göra något.")
    return ("Be den som sköter den tekniska installationen av nätverkets utskick att titta på felet; "
            "länken nedan visar detaljerna.")


def _send(app: App, kind: str, key: str, to: list[Address], alert: dict[str, Any]) -> str:
    msg = app.composer.message(kind, key, None, [], {"alert": alert}, to_addresses=to)
    # alerts_to and operator_contacts are configured on purpose, so those addresses
    # may get alerts even when they are not network members; everything else stays guarded.
    outbox = Outbox(app.state, app.mail, app.outbox.allowed | {a.email for a in to})
    outbox.now = app.outbox.now  # dated like the run's other mail
    return outbox.send(msg)


def send_alert_mail(app: App, alert: dict[str, Any]) -> str:
    """The alert as the coordinator (``alerts_to``) reads it: what happened,
    what it means for the network, who takes care of it."""
    shown = {"title": alert["title"], "what": alert["what"], "means": alert.get("means", ""),
             "todo": coordinator_todo(app, alert), "url": alert["url"]}
    return _send(app, "alert", alert["key"], alert_recipients(app), shown)


def send_operator_mail(app: App, alert: dict[str, Any]) -> str:
    """The technical side of the alert (the error, the commands, the files) to ``operator_contacts``."""
    shown = {"title": alert.get("tech_title") or alert["title"], "what": alert.get("detail") or alert["what"],
             "todo": alert.get("steps") or alert.get("todo", ""), "url": alert["url"]}
    return _send(app, "alert_operator", alert["key"] + ":operator", operator_contacts(app), shown)


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """JSON that both a Slack incoming webhook (``text``) and a Microsoft Teams
    incoming webhook (a MessageCard: ``summary``, ``text``, a button) accept."""
    title = alert.get("tech_title") or alert["title"]
    what = alert.get("detail") or alert["what"]
    todo = alert.get("steps") or alert.get("todo", "")
    text = f"{title}\n\n{what}\n\nGör så här: {todo}\n\n{alert['url']}"
    return {
        "@type": "MessageCard", "@context": "https://schema.org/extensions",
        "summary": title, "themeColor": "C4314B", "text": text,
        "potentialAction": [{"@type": "OpenUri", "name": "Öppna körningen i Prefect",
                             "targets": [{"os": "default", "uri": alert["url"]}]}],
    }


class WebhookFailed(RuntimeError):
    pass


def post_webhook(url: str, alert: dict[str, Any], timeout: float = 10.0) -> None:
    """POST the alert; raise WebhookFailed (without the URL's token) unless 2xx."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    host = urllib.parse.urlsplit(url).netloc or "?"
    body = json.dumps(webhook_payload(alert), ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise WebhookFailed(f"the webhook at {host} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookFailed(f"the webhook at {host} could not be reached: {reason}") from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"the webhook at {host} answered HTTP {status}")
