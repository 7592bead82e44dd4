"""The ``kcg`` command line."""

from __future__ import annotations

import json
import sys
from datetime import date as date_cls
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from kcg_mail.config import ConfigError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, help="kcg-mail: the KCG meeting cycle, unattended.")
# piped output (CI logs, files) gets a readable width instead of 80 columns
console = Console() if sys.stdout.isatty() else Console(width=130)
err = Console(stderr=True)

WORKDIR = typer.Option(Path("var"), "--workdir", "-w", help="Where state, Maildir and the local archive live.")
CONFIG = typer.Option(None, "--config", "-c", help="Config directory (default: config/ or $KCG_CONFIG_DIR).")


def _config(config: Optional[Path]):
    try:
        return load_config(config)
    except ConfigError as exc:
        err.print("[bold red]Configuration problems:[/]")
        for p in exc.problems:
            err.print(f"  • {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command()
def plan(year: Optional[int] = typer.Option(None, help="Only this plan year."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
         config: Optional[Path] = CONFIG) -> None:
    """Print the year plan with resolved dates."""
    from kcg_mail.core.plan import as_json as meeting_json
    from kcg_mail.core.plan import resolve_plan

    cfg = _config(config)
    meetings = resolve_plan(cfg, year)
    if as_json:
        sys.stdout.write(json.dumps([meeting_json(m) for m in meetings], ensure_ascii=False, indent=2) + "\n")
        return
    t = Table(title=f"{cfg.network.short} – årsplan {year or ''}".strip())
    for col in ("Datum", "Tid", "Möte", "Tema", "Värd", "Reserv", "Kommentar"):
        t.add_column(col)
    for m in meetings:
        t.add_row(m.date.isoformat() + (" (prel.)" if m.tentative else ""), f"{m.start:%H:%M}–{m.end:%H:%M}",
                  m.kind_label, m.theme_label, m.host.name, m.backup_host.name if m.backup_host else "",
                  m.comment)
    console.print(t)


@app.command()
def daily(date: Optional[str] = typer.Option(None, help="Simulate this day (YYYY-MM-DD); default today."),
          workdir: Path = WORKDIR, config: Optional[Path] = CONFIG) -> None:
    """Run the daily flow once: send what is due."""
    _config(config)
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir)
    from flows.daily import daily_flow

    console.print(daily_flow(date=date, workdir=str(workdir), config_dir=str(config) if config else None))


@app.command()
def intake(workdir: Path = WORKDIR, config: Optional[Path] = CONFIG,
           now: Optional[str] = typer.Option(None, help="Simulated time YYYY-MM-DDTHH:MM.")) -> None:
    """Run the intake flow once: handle new replies."""
    _config(config)
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir)
    from flows.intake import intake_flow

    console.print(intake_flow(now=now, workdir=str(workdir), config_dir=str(config) if config else None))


@app.command()
def demo(workdir: Path = typer.Option(Path("var/demo"), "--workdir", "-w"), config: Optional[Path] = CONFIG) -> None:
    """Run the whole 2023 cycle in simulated time on the embedded defaults."""
    _config(config)
    from kcg_mail.entrypoints.demo import run_demo

    with console.status("Kör årets möten i simulerad tid (Prefect startar en lokal server)…"):
        result = run_demo(workdir, config)
    _status_table(workdir, config)
    new = result.sent_after - result.sent_before
    console.print(f"{result.flow_runs} flow runs, {new} new mails ({result.sent_after} in {workdir}/mail/sent), "
                  f"{result.seconds:.1f} s. Archive: {workdir}/dropbox, state: {workdir}/state.sqlite")
    if new == 0:
        console.print("Nothing new was sent: every step was already done.")


def _status_table(workdir: Path, config: Optional[Path]) -> None:
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.status import meeting_rows

    a = bootstrap(workdir, config)
    rows = meeting_rows(a)
    t = Table(title="Status per möte")
    cols = ("möte", "datum", "värd", "inbjudan", "mall skickad", "protokoll", "utskickat")
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(r[c]) for c in cols))
    console.print(t)
    filed = [r["arkiverat"] for r in rows if r["arkiverat"]]
    if filed:
        console.print("Arkiverat:")
        for path in filed:
            console.print(f"  {path}", markup=False, highlight=False)


@app.command()
def status(workdir: Path = WORKDIR, config: Optional[Path] = CONFIG) -> None:
    """Show each meeting's status and what needs a person."""
    _config(config)
    _status_table(workdir, config)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.status import needs_a_person

    for item in needs_a_person(bootstrap(workdir, config)):
        console.print(f"• {item}", markup=False)


@app.command()
def check(connect: bool = typer.Option(False, "--connect", help="Also log in to the mail system and archive."),
          workdir: Path = WORKDIR, config: Optional[Path] = CONFIG) -> None:
    """Validate config and templates; with --connect, test the connections (sends nothing)."""
    cfg = _config(config)
    from kcg_mail.services.compose import DEFAULT_TEMPLATES, Composer
    from kcg_mail.documents.render import check_template

    ok = True
    console.print(f"[green]✓[/] config {cfg.directory}: {len(cfg.network.members)} people, "
                  f"{len(cfg.all_meetings())} meetings")
    problems = Composer(cfg).check() + [f"templates/protocol.docx: {p}" for p in check_template(DEFAULT_TEMPLATES / "protocol.docx")]
    for p in problems:
        ok = False
        console.print(f"[red]✗[/] {p}", highlight=False)
    if not problems:
        console.print("[green]✓[/] mail templates and protocol template render")
    if connect:
        from kcg_mail.bootstrap import make_archive, make_mail
        from kcg_mail.ports import Check
        from kcg_mail.secrets import MissingSecret

        for name, make in (("mail", make_mail), ("archive", make_archive)):
            try:
                checks = make(cfg, workdir).check()
            except (ConfigError, MissingSecret) as exc:
                checks = [Check(name, False, str(exc))]
            except Exception as exc:
                checks = [Check(name, False, f"{type(exc).__name__}: {exc}")]
            for c in checks:
                ok &= c.ok
                console.print(f"{'[green]✓[/]' if c.ok else '[red]✗[/]'} {c.name}: {c.detail}", highlight=False,
                              soft_wrap=True)
    raise typer.Exit(0 if ok else 1)


@app.command()
def serve(workdir: Path = WORKDIR, config: Optional[Path] = CONFIG) -> None:
    """Serve the flows on their schedules against a Prefect server (PREFECT_API_URL); new mail is
    handled at once by the push listener (an intake flow run in this process)."""
    _config(config)
    wd, cd = str(workdir.resolve()), str(config.resolve()) if config else None
    # Everything Prefect happens in the main thread before the listener's thread starts:
    # imports (two threads importing Prefect at once printed "Failed to initialize plugins:
    # deadlock detected"), registering the deployments, and the start-up intake run.
    import flows.intake  # noqa: F401
    from flows.serve import build_runner, run_runner
    from kcg_mail.entrypoints.push import run_listener

    runner, deps = build_runner(wd, cd)
    push = run_listener(wd, cd, catch_up_here=True)
    try:
        run_runner(runner, deps)  # returns on SIGTERM / Ctrl-C
    finally:
        if not push.stop():
            err.print("An intake run was still working after 20 s; it will be redone on the next start.")


@app.command("dropbox-auth")
def dropbox_auth(app_key: str = typer.Option(..., envvar="KCG_DROPBOX_APP_KEY"),
                 app_secret: str = typer.Option(..., envvar="KCG_DROPBOX_APP_SECRET")) -> None:
    """Walk once through Dropbox's offline-access OAuth flow and print the refresh token to store."""
    from kcg_mail.adapters.dropbox_archive import run_auth_flow

    token = run_auth_flow(app_key, app_secret)
    console.print("Store this as the environment variable KCG_DROPBOX_REFRESH_TOKEN "
                  "or the Prefect Secret block 'kcg-dropbox-refresh-token':")
    console.print(token, markup=False)


if __name__ == "__main__":  # pragma: no cover
    app()
