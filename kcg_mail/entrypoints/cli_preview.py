"""``kcg preview``: every mail a month will send, per reader, before it is sent."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import typer
from rich.table import Table

from kcg_mail.core.pacing import CapCheck
from kcg_mail.entrypoints.cli_common import CONFIG, WORKDIR, console, err, read_config


def preview(month: str = typer.Option(..., "--month", "-m", help="The month, e.g. 2024-02."),
            workdir: Path = WORKDIR, config: Path | None = CONFIG,
            out: Path | None = typer.Option(None, "--out", "-o", help="The HTML page (default: <workdir>/preview-<month>.html).")) -> None:
    """Show every mail MONTH will send, per reader, as it will look (a dry run on a copy of the state: nothing is sent)."""
    from kcg_mail.bootstrap import dry_run_app
    from kcg_mail.services.preview import Preview, dry_run, month_bounds, render_html

    read_config(config, workdir)
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        err.print(f"--month: {month!r} is not a month (fix: write it as YYYY-MM, e.g. {date.today():%Y-%m})")
        raise typer.Exit(2)
    first, last = month_bounds(month)
    with dry_run_app(workdir, config) as (app, sent):
        mails = dry_run(app, first, last, sent)
    page = Preview(f"Förhandsvisning {month}", "Så här ser månadens utskick ut om inget annat händer (svar från "
                   "värdar, som utskicket av protokollet, syns inte här). Inget har skickats.", mails)
    target = out or workdir / f"preview-{month}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(page), encoding="utf-8")
    table = Table("datum", "ämne", "till", title=f"{month}: {len(mails)} utskick")
    for m in mails:
        roles: dict[str, int] = {}
        for r in m.readers:
            roles[r.role] = roles.get(r.role, 0) + 1
        to = ", ".join(f"{n} {role}" if n > 1 else role for role, n in roles.items())
        table.add_row(m.sent_at.strftime("%Y-%m-%d") if m.sent_at else "", m.subject, to)
    console.print(table)
    console.print(f"Sidan: {target}", markup=False, highlight=False)


def demo_year_page(workdir: Path, config: Path | None) -> None:
    """After the demo: the year's mails as one page per reader (``<workdir>/preview.html``)
    and the count of mails per person and month."""
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.preview import Preview, cap_check, read_maildir, render_html

    app = bootstrap(workdir, config)
    with app:
        mails = read_maildir(app.cfg, app.meetings, workdir / "mail" / "sent")
        caps = cap_check(app, mails)
    page = Preview("Årets utskick", "Varje utskick i demons simulerade år, som mottagarna ser det.", mails)
    target = workdir / "preview.html"
    target.write_text(render_html(page), encoding="utf-8")
    counts = page.counts()
    members = [r for r in counts if r.role in ("samordnare", "värd", "reservvärd", "medlem")]
    table = Table("månad", "utskick", "per medlem (min–max)", "flest", "högst om dagen", "högst i veckan",
                  title="Utskick per person och månad")
    for month in page.months():
        per = {r: counts[r][month] for r in members}
        most = max(per.values(), default=0)
        top = sorted(r.name for r, n in per.items() if n == most and n)
        day, week = caps.most(month)
        table.add_row(month, str(sum(1 for m in page.mails if m.month == month)),
                      f"{min(per.values(), default=0)}–{most}", ", ".join(top[:2]) + (" m.fl." if len(top) > 2 else ""),
                      str(day), str(week))
    console.print(table)
    console.print(caps_line(caps), markup=False, highlight=False)
    console.print(f"Årets utskick per mottagare: {target}", markup=False, highlight=False)


def caps_line(caps: CapCheck) -> str:
    """The caps, and whether they held, in one line (after the demo's table)."""
    head = (f"Taket: högst {caps.caps.per_day} utskick om dagen och {caps.caps.per_week} i veckan per medlem "
            f"(inbjudan och protokoll räknas; kvittenser på egna svar och samordnarens frågor räknas inte). "
            f"Mest till en medlem: {caps.max_day} om dagen, {caps.max_week} i veckan. ")
    if caps.held:
        return head + "Taket höll, och på mötesdagar gick bara inbjudan och protokoll ut."
    breaks = [f"{p} {d.isoformat()}: {n} om dagen" for p, d, n in caps.over_day]
    breaks += [f"{p} veckan från {d.isoformat()}: {n}" for p, d, n in caps.over_week]
    breaks += [f"{p} {d.isoformat()} (mötesdag): {k}" for p, d, k in caps.on_meeting_days]
    return head + "Taket höll INTE: " + "; ".join(breaks)
