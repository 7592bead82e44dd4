"""What every ``kcg`` command shares: the consoles, the --workdir/--config
options, reading the config with file/field/fix errors, one-line Prefect
failures and the state guard."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from kcg_mail.config_loader import Config, ConfigError, load_config, load_installed

T = TypeVar("T")

console = Console() if sys.stdout.isatty() else Console(width=130)
err = Console(stderr=True)

WORKDIR = typer.Option(Path("var"), "--workdir", "-w", help="Where state, Maildir and the local archive live.")
CONFIG = typer.Option(None, "--config", "-c", help="Config directory (default: config/ or $KCG_CONFIG_DIR).")


def read_config(config: Path | None, workdir: Path | None = None) -> Config:
    """The configuration, or the problems naming file, field and fix (exit 2). With
    ``workdir``: as the installation's runs see it, with the plans and members the
    coordinator decided by reply (``load_installed``)."""
    try:
        return load_config(config) if workdir is None else load_installed(workdir, config)
    except ConfigError as exc:
        err.print("[bold red]Configuration problems:[/]")
        for p in exc.problems:
            err.print(f"  • {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def run_flow(workdir: Path, start: Callable[[], T]) -> T:
    """Prepare Prefect for a one-shot run on ``workdir`` (created when new)
    and call ``start()``; a Prefect start-up failure is one line, exit 3."""
    from kcg_mail.entrypoints import prefect_env

    try:
        prefect_env.prepare(workdir)
        return start()
    except Exception as exc:
        line = prefect_env.explain(exc)
        if line is None:
            raise
        err.print(f"[bold red]Prefect:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(3)


def check_state(workdir: Path, config: Path | None) -> None:
    """Refuse to run on a reset or foreign state file, with the message that names the file
    and the fix (kcg_mail/state_guard.py), instead of a traceback."""
    from kcg_mail.adapters.sqlite_state import StateFileError
    from kcg_mail.bootstrap import bootstrap

    try:
        a = bootstrap(workdir, config)
    except StateFileError as exc:
        err.print("[bold red]State problem:[/]")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    a.close()
