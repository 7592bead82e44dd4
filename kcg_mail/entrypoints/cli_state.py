"""``kcg state backups|restore|rebuild``: the state record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from kcg_mail.entrypoints.cli_common import CONFIG, WORKDIR, console, err, read_config
from kcg_mail.services.app import App

if TYPE_CHECKING:
    from kcg_mail.adapters.sqlite_state import SqliteState

state_app = typer.Typer(no_args_is_help=True, help="The state record: backups, restore, rebuild.")


def _state_app(workdir: Path, config: Path | None) -> App:
    from kcg_mail.bootstrap import bootstrap

    return bootstrap(workdir, config, guard_state=False)


@state_app.command("backups")
def state_backups(workdir: Path = WORKDIR) -> None:
    """List the automatic backups of the state file (newest first)."""
    from kcg_mail.adapters.sqlite_state import BACKUP_DIR, list_backups

    backups = list_backups(workdir / BACKUP_DIR)
    if not backups:
        console.print(f"No backups in {workdir / BACKUP_DIR}.")
    for b in backups:
        console.print(f"{b}  {b.stat().st_size} bytes", markup=False, highlight=False)


@state_app.command("restore")
def state_restore(backup: Path | None = typer.Option(None, "--backup", help="This backup (default: the newest)."),
                  workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Put the newest backup back in place, then record what Sent and the archive show
    happened after it (so nothing is sent twice)."""
    read_config(config, workdir)
    from kcg_mail.adapters.sqlite_state import StateFileError, write_marker
    from kcg_mail.services.rebuild import rebuild
    from kcg_mail.state_guard import STATE_FILE, restore_backup

    state_path = workdir / STATE_FILE
    try:
        used, aside = restore_backup(state_path, backup)
    except StateFileError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1)
    a = _state_app(workdir, config)
    try:
        write_marker(state_path, cast("SqliteState", a.state).instance)  # guard_state=False: the SQLite file
        console.print(f"Restored {state_path} from {used}" + (f"; the previous file is kept as {aside}" if aside else ""),
                      markup=False, highlight=False)
        try:
            report = rebuild(a)
        except NotImplementedError as exc:
            console.print(f"Not merged with the Sent folder: {exc}", markup=False, highlight=False)
        else:
            for line in report.lines():
                console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    finally:
        a.close()


@state_app.command("rebuild")
def state_rebuild(workdir: Path = WORKDIR, config: Path | None = CONFIG) -> None:
    """Start a new state file and fill it from the Sent folder markers (X-KCG-Mail) and the
    archive: everything already sent counts as sent, every filed protocol as filed."""
    read_config(config, workdir)
    from kcg_mail.services.rebuild import rebuild
    from kcg_mail.state_guard import STATE_FILE, fresh_state

    state_path = workdir / STATE_FILE
    state, aside = fresh_state(state_path)
    state.close()
    a = _state_app(workdir, config)
    try:
        report = rebuild(a)
    except NotImplementedError as exc:
        err.print(f"{exc}", markup=False, highlight=False)
        raise typer.Exit(1)
    finally:
        a.close()
    console.print(f"Rebuilt {state_path}" + (f"; the previous file is kept as {aside}" if aside else ""),
                  markup=False, highlight=False)
    for line in report.lines():
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
