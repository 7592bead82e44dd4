"""State that cannot silently reset.

A run must never start from an empty state record in a work directory that has
already sent mail or filed minutes: every template, chase, escalation and
distribution would go out again. Before the state file is opened,
:func:`open_state` looks for proof of earlier use:

- the marker file ``state.sqlite.id``, written beside the state file at its
  first record (and naming the file's instance id),
- mail in the Maildir Sent folder (embedded transport),

(files in the archive alone are no proof: an archive may hold the protocols of
the years before kcg-mail, which ``kcg adopt`` takes over on a new state),

and refuses to run when the state file is missing, empty, blank (no records) or
another file (a different instance id) while such proof exists. The error names
the file and both fixes: ``kcg state restore`` (from the automatic backup each run
keeps, newest of the last 7, in ``<workdir>/state-backups/``) or ``kcg state rebuild``
(from the Sent folder markers and the archive). Nothing is sent in that case.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from kcg_mail.adapters.sqlite_state import (
    BACKUP_DIR,
    BACKUPS_KEPT,
    SqliteState,
    StateFileError,
    list_backups,
    marker_path,
    read_marker,
    write_marker,
)
from kcg_mail.ports import Archive, MailTransport

STATE_FILE = "state.sqlite"


class StateReset(StateFileError):
    """The state file is missing, empty or replaced in a work directory that was used."""


def evidence(state_path: Path, mail: MailTransport | None, archive: Archive | None) -> list[str]:
    """What shows that this work directory was used before (empty: a new start)."""
    out = []
    if read_marker(state_path) is not None:
        out.append(f"the marker {marker_path(state_path)} (written at the state's first record)")
    if mail is not None:
        out += mail.usage_evidence()
    return out


def _fix(state_path: Path) -> str:
    backups = list_backups(state_path.parent / BACKUP_DIR)
    newest = f" (newest: {backups[0].name})" if backups else " (none kept yet)"
    return (f"Nothing was sent. Fix: restore the last backup with `kcg state restore -w {state_path.parent}`, "
            f"backups in {state_path.parent / BACKUP_DIR}{newest}; or rebuild the record from the Sent folder "
            f"and the archive with `kcg state rebuild -w {state_path.parent}`.")


def open_state(workdir: Path, mail: MailTransport | None, archive: Archive | None, *,
               state_path: Path | None = None, backup: bool = True) -> SqliteState:
    """The work directory's state, checked not to have been reset; keeps a rotated backup."""
    state_path = Path(state_path or Path(workdir) / STATE_FILE)
    proof = evidence(state_path, mail, archive)
    missing = not state_path.exists() or state_path.stat().st_size == 0
    if missing and proof:
        what = "is missing" if not state_path.exists() else "is empty (0 bytes)"
        raise StateReset(f"The state file {state_path} {what}, but this work directory was used before: "
                         f"{'; '.join(proof)}. {_fix(state_path)}")
    state = SqliteState(state_path)
    try:
        marker = read_marker(state_path)
        if marker is not None and marker.get("instance") != state.instance:
            raise StateReset(f"The state file {state_path} is not the one this work directory used (instance "
                             f"{state.instance}, the marker {marker_path(state_path)} says {marker.get('instance')}): "
                             f"it was replaced or recreated. {_fix(state_path)} If this file is the right one, "
                             f"delete {marker_path(state_path)}.")
        if state.is_blank() and proof:
            raise StateReset(f"The state file {state_path} holds no records, but this work directory was used "
                             f"before: {'; '.join(proof)}. {_fix(state_path)}")
        if backup and not state.is_blank():
            keep_backup(state)
    except BaseException:
        state.close()
        raise
    return state


def keep_backup(state: SqliteState, *, keep: int = BACKUPS_KEPT) -> Path | None:
    """A backup in ``state-backups/`` unless nothing changed since the last one."""
    return state.keep_backup(keep=keep)


def _move_aside(state_path: Path) -> Path | None:
    if not state_path.exists():
        for suffix in ("-wal", "-shm"):
            Path(str(state_path) + suffix).unlink(missing_ok=True)
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = state_path.with_name(f"{state_path.name}.replaced-{stamp}")
    os.replace(state_path, aside)
    for suffix in ("-wal", "-shm"):
        side = Path(str(state_path) + suffix)
        if side.exists():
            os.replace(side, Path(str(aside) + suffix))
    return aside


def restore_backup(state_path: Path, backup: Path | None = None) -> tuple[Path, Path | None]:
    """Put a backup (default the newest) in place of the state file; the current file,
    if any, is kept beside it. Returns (backup used, where the old file went)."""
    backups = list_backups(state_path.parent / BACKUP_DIR)
    src = Path(backup) if backup else (backups[0] if backups else None)
    if src is None or not src.exists():
        raise StateFileError(f"No backup to restore in {state_path.parent / BACKUP_DIR}. "
                             f"Fix: rebuild with `kcg state rebuild -w {state_path.parent}`.")
    aside = _move_aside(state_path)
    tmp = state_path.with_name(state_path.name + ".restoring")
    shutil.copyfile(src, tmp)
    con = sqlite3.connect(tmp)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if ok != "ok":
        tmp.unlink(missing_ok=True)
        raise StateFileError(f"The backup {src} is damaged ({ok}); pick another with --backup.")
    os.replace(tmp, state_path)
    return src, aside


def fresh_state(state_path: Path) -> tuple[SqliteState, Path | None]:
    """A new, empty state file for a rebuild (the old one kept beside it), owning the marker."""
    aside = _move_aside(state_path)
    state = SqliteState(state_path)
    write_marker(state_path, state.instance)
    return state, aside
