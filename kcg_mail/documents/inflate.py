"""Inflate every entry of a returned zip package ourselves, with a hard cap on the
bytes actually produced.

The sizes in a zip's local headers and central directory are written by whoever made
the file and can lie (a "1 KiB" entry that inflates to 1 GiB, or a "1 GiB" entry that is
tiny). ``zipfile`` stops at the declared size when it reads, so a stream that goes on
past it would pass unseen. Here ``zipfile`` finds and checks each entry's local header
and hands over its raw bytes; the deflate stream is decompressed with ``zlib`` in
bounded steps until it ends itself; the count of bytes produced, never the declared
size, is held against the per-entry and total limits, and a produced size that differs
from the declared one (or a wrong CRC) is refused. Only the XML and relationship parts are kept in memory, for the checks and the
reading that follow; everything else (pictures, fonts) is inflated, counted and dropped.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from typing import cast

from kcg_mail.documents.ooxml import rejection

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


def _raw_view(info: zipfile.ZipInfo, size: int) -> zipfile.ZipInfo:
    """A copy of ``info`` that makes ``ZipFile.open`` find and check the entry's local
    header (signature, name, flags) and then hand over ``size`` raw bytes from the start
    of its data, as if they were stored: no inflating, no declared sizes, no CRC check
    (no ``CRC`` attribute: zipfile then checks none). The inflating and counting are ours."""
    view = zipfile.ZipInfo(info.orig_filename)
    view.flag_bits = info.flag_bits
    view.header_offset = info.header_offset
    view.compress_type = zipfile.ZIP_STORED
    view.compress_size = view.file_size = size
    return view


def inflate_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_length: int, part_cap: int, budget: int,
                   keep: bool) -> tuple[int, bytes]:
    """(bytes produced, the bytes when ``keep``) for one entry. Never produces more than
    ``min(part_cap, budget) + 1`` bytes before refusing."""
    limit = min(part_cap, budget)
    out: list[bytes] = []
    produced = 0
    crc = 0
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size > limit:
                raise rejection("zip_bomb", f"{info.filename}: {info.compress_size} bytes stored (limit {limit})")
            with zf.open(_raw_view(info, info.compress_size)) as raw:
                chunk = raw.read()
            produced, crc = len(chunk), zlib.crc32(chunk)
            if keep:
                out.append(chunk)
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            d = zlib.decompressobj(-15)
            # The declared compressed size may lie too: feed from the data start to the end of
            # the file at most; the deflate stream ends itself.
            with zf.open(_raw_view(info, max(file_length - info.header_offset, 0))) as raw:
                pending = b""
                while not d.eof:
                    if not pending:
                        pending = cast(zipfile.ZipExtFile, raw).read1(_CHUNK)  # one read: never past the end
                        if not pending:
                            raise rejection("corrupt", f"{info.filename}: deflate stream is cut off")
                    try:
                        chunk = d.decompress(pending, _CHUNK)
                    except zlib.error as exc:
                        raise rejection("corrupt", f"{info.filename}: broken deflate data: {exc}") from exc
                    pending = d.unconsumed_tail
                    produced += len(chunk)
                    if produced > limit:
                        raise rejection(
                            "zip_bomb",
                            f"{info.filename} inflates to more than {limit} bytes (declared {info.file_size})",
                        )
                    crc = zlib.crc32(chunk, crc)
                    if keep:
                        out.append(chunk)
        else:
            raise rejection("corrupt", f"{info.filename}: compression method {info.compress_type} (only stored and deflate)")
    except EOFError:  # the file ends inside the entry's data
        raise rejection("corrupt", f"{info.filename}: the entry runs past the end of the file") from None
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, ValueError) as exc:  # its local header
        raise rejection("corrupt", f"{info.filename}: {exc}") from exc
    if produced != info.file_size:
        raise rejection(
            "zip_bomb",
            f"{info.filename}: declares {info.file_size} bytes but inflates to {produced}",
        )
    if crc != info.CRC:
        raise rejection("corrupt", f"{info.filename}: CRC mismatch")
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
            raise rejection("corrupt", f"two zip entries named {info.filename!r} (names are case-insensitive)")
        keep = _keep(info.filename)
        produced, blob = inflate_entry(zf, info, len(data), part_cap, total_cap - total, keep)
        total += produced
        pkg.by_lower[low] = info.filename
        if keep:
            pkg.parts[info.filename] = blob
    pkg.produced = total
    return pkg
