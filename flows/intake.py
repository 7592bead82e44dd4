"""The intake flow: handle new replies in the network mailbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task

from flows.common import TASK_OPTS, alert_on_failure, as_input, make_app, publish, rename_run, untagged_tasks, when
from kcg_mail.core.inbound import MatchContext
from kcg_mail.core.inbound.outcome import label_of
from kcg_mail.ports import IncomingMessage
from kcg_mail.services.app import App
from kcg_mail.services.intake import Handled, handle_message, run_intake
from kcg_mail.services.lock import IntakeBusy, intake_lock, lock_dir


@task(name="message", task_run_name="message {item.ref}", **TASK_OPTS)
def message_task(app: App, item: IncomingMessage, ctx: MatchContext, now: datetime) -> Handled:
    return handle_message(app, item, ctx, now)


def handle_one(app: App, item: IncomingMessage, ctx: MatchContext, now: datetime) -> Handled:
    """One message as a task run; the app and the match context are passed quoted
    (see flows.common.as_input)."""
    return message_task(as_input(app), item, as_input(ctx), now)


@flow(name="kcg-intake", flow_run_name="intag", on_failure=[alert_on_failure], on_crashed=[alert_on_failure],
      log_prints=False)
def intake_flow(now: str | None = None, workdir: str = "var", config_dir: str | None = None,
                skip_if_busy: bool = False) -> dict[str, Any]:
    """Read new mail; file and distribute minutes; record responses; quarantine the rest.

    ``skip_if_busy`` (the scheduled safety net of ``kcg serve``): when another
    intake run holds the intake lock, end at once instead of queueing behind
    it; that run, or the listener's next one, reads the same mailbox."""
    # closed at the end (kcg serve runs this flow in-process); tasks without tag concurrency (untagged_tasks)
    with make_app(workdir, config_dir) as app, untagged_tasks():
        at = when(app, now[:10], now[11:16] or "12:00") if now else when(app, None)
        if skip_if_busy:
            try:
                with intake_lock(lock_dir(app), timeout=0):
                    report = run_intake(app, at, handle_one=handle_one)
            except IntakeBusy:
                rename_run("intake: en annan körning läser redan brevlådan")
                get_run_logger().info("another intake run is working; this scheduled run is not needed")
                return {"handled": 0, "skipped": 1}
        else:
            report = run_intake(app, at, handle_one=handle_one)
        counts: dict[str, int] = {}
        for h in report.handled:
            counts[h.outcome] = counts.get(h.outcome, 0) + 1
        name = "intag: " + (", ".join(f"{n} {label_of(k)}" for k, n in counts.items()) or "inget nytt")
        rename_run(name)
        lines = [f"{h.meeting_id or '–'}: {label_of(h.outcome)} från {h.sender} – {h.reason}" for h in report.handled]
        from kcg_mail.services.approval import pending

        held = [f"Väntar på godkännande: {p.line()}" for p in pending(app)]
        publish(app, name, lines, [f"Fel: {e}" for e in report.errors] + held, now=at)
        if report.errors:
            raise RuntimeError(f"{len(report.errors)} message(s) failed: " + "; ".join(report.errors))
        return {"handled": len(report.handled), **counts}
