"""Refuse PDFs that run code, fetch, submit, launch or carry files: ``/JavaScript``,
``/JS``, ``/Launch``, ``/SubmitForm``, ``/ImportData``, ``/EmbeddedFile(s)``, ``/AA``
(automatic actions), ``/RichMedia``, ``/XFA``, ``/GoToR``/``/GoToE`` (open another
file), and an ``/OpenAction`` that is anything but a plain view (a destination, or a
``/GoTo`` action to one). Link annotations with a ``/URI`` stay: a click target.

Two independent looks, so a trick that fools one is caught by the other:
1. the raw bytes, tokenised as PDF names with ``#xx`` escapes decoded (``/J#61vaScript``
   is ``/JavaScript``), outside stream data, plus the inflated content of every object
   stream (``/Type /ObjStm``, where PDF 1.5 files keep dictionaries), with a hard cap on
   the bytes inflated;
2. pypdf's object tree: every object the cross-reference table names, walked.
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

from kcg_mail.documents.ooxml import rejection

FORBIDDEN_NAMES = frozenset({
    "JavaScript", "JS", "Launch", "SubmitForm", "ImportData", "EmbeddedFile", "EmbeddedFiles", "AA",
    "RichMedia", "XFA", "GoToR", "GoToE",
})

#: Inflated object-stream bytes we are willing to produce while scanning.
MAX_OBJSTM_INFLATED = 64 * 1024 * 1024

_NAME = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")
_STREAM = re.compile(rb"stream(?:\r\n|\n|\r)(.*?)endstream", re.S)
_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")


def _decode_name(raw: bytes) -> str:
    return _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("latin-1")


def _names(blob: bytes) -> set[str]:
    return {_decode_name(m.group(1)) for m in _NAME.finditer(blob)}


def _dict_before(data: bytes, pos: int) -> bytes:
    """The dictionary text just before a ``stream`` keyword (for its /Type and /Filter)."""
    start = data.rfind(b"obj", max(0, pos - 4096), pos)
    return data[start if start >= 0 else max(0, pos - 4096) : pos]


def _inflate_capped(body: bytes, budget: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, budget + 1)
    except zlib.error:
        return b""
    if len(out) > budget:
        raise rejection("zip_bomb", f"PDF object stream inflates to more than {MAX_OBJSTM_INFLATED} bytes")
    return out


def _raw_scan(data: bytes) -> None:
    outside = bytearray()
    last = 0
    budget = MAX_OBJSTM_INFLATED
    for m in _STREAM.finditer(data):
        outside += data[last : m.start()] + b" "
        last = m.end()
        head = _names(_dict_before(data, m.start()))
        if "ObjStm" in head:
            if "FlateDecode" in head:
                inner = _inflate_capped(m.group(1), budget)
                budget -= len(inner)
            elif not head & {"Filter"}:
                inner = m.group(1)
            else:
                inner = b""  # another filter: pypdf's tree walk below covers it
            _refuse_names(_names(inner), "an object stream")
    outside += data[last:]
    _refuse_names(_names(bytes(outside)), "the file")


def _refuse_names(names: set[str], where: str) -> None:
    bad = sorted(names & FORBIDDEN_NAMES)
    if bad:
        raise rejection("pdf_active", f"PDF with /{', /'.join(bad)} in {where}")


def _plain_view(action: Any) -> bool:
    """An /OpenAction that only shows a page: a destination array or a /GoTo action."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    if isinstance(action, IndirectObject):
        action = action.get_object()
    if isinstance(action, ArrayObject):
        return True
    if isinstance(action, DictionaryObject):
        return str(action.get("/S", "")) == "/GoTo" and "/Next" not in action
    return action is None


def _walk(obj: Any, seen: set[int], depth: int = 0) -> None:
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

    if depth > 200:
        raise rejection("corrupt", "PDF objects nested too deeply")
    if isinstance(obj, IndirectObject):
        if obj.idnum in seen:
            return
        seen.add(obj.idnum)
        obj = obj.get_object()
    if isinstance(obj, DictionaryObject):
        for key, value in obj.items():
            name = str(key).lstrip("/")
            if name in FORBIDDEN_NAMES:
                raise rejection("pdf_active", f"PDF object with /{name}")
            if name == "OpenAction" and not _plain_view(value):
                raise rejection("pdf_active", "PDF /OpenAction that is not a plain view")
            if name == "S" and isinstance(value, NameObject) and str(value).lstrip("/") in FORBIDDEN_NAMES:
                raise rejection("pdf_active", f"PDF action /{str(value).lstrip('/')}")
            _walk(value, seen, depth + 1)
    elif isinstance(obj, ArrayObject):
        for item in obj:
            _walk(item, seen, depth + 1)
    elif isinstance(obj, NameObject) and str(obj).lstrip("/") in FORBIDDEN_NAMES:
        raise rejection("pdf_active", f"PDF name /{str(obj).lstrip('/')}")


def _tree_scan(data: bytes) -> None:
    from pypdf import PdfReader
    from pypdf.generic import IndirectObject

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    return  # the reader refuses it as encrypted
            except Exception:  # noqa: BLE001 - the reader refuses it
                return
        seen: set[int] = set()
        _walk(reader.trailer, seen)
        for gen, ids in reader.xref.items():
            for idnum in ids:
                _walk(IndirectObject(idnum, gen, reader), seen)
        for idnum in list(getattr(reader, "xref_objStm", {})):
            _walk(IndirectObject(idnum, 0, reader), seen)
    except Exception as exc:  # noqa: BLE001 - only our own refusal passes; the reader judges the rest
        from kcg_mail.documents.ooxml import MinutesRejected

        if isinstance(exc, MinutesRejected):
            raise


def vet_pdf(data: bytes) -> None:
    _raw_scan(data)
    _tree_scan(data)
