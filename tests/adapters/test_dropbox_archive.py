"""Dropbox-specific behaviour of DropboxArchive: the real SDK against the
loopback fake (``fake_dropbox.py``), with an injected sleep so nothing waits."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from kcg_mail.adapters.dropbox_archive import DropboxArchive, run_auth_flow
from kcg_mail.ports import TransientError, TransportError

try:
    from tests.fake_dropbox import CONTENT_HOST, FakeDropbox, RouteError, content_hash
except ImportError:
    from support.fake_dropbox import CONTENT_HOST, FakeDropbox, RouteError, content_hash

DOC = "/KCG/Protokoll/2023/KCG 2023-05-08.docx"
KEY, SECRET, REFRESH, TEAM_REFRESH = "test-app-key", "test-app-secret", "test-refresh-token", "test-team-refresh-token"


@pytest.fixture
def fake() -> Any:
    f = FakeDropbox().start()
    yield f
    f.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make(fake: FakeDropbox, sleeps: list[float], **kw: Any) -> DropboxArchive:
    kw.setdefault("refresh_token", REFRESH)
    return DropboxArchive(KEY, SECRET, session=fake.session(), sleep=sleeps.append, **kw)


@pytest.fixture
def archive(fake: FakeDropbox, sleeps: list[float]) -> DropboxArchive:
    return make(fake, sleeps)


# --------------------------------------------------------------------- upload


def test_upload_goes_to_content_host_with_mode_add_and_our_hash(fake, archive) -> None:
    stored = archive.store(DOC, b"protokoll")
    (call,) = fake.calls_to("files/upload")
    assert call.host == CONTENT_HOST
    assert call.arg["path"] == DOC
    assert call.arg["mode"] == {".tag": "add"} or call.arg["mode"] == "add"
    assert call.arg["autorename"] is False
    assert call.arg["content_hash"] == content_hash(b"protokoll")
    f = fake.file(DOC)
    assert f is not None and f.data == b"protokoll"
    assert stored.rev == f.rev and stored.content_hash == f.content_hash


def test_overwrite_uses_mode_overwrite(fake, archive) -> None:
    archive.store(DOC, b"a", overwrite=True)
    archive.store(DOC, b"b", overwrite=True)
    modes = [c.arg["mode"] for c in fake.calls_to("files/upload")]
    assert all(m in ("overwrite", {".tag": "overwrite"}) for m in modes) and len(modes) == 2
    assert fake.file(DOC).data == b"b"


def test_no_op_does_not_upload(fake, archive) -> None:
    archive.store(DOC, b"same")
    assert archive.store(DOC, b"same").created is False
    assert len(fake.calls_to("files/upload")) == 1


def test_versions_compare_names_case_insensitively(fake, archive) -> None:
    fake.put_file("/KCG/Protokoll/2023/kcg 2023-05-08.DOCX", b"other")
    stored = archive.store(DOC, b"mine")
    assert stored.path == "/KCG/Protokoll/2023/KCG 2023-05-08 (v2).docx"
    same = archive.store(DOC, b"other")
    assert (same.path, same.created) == ("/KCG/Protokoll/2023/kcg 2023-05-08.DOCX", False)


def test_conflict_with_a_folder_names_the_file(fake, archive) -> None:
    fake.put_file(DOC + "/inside.txt", b"x")  # makes DOC a folder
    with pytest.raises(TransportError, match=r"KCG 2023-05-08\.docx.*conflict with a folder"):
        archive.store(DOC, b"x")


def test_a_file_created_meanwhile_is_not_overwritten(fake, archive) -> None:
    # Another client creates the name between our listing and our upload.
    fake.before("files/upload", lambda f: f.put_file(DOC, b"theirs"))
    stored = archive.store(DOC, b"ours")
    assert stored.path == "/KCG/Protokoll/2023/KCG 2023-05-08 (v2).docx"
    assert fake.file(DOC).data == b"theirs"
    assert fake.file(stored.path).data == b"ours"


def test_a_retried_upload_that_had_landed_is_recognised(fake, archive) -> None:
    # The same bytes appear at the name meanwhile (e.g. our own earlier try).
    fake.before("files/upload", lambda f: f.put_file(DOC, b"ours"))
    stored = archive.store(DOC, b"ours")
    assert stored.path == DOC
    assert len(fake.calls_to("files/upload")) == 1


def test_wrong_hash_returned_by_dropbox_is_an_error_naming_the_file(fake, archive) -> None:
    fake.report_wrong_hash_next()
    with pytest.raises(TransportError, match=r"KCG 2023-05-08\.docx.*content hash") as e:
        archive.store(DOC, b"x")
    assert not isinstance(e.value, TransientError)


def test_bytes_damaged_in_transit_are_rejected_by_the_server(fake, archive) -> None:
    fake.corrupt_next_upload()
    with pytest.raises(TransientError, match="content_hash_mismatch"):
        archive.store(DOC, b"precious")
    assert fake.file(DOC) is None
    assert archive.store(DOC, b"precious").created is True  # a rerun works


def test_large_file_uses_an_upload_session(fake, sleeps) -> None:
    archive = make(fake, sleeps, upload_session_threshold=10, chunk_size=4)
    data = b"0123456789abcdefghijk"  # 21 bytes: start 4, append 4+4+4+4, finish 1
    stored = archive.store(DOC, data)
    assert fake.file(DOC).data == data
    assert stored.content_hash == content_hash(data) and stored.size == 21
    assert fake.calls_to("files/upload") == []
    starts, appends, finishes = (
        fake.calls_to("files/upload_session/start"),
        fake.calls_to("files/upload_session/append_v2"),
        fake.calls_to("files/upload_session/finish"),
    )
    assert (len(starts), len(appends), len(finishes)) == (1, 4, 1)
    assert [c.arg["cursor"]["offset"] for c in appends] == [4, 8, 12, 16]
    assert finishes[0].arg["commit"]["path"] == DOC
    assert finishes[0].arg["commit"]["mode"] in ("add", {".tag": "add"})
    # every chunk carried its own content hash (checked by the fake)
    assert all(c.arg.get("content_hash") for c in starts + appends + finishes)


def test_upload_session_retry_resumes_at_the_server_offset(fake, sleeps) -> None:
    archive = make(fake, sleeps, upload_session_threshold=10, chunk_size=4)
    data = b"0123456789abcdefghijk"
    # The first append lands but its answer is a 503; the retry is then at a
    # stale offset and Dropbox says incorrect_offset with the right one.
    original = fake._r_files__upload_session__append_v2
    state = {"n": 0}

    def flaky(ns, arg, body):
        original(ns, arg, body)
        state["n"] += 1
        if state["n"] == 1:
            raise RouteError(503, b"Service Unavailable")

    fake._r_files__upload_session__append_v2 = flaky
    archive.store(DOC, data)
    assert fake.file(DOC).data == data
    assert sleeps == [1.0]


def test_session_upload_into_read_only_folder_names_the_file(fake, sleeps) -> None:
    fake.make_read_only("/KCG")
    archive = make(fake, sleeps, upload_session_threshold=10, chunk_size=4)
    with pytest.raises(TransportError, match=r"No write permission for /KCG/Protokoll/2023/KCG 2023-05-08\.docx"):
        archive.store(DOC, b"0123456789abcdefghijk")


def test_permission_error_message_is_actionable(fake, archive) -> None:
    fake.make_read_only("/KCG")
    with pytest.raises(TransportError) as e:
        archive.store(DOC, b"x")
    msg = str(e.value)
    assert "No write permission" in msg and DOC in msg and "edit access" in msg


# --------------------------------------------------------------------- auth


def test_first_call_refreshes_the_token_with_app_credentials(fake, archive) -> None:
    archive.store(DOC, b"x")
    assert len(fake.token_requests) == 1
    req = fake.token_requests[0]
    assert req["grant_type"] == "refresh_token" and req["refresh_token"] == REFRESH
    assert req["client_id"] == KEY and req["client_secret"] == SECRET


def test_expired_access_token_is_refreshed_and_the_call_succeeds(fake, archive) -> None:
    archive.store(DOC, b"x")
    fake.expire_tokens()
    assert archive.read(DOC) == b"x"
    assert len(fake.token_requests) == 2
    downloads = fake.calls_to("files/download")
    assert len(downloads) == 2  # 401 expired_access_token, then the retry
    assert downloads[0].headers["authorization"] != downloads[1].headers["authorization"]


def test_revoked_refresh_token_tells_to_run_dropbox_auth(fake, archive) -> None:
    fake.revoke_refresh_tokens()
    with pytest.raises(TransportError, match="kcg dropbox-auth") as e:
        archive.store(DOC, b"x")
    assert not isinstance(e.value, TransientError)


def test_wrong_app_secret_names_the_setting(fake, sleeps) -> None:
    archive = DropboxArchive(KEY, "wrong", REFRESH, session=fake.session(), sleep=sleeps.append)
    with pytest.raises(TransportError, match="KCG_DROPBOX_APP_SECRET"):
        archive.read(DOC)


def test_missing_credentials_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="KCG_DROPBOX_REFRESH_TOKEN"):
        DropboxArchive(KEY, SECRET, "")


# --------------------------------------------------------------------- retries


def test_rate_limit_waits_retry_after_then_succeeds(fake, archive, sleeps) -> None:
    fake.fail("files/upload", 429, retry_after=7)
    stored = archive.store(DOC, b"x")
    assert stored.created and fake.file(DOC).data == b"x"
    assert sleeps == [7.0]
    assert len(fake.calls_to("files/upload")) == 2


def test_rate_limit_gives_up_after_the_bound(fake, sleeps) -> None:
    archive = make(fake, sleeps, max_retries=3)
    fake.fail("files/list_folder", 429, times=10, retry_after=2)
    with pytest.raises(TransientError, match=r"rate-limiting.*listing /KCG/Protokoll/2023.*4 attempts"):
        archive.store(DOC, b"x")
    assert sleeps == [2.0, 2.0, 2.0]
    assert len(fake.calls_to("files/list_folder")) == 4
    assert fake.file(DOC) is None


def test_server_errors_are_retried_with_backoff(fake, archive, sleeps) -> None:
    fake.fail("files/upload", 503, times=2)
    assert archive.store(DOC, b"x").created
    assert sleeps == [1.0, 2.0]


def test_server_errors_give_up_as_transient(fake, sleeps) -> None:
    archive = make(fake, sleeps, max_retries=2)
    fake.fail("files/download", 500, times=5)
    archive.store(DOC, b"x")
    with pytest.raises(TransientError, match="HTTP 500.*downloading"):
        archive.read(DOC)
    assert sleeps == [1.0, 2.0]


def test_token_endpoint_errors_are_retried_too(fake, archive, sleeps) -> None:
    fake.fail("oauth2/token", 503)
    archive.store(DOC, b"x")
    assert sleeps == [1.0]


def test_unreachable_dropbox_is_transient(fake, sleeps) -> None:
    archive = make(fake, sleeps, max_retries=1)
    fake.stop()
    with pytest.raises(TransientError, match="cannot reach Dropbox"):
        archive.read(DOC)
    assert sleeps == [1.0]


# --------------------------------------------------------------------- links and members


def test_existing_shared_link_is_reused_from_the_error(fake, archive, sleeps) -> None:
    archive.store(DOC, b"x")
    other_client = make(fake, sleeps)
    link = other_client.shared_link(DOC)
    assert archive.shared_link(DOC) == link
    assert len(fake.calls_to("sharing/list_shared_links")) == 0


def test_existing_shared_link_is_listed_when_the_error_has_no_metadata(fake, archive) -> None:
    archive.store(DOC, b"x")
    link = archive.shared_link(DOC)
    fake.omit_link_metadata = True
    assert archive.shared_link(DOC) == link
    (listing,) = fake.calls_to("sharing/list_shared_links")
    assert listing.arg["path"] == DOC and listing.arg["direct_only"] is True


def test_add_member_shares_the_folder_once_and_adds_an_editor_quietly(fake, archive) -> None:
    archive.add_member("/KCG", "anna@kommun.se")
    archive.add_member("/KCG", "bo@kommun.se")
    assert len(fake.calls_to("sharing/share_folder")) == 1  # second time: metadata has the id
    adds = fake.calls_to("sharing/add_folder_member")
    assert [a.arg["members"][0]["member"] for a in adds] == [
        {".tag": "email", "email": "anna@kommun.se"},
        {".tag": "email", "email": "bo@kommun.se"},
    ]
    assert all(a.arg["members"][0]["access_level"] in ("editor", {".tag": "editor"}) for a in adds)
    assert all(a.arg["quiet"] is True for a in adds)


def test_add_member_to_a_folder_shared_meanwhile_uses_its_id(fake, archive) -> None:
    archive.store("/KCG/x.docx", b"x")  # the folder exists and is not shared

    def share_by_someone_else(f: FakeDropbox) -> None:
        f.namespaces[f.home_ns].folders["/kcg"].shared_folder_id = "777"
        f.shared_members["777"] = [{"email": "first@kommun.se", "access_level": "owner"}]

    # Someone shares /KCG between our metadata lookup and our share_folder call:
    # Dropbox answers bad_path/already_shared with the folder's metadata.
    fake.before("sharing/share_folder", share_by_someone_else)
    archive.add_member("/KCG", "second@kommun.se")
    (add,) = fake.calls_to("sharing/add_folder_member")
    assert add.arg["shared_folder_id"] == "777"
    assert fake.members("/KCG") == ["first@kommun.se", "second@kommun.se"]


def test_add_member_inside_a_shared_folder_explains(fake, archive) -> None:
    archive.add_member("/KCG", "anna@kommun.se")
    with pytest.raises(TransportError, match="inside a folder that is already shared"):
        archive.add_member("/KCG/Protokoll", "bo@kommun.se")


def test_add_member_outside_the_team_explains(fake, archive) -> None:
    with pytest.raises(TransportError, match="outside the team"):
        archive.add_member("/KCG", "x@outside.example")


# --------------------------------------------------------------------- team space


def test_team_root_header_is_sent_and_files_land_in_the_team_space(fake, sleeps) -> None:
    archive = make(fake, sleeps, team_root_namespace_id=fake.team_root_ns)
    archive.store(DOC, b"team")
    api_calls = [c for c in fake.calls if c.route != "oauth2/token"]
    assert api_calls
    for c in api_calls:
        assert json.loads(c.headers["dropbox-api-path-root"]) == {".tag": "root", "root": fake.team_root_ns}
    assert fake.file(DOC, ns=fake.team_root_ns).data == b"team"
    assert fake.file(DOC) is None  # not in the member's home


def test_wrong_team_root_names_the_setting(fake, sleeps) -> None:
    archive = make(fake, sleeps, team_root_namespace_id="424242")
    with pytest.raises(TransportError, match="KCG_DROPBOX_TEAM_ROOT_NAMESPACE_ID"):
        archive.store(DOC, b"x")


def test_check_flags_a_team_root_that_is_not_the_accounts(fake, sleeps) -> None:
    archive = make(fake, sleeps)
    archive.team_root_namespace_id = "777"  # configured, but the account's root is 9001
    checks = {c.name: c for c in archive.check()}
    assert checks["dropbox account"].ok and fake.team_root_ns in checks["dropbox account"].detail
    assert not checks["dropbox team root"].ok


def test_team_token_acts_as_the_selected_member(fake, sleeps) -> None:
    archive = make(fake, sleeps, refresh_token=TEAM_REFRESH, team_member_id="dbmid:AAAmember1")
    archive.store(DOC, b"x")
    api_calls = [c for c in fake.calls if c.route != "oauth2/token"]
    assert api_calls and all(c.headers["dropbox-api-select-user"] == "dbmid:AAAmember1" for c in api_calls)


def test_unknown_team_member_names_the_setting(fake, sleeps) -> None:
    archive = make(fake, sleeps, refresh_token=TEAM_REFRESH, team_member_id="dbmid:nobody")
    with pytest.raises(TransportError, match="KCG_DROPBOX_TEAM_MEMBER_ID"):
        archive.store(DOC, b"x")


# --------------------------------------------------------------------- names and listing


def test_paths_are_sent_in_nfc(fake, archive) -> None:
    nfd = unicodedata.normalize("NFD", "/KCG/Möten/Årsmöte.docx")
    archive.store(nfd, b"x")
    (upload,) = fake.calls_to("files/upload")
    assert upload.arg["path"] == unicodedata.normalize("NFC", nfd)
    assert all(unicodedata.is_normalized("NFC", c.arg["path"]) for c in fake.calls if isinstance(c.arg, dict) and "path" in c.arg)


def test_list_follows_pagination(fake, archive) -> None:
    for i in range(5):
        fake.put_file(f"/KCG/f{i}.docx", bytes([i]))
    fake.page_size = 2
    assert [f.path for f in archive.list("/KCG")] == [f"/KCG/f{i}.docx" for i in range(5)]
    assert len(fake.calls_to("files/list_folder/continue")) == 2


def test_root_prefix_is_applied(fake, sleeps) -> None:
    archive = make(fake, sleeps, root="/Nätverk")
    stored = archive.store(DOC, b"x")
    assert stored.path == DOC  # archive paths stay relative to the root
    assert fake.file("/Nätverk" + DOC).data == b"x"


# --------------------------------------------------------------------- dropbox-auth


def test_run_auth_flow_returns_the_refresh_token(fake) -> None:
    fake.add_auth_code("the-code", "brand-new-refresh-token")
    printed: list[str] = []
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "  the-code \n"

    token = run_auth_flow(KEY, SECRET, input=answer, print=lambda *a: printed.append(" ".join(map(str, a))), session=fake.session())
    assert token == "brand-new-refresh-token"
    text = "\n".join(printed)
    assert "https://www.dropbox.com/oauth2/authorize?" in text
    assert "token_access_type=offline" in text and f"client_id={KEY}" in text
    assert "KCG_DROPBOX_REFRESH_TOKEN" in text
    assert prompts and fake.token_requests[-1]["grant_type"] == "authorization_code"
    # and the token works
    archive = DropboxArchive(KEY, SECRET, token, session=fake.session(), sleep=lambda s: None)
    assert archive.store(DOC, b"x").created


def test_run_auth_flow_with_a_bad_code_says_what_to_do(fake) -> None:
    with pytest.raises(TransportError, match="kcg dropbox-auth"):
        run_auth_flow(KEY, SECRET, input=lambda p: "wrong", print=lambda *a: None, session=fake.session())


def test_fake_refuses_other_hosts(fake) -> None:
    import requests

    with pytest.raises(requests.ConnectionError, match="offline"):
        fake.session().get("https://example.com/")
