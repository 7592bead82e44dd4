"""Inflate every entry of a returned zip package ourselves, with a hard cap on the
bytes actually produced.

The sizes in a zip's local headers and central directory are written by whoever made
the file and can lie (a "1 KiB" entry that inflates to 1 GiB, or a "1 GiB" entry that is
tiny). ``zipfile`` trusts the declared size when it reads. Here each entry's deflate
stream is decompressed from its local header with ``zlib`` in bounded steps; the count
of bytes produced, never the declared size, is held against the per-entry and total
limits, and a produced size that differs from the declared one (or a wrong CRC) is
refused. Only the XML and relationship parts are kept in memory, for the checks and the
reading that follow; everything else (pictures, fonts) is inflated, counted and dropped.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from kcg_mail.documents.ooxml import _reject

_CHUNK = 64 * 1024

#: Parts whose bytes are kept: the package's markup. Everything else is only counted.
_KEEP_SUFFIXES = (".xml", ".rels", ".vml", ".htm", ".html", ".mht", ".mhtml", ".txt", ".rtf", ".docx", ".dotx", ".docm")


@dataclass
class Package:
    """The inflated markup of a zip package. ``parts`` maps the exact entry name to its
    bytes; ``by_lower`` maps the lower-cased name to the exact one (OPC part names are
    case-insensitive, and so is Office when it resolves them)."""

    names: list[str]
    parts: dict[str, bytes] = field(default_factory=dict)
    by_lower: dict[str, str] = field(default_factory=dict)
    produced: int = 0

    def get(self, name: str) -> bytes | None:
        """The bytes of a kept part, looked up case-insensitively; None when absent."""
        exact = self.by_lower.get(name.lower())
        return None if exact is None else self.parts.get(exact)

    def has(self, name: str) -> bool:
        return name.lower() in self.by_lower


def _keep(name: str) -> bool:
    low = name.lower()
    return low.endswith(_KEEP_SUFFIXES) or low in ("mimetype", "[content_types].xml")


def _data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    off = info.header_offset
    if off < 0 or off + 30 > len(data) or data[off : off + 4] != b"PK\x03\x04":
        raise _reject("corrupt", f"{info.filename}: no local header at offset {off}")
    nlen, elen = struct.unpack_from("<HH", data, off + 26)
    start = off + 30 + nlen + elen
    if start > len(data):
        raise _reject("corrupt", f"{info.filename}: local header runs past the end of the file")
    return start


def _inflate_entry(data: bytes, info: zipfile.ZipInfo, part_cap: int, budget: int, keep: bool) -> tuple[int, bytes]:
    """(bytes produced, the bytes when ``keep``) for one entry. Never produces more than
    ``min(part_cap, budget) + 1`` bytes before refusing."""
    start = _data_start(data, info)
    limit = min(part_cap, budget)
    out: list[bytes] = []
    produced = 0
    crc = 0
    if info.compress_type == zipfile.ZIP_STORED:
        size = info.compress_size
        if start + size > len(data):
            raise _reject("corrupt", f"{info.filename}: stored entry runs past the end of the file")
        if size > limit:
            raise _reject("zip_bomb", f"{info.filename}: {size} bytes stored (limit {limit})")
        chunk = data[start : start + size]
        produced, crc = size, zlib.crc32(chunk)
        if keep:
            out.append(chunk)
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        d = zlib.decompressobj(-15)
        # The declared compressed size may lie too: feed from the data start to the end of
        # the file at most; the deflate stream ends itself.
        pos, end = start, len(data)
        pending = b""
        while not d.eof:
            if not pending:
                if pos >= end:
                    raise _reject("corrupt", f"{info.filename}: deflate stream is cut off")
                pending = data[pos : pos + _CHUNK]
                pos += len(pending)
            try:
                chunk = d.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise _reject("corrupt", f"{info.filename}: broken deflate data: {exc}") from exc
            pending = d.unconsumed_tail
            produced += len(chunk)
            if produced > limit:
                raise _reject(
                    "zip_bomb",
                    f"{info.filename} inflates to more than {limit} bytes (declared {info.file_size})",
                )
            crc = zlib.crc32(chunk, crc)
            if keep:
                out.append(chunk)
    else:
        raise _reject("corrupt", f"{info.filename}: compression method {info.compress_type} (only stored and deflate)")
    if produced != info.file_size:
        raise _reject(
            "zip_bomb",
            f"{info.filename}: declares {info.file_size} bytes but inflates to {produced}",
        )
    if crc != info.CRC:
        raise _reject("corrupt", f"{info.filename}: CRC mismatch")
    return produced, b"".join(out)


def inflate_package(zf: zipfile.ZipFile, data: bytes, infos: list[zipfile.ZipInfo], *,
                    part_cap: int, total_cap: int) -> Package:
    """Inflate every entry with hard caps; refuse duplicate names (also in another letter
    case, which Office treats as the same part)."""
    pkg = Package(names=[i.filename for i in infos])
    total = 0
    for info in infos:
        if info.is_dir():
            continue
        low = info.filename.lower()
        if low in pkg.by_lower:
            raise _reject("corrupt", f"two zip entries named {info.filename!r} (names are case-insensitive)")
        keep = _keep(info.filename)
        produced, blob = _inflate_entry(data, info, part_cap, total_cap - total, keep)
        total += produced
        pkg.by_lower[low] = info.filename
        if keep:
            pkg.parts[info.filename] = blob
    pkg.produced = total
    return pkg
