"""The state record in SQLite (the embedded default and the only store).

WAL mode, one short transaction per write, ``synchronous=FULL`` so a record
that returned is on disk before the next side effect happens.

The file carries a schema marker and version (table ``meta``: ``schema`` =
``kcg-mail-state``, ``version``, and a random ``instance`` id written when the
file is created), so a foreign, newer or replaced file is recognised instead of
being silently used or recreated. ``backup`` keeps rotated copies made with
SQLite's online backup API (consistent even while another process writes).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcg_mail.ports import ActionRecord, FilingRecord, MessageRecord, StateStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
  key TEXT PRIMARY KEY, meeting_id TEXT, action TEXT NOT NULL, status TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}', at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actions_meeting ON actions(meeting_id);
CREATE TABLE IF NOT EXISTS messages (
  msg_key TEXT PRIMARY KEY, ref TEXT NOT NULL, meeting_id TEXT, outcome TEXT NOT NULL, reason TEXT NOT NULL,
  sender TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS filings (
  meeting_id TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, rev TEXT NOT NULL,
  content_hash TEXT NOT NULL, link TEXT, source_msg_key TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (meeting_id, content_hash));
CREATE TABLE IF NOT EXISTS decisions (
  meeting_id TEXT NOT NULL, idx INTEGER NOT NULL, decision TEXT NOT NULL, owner TEXT NOT NULL, due TEXT NOT NULL,
  PRIMARY KEY (meeting_id, idx));
CREATE TABLE IF NOT EXISTS attendance (
  meeting_id TEXT NOT NULL, email TEXT NOT NULL, response TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (meeting_id, email));
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: The schema marker and version in ``meta`` (version 1 had no meta table).
SCHEMA_NAME = "kcg-mail-state"
SCHEMA_VERSION = 2
BACKUP_DIR = "state-backups"
BACKUPS_KEPT = 7
#: beside the backups: the fingerprint of the state the newest one was taken of
LAST_BACKUP = ".last-fingerprint"


class StateFileError(RuntimeError):
    """The state file cannot be used as it is. The message names the file and the fix."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SqliteState(StateStore):
    path: Path  # always a file

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._check_marker()
            self._db.executescript(SCHEMA)
            self._stamp()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateFileError(
                f"{self.path} is not a kcg-mail state file ({exc}). Fix: restore it with "
                f"`kcg state restore` (copies in {self.path.parent / BACKUP_DIR}) or rebuild it with "
                "`kcg state rebuild`."
            ) from exc
        except StateFileError:
            self._db.close()
            raise
        self._used = False  # the marker file is written at the first record

    @property
    def marker_path(self) -> Path:
        """``state.sqlite.id``: written beside the file at its first record, so a
        missing or emptied state file is recognised as a reset, not a new start."""
        return marker_path(self.path)

    def _mark_used(self) -> None:
        if self._used:
            return
        self._used = True
        marker = read_marker(self.path)
        if marker is not None and marker.get("instance") != self.instance:
            return  # another file's marker: the guard in bootstrap reports it
        if marker is None:
            write_marker(self.path, self.instance)

    def _check_marker(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return  # a new file
        if "meta" not in tables:
            if "actions" in tables:
                return  # version 1 (before the marker): stamped below
            raise StateFileError(
                f"{self.path} is an SQLite file of something else (tables {', '.join(sorted(tables))[:200]}). "
                "Fix: point the work directory at the right state file, or move this one away."
            )
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema", SCHEMA_NAME) != SCHEMA_NAME:
            raise StateFileError(f"{self.path} is marked as {meta.get('schema')!r}, not a kcg-mail state file. "
                                 "Fix: point the work directory at the right state file.")
        if int(meta.get("version", "0") or 0) > SCHEMA_VERSION:
            raise StateFileError(
                f"{self.path} was written by a newer kcg-mail (state version {meta.get('version')}, this one "
                f"knows {SCHEMA_VERSION}). Fix: update kcg-mail; do not run an older one on this file."
            )

    def _stamp(self) -> None:
        for key, value in (("schema", SCHEMA_NAME), ("instance", uuid.uuid4().hex), ("created", _now())):
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?,?)", (key, value))
        self._db.execute("INSERT INTO meta(key, value) VALUES ('version', ?) ON CONFLICT(key) DO UPDATE SET "
                         "value=excluded.value", (str(SCHEMA_VERSION),))

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._rows("SELECT key, value FROM meta")}

    @property
    def instance(self) -> str:
        return self.meta().get("instance", "")

    def is_blank(self) -> bool:
        """Nothing was ever recorded: no action, message, filing nor value (a first
        run on a day off records only its go-live day, and that counts: the marker
        is written at the first record of any kind)."""
        for table in ("actions", "messages", "filings", "kv"):
            if self._rows(f"SELECT 1 FROM {table} LIMIT 1"):
                return False
        return True

    def fingerprint(self) -> str:
        """Changes whenever a record changes (to skip identical backups)."""
        import hashlib

        h = hashlib.sha256()
        for sql in ("SELECT key, status, at FROM actions ORDER BY key", "SELECT msg_key, status, at FROM messages ORDER BY msg_key",
                    "SELECT meeting_id, version, content_hash FROM filings ORDER BY 1, 2", "SELECT * FROM kv ORDER BY key",
                    "SELECT * FROM decisions ORDER BY 1, 2", "SELECT * FROM attendance ORDER BY 1, 2"):
            for row in self._rows(sql):
                h.update(repr(tuple(row)).encode())
        return h.hexdigest()[:16]

    def backup(self, folder: Path | str, *, keep: int = BACKUPS_KEPT, stamp: str | None = None) -> Path:
        """A consistent copy with SQLite's online backup API, as
        ``<folder>/state-<UTC time>.sqlite``; only the newest ``keep`` copies stay."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"state-{stamp}.sqlite"
        tmp = folder / f".state-{stamp}.tmp"
        dst = sqlite3.connect(tmp)
        try:
            with self._lock:
                self._db.backup(dst)
        finally:
            dst.close()
        os.replace(tmp, target)
        for old in list_backups(folder)[keep:]:
            old.unlink(missing_ok=True)
        return target

    def keep_backup(self, *, keep: int = BACKUPS_KEPT) -> Path | None:
        """A backup in ``state-backups/`` beside the file, unless nothing changed since the last one."""
        folder = self.path.parent / BACKUP_DIR
        fp = self.fingerprint()
        last = folder / LAST_BACKUP
        if last.exists() and last.read_text().strip() == fp and list_backups(folder):
            return None
        path = self.backup(folder, keep=keep)
        last.write_text(fp + "\n")
        return path

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: Iterable[Any]) -> None:
        self._mark_used()
        with self._lock:
            self._db.execute(sql, tuple(args))

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _select(self, table: str, order: str, column: str, value: str | None) -> list[sqlite3.Row]:
        """Every row of ``table`` by ``order``, or only those whose ``column`` is ``value``
        when one is given (``table``, ``order`` and ``column`` are this module's own words)."""
        if value is None:
            return self._rows(f"SELECT * FROM {table} ORDER BY {order}")
        return self._rows(f"SELECT * FROM {table} WHERE {column}=? ORDER BY {order}", (value,))

    # actions ------------------------------------------------------------
    @staticmethod
    def _action(r: sqlite3.Row) -> ActionRecord:
        return ActionRecord(r["key"], r["meeting_id"], r["action"], r["status"], json.loads(r["detail"]), r["at"])

    def action(self, key: str) -> ActionRecord | None:
        rows = self._rows("SELECT * FROM actions WHERE key=?", (key,))
        return self._action(rows[0]) if rows else None

    def record_action(self, key: str, meeting_id: str | None, action: str, status: str,
                      detail: dict[str, Any] | None = None) -> None:
        self._write(
            "INSERT INTO actions(key, meeting_id, action, status, detail, at) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(key) DO UPDATE SET status=excluded.status, detail=excluded.detail, at=excluded.at",
            (key, meeting_id, action, status, json.dumps(detail or {}, ensure_ascii=False, sort_keys=True), _now()),
        )

    def actions(self, meeting_id: str | None = None) -> list[ActionRecord]:
        return [self._action(r) for r in self._select("actions", "at, key", "meeting_id", meeting_id)]

    # messages -----------------------------------------------------------
    def message(self, msg_key: str) -> MessageRecord | None:
        rows = self._rows("SELECT * FROM messages WHERE msg_key=?", (msg_key,))
        return MessageRecord(**dict(rows[0])) if rows else None

    def record_message(self, record: MessageRecord) -> None:
        self._write(
            "INSERT INTO messages(msg_key, ref, meeting_id, outcome, reason, sender, subject, status, at) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(msg_key) DO UPDATE SET ref=excluded.ref, meeting_id=excluded.meeting_id, "
            "outcome=excluded.outcome, reason=excluded.reason, status=excluded.status, at=excluded.at",
            (record.msg_key, record.ref, record.meeting_id, record.outcome, record.reason, record.sender,
             record.subject, record.status, record.at or _now()),
        )

    def messages(self, outcome: str | None = None) -> list[MessageRecord]:
        return [MessageRecord(**dict(r)) for r in self._select("messages", "at", "outcome", outcome)]

    # filings ------------------------------------------------------------
    def record_filing(self, record: FilingRecord) -> None:
        self._write(
            "INSERT OR IGNORE INTO filings(meeting_id, version, path, rev, content_hash, link, source_msg_key, at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (record.meeting_id, record.version, record.path, record.rev, record.content_hash, record.link,
             record.source_msg_key, record.at or _now()),
        )

    def filings(self, meeting_id: str | None = None) -> list[FilingRecord]:
        return [FilingRecord(**dict(r)) for r in self._select("filings", "meeting_id, version", "meeting_id", meeting_id)]

    # decisions ----------------------------------------------------------
    def replace_decisions(self, meeting_id: str, decisions: Iterable[dict[str, str]]) -> None:
        self._mark_used()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM decisions WHERE meeting_id=?", (meeting_id,))
                for i, d in enumerate(decisions):
                    self._db.execute(
                        "INSERT INTO decisions(meeting_id, idx, decision, owner, due) VALUES (?,?,?,?,?)",
                        (meeting_id, i, d.get("decision", ""), d.get("owner", ""), d.get("due", "")),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def decisions(self, meeting_id: str | None = None) -> list[dict[str, str]]:
        rows = self._select("decisions", "meeting_id, idx", "meeting_id", meeting_id)
        return [{"meeting_id": r["meeting_id"], "decision": r["decision"], "owner": r["owner"], "due": r["due"]} for r in rows]

    # attendance ---------------------------------------------------------
    def record_attendance(self, meeting_id: str, email: str, response: str) -> None:
        self._write(
            "INSERT INTO attendance(meeting_id, email, response, at) VALUES (?,?,?,?) "
            "ON CONFLICT(meeting_id, email) DO UPDATE SET response=excluded.response, at=excluded.at",
            (meeting_id, email.lower(), response, _now()),
        )

    def attendance(self, meeting_id: str) -> dict[str, str]:
        return {r["email"]: r["response"] for r in self._rows("SELECT * FROM attendance WHERE meeting_id=?", (meeting_id,))}

    # key/value ----------------------------------------------------------
    def get(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def put(self, key: str, value: str) -> None:
        self._write("INSERT INTO kv(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))


def list_backups(folder: Path | str) -> list[Path]:
    """Backups in ``folder``, newest first."""
    folder = Path(folder)
    return sorted(folder.glob("state-*.sqlite"), reverse=True) if folder.is_dir() else []


def marker_path(state_path: Path | str) -> Path:
    p = Path(state_path)
    return p.with_name(p.name + ".id")


def read_marker(state_path: Path | str) -> dict[str, str] | None:
    p = marker_path(state_path)
    try:
        marker: dict[str, str] = json.loads(p.read_text(encoding="utf-8"))
        return marker
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"instance": "?"}


def write_marker(state_path: Path | str, instance: str) -> None:
    p = marker_path(state_path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps({"instance": instance, "state": Path(state_path).name, "since": _now(),
                               "note": "written at the first record; see `kcg state --help`"}) + "\n",
                   encoding="utf-8")
    os.replace(tmp, p)
