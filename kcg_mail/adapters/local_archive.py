"""The embedded default archive: a folder on this machine, laid out exactly
like the Dropbox folder (archive path ``/KCG/Protokoll/2023/x.docx`` is the
file ``<root>/KCG/Protokoll/2023/x.docx``). Pointing ``root`` at a folder that
the Dropbox desktop app syncs gives the same result as the Dropbox adapter.

Semantics shared with :class:`~kcg_mail.adapters.dropbox_archive.DropboxArchive`
(and checked by one contract test suite for both):

* paths are normalised with :func:`kcg_mail.core.naming.safe_path`; a path with a
  ``..`` component is rejected with ``ValueError`` and nothing can be written
  outside ``root`` (symlinks that lead out are rejected too);
* ``store`` is a no-op (``created=False``) when the same bytes are already at the
  path or at one of its versions (``x (v2).docx`` ...); different bytes go to the
  path if it is free, else to the next version name (highest existing version
  + 1), never over an existing file, unless ``overwrite=True``;
* ``content_hash`` is Dropbox's content hash, so a filing recorded against the
  local archive is recognised in Dropbox and the other way round;
* ``read``/``shared_link`` of a missing file raise ``FileNotFoundError``.

Writes are atomic: a temporary file in the same folder, ``fsync``, then a
hard link (new files: fails if the name was taken meanwhile, so a concurrent
writer is never clobbered) or ``os.replace`` (overwrite), then ``fsync`` of the
folder.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcg_mail.adapters.content_hash import dropbox_content_hash
from kcg_mail.core.naming import safe_path, version_path
from kcg_mail.ports import Archive, Check, StoredFile, TransportError

#: The local stand-in for Dropbox folder membership (see ``add_member``).
MEMBERS_FILE = ".kcg-members.json"
_TMP_PREFIX = ".kcg-tmp-"
_VERSION_IN_NAME = re.compile(r" \(v(\d+)\)")


# ------------------------------------------------------------ shared helpers


def archive_path(path: str) -> str:
    """Validate and normalise an archive path (used by every archive adapter).

    Rejects traversal explicitly rather than silently dropping ``..``: a path
    with ``..`` in it is a bug upstream (a naming pattern or a config value),
    and storing the file somewhere else than asked would hide it."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("archive path is empty")
    parts = path.replace("\\", "/").split("/")
    if any(p.strip() == ".." for p in parts):
        raise ValueError(f"archive path {path!r} contains '..'; refusing to leave the archive root")
    return safe_path(path)


def find_versions(path: str, names: Iterable[str], fold: Callable[[str], str] = lambda s: s) -> dict[int, str]:
    """Which versions of ``path`` (an archive path) exist among ``names`` (file
    names in the path's folder). Returns ``{n: name}``; n=1 is the path itself.
    ``fold`` normalises names before comparing (Dropbox names are
    case-insensitive: pass ``str.lower``)."""
    base = path.rpartition("/")[2]
    found: dict[int, str] = {}
    for name in names:
        if fold(name) == fold(base):
            found[1] = name
            continue
        for m in _VERSION_IN_NAME.finditer(name):
            n = int(m.group(1))
            if n >= 2 and fold(version_path("/" + base, n)[1:]) == fold(name):
                found[n] = name
                break
    return found


def _fsync_dir(folder: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: directories cannot be opened
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ adapter


class LocalFolderArchive(Archive):
    """An :class:`~kcg_mail.ports.Archive` in a local folder."""

    root: Path
    _lock: threading.Lock

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ paths

    def _fs(self, apath: str) -> Path:
        """The file system path of a normalised archive path, checked to lie
        inside root even after following symlinks."""
        target = self.root.joinpath(*[p for p in apath.split("/") if p])
        real_root = os.path.realpath(self.root)
        real_target = os.path.realpath(target)
        if real_target != real_root and not real_target.startswith(real_root.rstrip(os.sep) + os.sep):
            raise ValueError(f"archive path {apath!r} resolves outside the archive root {self.root}")
        return target

    def _stored(self, apath: str, fs: Path, digest: str | None = None, created: bool = True) -> StoredFile:
        st = fs.stat()
        if digest is None:
            digest = dropbox_content_hash(fs.read_bytes())
        return StoredFile(
            path=apath,
            rev=f"{digest[:16]}-{st.st_mtime_ns}",
            content_hash=digest,
            size=st.st_size,
            created=created,
        )

    def _same_content(self, fs: Path, data: bytes, digest: str) -> bool:
        try:
            if fs.stat().st_size != len(data):
                return False
            return dropbox_content_hash(fs.read_bytes()) == digest
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------ writing

    def _write_tmp(self, folder: Path, data: bytes) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return Path(tmp)

    def _create_new(self, target: Path, data: bytes) -> None:
        """Atomically create ``target``; FileExistsError if the name is taken."""
        tmp = self._write_tmp(target.parent, data)
        try:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise
            except OSError:
                # File systems without hard links (some network or FUSE mounts):
                # a tiny window remains between the check and the rename.
                if os.path.lexists(target):
                    raise FileExistsError(str(target)) from None
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(target.parent)

    def _replace(self, target: Path, data: bytes) -> None:
        tmp = self._write_tmp(target.parent, data)
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def _make_folder(self, folder: Path, apath: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise TransportError(
                f"Cannot store {apath}: a file is in the way of its folder in {self.root}. "
                "Rename or move that file."
            ) from None
        except PermissionError as e:
            raise TransportError(f"Cannot create the folder for {apath} in {self.root}: {e}") from e

    # ------------------------------------------------------------ Archive

    def store(self, path: str, data: bytes, *, overwrite: bool = False) -> StoredFile:
        apath = archive_path(path)
        digest = dropbox_content_hash(data)
        fs = self._fs(apath)
        with self._lock:
            self._make_folder(fs.parent, apath)
            try:
                if overwrite:
                    if fs.is_dir():
                        raise TransportError(f"Cannot store {apath}: a folder has that name in {self.root}.")
                    if self._same_content(fs, data, digest):
                        return self._stored(apath, fs, digest, created=False)
                    self._replace(fs, data)
                    return self._stored(apath, fs, digest)

                names = [p.name for p in fs.parent.iterdir() if p.is_file()]
                versions = find_versions(apath, names)
                folder = apath.rpartition("/")[0]
                for n in sorted(versions):
                    candidate = f"{folder}/{versions[n]}"
                    if self._same_content(self._fs(candidate), data, digest):
                        return self._stored(candidate, self._fs(candidate), digest, created=False)
                # The path itself when free, else one past the highest version.
                n = 1 if 1 not in versions else max(versions) + 1
                while True:
                    candidate = apath if n == 1 else version_path(apath, n)
                    target = self._fs(candidate)
                    try:
                        self._create_new(target, data)
                        return self._stored(candidate, target, digest)
                    except FileExistsError:
                        if target.is_dir():
                            raise TransportError(
                                f"Cannot store {candidate}: a folder has that name in {self.root}."
                            ) from None
                        # Taken meanwhile by another writer: maybe with our bytes.
                        if self._same_content(target, data, digest):
                            return self._stored(candidate, target, digest, created=False)
                        n += 1
            except PermissionError as e:
                raise TransportError(
                    f"No write permission for {apath} in {self.root}: {e}. Check the folder's permissions."
                ) from e

    def read(self, path: str) -> bytes:
        apath = archive_path(path)
        fs = self._fs(apath)
        if not fs.is_file():
            raise FileNotFoundError(f"No file at archive path {apath} (looked for {fs})")
        return fs.read_bytes()

    def list(self, folder: str) -> list[StoredFile]:
        apath = archive_path(folder) if folder.strip("/ ") else "/"
        fs = self._fs(apath) if apath != "/" else self.root
        if not fs.is_dir():
            return []
        out = []
        prefix = apath.rstrip("/")
        for p in sorted(fs.iterdir(), key=lambda p: p.name):
            if not p.is_file() or p.name == MEMBERS_FILE or p.name.startswith(_TMP_PREFIX):
                continue
            out.append(self._stored(f"{prefix}/{p.name}", p, created=False))
        return out

    def shared_link(self, path: str) -> str:
        """A ``file://`` URI of the file (the local stand-in for a shared link)."""
        apath = archive_path(path)
        fs = self._fs(apath)
        if not fs.is_file():
            raise FileNotFoundError(f"No file at archive path {apath} to link to (looked for {fs})")
        return fs.resolve().as_uri()

    def add_member(self, folder: str, email: str) -> None:
        """Local stand-in for sharing a Dropbox folder: records the email (as an
        editor) in ``.kcg-members.json`` inside the folder, creating the folder
        like Dropbox's share_folder does. Idempotent (emails compare
        case-insensitively). Nobody actually gets access: give people access to
        the local folder yourself, or use the Dropbox archive."""
        email = email.strip()
        if "@" not in email:
            raise ValueError(f"not an email address: {email!r}")
        apath = archive_path(folder)
        fs = self._fs(apath)
        with self._lock:
            self._make_folder(fs, apath)
            members_file = fs / MEMBERS_FILE
            doc: dict[str, Any] = {"members": []}
            if members_file.exists():
                doc = json.loads(members_file.read_text(encoding="utf-8"))
            if any(m["email"].casefold() == email.casefold() for m in doc.get("members", [])):
                return
            doc["_comment"] = (
                "kcg-mail local archive: people who would be members of this folder if it "
                "were shared in Dropbox. Local stand-in only; grants no access."
            )
            doc.setdefault("members", []).append(
                {
                    "email": email,
                    "access_level": "editor",
                    "added_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            self._replace(members_file, json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8"))

    def members(self, folder: str) -> builtins.list[str]:
        """Emails recorded by ``add_member`` for ``folder``."""
        fs = self._fs(archive_path(folder)) / MEMBERS_FILE
        if not fs.exists():
            return []
        return [m["email"] for m in json.loads(fs.read_text(encoding="utf-8")).get("members", [])]

    def check(self) -> builtins.list[Check]:
        name = "archive (local folder)"
        if not self.root.exists():
            parent = self.root.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent  # folders are created with their parents
            if parent.is_dir() and os.access(parent, os.W_OK):
                return [Check(name, True, f"{self.root} does not exist yet; it will be created on first filing")]
            return [Check(name, False, f"{self.root} does not exist and cannot be created; create it or fix the archive root")]
        if not self.root.is_dir():
            return [Check(name, False, f"{self.root} is not a folder")]
        if not os.access(self.root, os.W_OK):
            return [Check(name, False, f"{self.root} is not writable by this user")]
        return [Check(name, True, f"{self.root} is writable")]
