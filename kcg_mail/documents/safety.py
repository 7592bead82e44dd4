"""Is a returned file safe to open? Identify it from its content (never its
name) and refuse anything unsafe before it is parsed: macros, encryption,
legacy formats, zip bombs, DTDs, external relationships. Everything here
looks at the zip central directory, then inflates every entry with a hard cap on
the bytes actually produced (:mod:`inflate`), then refuses anything that would
reach outside when opened (:mod:`reach`, :mod:`pdf_safety`). Nothing in a
returned file is ever fetched from outside."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import PurePath

from kcg_mail.documents.inflate import Package, inflate_package
from kcg_mail.documents.ooxml import (
    CT_NS,
    PKG_REL_NS,
    REJECT_CODES,
    REL_OFFICE_DOC,
    rejection,
    resolve_target,
    safe_parse,
)
from kcg_mail.documents.pdf_safety import vet_pdf
from kcg_mail.documents.reach import vet_odf, vet_ooxml

MAX_ZIP_ENTRIES = 1000


MAX_TOTAL_UNCOMPRESSED = 200 * 1024 * 1024


MAX_PART_UNCOMPRESSED = 100 * 1024 * 1024


MAX_RATIO = 100  # POI's default minimum inflate ratio is 0.01


RATIO_CHECK_ABOVE = 1024 * 1024


MAX_PDF_PAGES = 500


MAX_TEXT_CHARS = 2_000_000


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


_EXT_KIND = {
    ".docx": "docx", ".docm": "docx", ".dotx": "docx", ".dotm": "docx",
    ".pdf": "pdf",
    ".odt": "odt", ".ott": "odt", ".fodt": "odt",
    ".doc": "doc", ".dot": "doc", ".rtf": "rtf",
    ".xlsx": "xlsx", ".xls": "doc", ".pptx": "pptx", ".ppt": "doc", ".ods": "ods", ".odp": "odp",
    ".txt": "text", ".html": "html", ".htm": "html",
}


_KIND_SV = {
    "docx": "ett Word-dokument (.docx)", "pdf": "en PDF", "odt": "ett OpenDocument-dokument (.odt)",
    "doc": "ett äldre Office-dokument", "rtf": "ett RTF-dokument", "xlsx": "ett Excel-dokument",
    "pptx": "en PowerPoint-presentation", "ods": "ett kalkylark", "odp": "en presentation",
    "text": "en textfil", "html": "en webbsida", "zip": "ett zip-arkiv",
}


_WORD_MAIN_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
}


_ODT_MIMETYPES = {"application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text-template"}


def _vet_zip(zf: zipfile.ZipFile, data_len: int) -> list[zipfile.ZipInfo]:
    """Zip-bomb and encryption checks, from the central directory only (nothing inflated)."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise rejection("zip_bomb", f"{len(infos)} zip entries (limit {MAX_ZIP_ENTRIES})")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise rejection("encrypted", f"zip entry {info.filename} is encrypted")
        if info.file_size > MAX_PART_UNCOMPRESSED:
            raise rejection(
                "zip_bomb",
                f"{info.filename} declares {info.file_size} bytes uncompressed (limit {MAX_PART_UNCOMPRESSED})",
            )
        if info.file_size > RATIO_CHECK_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise rejection(
                "zip_bomb",
                f"{info.filename} inflates {info.file_size / max(info.compress_size, 1):.0f}:1 (limit {MAX_RATIO}:1)",
            )
        if info.compress_size > data_len:
            raise rejection("corrupt", f"{info.filename} claims to be larger than the file")
        total += info.file_size
        if total > MAX_TOTAL_UNCOMPRESSED:
            raise rejection("zip_bomb", f"more than {MAX_TOTAL_UNCOMPRESSED} bytes uncompressed in total")
    return infos


def _ooxml_main(pkg: Package) -> tuple[str, str]:
    """(kind, main part) for an OOXML package; raises for macros and non-Word packages.
    Part names are matched case-insensitively, as Office does; the exact name is returned."""
    ct_raw = pkg.get("[Content_Types].xml") or b""
    ct_root = safe_parse(ct_raw, "[Content_Types].xml")
    overrides = {
        el.get("PartName", "").lstrip("/").lower(): el.get("ContentType", "")
        for el in ct_root.iter(f"{{{CT_NS}}}Override")
    }
    all_types = " ".join(el.get("ContentType", "") for el in ct_root)
    lower_names = set(pkg.by_lower)
    if (
        "macroenabled" in all_types.lower()
        or "vbaproject" in all_types.lower()
        or any(n.endswith("vbaproject.bin") or n.endswith("vbadata.xml") for n in lower_names)
        or any(n.startswith("word/activex/") for n in lower_names)
    ):
        raise rejection("macro", "macro-enabled document (macroEnabled content type, vbaProject.bin or ActiveX)")
    main = "word/document.xml"
    rels = pkg.get("_rels/.rels")
    if rels is not None:
        for rel in safe_parse(rels, "_rels/.rels").iter(f"{{{PKG_REL_NS}}}Relationship"):
            if (rel.get("TargetMode") or "").strip().lower() == "external":
                continue
            if (rel.get("Type") or "").strip().lower() == REL_OFFICE_DOC.lower():
                main = resolve_target("", rel.get("Target", ""))
    if not pkg.has(main):
        if pkg.has("xl/workbook.xml"):
            return "xlsx", main
        if pkg.has("ppt/presentation.xml"):
            return "pptx", main
        raise rejection("corrupt", f"OOXML package without a main document ({main})")
    ctype = overrides.get(main.lower(), "")
    if ctype and ctype not in _WORD_MAIN_TYPES:
        if "spreadsheetml" in ctype:
            return "xlsx", main
        if "presentationml" in ctype:
            return "pptx", main
        raise rejection("unsupported", f"main part has content type {ctype}")
    return "docx", pkg.by_lower[main.lower()]


def _vet_ole(data: bytes) -> tuple[str, str]:
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parse failure
        raise rejection("unsupported", f"OLE compound file that cannot be parsed: {exc}", REJECT_CODES["legacy_doc"]) from exc
    try:
        streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=False)}
        if "encryptedpackage" in streams or "encryptioninfo" in streams:
            raise rejection("encrypted", "password-protected Office document (OLE EncryptedPackage)")
        if "worddocument" in streams:
            with ole.openstream("WordDocument") as s:
                fib = s.read(12)
            if len(fib) >= 12 and struct.unpack_from("<H", fib, 10)[0] & 0x0100:
                raise rejection("encrypted", "password-protected Word 97-2003 document")
            raise rejection("legacy_doc", "Word 97-2003 .doc document")
        raise rejection("legacy_doc", "legacy Office (OLE) file that is not a Word document")
    finally:
        ole.close()


def _size_sv(n: int) -> str:
    return f"{round(n / (1024 * 1024))} MB" if n >= 1024 * 1024 else f"{max(n // 1024, 1)} kB"


def sniff_and_vet(filename: str, data: bytes, *, max_bytes: int) -> tuple[str, str]:
    """Detect the kind from content and run every safety check. Returns (kind, main part);
    the main part is only meaningful for docx."""
    kind, main, _pkg = vet_file(filename, data, max_bytes=max_bytes)
    return kind, main


def vet_file(filename: str, data: bytes, *, max_bytes: int, _depth: int = 0) -> tuple[str, str, Package | None]:
    """Detect the kind from content and run every safety check. Returns (kind, main part,
    the inflated package for docx/odt); a file that fails a check raises MinutesRejected."""
    if len(data) > max_bytes:
        raise rejection(
            "too_large",
            f"{len(data)} bytes (limit {max_bytes})",
            f"Filen är för stor (över {_size_sv(max_bytes)}). Ta bort stora bilder "
            "eller spara protokollet som PDF och skicka det igen.",
        )
    if not data.strip():
        raise rejection("empty", "empty file")
    ext = PurePath(filename or "").suffix.lower()
    named = _EXT_KIND.get(ext)
    pkg: Package | None = None

    if data.startswith(_OLE_MAGIC):
        kind, main = _vet_ole(data)  # always raises
    elif data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise rejection("corrupt", f"broken zip archive: {exc}") from exc
        with zf:
            infos = _vet_zip(zf, len(data))
            pkg = inflate_package(zf, data, infos, part_cap=MAX_PART_UNCOMPRESSED, total_cap=MAX_TOTAL_UNCOMPRESSED)
        kind, main = _zip_kind(pkg, _depth)
    elif b"%PDF-" in data[:1024]:
        kind, main = "pdf", ""
    elif data.lstrip()[:5] == b"{\\rtf":
        kind, main = "rtf", ""
    else:
        kind, main = "unknown", ""

    if named is not None and named != kind and kind != "unknown":
        said = ext
        actual = _KIND_SV.get(kind, "en annan filtyp")
        raise rejection(
            "wrong_type",
            f"file is named {filename!r} but its content is {kind}",
            f"Filen heter {said} men är egentligen {actual}. Spara protokollet som Word-dokument "
            "(.docx) eller PDF och skicka det igen.",
        )
    if kind not in ("docx", "pdf", "odt"):
        raise rejection("unsupported", f"unsupported content ({kind}, name {filename!r})")
    if kind == "pdf":
        vet_pdf(data)
    return kind, main, pkg


def _zip_kind(pkg: Package, depth: int = 0) -> tuple[str, str]:
    """(kind, main part) of an inflated zip package, after its kind's own checks."""
    mimetype_raw = pkg.get("mimetype")
    if mimetype_raw is not None:
        mimetype = mimetype_raw.decode("ascii", "replace").strip()
        if mimetype not in _ODT_MIMETYPES:
            return {"application/vnd.oasis.opendocument.spreadsheet": "ods",
                    "application/vnd.oasis.opendocument.presentation": "odp"}.get(mimetype, "zip"), ""
        if any(n.startswith(("basic/", "scripts/")) for n in pkg.by_lower):
            raise rejection(
                "macro",
                "OpenDocument with Basic/Scripts macros",
                "Filen innehåller makron. Spara protokollet utan makron som Word-dokument "
                "(.docx) eller PDF och skicka det igen.",
            )
        manifest_raw = pkg.get("META-INF/manifest.xml")
        if manifest_raw is not None:
            manifest = safe_parse(manifest_raw, "META-INF/manifest.xml")
            if any(el.tag.endswith("}encryption-data") for el in manifest.iter()):
                raise rejection("encrypted", "password-protected OpenDocument")
        if not pkg.has("content.xml"):
            raise rejection("corrupt", "OpenDocument without content.xml")
        vet_odf(pkg)
        return "odt", pkg.by_lower["content.xml"]
    if pkg.has("[Content_Types].xml"):
        kind, main = _ooxml_main(pkg)
        if kind == "docx":
            vet_ooxml(pkg, depth, vet_file)
        return kind, main
    return "zip", ""
