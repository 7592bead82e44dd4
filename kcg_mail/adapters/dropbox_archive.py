"""The Dropbox archive, on the official ``dropbox`` SDK (12.2).

Configuration (suggested environment variables):

* ``KCG_DROPBOX_APP_KEY``, ``KCG_DROPBOX_APP_SECRET`` - the app in the Dropbox
  App Console (scoped access). Scopes used: ``account_info.read``,
  ``files.metadata.read``, ``files.content.read``, ``files.content.write``,
  ``sharing.read``, ``sharing.write`` (plus ``team_data.member`` for a team app
  acting as a member).
* ``KCG_DROPBOX_REFRESH_TOKEN`` - long-lived refresh token from
  :func:`run_auth_flow` (``kcg dropbox-auth``). Access tokens are short-lived
  and refreshed by the SDK when needed.
* ``KCG_DROPBOX_TEAM_ROOT_NAMESPACE_ID`` (optional) - the team space root
  namespace id, sent as ``Dropbox-API-Path-Root: {".tag": "root", ...}`` so paths
  are relative to the team space instead of the member's home folder.
* ``KCG_DROPBOX_TEAM_MEMBER_ID`` (optional) - with a *team* app token, act as
  this member (``Dropbox-API-Select-User``, via ``DropboxTeam.as_user``).

Behaviour is the same as :class:`~kcg_mail.adapters.local_archive.LocalFolderArchive`
(one contract test suite runs against both): paths are normalised with
``safe_path`` (NFC; Dropbox stores NFC but the SDK sends whatever it is given),
identical content at the path or one of its versions is a no-op, different
content goes to the next version name with ``mode=add`` (never overwrites)
unless ``overwrite=True``.

Retries: the SDK's own retries are switched off (its default retries 429
forever); every call goes through :meth:`DropboxArchive._call`, which uses the
one retry idiom (:mod:`kcg_mail.adapters.retry`): 429 (waiting Dropbox's
``backoff``), 5xx and connection errors are retried with exponential backoff
up to ``max_retries`` times, then :class:`~kcg_mail.ports.TransientError`.
Every call may be repeated: an upload that had in fact arrived is recognised by
its content hash, an append by Dropbox's offset. Everything a person must fix
(permissions, an expired refresh token, a name clash with a folder) raises
:class:`~kcg_mail.ports.TransportError` with the file and what to do.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import dropbox
import requests
from dropbox import files, sharing
from dropbox.common import PathRoot
from dropbox.exceptions import (
    ApiError,
    AuthError,
    BadInputError,
    HttpError,
    InternalServerError,
    PathRootError,
    RateLimitError,
)
from dropbox.oauth import DropboxOAuth2FlowNoRedirect

from kcg_mail.adapters.content_hash import dropbox_content_hash
from kcg_mail.adapters.local_archive import archive_path, find_versions
from kcg_mail.adapters.retry import GaveUp, RetryPolicy, call_with_retry
from kcg_mail.core.naming import version_path
from kcg_mail.ports import Archive, Check, StoredFile, TransientError, TransportError

log = logging.getLogger(__name__)

ENV_APP_KEY = "KCG_DROPBOX_APP_KEY"
ENV_APP_SECRET = "KCG_DROPBOX_APP_SECRET"
ENV_REFRESH_TOKEN = "KCG_DROPBOX_REFRESH_TOKEN"
ENV_TEAM_ROOT_NAMESPACE_ID = "KCG_DROPBOX_TEAM_ROOT_NAMESPACE_ID"
ENV_TEAM_MEMBER_ID = "KCG_DROPBOX_TEAM_MEMBER_ID"

_REAUTH = (
    f"Run `kcg dropbox-auth` to authorise kcg-mail again and put the new refresh token in {ENV_REFRESH_TOKEN}."
)
_MAX_BACKOFF = 60.0
_MAX_STORE_RACES = 5

R = TypeVar("R")

#: why Dropbox could not look a path up, by the LookupError's tag ({apath}: the path)
_LOOKUP_ERRORS = {
    "not_found": "{apath} does not exist in Dropbox",
    "not_file": "{apath} is a folder in Dropbox, not a file",
    "not_folder": "{apath} (or a part of its folder path) is a file in Dropbox, not a folder",
    "restricted_content": "{apath} is restricted content in Dropbox (blocked for legal reasons)",
    "locked": "{apath} is locked in Dropbox; ask whoever locked it to unlock it",
}

_NO_SPACE = (TransportError, "Cannot store {apath}: the Dropbox account or team is out of space.")
#: why Dropbox refused a write, by the WriteError's tag: the error raised (worth a later run,
#: or someone must act) and its message ({apath}: the path)
_WRITE_ERRORS: dict[str, tuple[type[TransportError], str]] = {
    "no_write_permission": (TransportError, "No write permission for {apath} in Dropbox: the connected account can only "
                            "view that folder. Ask the folder's owner for edit access, or choose another archive root."),
    "insufficient_space": _NO_SPACE,
    "team_folder_insufficient_space": _NO_SPACE,
    "member_folder_insufficient_space": _NO_SPACE,
    "disallowed_name": (TransportError, "Dropbox does not allow the file name of {apath}; change the naming pattern."),
    "team_folder": (TransportError, "Cannot store {apath}: team folders cannot be changed this way in Dropbox."),
    "too_many_write_operations": (TransientError, "Dropbox is busy with other writes in the folder of {apath}; run again later."),
    "access_restricted": (TransportError, "Access to {apath} is restricted by Dropbox team policy."),
    "upload_traffic_limit_reached": (TransientError, "The Dropbox team's upload traffic limit is reached; cannot store {apath} now."),
}


def _tag_is(union: Any, tag: str) -> bool:
    """Whether a Dropbox union (an error) is the case ``tag`` (its ``is_<tag>()``)."""
    return bool(getattr(union, f"is_{tag}")())


def _fold(name: str) -> str:
    return name.lower()  # Dropbox compares names case-insensitively


class DropboxArchive(Archive):
    """An :class:`~kcg_mail.ports.Archive` in Dropbox (personal or team space).

    ``root`` is the Dropbox folder that archive paths are relative to ("/" by
    default, so archive path ``/KCG/Protokoll/2023/x.docx`` is that path in
    Dropbox). ``session`` is a ``requests.Session`` for the SDK (tests pass one
    routed to a fake server). ``sleep`` is used for backoff between retries.
    """

    root: str
    team_root_namespace_id: str | None
    team_member_id: str | None
    upload_session_threshold: int
    chunk_size: int
    policy: RetryPolicy
    client: Any  # dropbox.Dropbox (the SDK is untyped)
    _sleep: Callable[[float], None]

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        refresh_token: str,
        root: str = "/",
        team_root_namespace_id: str | None = None,
        team_member_id: str | None = None,
        session: requests.Session | None = None,
        max_retries: int = 5,
        upload_session_threshold: int = 8 * 1024 * 1024,
        chunk_size: int = 4 * 1024 * 1024,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 100.0,
        max_wait: float = 300.0,
    ) -> None:
        if not (app_key and app_secret and refresh_token):
            raise ValueError(
                f"Dropbox needs an app key, app secret and refresh token ({ENV_APP_KEY}, "
                f"{ENV_APP_SECRET}, {ENV_REFRESH_TOKEN}); run `kcg dropbox-auth` to get the token"
            )
        if not 0 < chunk_size <= 150 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 150 MiB (Dropbox's limit per request)")
        self.root = "/" if root.strip("/ ") == "" else archive_path(root)
        self.team_root_namespace_id = team_root_namespace_id
        self.team_member_id = team_member_id
        # Every Dropbox call may be repeated (see the module's docstring).
        self.policy = RetryPolicy(
            max_retries=max_retries, backoff_max=_MAX_BACKOFF, max_wait=max_wait, idempotent=True, sleep=sleep
        )
        self.upload_session_threshold = upload_session_threshold
        self.chunk_size = chunk_size
        self._sleep = sleep
        common: dict[str, Any] = dict(
            oauth2_refresh_token=refresh_token,
            app_key=app_key,
            app_secret=app_secret,
            session=session,
            # Retries are ours (bounded, with the injected sleep); the SDK's
            # default retries 429 forever.
            max_retries_on_error=0,
            max_retries_on_rate_limit=0,
            user_agent="kcg-mail",
            timeout=timeout,
        )
        if team_member_id:
            client = dropbox.DropboxTeam(**common).as_user(team_member_id)
        else:
            client = dropbox.Dropbox(**common)
        if team_root_namespace_id:
            client = client.with_path_root(PathRoot.root(team_root_namespace_id))
        self.client = client

    @property
    def max_retries(self) -> int:
        return self.policy.max_retries

    # ------------------------------------------------------------ paths

    def _dp(self, apath: str) -> str:
        """Dropbox path of a normalised archive path ("" is the root)."""
        if self.root == "/":
            return "" if apath == "/" else apath
        return self.root if apath == "/" else self.root + apath

    @staticmethod
    def _folder_of(apath: str) -> str:
        return apath.rpartition("/")[0] or "/"

    @staticmethod
    def _stored(folder: str, meta: files.FileMetadata, created: bool = True) -> StoredFile:
        return StoredFile(
            path=f"{folder.rstrip('/')}/{meta.name}",
            rev=meta.rev,
            content_hash=meta.content_hash,
            size=meta.size,
            created=created,
        )

    # ------------------------------------------------------------ calls and errors

    def _call(self, what: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run one SDK call with bounded retries (``retry.call_with_retry``).
        ``what`` names the operation and file for messages ("uploading
        /KCG/x.docx"). ApiError (a route error: not found, conflict, ...) is
        left to the caller; the other permanent errors become TransportError
        naming the setting to fix."""
        try:
            return call_with_retry(lambda: fn(*args, **kwargs), replace(self.policy, what=f"Dropbox {what}"))
        except GaveUp as e:
            last = e.last
            if isinstance(last, RateLimitError):
                problem = "Dropbox is rate-limiting kcg-mail (HTTP 429)"
            elif isinstance(last, InternalServerError):
                problem = f"Dropbox had a server error (HTTP {last.status_code})"
            else:
                problem = f"cannot reach Dropbox ({type(last).__name__})"
            waits = f" (Dropbox asks to wait {e.wait:.0f} s)" if e.why == "wait" else ""
            raise TransientError(
                f"{problem} while {what}; gave up after {e.attempts} attempts{waits}. Run again later: a rerun "
                "is safe (files already stored are recognised by their content hash)."
            ) from last
        except AuthError as e:
            raise TransportError(self._auth_message(what, e)) from e
        except PathRootError as e:
            raise TransportError(
                f"Dropbox refused the team space root namespace {self.team_root_namespace_id!r} while "
                f"{what} ({e.error}). Check {ENV_TEAM_ROOT_NAMESPACE_ID}: `kcg check --connect` shows "
                "the account's root namespace id."
            ) from e
        except BadInputError as e:
            msg = str(e.message)
            if "invalid_client" in msg or "app key" in msg.lower() or "client_id" in msg:
                raise TransportError(
                    f"Dropbox does not recognise the app key/secret while {what}: check {ENV_APP_KEY} and "
                    f"{ENV_APP_SECRET} against the App Console. ({msg})"
                ) from e
            raise TransportError(f"Dropbox rejected the request while {what}: {msg}") from e
        except ApiError:
            raise
        except HttpError as e:
            raise TransportError(f"Dropbox answered HTTP {e.status_code} while {what}: {e.body}") from e

    @staticmethod
    def _auth_message(what: str, e: AuthError) -> str:
        err = e.error
        if err is not None and err.is_missing_scope():
            scope = err.get_missing_scope().required_scope
            return (
                f"The Dropbox app lacks the permission scope {scope!r} needed for {what}. Enable it in the "
                f"App Console (Permissions tab), then run `kcg dropbox-auth` again: a new scope needs a new token."
            )
        if err is not None and err.is_invalid_select_user():
            return (
                f"Dropbox does not accept the team member id while {what}: check {ENV_TEAM_MEMBER_ID} "
                "(it must be a team member id like dbmid:..., and the token must be a team token)."
            )
        if err is not None and err.is_user_suspended():
            return f"The Dropbox account is suspended ({what}). Ask the team admin to reactivate it."
        if err is not None and err.is_route_access_denied():
            return f"The Dropbox app may not use this API while {what}. Check the app type in the App Console."
        # invalid_access_token (also what a revoked/expired refresh token gives: invalid_grant),
        # expired_access_token after a refresh, other.
        return f"Dropbox refused kcg-mail's credentials while {what} (refresh token expired, revoked or invalid). {_REAUTH}"

    @staticmethod
    def _lookup_message(apath: str, lookup: files.LookupError) -> str:
        for tag, text in _LOOKUP_ERRORS.items():
            if _tag_is(lookup, tag):
                return text.format(apath=apath)
        if lookup.is_malformed_path():
            return f"Dropbox says the path {apath} is malformed: {lookup.get_malformed_path()}"
        return f"Dropbox could not look up {apath} ({lookup})"

    def _write_error(self, apath: str, err: files.WriteError) -> TransportError:
        """A clear exception for a failed write at ``apath``."""
        if err.is_conflict():
            c = err.get_conflict()
            kind = "a folder" if c.is_folder() else "a file" if c.is_file() else "an item in the way"
            if c.is_file_ancestor():
                kind = "a file in place of one of its parent folders"
            return TransportError(f"Cannot store {apath} in Dropbox: path conflict with {kind} there.")
        for tag, (error, text) in _WRITE_ERRORS.items():
            if _tag_is(err, tag):
                return error(text.format(apath=apath))
        if err.is_malformed_path():
            return TransportError(f"Dropbox says the path {apath} is malformed: {err.get_malformed_path()}")
        return TransportError(f"Dropbox could not write {apath}: {err}")

    # ------------------------------------------------------------ metadata

    def _metadata(self, apath: str) -> files.FileMetadata | None:
        try:
            meta = self._call(f"looking up {apath}", self.client.files_get_metadata, self._dp(apath))
        except ApiError as e:
            if e.error.is_path() and e.error.get_path().is_not_found():
                return None
            if e.error.is_path():
                raise TransportError(self._lookup_message(apath, e.error.get_path())) from e
            raise TransportError(f"Dropbox could not look up {apath}: {e.error}") from e
        if not isinstance(meta, files.FileMetadata):
            raise TransportError(f"Cannot use {apath} as a file: it is a folder in Dropbox.")
        return meta

    def _list_files(self, folder: str) -> list[files.FileMetadata]:
        """Files directly in ``folder`` (an archive path); [] if it doesn't exist."""
        what = f"listing {folder}"
        try:
            res = self._call(what, self.client.files_list_folder, self._dp(folder))
        except ApiError as e:
            if e.error.is_path() and (e.error.get_path().is_not_found() or e.error.get_path().is_not_folder()):
                return []
            if e.error.is_path():
                raise TransportError(self._lookup_message(folder, e.error.get_path())) from e
            raise TransportError(f"Dropbox could not list {folder}: {e.error}") from e
        entries = list(res.entries)
        while res.has_more:
            res = self._call(what, self.client.files_list_folder_continue, res.cursor)
            entries.extend(res.entries)
        return [m for m in entries if isinstance(m, files.FileMetadata)]

    # ------------------------------------------------------------ upload

    def _upload(self, apath: str, data: bytes, digest: str, overwrite: bool) -> files.FileMetadata:
        mode = files.WriteMode.overwrite if overwrite else files.WriteMode.add
        dp = self._dp(apath)
        what = f"uploading {apath}"
        try:
            if len(data) <= self.upload_session_threshold:
                meta = self._call(
                    what, self.client.files_upload, data, dp, mode=mode, autorename=False, content_hash=digest
                )
            else:
                meta = self._upload_session(apath, dp, data, mode)
        except ApiError as e:
            raise self._upload_error(apath, e) from e
        if meta.content_hash != digest:
            raise TransportError(
                f"Dropbox stored {apath} (rev {meta.rev}) with content hash {meta.content_hash}, but the bytes "
                f"sent hash to {digest}: the copy in Dropbox is not what kcg-mail filed. Check the file in "
                "Dropbox, delete it if it is damaged, and file again."
            )
        return meta

    @staticmethod
    def _write_error_of(err: Any) -> files.WriteError | None:
        """The WriteError inside an UploadError (``path.reason``) or an
        UploadSessionFinishError (``path``), if that is what failed."""
        if not (hasattr(err, "is_path") and err.is_path()):
            return None
        path = err.get_path()
        if isinstance(path, files.UploadWriteFailed):
            return path.reason
        return path if isinstance(path, files.WriteError) else None

    def _upload_error(self, apath: str, e: ApiError) -> TransportError:
        err = e.error
        werr = self._write_error_of(err)
        if werr is not None:
            return self._write_error(apath, werr)
        if err.is_content_hash_mismatch():
            return TransientError(
                f"Dropbox received different bytes than were sent for {apath} (content_hash_mismatch); "
                "nothing was stored. Run again."
            )
        if err.is_payload_too_large():
            return TransportError(f"Upload of {apath} was too large for one request (payload_too_large).")
        if isinstance(err, files.UploadSessionFinishError) and err.is_lookup_failed():
            return TransientError(f"The upload session for {apath} was lost ({err.get_lookup_failed()}); run again.")
        if isinstance(err, files.UploadSessionFinishError) and err.is_too_many_write_operations():
            return TransientError(f"Dropbox is busy with other writes in the folder of {apath}; run again later.")
        if isinstance(err, (files.UploadSessionLookupError, files.UploadSessionAppendError)):
            return TransientError(f"The upload session for {apath} failed ({err}); run again.")
        return TransportError(f"Dropbox could not store {apath}: {err}")

    def _upload_session(self, apath: str, dp: str, data: bytes, mode: files.WriteMode) -> files.FileMetadata:
        what = f"uploading {apath}"
        chunk = self.chunk_size
        # The SDK adds each call's content_hash (auto_content_hash), so Dropbox
        # checks every chunk; the whole file is checked against the result.
        start = self._call(what, self.client.files_upload_session_start, data[:chunk])
        cursor = files.UploadSessionCursor(session_id=start.session_id, offset=len(data[:chunk]))
        while len(data) - cursor.offset > chunk:
            piece = data[cursor.offset : cursor.offset + chunk]
            try:
                self._call(what, self.client.files_upload_session_append_v2, piece, cursor)
            except ApiError as e:
                # A retried append that had in fact arrived: continue where Dropbox is.
                if e.error.is_incorrect_offset():
                    cursor.offset = e.error.get_incorrect_offset().correct_offset
                    continue
                raise
            cursor.offset += len(piece)
        commit = files.CommitInfo(path=dp, mode=mode, autorename=False)
        return self._call(what, self.client.files_upload_session_finish, data[cursor.offset :], cursor, commit)

    # ------------------------------------------------------------ Archive

    def store(self, path: str, data: bytes, *, overwrite: bool = False) -> StoredFile:
        apath = archive_path(path)
        digest = dropbox_content_hash(data)
        folder = self._folder_of(apath)
        if overwrite:
            meta = self._metadata(apath)
            if meta is not None and meta.content_hash == digest:
                return self._stored(folder, meta, created=False)
            return self._stored(folder, self._upload(apath, data, digest, overwrite=True))

        # One listing of the folder shows the path and all its versions with
        # their content hashes (also versions after a gap, e.g. only "x (v3)").
        for _ in range(_MAX_STORE_RACES):
            existing = {m.name: m for m in self._list_files(folder)}
            versions = find_versions(apath, existing, fold=_fold)
            for n in sorted(versions):
                meta = existing[versions[n]]
                if meta.content_hash == digest:
                    return self._stored(folder, meta, created=False)
            # The path itself when free, else one past the highest version.
            target = apath if 1 not in versions else version_path(apath, max(versions) + 1)
            try:
                return self._stored(folder, self._upload(target, data, digest, overwrite=False))
            except TransportError as e:
                cause = e.__cause__
                werr = self._write_error_of(cause.error) if isinstance(cause, ApiError) else None
                if werr is not None and werr.is_conflict() and werr.get_conflict().is_file():
                    # Someone (or our own retried request) created that name
                    # meanwhile: look again; it may be our content.
                    continue
                raise
        raise TransportError(f"Could not find a free version name for {apath} in Dropbox: the folder keeps changing.")

    def read(self, path: str) -> bytes:
        apath = archive_path(path)
        what = f"downloading {apath}"
        try:
            meta, resp = self._call(what, self.client.files_download, self._dp(apath))
        except ApiError as e:
            if e.error.is_path() and e.error.get_path().is_not_found():
                raise FileNotFoundError(f"No file at archive path {apath} in Dropbox") from e
            if e.error.is_path():
                raise TransportError(self._lookup_message(apath, e.error.get_path())) from e
            raise TransportError(f"Dropbox could not send {apath}: {e.error}") from e
        with resp:
            data: bytes = resp.content
        if meta.content_hash and dropbox_content_hash(data) != meta.content_hash:
            raise TransientError(f"The download of {apath} from Dropbox was corrupted (content hash differs); run again.")
        return data

    def list(self, folder: str) -> list[StoredFile]:
        afolder = archive_path(folder) if folder.strip("/ ") else "/"
        metas = sorted(self._list_files(afolder), key=lambda m: m.name)
        return [self._stored(afolder, m, created=False) for m in metas]

    def shared_link(self, path: str) -> str:
        apath = archive_path(path)
        dp = self._dp(apath)
        what = f"creating a shared link for {apath}"
        try:
            return str(self._call(what, self.client.sharing_create_shared_link_with_settings, dp).url)
        except ApiError as e:
            err = e.error
            if err.is_shared_link_already_exists():
                existing = err.get_shared_link_already_exists()
                if existing is not None and existing.is_metadata():
                    return str(existing.get_metadata().url)
                links = self._call(
                    f"finding the shared link of {apath}", self.client.sharing_list_shared_links, path=dp, direct_only=True
                ).links
                if links:
                    return str(links[0].url)
                raise TransportError(f"Dropbox says {apath} already has a shared link but does not list it.") from e
            if err.is_path() and err.get_path().is_not_found():
                raise FileNotFoundError(f"No file at archive path {apath} in Dropbox to link to") from e
            if err.is_path():
                raise TransportError(self._lookup_message(apath, err.get_path())) from e
            if err.is_access_denied():
                raise TransportError(
                    f"Dropbox denies creating a shared link for {apath} (team sharing policy or no access)."
                ) from e
            if err.is_email_not_verified():
                raise TransportError("The Dropbox account's email is not verified; verify it to create shared links.") from e
            raise TransportError(f"Dropbox could not create a shared link for {apath}: {err}") from e

    def _shared_folder_id(self, afolder: str) -> str:
        dp = self._dp(afolder)
        try:
            meta = self._call(f"looking up {afolder}", self.client.files_get_metadata, dp)
        except ApiError as e:
            if not (e.error.is_path() and e.error.get_path().is_not_found()):
                raise TransportError(f"Dropbox could not look up the folder {afolder}: {e.error}") from e
            meta = None  # share_folder creates it
        if isinstance(meta, files.FileMetadata):
            raise TransportError(f"Cannot share {afolder}: it is a file in Dropbox, not a folder.")
        if isinstance(meta, files.FolderMetadata) and meta.shared_folder_id:
            return str(meta.shared_folder_id)
        what = f"sharing the folder {afolder}"
        try:
            launch = self._call(what, self.client.sharing_share_folder, dp)
        except ApiError as e:
            err = e.error
            if err.is_bad_path():
                bad = err.get_bad_path()
                if bad.is_already_shared():
                    return str(bad.get_already_shared().shared_folder_id)
                if bad.is_inside_shared_folder():
                    raise TransportError(
                        f"Cannot share {afolder}: it is inside a folder that is already shared. Add the person "
                        "to that parent folder instead (and use it as the members folder in the configuration)."
                    ) from e
                raise TransportError(f"Dropbox cannot share {afolder}: {bad}") from e
            if err.is_no_permission():
                raise TransportError(f"No permission to share {afolder} in Dropbox; ask the team admin.") from e
            if err.is_email_unverified():
                raise TransportError("The Dropbox account's email is not verified; verify it to share folders.") from e
            raise TransportError(f"Dropbox could not share {afolder}: {err}") from e
        job = launch.get_async_job_id() if launch.is_async_job_id() else None
        status: Any = launch
        for _ in range(30):
            if status.is_complete():
                return str(status.get_complete().shared_folder_id)
            if getattr(status, "is_failed", lambda: False)():
                raise TransportError(f"Dropbox could not share {afolder}: {status.get_failed()}")
            self._sleep(1.0)
            status = self._call(what, self.client.sharing_check_share_job_status, job)
        raise TransientError(f"Dropbox is still sharing {afolder}; run again later.")

    def add_member(self, folder: str, email: str) -> None:
        """Share ``folder`` if it isn't shared yet, then add ``email`` as an
        editor, quietly (no invitation mail from Dropbox)."""
        email = email.strip()
        if "@" not in email:
            raise ValueError(f"not an email address: {email!r}")
        afolder = archive_path(folder)
        sfid = self._shared_folder_id(afolder)
        member = sharing.AddMember(sharing.MemberSelector.email(email), sharing.AccessLevel.editor)
        what = f"adding {email} to {afolder}"
        try:
            self._call(what, self.client.sharing_add_folder_member, sfid, [member], quiet=True)
        except ApiError as e:
            err = e.error
            if err.is_bad_member():
                raise TransportError(f"Dropbox does not accept {email} as a member of {afolder}: {err.get_bad_member()}") from e
            if err.is_cant_share_outside_team():
                raise TransportError(
                    f"Team policy forbids sharing {afolder} with {email}, who is outside the team. Ask the team admin."
                ) from e
            if err.is_no_permission() or err.is_access_error():
                raise TransportError(f"No permission to add members to {afolder} in Dropbox ({err}).") from e
            if err.is_too_many_members() or err.is_too_many_pending_invites():
                raise TransportError(f"{afolder} has too many members or pending invitations in Dropbox.") from e
            if err.is_rate_limit():
                raise TransientError(f"Dropbox limits how fast members are added; {what} failed, run again later.") from e
            raise TransportError(f"Dropbox could not add {email} to {afolder}: {err}") from e

    def check(self) -> builtins.list[Check]:
        checks: list[Check] = []
        try:
            acct = self._call("checking the account", self.client.users_get_current_account)
        except TransportError as e:
            return [Check("dropbox account", False, str(e))]
        root_ns = acct.root_info.root_namespace_id
        checks.append(Check("dropbox account", True, f"{acct.email} ({acct.name.display_name}); root namespace {root_ns}"))
        if self.team_root_namespace_id and self.team_root_namespace_id != root_ns:
            checks.append(
                Check(
                    "dropbox team root",
                    False,
                    f"{ENV_TEAM_ROOT_NAMESPACE_ID}={self.team_root_namespace_id} but the account's root namespace "
                    f"is {root_ns}",
                )
            )
        try:
            self._call(f"listing {self.root}", self.client.files_list_folder, self._dp("/"), limit=1)
            checks.append(Check("dropbox archive root", True, f"{self.root} is reachable"))
        except ApiError as e:
            checks.append(
                Check(
                    "dropbox archive root",
                    False,
                    f"{self.root}: {e.error}. Create the folder in Dropbox or fix the archive root.",
                )
            )
        except TransportError as e:
            checks.append(Check("dropbox archive root", False, str(e)))
        return checks


def run_auth_flow(
    app_key: str,
    app_secret: str,
    input: Callable[[str], str] = input,
    print: Callable[..., Any] = print,
    session: requests.Session | None = None,
) -> str:
    """Walk the coordinator through Dropbox's no-redirect OAuth flow and return
    the refresh token (``token_access_type="offline"``). ``kcg dropbox-auth``
    calls this and stores the token as ``KCG_DROPBOX_REFRESH_TOKEN``.
    ``session`` replaces the SDK's HTTP session (tests)."""
    flow = DropboxOAuth2FlowNoRedirect(app_key, consumer_secret=app_secret, token_access_type="offline")
    if session is not None:
        flow.requests_session = session
    url = flow.start()
    print("Connect kcg-mail to Dropbox:")
    print(f"  1. Open this address in a browser, logged in as the account that owns the archive:\n     {url}")
    print('  2. Click "Allow" (or "Continue", then "Allow").')
    print("  3. Copy the authorisation code Dropbox shows.")
    code = input("Paste the authorisation code here: ").strip()
    if not code:
        raise TransportError("No authorisation code was entered; run `kcg dropbox-auth` again.")
    try:
        result = flow.finish(code)
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise TransportError(
            f"Dropbox did not accept the code (HTTP {status}). Codes work once and expire after a few "
            f"minutes; check {ENV_APP_KEY}/{ENV_APP_SECRET} and run `kcg dropbox-auth` again."
        ) from e
    except requests.RequestException as e:
        raise TransportError(f"Cannot reach Dropbox to finish authorisation: {e}") from e
    if not result.refresh_token:
        raise TransportError("Dropbox returned no refresh token; the app must allow offline access. Run again.")
    print(f"Authorised for account {result.account_id}. Store the refresh token as {ENV_REFRESH_TOKEN}.")
    return str(result.refresh_token)
