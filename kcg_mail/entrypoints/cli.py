"""The ``kcg`` command line."""

from __future__ import annotations

import json
import sys
from datetime import date as date_cls
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kcg_mail.config_loader import Config, ConfigError
from kcg_mail.entrypoints.cli_common import CONFIG, WORKDIR, check_state, console, err, read_config, run_flow  # noqa: F401
from kcg_mail.entrypoints.cli_preview import demo_year_page, preview
from kcg_mail.entrypoints.cli_round import planning_app, play_demo_round, print_round_status, write_draft_plan
from kcg_mail.entrypoints.cli_state import state_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="kcg-mail: the KCG meeting cycle, unattended.")
app.add_typer(planning_app, name="planning")
app.add_typer(state_app, name="state")
app.command()(preview)


@app.command()
def plan(year: int | None = typer.Option(None, help="Only this plan year."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
         draft: bool = typer.Option(False, "--draft", help="Write a draft plan-YYYY.yaml for --year."),
         out: Path | None = typer.Option(None, "--out", help="With --draft: where to write it."),
         workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Print the year plan with resolved dates (or, with --draft, write next year's draft)."""
    from kcg_mail.core.plan import as_json as meeting_json
    from kcg_mail.core.plan import resolve_plan

    cfg = read_config(config, workdir)
    if draft:
        write_draft_plan(cfg, year, out, workdir, config)
        return
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
def daily(date: str | None = typer.Option(None, help="Simulate this day (YYYY-MM-DD); default today."),
          workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Run the daily flow once: send what is due."""
    cfg = read_config(config, workdir)
    check_state(workdir, config)

    def start() -> Any:
        from prefect import tags

        from flows.daily import daily_flow
        from flows.serve import run_tags

        with tags(*run_tags(cfg.network.short, "daily")):  # the UI's filters find terminal runs too
            return daily_flow(date=date, workdir=str(workdir), config_dir=str(config) if config else None)

    console.print(run_flow(workdir, start))


@app.command()
def intake(workdir: Path = WORKDIR, config: Path | None = CONFIG,
           now: str | None = typer.Option(None, help="Simulated time YYYY-MM-DDTHH:MM.")) -> None:
    """Run the intake flow once: handle new replies."""
    cfg = read_config(config, workdir)
    check_state(workdir, config)

    def start() -> Any:
        from prefect import tags

        from flows.intake import intake_flow
        from flows.serve import run_tags

        with tags(*run_tags(cfg.network.short, "intake")):
            return intake_flow(now=now, workdir=str(workdir), config_dir=str(config) if config else None)

    console.print(run_flow(workdir, start))


@app.command()
def demo(workdir: Path = typer.Option(Path("var/demo"), "--workdir", "-w"), config: Path | None = CONFIG,
         planning: bool = typer.Option(True, "--planning/--no-planning", help="Also play the planning round for "
                                       "2024 (Nov-Dec 2023): needs, votes, Handlingsplan 2024.")) -> None:
    """Run the whole 2023 cycle and the planning round for 2024 in simulated time on the embedded defaults."""
    import contextlib

    from kcg_mail.entrypoints import prefect_env
    from kcg_mail.entrypoints.demo_timing import Phases, process_age

    phases = Phases()
    phases.add("start", process_age())
    read_config(config, workdir)

    def imports() -> None:  # while the Prefect server starts
        with phases.measure("start"), phases.measure("imports"):
            import flows.daily  # noqa: F401
            import flows.intake  # noqa: F401
            import flows.manual  # noqa: F401
            import flows.round  # noqa: F401
            from kcg_mail.entrypoints import demo, demo_round  # noqa: F401

    with contextlib.ExitStack() as stack:  # one Prefect server and client for the year and the round
        def year() -> Any:
            from kcg_mail.entrypoints.demo import run_demo

            with phases.measure("session"):
                phases.server = stack.enter_context(prefect_env.session(
                    workdir, while_starting=imports, on_ready=lambda sec: phases.add("prefect start", sec)))
            with phases.instrument(), phases.measure("year"):
                return run_demo(workdir, config)

        with console.status("Kör årets möten i simulerad tid (Prefect startar en lokal server)…"):
            result = run_flow(workdir, year)
        if planning:
            with phases.instrument(), phases.measure("planning"):
                play_demo_round(workdir, config)
        from kcg_mail.entrypoints import demo  # after the round: the coordinator adds a member by mail and "ja"

        with prefect_env.without_heartbeats():
            demo.add_demo_member(workdir, config)
        stopping = phases.clock()
    phases.add("stop", phases.clock() - stopping)  # the last events and logs delivered, the server stopped
    with phases.measure("report"):
        _status_table(workdir, config)
        if planning:
            print_round_status(workdir, config)
        demo_year_page(workdir, config)
    new = result.sent_after - result.sent_before
    console.print(f"{result.flow_runs} flow runs, {new} new mails ({result.sent_after} in {workdir}/mail/sent), "
                  f"{result.seconds:.1f} s. Archive: {workdir}/dropbox, state: {workdir}/state.sqlite")
    if new == 0:
        console.print("Nothing new was sent: every step was already done.")
    console.print(phases.line(), markup=False, highlight=False, soft_wrap=True)


def _status_table(workdir: Path, config: Path | None) -> None:
    """The standing overview, as in the Prefect UI: the table, then what needs a person."""
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.overview import COLUMNS, overview_needs, rows
    from kcg_mail.services.status import overview_inputs

    a = bootstrap(workdir, config)
    inp = overview_inputs(a)
    needs = overview_needs(inp)
    t = Table(title=f"{a.cfg.network.short}: läget just nu")
    for c in COLUMNS:
        t.add_column(c.capitalize())
    for r in rows(inp, needs):
        t.add_row(*(r[c] for c in COLUMNS))
    console.print(t)
    console.print("[bold]Behöver en människa[/]")
    for n in needs:
        console.print(f"• {n.line()}", markup=False, highlight=False, soft_wrap=True)
    if not needs:
        console.print("• Inget just nu.")
    if inp.waited:
        console.print("[bold]Utskick som väntar[/] (taket för utskick till medlemmarna)")
        for w in inp.waited:
            console.print(f"• {w.line()}", markup=False, highlight=False, soft_wrap=True)
    filed = [f.path for f in a.state.filings()]
    if filed:
        console.print("Arkiverat:")
        for path in filed:
            console.print(f"  {path}", markup=False, highlight=False)


@app.command()
def status(workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Show each meeting's status and what needs a person (the same as the Prefect UI's overview)."""
    read_config(config, workdir)
    check_state(workdir, config)
    _status_table(workdir, config)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.status import go_live_line

    a = bootstrap(workdir, config)
    console.print(go_live_line(a), markup=False, highlight=False)
    print_round_status(workdir, config)
    _between_meetings_section(workdir, config)


# ------------------------------------------------ between meetings


def _between_meetings_section(workdir: Path, config: Path | None) -> None:
    """Open decisions per owner, project groups' last status, proposals to approve."""
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.followup_status import followup_attention, open_decision_rows, project_rows

    a = bootstrap(workdir, config)
    rows = open_decision_rows(a)
    t = Table(title="Öppna beslut per ansvarig")
    for c in ("ansvarig", "beslut", "klart till", "möte", "ref", "försenat"):
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(r[c]) for c in ("ansvarig", "beslut", "klart till", "möte", "ref", "försenat")))
    console.print(t if rows else "Inga öppna beslut.")
    prow = project_rows(a)
    t = Table(title="Projektgrupper")
    for c in ("projektgrupp", "ledare", "start", "senaste status", "datum"):
        t.add_column(c)
    for r in prow:
        t.add_row(*(str(r[c]) for c in ("projektgrupp", "ledare", "start", "senaste status", "datum")))
    console.print(t if prow else "Inga projektgrupper.")
    for item in followup_attention(a):
        console.print(f"• {item}", markup=False)


@app.command("project-start")
def project_start(ref: str = typer.Argument(..., help="The decision, e.g. 2023-04/3 (see kcg status)."),
                  lead: str | None = typer.Option(None, help="Lead's member id (default: first owner)."),
                  decline: bool = typer.Option(False, "--decline", help="Say no: stop listing the proposal."),
                  workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Approve a "Projektgrupp: …" decision from the minutes: start the project group."""
    read_config(config, workdir)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.followup import ProjectProblem, decline_group, start_group

    try:
        if decline:
            console.print(decline_group(bootstrap(workdir, config), ref), markup=False)
            return
        started = start_group(bootstrap(workdir, config), ref, lead=lead)
    except ProjectProblem as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1)
    console.print(started.markdown(), markup=False, highlight=False)


@app.command()
def check(connect: bool = typer.Option(False, "--connect", help="Also log in to the mail system and archive."),
          workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Validate config and templates; with --connect, test the connections (sends nothing)."""
    cfg = read_config(config, workdir)
    from kcg_mail.documents.template_check import check_template
    from kcg_mail.services.compose import DEFAULT_TEMPLATES, Composer

    ok = True
    console.print(f"[green]✓[/] config {cfg.directory}: {len(cfg.network.members)} people, "
                  f"{len(cfg.all_meetings())} meetings")
    problems = Composer(cfg).check() + [f"templates/protocol.docx: {p}" for p in check_template(DEFAULT_TEMPLATES / "protocol.docx")]
    for p in problems:
        ok = False
        console.print(f"[red]✗[/] {p}", highlight=False)
    if not problems:
        console.print("[green]✓[/] mail templates and protocol template render")
    from kcg_mail.core.years import missing_plan_items, plan_years

    for item in missing_plan_items(plan_years(cfg.plans), date_cls.today(), True):
        console.print(f"[yellow]![/] {item}", highlight=False, soft_wrap=True)
    from kcg_mail.config_loader import load_planning  # the planning round

    try:
        ps = load_planning(config)
        if ps is not None:
            console.print(f"[green]✓[/] planning.yaml: {len(ps.areas)} areas, rounds {sorted(ps.rounds) or 'none'}")
    except ConfigError as exc:
        ok = False
        for p in exc.problems:
            console.print(f"[red]✗[/] {p}", highlight=False, markup=False)
    from kcg_mail.services.round_status import template_problems

    for p in template_problems(Composer(cfg)):
        ok = False
        console.print(f"[red]✗[/] {p}", highlight=False, markup=False)
    ids = cfg.transport.inbound.trusted_authserv_ids
    if ids:
        console.print(f"[green]✓[/] replies trusted when authenticated by: {', '.join(ids)}", highlight=False)
    else:
        console.print("[yellow]![/] inbound.trusted_authserv_ids is empty: every reply waits for approval "
                      "(fix: set it in config/transport.yaml; `kcg check --connect` lists the ids; SECURITY.md)",
                      highlight=False)
    if not cfg.transport.alerts.webhook_url:
        console.print("[yellow]![/] alerts.webhook_url is not set: alerts go by mail only, and there are no Prefect "
                      "automations for late or stuck runs (fix: set KCG_ALERTS__WEBHOOK_URL; README, 'Alerts')",
                      highlight=False)
    if connect:
        from functools import partial

        from kcg_mail.bootstrap import make_archive, make_mail
        from kcg_mail.ports import Check, MailTransport
        from kcg_mail.secrets import MissingSecret
        from kcg_mail.services.trust_check import authserv_checks

        # nothing is created or changed: no folders, no work directory
        for name, make in (("mail", partial(make_mail, create=False)), ("archive", make_archive)):
            try:
                made = make(cfg, workdir)
                checks = made.check()
                if isinstance(made, MailTransport):  # which servers write Authentication-Results (SECURITY.md)
                    checks += authserv_checks(made, cfg.transport.inbound.trusted_authserv_ids)
            except (ConfigError, MissingSecret) as exc:
                checks = [Check(name, False, str(exc))]
            except Exception as exc:
                checks = [Check(name, False, f"{type(exc).__name__}: {exc}")]
            for c in checks:
                ok &= c.ok
                console.print(f"{'[green]✓[/]' if c.ok else '[red]✗[/]'} {c.name}: {c.detail}", highlight=False,
                              soft_wrap=True)
            if name == "archive":
                root = cfg.transport.archive.root.rstrip("/")
                folder = cfg.meetings.naming["folder"].replace("{short}", cfg.network.short)
                console.print(f"  protocols are filed under {root}{folder} "
                              f"({cfg.transport.archive.kind} archive, root {cfg.transport.archive.root})",
                              highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(0 if ok else 1)


# ------------------------------------------------------------ held mail


@app.command()
def pending(workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """List what waits for approval ("väntar på godkännande"): sender, subject, file, why."""
    read_config(config, workdir)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.approval import pending_markdown

    console.print(pending_markdown(bootstrap(workdir, config)), markup=False, highlight=False, soft_wrap=True)


@app.command()
def approve(ref: str = typer.Argument(..., help="The held message's key (kcg pending) or file/reference."),
            workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Release a held message or distribution."""
    _held_decision("approve", ref, workdir, config)


@app.command()
def reject(ref: str = typer.Argument(..., help="The held message's key (kcg pending) or file/reference."),
           workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Refuse a held message or distribution: nothing is filed or sent."""
    _held_decision("reject", ref, workdir, config)


def _held_decision(what: str, ref: str, workdir: Path, config: Path | None) -> None:
    read_config(config, workdir)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services import approval
    from kcg_mail.services.lock import intake_lock, lock_dir
    from kcg_mail.services.manual import ManualProblem

    a = bootstrap(workdir, config)
    try:
        with intake_lock(lock_dir(a)):
            out = approval.approve(a, ref) if what == "approve" else approval.reject(a, ref)
    except ManualProblem as exc:
        err.print(f"[red]✗[/] {exc}", highlight=False)
        raise typer.Exit(1)
    console.print(out.markdown(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def serve(workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Serve the flows on their schedules against a Prefect server (PREFECT_API_URL)."""
    import os

    from kcg_mail.entrypoints.prefect_env import FIX

    cfg = read_config(config, workdir)
    check_state(workdir, config)
    if not os.environ.get("PREFECT_API_URL"):
        err.print(f"[bold red]Prefect:[/] kcg serve needs a Prefect server for its schedules; {FIX}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(3)

    wd, cd = str(workdir.resolve()), str(config.resolve()) if config else None
    from flows.serve import early_sigterm

    stopping = early_sigterm()  # a SIGTERM while starting up: finish the step at hand, then exit

    def start() -> Any:
        # Prefect is imported in the main thread, and the start-up intake run (mail that came
        # in while kcg serve was stopped) is done, before the listener's thread starts (two
        # threads importing Prefect at once printed "Failed to initialize plugins: deadlock
        # detected"). The start-up run comes first, before the deployments are registered
        # (1-5 s): that mail goes out about two seconds after the start command. A SIGTERM
        # before Prefect's runner has started ends the step at hand, then kcg serve exits.
        import flows.intake  # noqa: F401
        from flows.serve import build_runner, relay_early_stop, run_runner
        from kcg_mail.entrypoints.push import run_listener

        push = run_listener(wd, cd, catch_up_here=True)  # new mail: an intake flow run in this process
        try:
            if not stopping.is_set():
                runner, deps = build_runner(wd, cd, cfg.network.short, stop=stopping)
            if not stopping.is_set():
                _automations(cfg)
            if not stopping.is_set():
                relay_early_stop(runner, stopping)
                run_runner(runner, deps)  # returns on SIGTERM / Ctrl-C
        finally:
            if not push.stop():
                err.print("An intake run was still working after 20 s; it will be redone on the next start.")

    run_flow(workdir, start)


@app.command()
def adopt(workdir: Path = WORKDIR, config: Path | None = CONFIG,
          dry_run: bool = typer.Option(False, "--dry-run", help="Only report; record nothing.")) -> None:
    """Take over the protocols already in the archive: record them as filed (nothing is asked for or sent
    again) and build the decision log from them."""
    read_config(config, workdir)
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.adopt import adopt as run_adopt

    report = run_adopt(bootstrap(workdir, config), dry_run=dry_run)
    console.print(f"Läste {', '.join(report.folders) or '(inga mappar)'}", markup=False, highlight=False)
    t = Table(title="Protokoll som redan finns i arkivet" + (" (provkörning, inget sparat)" if dry_run else ""))
    for c in ("möte", "version", "fil", "beslut", "hur"):
        t.add_column(c)
    how_sv = {"exact": "datum", "near": "datum nära mötet", "month": "månad"}
    for a in report.adopted:
        t.add_row(a.meeting_id, str(a.version), a.path, "kunde inte läsas" if a.decisions is None else str(a.decisions),
                  how_sv.get(a.how, a.how))
    console.print(t)
    if report.already:
        console.print(f"{len(report.already)} fil(er) var redan registrerade.")
    for path, why in report.unread:
        console.print(f"• Besluten i {path} kunde inte läsas: {why}", markup=False, highlight=False)
    if report.unplaced:
        console.print("Kunde inte placeras (gör: döp om filen enligt namnprincipen eller lägg till årets plan, "
                      "kör sedan `kcg adopt` igen):")
        for path, why in report.unplaced:
            console.print(f"  • {path}: {why}", markup=False, highlight=False)



def _automations(cfg: Config) -> None:
    from kcg_mail.entrypoints.automations import ensure_automations

    try:
        for name in ensure_automations(cfg):
            console.print(f"automation: {name}", markup=False, highlight=False)
    except Exception as exc:  # the flows must be served even when this fails
        err.print(f"could not create the Prefect automations: {type(exc).__name__}: {exc}", markup=False)


def _listener(cfg: Config, workdir: str, config_dir: str | None, deployment: str) -> Any:
    """The push listener for worker setups: new mail starts the work pool's intake deployment."""
    from functools import partial

    import flows.intake  # noqa: F401  (Prefect imported in the main thread first)
    from kcg_mail.entrypoints.listener import trigger_intake_deployment
    from kcg_mail.entrypoints.push import run_listener

    return run_listener(workdir, config_dir, on_mail=partial(trigger_intake_deployment, deployment))


@app.command()
def listen(workdir: Path = WORKDIR, config: Path | None = CONFIG,
           deployment: str | None = typer.Option(None, help="The intake deployment to start "
                                                    "(default kcg-intake/<short>-worker, as in prefect.yaml).")) -> None:
    """The push listener alone, for setups where Prefect workers run the flows
    (`prefect deploy`): waits for new mail and starts the intake deployment."""

    from flows.serve import intake_deployment

    cfg = read_config(config, workdir)
    _automations(cfg)
    name = deployment or intake_deployment(cfg.network.short, worker=True)
    listener = _listener(cfg, str(workdir.resolve()), str(config.resolve()) if config else None, name)
    console.print(f"listening for new mail ({cfg.network.short}), starting {name}; Ctrl-C stops",
                  markup=False)
    try:
        listener.wait_for_stop()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()


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
