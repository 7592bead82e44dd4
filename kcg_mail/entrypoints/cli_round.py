"""``kcg planning ...``, ``kcg plan --draft`` and the planning part of
``kcg status`` and ``kcg demo --planning``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kcg_mail.config_loader import Config, ConfigError
from kcg_mail.entrypoints.cli_common import CONFIG, WORKDIR, console, err, read_config

planning_app = typer.Typer(no_args_is_help=True, help="The yearly planning round: needs, votes, Handlingsplan.")
YEAR = typer.Option(..., "--year", help="The plan year, e.g. 2024 (dates in config/planning.yaml).")
DAY = typer.Option(None, "--date", help="Simulate this day (YYYY-MM-DD); default today.")


def _planning_flow(step: str, year: int, date: str | None, workdir: Path, config: Path | None) -> None:
    read_config(config, workdir)
    from kcg_mail.config_loader import load_planning

    try:
        ps = load_planning(config)
    except ConfigError as exc:
        err.print("[bold red]Configuration problems:[/]")
        for p in exc.problems:
            err.print(f"  • {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if ps is None or year not in ps.rounds:
        where = Path(config or read_config(config).directory) / "planning.yaml"
        err.print(f"[red]✗[/] {where}: rounds.{year}: missing (fix: add the dates start, needs_reminder, "
                  f"needs_deadline, votes_reminder, votes_deadline for {year})", highlight=False)
        raise typer.Exit(1)
    from kcg_mail.entrypoints import prefect_env

    prefect_env.prepare(workdir)
    from flows import round as flows
    from kcg_mail.services.round import PlanningProblem

    run: Any = {"start": flows.planning_start, "publish": flows.planning_publish, "tick": flows.planning_tick}[step]
    try:
        result = run(year=year, date=date, workdir=str(workdir), config_dir=str(config) if config else None)
    except PlanningProblem as exc:
        err.print(f"[red]✗[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(1)
    for line in result["lines"]:
        console.print(line, markup=False, highlight=False)
    print_round_status(workdir, config)


@planning_app.command("start")
def planning_start(year: int = YEAR, date: str | None = DAY, workdir: Path = WORKDIR,
                   config: Path | None = CONFIG) -> None:
    """Start the round: the needs mail with the Word form to every member."""
    _planning_flow("start", year, date, workdir, config)


@planning_app.command("publish")
def planning_publish(year: int = YEAR, date: str | None = DAY, workdir: Path = WORKDIR,
                     config: Path | None = CONFIG) -> None:
    """Publicera röstlistan: send the numbered ballot from the (edited) candidate list."""
    _planning_flow("publish", year, date, workdir, config)


@planning_app.command("tick")
def planning_tick(year: int = YEAR, date: str | None = DAY, workdir: Path = WORKDIR,
                  config: Path | None = CONFIG) -> None:
    """What is due today: reminders, the candidate list, closing the round."""
    _planning_flow("tick", year, date, workdir, config)


@planning_app.command("status")
def planning_status(workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """The round's answers per member and the tally."""
    read_config(config, workdir)
    print_round_status(workdir, config, full=True)


def print_round_status(workdir: Path, config: Path | None, full: bool = False) -> None:
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services import round_status as round_

    a = bootstrap(workdir, config)
    try:
        years = round_.years(a)
    except ConfigError:
        return
    for y in years:
        console.print(f"[bold]Planeringsrunda {y}[/]")
        for line in round_.status_lines(a, y)[1:]:
            console.print(f"  {line}", markup=False, highlight=False)
        for item in round_.needs_a_person(a):
            console.print(f"• {item}", markup=False)
        if full:
            t = Table(title=f"Svar per medlem {y}")
            rows = round_.member_rows(a, y)
            for c in ("medlem", "förslag", "röst", "ogiltiga svar"):
                t.add_column(c)
            for r in rows:
                t.add_row(*(r[c] for c in ("medlem", "förslag", "röst", "ogiltiga svar")))
            console.print(t)
        tally = [r for r in round_.tally_rows(a, y) if r["röster"] or full]
        if tally:
            t = Table(title=f"Röster {y} (fokus = ja)")
            for c in ("område", "nr", "samverkansområde", "röster", "fokus"):
                t.add_column(c)
            for r in tally:
                t.add_row(*(str(r[c]) for c in ("område", "nr", "samverkansområde", "röster", "fokus")))
            console.print(t)


def write_draft_plan(cfg: Config, year: int | None, out: Path | None, workdir: Path, config: Path | None) -> None:
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.round import write_draft

    if year is None:
        err.print("[red]✗[/] --draft needs --year, e.g. kcg plan --year 2027 --draft")
        raise typer.Exit(2)
    if any(p.year == year for p in cfg.plans):
        err.print(f"[yellow]![/] config already has plan-{year}.yaml; the draft is written beside it for comparison")
    target = out or workdir / "utkast" / f"plan-{year}.yaml"
    write_draft(bootstrap(workdir, config, cfg=cfg), year, target)
    console.print(f"Utkast till årsplan {year}: {target}", markup=False, highlight=False)
    console.print(f"Granska teman och värdar, kopiera sedan filen till {cfg.directory}/plan-{year}.yaml "
                  f"och kör `kcg check`.", markup=False, highlight=False)


def play_demo_round(workdir: Path, config: Path | None) -> None:
    from kcg_mail.entrypoints import prefect_env
    from kcg_mail.entrypoints.demo_round import play_round

    prefect_env.prepare(workdir, quiet=True)
    with console.status("Spelar planeringsrundan för 2024 (november–december 2023)…"):
        with prefect_env.without_heartbeats():
            r = play_round(workdir, config, echo=lambda s: None)
    console.print(f"Planeringsrundan: {r.flow_runs} flow runs, {r.seconds:.1f} s. Handlingsplan: {r.handlingsplan}; "
                  f"utkast till årsplan: {r.draft}", markup=False, highlight=False)
    if r.group_tasks:
        console.print(f"Workshopen i januari: {r.group_tasks} grupper fick sina uppgifter med utkastet bifogat.",
                      markup=False, highlight=False)
    if r.adopted:  # the January protocol adopted the plan by the coordinator's reply; the product runs it
        console.print("Årsplan 2024, antagen på januarimötet med samordnarens ja – de första mötena:",
                      markup=False, highlight=False)
        for line in r.adopted:
            console.print(f"  {line}", markup=False, highlight=False)
