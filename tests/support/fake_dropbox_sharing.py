"""The fake Dropbox's sharing routes (``sharing/...``): shared links and shared
folders with their members, in the shapes of the SDK's ``sharing.py``. Held by
``FakeDropbox`` (``box.sharing``), which dispatches ``sharing/<route>`` here."""

from __future__ import annotations

import secrets
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from support.fake_dropbox_model import FakeFile, FakeFolder, Namespace, route_error, ts

if TYPE_CHECKING:
    from support.fake_dropbox import FakeDropbox


class SharingRoutes:
    def __init__(self, box: FakeDropbox) -> None:
        self.box = box

    @staticmethod
    def link_meta(url: str, f: FakeFile) -> dict:
        return {
            ".tag": "file",
            "url": url,
            "name": f.path_display.rpartition("/")[2],
            "path_lower": f.path_display.lower(),
            "link_permissions": {
                "can_revoke": True,
                "visibility_policies": [],
                "can_set_expiry": False,
                "can_remove_expiry": False,
                "allow_download": True,
                "can_allow_download": True,
                "can_disallow_download": False,
                "allow_comments": True,
                "team_restricts_comments": False,
            },
            "client_modified": ts(f.server_modified),
            "server_modified": ts(f.server_modified),
            "rev": f.rev,
            "size": len(f.data),
        }

    def create_shared_link_with_settings(self, ns: Namespace, arg: dict) -> dict:
        item = self.box.lookup(ns, arg["path"])
        key = arg["path"].lower()
        if key in ns.links:
            if self.box.omit_link_metadata:  # the metadata is optional in the spec
                raise route_error("shared_link_already_exists", {".tag": "shared_link_already_exists"})
            raise route_error(
                "shared_link_already_exists/metadata",
                {
                    ".tag": "shared_link_already_exists",
                    "shared_link_already_exists": {".tag": "metadata", "metadata": self.link_meta(ns.links[key], item)},
                },
            )
        url = f"https://www.dropbox.com/scl/fi/{secrets.token_hex(8)}/{urllib.parse.quote(item.path_display.rpartition('/')[2])}?rlkey=x&dl=0"
        ns.links[key] = url
        return self.link_meta(url, item)

    def list_shared_links(self, ns: Namespace, arg: dict) -> dict:
        path = (arg or {}).get("path")
        links = [self.link_meta(u, ns.files[k]) for k, u in ns.links.items() if path is None or k == path.lower()]
        return {"links": links, "has_more": False}

    def shared_folder_meta(self, f: FakeFolder) -> dict:
        return {
            "access_type": {".tag": "owner"},
            "is_inside_team_folder": False,
            "is_team_folder": False,
            "path_lower": f.path_display.lower(),
            "path_display": f.path_display,
            "name": f.path_display.rpartition("/")[2],
            "policy": {"acl_update_policy": {".tag": "editors"}, "shared_link_policy": {".tag": "anyone"}},
            "preview_url": "https://www.dropbox.com/scl/fo/preview",
            "shared_folder_id": f.shared_folder_id,
            "time_invited": ts(datetime.now(UTC)),
            "access_inheritance": {".tag": "inherit"},
        }

    def share_folder(self, ns: Namespace, arg: dict) -> dict:
        path = self.box.check_path(arg["path"])
        key = path.lower()
        if key in ns.files:
            raise route_error("bad_path/is_file", {".tag": "bad_path", "bad_path": {".tag": "is_file"}})
        for folder in ns.folders.values():
            fk = folder.path_display.lower()
            if folder.shared_folder_id and key.startswith(fk + "/"):
                raise route_error("bad_path/inside_shared_folder", {".tag": "bad_path", "bad_path": {".tag": "inside_shared_folder"}})
        self.box.ensure_folders(ns, path, lambda reason: route_error("bad_path/invalid_path", {".tag": "bad_path", "bad_path": {".tag": "invalid_path"}}))
        f = ns.folders[key]
        if f.shared_folder_id:
            raise route_error(
                "bad_path/already_shared",
                {".tag": "bad_path", "bad_path": {".tag": "already_shared", **self.shared_folder_meta(f)}},
            )
        f.shared_folder_id = str(5000 + next(self.box.counter))
        self.box.shared_members[f.shared_folder_id] = []
        return {".tag": "complete", **self.shared_folder_meta(f)}

    def add_folder_member(self, ns: Namespace, arg: dict) -> None:
        sfid = arg["shared_folder_id"]
        if sfid not in self.box.shared_members:
            raise route_error("access_error/invalid_id", {".tag": "access_error", "access_error": {".tag": "invalid_id"}})
        for m in arg["members"]:
            email = m["member"].get("email")
            if not email or "@" not in email:
                raise route_error("bad_member/invalid_email", {".tag": "bad_member", "bad_member": {".tag": "invalid_email", "invalid_email": str(email)}})
            if email.endswith("@outside.example"):
                raise route_error("cant_share_outside_team", {".tag": "cant_share_outside_team"})
            current = self.box.shared_members[sfid]
            if not any(x["email"].lower() == email.lower() for x in current):
                current.append({"email": email, "access_level": (m.get("access_level") or {}).get(".tag", "viewer"), "quiet": str(arg.get("quiet"))})
        return None
