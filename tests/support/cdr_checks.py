"""What is active in a document, judged on its BYTES (never on our own verdict): used to
prove that what the rebuild wrote, and what a member receives, holds nothing active.

Independent of kcg_mail's checks on purpose: zip parts, relationships and XML are read
with the standard library and lxml, PDF names are tokenised here (``#xx`` escapes decoded)
and every PDF stream is inflated and tokenised too."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

from lxml import etree

#: Strings the hostile generators plant; none may survive in any part or stream.
PLANTED = (b"evil.example", b"cmd.exe", b"calc", b"powershell", b"app.alert", b"app.launch", b"Equation Native",
           b"Ole10Native", b"protokoll.bat", b"bilaga.exe", b"INCLUDEPICTURE", b"INCLUDETEXT", b"DDEAUTO", b"DDE ",
           b"QUOTE", b"AUTO c:", b"LINK Excel")

_DOCX_PART_WORDS = ("embeddings", "activex", "vbaproject", "customxml", "glossary", "oleobject", "afchunk",
                    "comments", "websettings", "attachedtemplate", ".bin")
_DOCX_RELS_OK = {f"http://schemas.openxmlformats.org/officeDocument/2006/relationships/{t}"
                 for t in ("officeDocument", "styles", "numbering", "settings", "header", "footer", "image")}
_DOCX_TAGS = {"instrText", "delInstrText", "fldChar", "fldSimple", "object", "OLEObject", "altChunk", "control",
              "pict", "hyperlink", "attachedTemplate", "mailMerge", "subDoc", "embedRegular", "customXml",
              "dataBinding", "shape", "imagedata"}
_ODT_TAGS = {"scripts", "script", "event-listeners", "event-listener", "object", "object-ole", "plugin", "applet",
             "section-source", "dde-connection-decl", "dde-connection", "forms", "form", "annotation",
             "execute-macro", "a", "background-image", "font-face-src", "font-face-uri"}
PDF_FORBIDDEN = {"JS", "JavaScript", "OpenAction", "AA", "Launch", "EmbeddedFile", "EmbeddedFiles", "XFA",
                 "AcroForm", "SubmitForm", "ImportData", "RichMedia", "GoToR", "GoToE", "URI", "Annots",
                 "FileAttachment", "Names"}


def _zip_parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _planted(name: str, blob: bytes) -> list[str]:
    found = [f"{name}: {p.decode()}" for p in PLANTED if p in blob]
    try:
        text16 = blob.decode("utf-16").encode() if blob[:2] in (b"\xff\xfe", b"\xfe\xff") else b""
    except UnicodeDecodeError:
        text16 = b""
    return found + [f"{name}: {p.decode()} (UTF-16)" for p in PLANTED if p in text16]


def docx_active(data: bytes) -> list[str]:
    """Everything active or reaching outside in a .docx, from its bytes."""
    problems: list[str] = []
    parts = _zip_parts(data)
    for name, blob in parts.items():
        low = name.lower()
        problems += [f"part {name}" for w in _DOCX_PART_WORDS if w in low]
        problems += _planted(name, blob) if not low.endswith((".png", ".jpeg", ".jpg")) else []
        if low.endswith(".rels"):
            for rel in etree.fromstring(blob).iter("{*}Relationship"):
                if (rel.get("TargetMode") or "").lower() == "external":
                    problems.append(f"{name}: external relationship {rel.get('Target')}")
                if rel.get("Type") not in _DOCX_RELS_OK:
                    problems.append(f"{name}: relationship type {rel.get('Type')}")
        elif low.endswith(".xml"):
            if b"macroEnabled" in blob or b"vbaProject" in blob or b"oleObject" in blob:
                problems.append(f"{name}: macro or OLE content type")
            root = etree.fromstring(blob)
            for el in root.iter():
                if isinstance(el.tag, str) and etree.QName(el).localname in _DOCX_TAGS:
                    problems.append(f"{name}: <{etree.QName(el).localname}>")
                for key in el.attrib:
                    if etree.QName(key).localname in ("instr", "link", "href"):
                        problems.append(f"{name}: attribute {key}")
    return problems


def odt_active(data: bytes) -> list[str]:
    problems: list[str] = []
    for name, blob in _zip_parts(data).items():
        low = name.lower()
        if low.startswith(("basic/", "scripts/", "object", "configurations2/")) or low in ("settings.xml", "meta.xml"):
            problems.append(f"part {name}")
        if low.endswith((".png", ".jpg", ".jpeg")):
            continue
        problems += _planted(name, blob)
        if low.endswith(".xml"):
            root = etree.fromstring(blob)
            for el in root.iter():
                if isinstance(el.tag, str) and etree.QName(el).localname in _ODT_TAGS and "manifest" not in low:
                    problems.append(f"{name}: <{etree.QName(el).localname}>")
                for key, value in el.attrib.items():
                    if etree.QName(key).localname == "href" and not value.startswith("Pictures/"):
                        problems.append(f"{name}: link {value}")
    return problems


_NAME = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")


def pdf_names(blob: bytes) -> set[str]:
    return {re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), m.group(1)).decode("latin-1")
            for m in _NAME.finditer(blob)}


def pdf_active(data: bytes) -> list[str]:
    """Forbidden names in the raw bytes or in any inflated stream, planted strings, and
    more than one revision (an incremental update)."""
    problems = [f"/{n}" for n in sorted(pdf_names(data) & PDF_FORBIDDEN)]
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            inner = zlib.decompressobj().decompress(m.group(1), 50_000_000)
        except zlib.error:
            inner = m.group(1)
        problems += [f"stream: /{n}" for n in sorted(pdf_names(inner) & PDF_FORBIDDEN)]
        problems += _planted("stream", inner)
    problems += _planted("pdf", data)
    if data.count(b"startxref") != 1 or data.count(b"%%EOF") != 1:
        problems.append("more than one revision")
    return problems


# ------------------------------------------------------------------ a protocol worth keeping

#: The decisions the survival tests write into the template.
ROWS = [("Gemensam remiss om citylogistik", "Åsa Öberg", "2023-03-28"),
        ("Dela kartläggningen i Dropbox", "Alla", "2023-06-30")]


def picture(fmt: str, size: tuple[int, int]) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (30, 90, 160))
    ImageDraw.Draw(im).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(250, 200, 0))
    out = io.BytesIO()
    im.save(out, fmt)
    return out.getvalue()


def with_pictures(docx: bytes, *pictures: bytes) -> bytes:
    from docx import Document
    from docx.shared import Cm

    doc = Document(io.BytesIO(docx))
    for pic in pictures:
        doc.add_picture(io.BytesIO(pic), width=Cm(8))
    doc.add_paragraph("Punkt ett", style="List Bullet")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def active(kind: str, data: bytes) -> list[str]:
    return {"docx": docx_active, "odt": odt_active, "pdf": pdf_active}[kind](data)
