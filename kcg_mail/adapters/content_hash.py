"""Dropbox's content hash, used by every archive so a file's identity is the
same in a local folder and in Dropbox.

Algorithm (https://www.dropbox.com/developers/reference/content-hash): split
the data into 4 MiB blocks, SHA-256 each block, concatenate the binary digests
and SHA-256 that; the result is written as 64 lowercase hex characters. Empty
data hashes to SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib

BLOCK_SIZE = 4 * 1024 * 1024


def dropbox_content_hash(data: bytes) -> str:
    """The Dropbox ``content_hash`` of ``data`` (hex)."""
    overall = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(view), BLOCK_SIZE):
        overall.update(hashlib.sha256(view[start : start + BLOCK_SIZE]).digest())
    return overall.hexdigest()
