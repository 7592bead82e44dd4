"""The fake Dropbox's model, shared by its routes: namespaces with files and
folders, the content hash, the recorded calls and route errors in the API's shapes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BLOCK = 4 * 1024 * 1024


def content_hash(data: bytes) -> str:
    """Dropbox content hash, written independently of the code under test."""
    digests = b"".join(hashlib.sha256(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK))
    return hashlib.sha256(digests).hexdigest()


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeFile:
    path_display: str
    data: bytes
    rev: str
    id: str
    server_modified: datetime

    @property
    def content_hash(self) -> str:
        return content_hash(self.data)


@dataclass
class FakeFolder:
    path_display: str
    id: str
    shared_folder_id: str | None = None


@dataclass
class Namespace:
    ns_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    folders: dict[str, FakeFolder] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    route: str
    host: str
    headers: dict[str, str]
    arg: Any
    body_size: int


class RouteError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def route_error(summary: str, error: dict) -> RouteError:
    return RouteError(409, {"error_summary": summary + "/..", "error": error})
