"""One contract for every Archive: the local folder and Dropbox (the real SDK
talking to the loopback fake in ``fake_dropbox.py``) must behave the same."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dropbox.content_hash import DropboxContentHasher

from kcg_mail.adapters.content_hash import dropbox_content_hash
from kcg_mail.adapters.dropbox_archive import DropboxArchive
from kcg_mail.adapters.local_archive import MEMBERS_FILE, LocalFolderArchive
from kcg_mail.core.naming import safe_path
from kcg_mail.ports import Archive, TransportError

try:
    from tests.fake_dropbox import FakeDropbox, content_hash
except ImportError:  # tests/ run as rootdir-less modules
    from support.fake_dropbox import FakeDropbox, content_hash

FOLDER = "/KCG/Protokoll/2023"
DOC = FOLDER + "/KCG möte 2023-05-08.docx"


@dataclass
class Backend:
    kind: str
    archive: Archive
    #: Emails that have been given access to a folder, read from the backend's
    #: own storage (the members file on disk, the fake's sharing state).
    members: Callable[[str], list[str]]


def _local_members(root: Path) -> Callable[[str], list[str]]:
    def members(folder: str) -> list[str]:
        f = root.joinpath(*[p for p in folder.split("/") if p]) / MEMBERS_FILE
        return [m["email"] for m in json.loads(f.read_text("utf-8"))["members"]] if f.exists() else []

    return members


@pytest.fixture(params=["local", "dropbox"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "arkiv"
        return Backend("local", LocalFolderArchive(root), _local_members(root))
    fake = FakeDropbox().start()
    request.addfinalizer(fake.stop)
    archive = DropboxArchive(
        "test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(), sleep=lambda s: None
    )
    return Backend("dropbox", archive, fake.members)


# --------------------------------------------------------------------- store


def test_store_new_file_and_read_it_back(backend: Backend) -> None:
    data = b"PK\x03\x04 protokoll"
    stored = backend.archive.store(DOC, data)
    assert stored.created is True
    assert stored.path == DOC
    assert stored.size == len(data)
    assert stored.content_hash == content_hash(data)
    assert stored.rev
    assert backend.archive.read(DOC) == data


def test_same_content_again_is_a_no_op(backend: Backend) -> None:
    first = backend.archive.store(DOC, b"v1")
    again = backend.archive.store(DOC, b"v1")
    assert again.created is False
    assert (again.path, again.rev, again.content_hash) == (first.path, first.rev, first.content_hash)
    assert [f.path for f in backend.archive.list(FOLDER)] == [DOC]


def test_different_content_goes_to_the_next_version(backend: Backend) -> None:
    a = backend.archive.store(DOC, b"first")
    b = backend.archive.store(DOC, b"second")
    c = backend.archive.store(DOC, b"third")
    assert a.path == DOC
    assert b.path == FOLDER + "/KCG möte 2023-05-08 (v2).docx" and b.created
    assert c.path == FOLDER + "/KCG möte 2023-05-08 (v3).docx" and c.created
    assert backend.archive.read(DOC) == b"first"
    assert backend.archive.read(b.path) == b"second"
    assert backend.archive.read(c.path) == b"third"


def test_content_equal_to_any_version_is_a_no_op(backend: Backend) -> None:
    a = backend.archive.store(DOC, b"first")
    b = backend.archive.store(DOC, b"second")
    assert backend.archive.store(DOC, b"first") == a.__class__(a.path, a.rev, a.content_hash, a.size, created=False)
    again_b = backend.archive.store(DOC, b"second")
    assert (again_b.path, again_b.created) == (b.path, False)
    assert len(backend.archive.list(FOLDER)) == 2


def test_storing_at_a_version_name_counts_as_a_version(backend: Backend) -> None:
    """Only "x (v3).docx" is there (the original was removed by hand): the
    same content is recognised, new content takes the free original name."""
    v3 = backend.archive.store(FOLDER + "/x (v3).docx", b"three")
    assert backend.archive.store(FOLDER + "/x.docx", b"three").path == v3.path
    new = backend.archive.store(FOLDER + "/x.docx", b"new")
    assert (new.path, new.created) == (FOLDER + "/x.docx", True)
    newer = backend.archive.store(FOLDER + "/x.docx", b"newer")
    assert newer.path == FOLDER + "/x (v4).docx"


def test_overwrite_replaces_in_place(backend: Backend) -> None:
    log = "/KCG/Logg/körlogg.csv"
    first = backend.archive.store(log, b"a\n", overwrite=True)
    assert first.created and first.path == log
    second = backend.archive.store(log, b"a\nb\n", overwrite=True)
    assert second.created and second.path == log
    assert second.content_hash == content_hash(b"a\nb\n")
    assert backend.archive.read(log) == b"a\nb\n"
    assert [f.path for f in backend.archive.list("/KCG/Logg")] == [log]
    same = backend.archive.store(log, b"a\nb\n", overwrite=True)
    assert same.created is False and same.rev == second.rev


# --------------------------------------------------------------------- list and read


def test_list_shows_files_of_the_folder_only(backend: Backend) -> None:
    backend.archive.store(FOLDER + "/b.docx", b"bb")
    backend.archive.store(FOLDER + "/a.docx", b"a")
    backend.archive.store(FOLDER + "/Bilagor/c.pdf", b"ccc")
    listed = backend.archive.list(FOLDER)
    assert [(f.path, f.size, f.content_hash) for f in listed] == [
        (FOLDER + "/a.docx", 1, content_hash(b"a")),
        (FOLDER + "/b.docx", 2, content_hash(b"bb")),
    ]
    assert all(f.rev for f in listed)


def test_list_of_a_missing_folder_is_empty(backend: Backend) -> None:
    assert backend.archive.list("/KCG/Finns inte") == []


def test_read_missing_file_raises_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError, match="/KCG/saknas.docx"):
        backend.archive.read("/KCG/saknas.docx")


# --------------------------------------------------------------------- names


def test_nfd_path_is_stored_as_nfc(backend: Backend) -> None:
    nfd = unicodedata.normalize("NFD", "/KCG/Möten/Årsmöte.docx")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    stored = backend.archive.store(nfd, b"x")
    assert stored.path == nfc
    assert backend.archive.read(nfc) == b"x"
    assert backend.archive.read(nfd) == b"x"
    assert [f.path for f in backend.archive.list(unicodedata.normalize("NFD", "/KCG/Möten"))] == [nfc]
    assert backend.archive.store(nfc, b"x").created is False


def test_unsafe_characters_are_replaced(backend: Backend) -> None:
    raw = '/KCG/Protokoll: 2023?/a|b*"c".docx'
    stored = backend.archive.store(raw, b"x")
    # The naming convention owns the exact replacement; the archive applies it.
    assert stored.path == safe_path(raw)
    assert not set(':?|*"<>\\') & set(stored.path)
    assert stored.path.startswith("/KCG/Protokoll") and stored.path.endswith(".docx")
    assert backend.archive.read(raw) == b"x"


@pytest.mark.parametrize("bad", ["/KCG/../../etc/passwd", "../x.docx", "/KCG/..\\..\\x.docx", ""])
def test_traversal_and_empty_paths_are_rejected(backend: Backend, bad: str) -> None:
    with pytest.raises(ValueError):
        backend.archive.store(bad, b"x")
    with pytest.raises(ValueError):
        backend.archive.read(bad)


def test_a_file_where_a_folder_should_be_is_an_error(backend: Backend) -> None:
    backend.archive.store("/KCG/Protokoll", b"a file, not a folder")
    with pytest.raises(TransportError, match="Protokoll"):
        backend.archive.store("/KCG/Protokoll/x.docx", b"x")


# --------------------------------------------------------------------- links and members


def test_shared_link_is_stable(backend: Backend) -> None:
    backend.archive.store(DOC, b"x")
    link = backend.archive.shared_link(DOC)
    assert link.startswith("file://" if backend.kind == "local" else "https://")
    assert backend.archive.shared_link(DOC) == link


def test_shared_link_to_missing_file_raises_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.archive.shared_link("/KCG/saknas.docx")


def test_add_member_is_idempotent(backend: Backend) -> None:
    backend.archive.add_member("/KCG", "anna@kommun.se")
    backend.archive.add_member("/KCG", "Anna@Kommun.se")
    backend.archive.add_member("/KCG", "bo@kommun.se")
    assert backend.members("/KCG") == ["anna@kommun.se", "bo@kommun.se"]
    # Sharing does not disturb the folder's files, and the local members
    # file is not listed as a document.
    backend.archive.store("/KCG/x.docx", b"x")
    assert [f.path for f in backend.archive.list("/KCG")] == ["/KCG/x.docx"]


def test_add_member_rejects_a_non_address(backend: Backend) -> None:
    with pytest.raises(ValueError):
        backend.archive.add_member("/KCG", "not an address")


def test_check_reports_ok(backend: Backend) -> None:
    checks = backend.archive.check()
    assert checks and all(c.ok for c in checks), checks


# ===================================================================== content hash


def test_content_hash_of_empty_data() -> None:
    assert dropbox_content_hash(b"") == hashlib.sha256(b"").hexdigest()


def test_content_hash_matches_dropbox_reference_on_block_boundaries() -> None:
    block = 4 * 1024 * 1024
    for size in (1, block - 1, block, block + 1, 2 * block + 7):
        data = bytes((i * 7) % 251 for i in range(256)) * (size // 256) + b"\x01" * (size % 256)
        reference = DropboxContentHasher()
        reference.update(data)
        expected = reference.hexdigest()
        assert dropbox_content_hash(data) == expected == content_hash(data), size


def test_content_hash_is_sha256_of_block_digests() -> None:
    block = 4 * 1024 * 1024
    data = b"a" * block + b"b"
    expected = hashlib.sha256(hashlib.sha256(b"a" * block).digest() + hashlib.sha256(b"b").digest()).hexdigest()
    assert dropbox_content_hash(data) == expected


# ===================================================================== local only


def test_local_layout_matches_the_dropbox_folder(tmp_path: Path) -> None:
    archive = LocalFolderArchive(tmp_path)
    archive.store(DOC, b"x")
    assert (tmp_path / "KCG" / "Protokoll" / "2023" / "KCG möte 2023-05-08.docx").read_bytes() == b"x"
    # no temporary files are left behind
    assert sorted(p.name for p in (tmp_path / "KCG" / "Protokoll" / "2023").iterdir()) == ["KCG möte 2023-05-08.docx"]


def test_local_traversal_writes_nothing_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(ValueError):
        LocalFolderArchive(root).store("/../outside.docx", b"x")
    assert not (tmp_path / "outside.docx").exists()


def test_local_symlink_out_of_root_is_rejected(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "KCG").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "KCG" / "länk")
    with pytest.raises(ValueError, match="outside"):
        LocalFolderArchive(root).store("/KCG/länk/x.docx", b"x")
    assert list(outside.iterdir()) == []


def test_local_members_file_says_it_is_a_stand_in(tmp_path: Path) -> None:
    archive = LocalFolderArchive(tmp_path)
    archive.add_member("/KCG", "anna@kommun.se")
    doc = json.loads((tmp_path / "KCG" / MEMBERS_FILE).read_text("utf-8"))
    assert "stand-in" in doc["_comment"]
    assert doc["members"][0]["email"] == "anna@kommun.se"
    assert doc["members"][0]["access_level"] == "editor"
    assert archive.members("/KCG") == ["anna@kommun.se"]


def test_local_shared_link_points_at_the_file(tmp_path: Path) -> None:
    archive = LocalFolderArchive(tmp_path)
    archive.store(DOC, b"x")
    link = archive.shared_link(DOC)
    assert link == (tmp_path / "KCG" / "Protokoll" / "2023" / "KCG möte 2023-05-08.docx").resolve().as_uri()


def test_local_check_reports_an_unwritable_root(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"")
    checks = LocalFolderArchive(not_a_folder).check()
    assert not checks[0].ok and "not a folder" in checks[0].detail
