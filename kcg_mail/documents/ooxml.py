"""Office package basics shared by rendering, template checks and reading:
namespaces, relationships, a safe XML parser, and the rejection raised for a
file we will not read (``MinutesRejected``, with its Swedish message)."""

from __future__ import annotations

import zipfile
from pathlib import PurePath
from typing import Any

from lxml import etree

WORDML_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


WP_NS = "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"


_R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"


REL_OFFICE_DOC = _R_NS + "/officeDocument"


REL_HEADER = _R_NS + "/header"


REL_FOOTER = _R_NS + "/footer"


REL_FOOTNOTES = _R_NS + "/footnotes"


def resolve_target(source_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    base = PurePath(source_part).parent
    parts: list[str] = []
    for piece in (base / target).parts:
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in (".", ""):
            parts.append(piece)
    return "/".join(parts)


def _rels_name(part: str) -> str:
    """``word/document.xml`` -> ``word/_rels/document.xml.rels``; ``""`` (package) -> ``_rels/.rels``."""
    folder, _, name = part.rpartition("/")
    return f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"


def read_rels(zf: zipfile.ZipFile, part: str) -> list[tuple[str, str, str]]:
    """(type, resolved target, target mode) for each relationship of ``part``."""
    name = _rels_name(part)
    try:
        raw = zf.read(name)
    except KeyError:
        return []
    root = safe_parse(raw, name)
    out = []
    for rel in root.iter(f"{{{PKG_REL_NS}}}Relationship"):
        mode = rel.get("TargetMode", "Internal")
        target = rel.get("Target", "")
        if mode != "External":
            target = resolve_target(part, target)
        out.append((rel.get("Type", ""), target, mode))
    return out


#: Every rejection code, with the default Swedish message for the host.
REJECT_CODES: dict[str, str] = {
    "too_large": "Filen är för stor. Ta bort stora bilder eller spara protokollet som PDF och skicka det igen.",
    "empty": "Filen är tom. Spara protokollet på nytt och skicka det igen.",
    "macro": "Filen innehåller makron (.docm). Spara protokollet som vanligt Word-dokument (.docx) eller PDF och skicka det igen.",
    "encrypted": "Filen är lösenordsskyddad och kan inte öppnas. Ta bort lösenordet eller spara protokollet som PDF och skicka det igen.",
    "legacy_doc": "Filen är i det gamla Word-formatet (.doc). Spara protokollet som Word-dokument (.docx) eller PDF och skicka det igen.",
    "wrong_type": "Filen är inte det som filnamnet säger. Spara protokollet som Word-dokument (.docx) eller PDF och skicka det igen.",
    "corrupt": "Filen verkar vara skadad och går inte att öppna. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "zip_bomb": "Filen är packad på ett onormalt sätt och kan inte öppnas säkert. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "unsafe_xml": "Filen innehåller kod som inte kan öppnas säkert. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "external_link": "Dokumentet hämtar innehåll från en extern adress (till exempel en länkad bild). Klistra in bilden i dokumentet eller spara som PDF och skicka det igen.",
    "active_field": "Dokumentet innehåller fältkoder som hämtar innehåll utifrån eller startar program (DDE, LINK, INCLUDEPICTURE). Ta bort fälten eller spara som PDF och skicka det igen.",
    "pdf_active": "PDF-filen innehåller skript, bifogade filer eller automatiska åtgärder. Spara protokollet som en ny, vanlig PDF eller som Word-dokument och skicka det igen.",
    "unsupported": "Filtypen kan inte läsas. Skicka protokollet som Word-dokument (.docx) eller PDF.",
}


class MinutesRejected(Exception):
    """A returned protocol we will not read. ``code`` is one of :data:`REJECT_CODES`;
    ``message_sv`` is a short polite Swedish explanation for the host; ``detail`` is an
    English explanation for the log."""

    def __init__(self, code: str, message_sv: str | None = None, detail: str = "") -> None:
        self.code = code
        self.message_sv = message_sv or REJECT_CODES.get(code, REJECT_CODES["unsupported"])
        self.detail = detail or code
        super().__init__(f"{code}: {self.detail}")


def rejection(code: str, detail: str, message_sv: str | None = None) -> MinutesRejected:
    return MinutesRejected(code, message_sv, detail)


def _has_dtd(raw: bytes) -> bool:
    head = raw
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return True
    return b"<!DOCTYPE" in head or b"<!ENTITY" in head


_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def safe_parse(raw: bytes, name: str) -> Any:
    """Parse one XML part; refuse DTDs and entity declarations (billion laughs, XXE)."""
    if _has_dtd(raw):
        raise rejection("unsafe_xml", f"{name} contains a DOCTYPE/ENTITY declaration")
    try:
        root = etree.fromstring(raw, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise rejection("corrupt", f"{name} is not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.internalDTD is not None:  # pragma: no cover - caught above
        raise rejection("unsafe_xml", f"{name} declares a DTD")
    return root
