"""An accepted protocol is rebuilt (``kcg_mail.documents.rebuild``) before anything else
happens to it: the archive, the members' mail and the decision log only ever see the
rebuilt file. The host's original bytes are kept for the coordinator in LOCAL quarantine
storage, ``<workdir>/quarantine/originals/<meeting>/``, never in the shared archive.

The state record notes each original (``original:<meeting>:<sha256 of the rebuilt file>``)
with its path and what the rebuild left out, so the coordinator can tell which original
a filed version came from."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from kcg_mail.documents.rebuild import rebuild
from kcg_mail.services.app import App
from kcg_mail.services.lock import lock_dir

log = logging.getLogger(__name__)

ORIGINALS = Path("quarantine") / "originals"


def originals_dir(app: App) -> Path:
    return lock_dir(app) / ORIGINALS


def accept_document(app: App, meeting_id: str, msg_key: str, filename: str,
                    data: bytes) -> tuple[bytes, str, tuple[str, ...]]:
    """(rebuilt bytes, kind, what the rebuild left out) of an accepted attachment; the
    original is kept locally first. Raises ``MinutesRejected`` for a file that cannot be rebuilt."""
    rebuilt = rebuild(filename, data)
    path = keep_original(app, meeting_id, msg_key, filename, data)
    if _already_filed(app, meeting_id, data):
        # These very bytes are in the archive already (a protocol adopted from before go-live,
        # mailed in again): passed on unchanged so the intake sees the duplicate it is; nothing
        # new is filed or sent for a duplicate.
        return data, rebuilt.kind, ()
    rebuilt_hash = hashlib.sha256(rebuilt.data).hexdigest()
    app.ledger.originals.put(meeting_id, rebuilt_hash, {
        "path": str(path), "filename": filename[:200], "sha256": hashlib.sha256(data).hexdigest(),
        "msg_key": msg_key, "removed": list(rebuilt.removed),
    })
    if rebuilt.removed:
        log.info("%s: %s rebuilt; left out: %s", meeting_id, filename, rebuilt.summary_sv)
    return rebuilt.data, rebuilt.kind, rebuilt.removed


def _already_filed(app: App, meeting_id: str, data: bytes) -> bool:
    from kcg_mail.adapters.content_hash import dropbox_content_hash

    digest = dropbox_content_hash(data)
    return any(f.content_hash == digest for f in app.state.filings(meeting_id))


def keep_original(app: App, meeting_id: str, msg_key: str, filename: str, data: bytes) -> Path:
    """Write the host's original once (atomically, mode 0600) and return its path."""
    safe_id = re.sub(r"[^0-9A-Za-z_-]", "_", meeting_id)[:40] or "okänt"
    safe_name = re.sub(r"[^\w. -]", "_", Path(filename or "bilaga").name)[-120:].lstrip(".") or "bilaga"
    folder = originals_dir(app) / safe_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{msg_key[:16]}-{hashlib.sha256(data).hexdigest()[:12]}-{safe_name}"
    if path.exists() and path.stat().st_size == len(data):
        return path
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
