"""Generators for the returned-protocol files the tests feed to ``read_minutes``.

Everything is generated at test time from our own rendered template (no binary blobs in
the repository): valid protocols, filled-in ones, and hostile or broken variants.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import shutil
import struct
import subprocess
import uuid
import zipfile
import zlib
from pathlib import Path

from docx import Document
from docx.oxml import parse_xml

from kcg_mail.documents.context import SAMPLE_CONTEXT
from kcg_mail.documents.fill import decisions_table  # noqa: F401  (h.decisions_table in tests)
from kcg_mail.documents.render import ProtocolRenderer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "protocol.docx"
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


# --------------------------------------------------------------------------- valid files


@functools.lru_cache(maxsize=1)
def renderer() -> ProtocolRenderer:
    return ProtocolRenderer(TEMPLATE)


def rendered_protocol(context: dict | None = None) -> bytes:
    return renderer().render(context or SAMPLE_CONTEXT)


def fill_decisions(docx: bytes, rows: list[tuple[str, str, str]], *, notes: str = "") -> bytes:
    """Fill the decisions table as a host would in Word (adding rows when needed)."""
    doc = Document(io.BytesIO(docx))
    table = decisions_table(doc)
    empty = [r for r in table.rows[1:] if not any(c.text.strip() for c in r.cells)]
    for values in rows:
        row = empty.pop(0) if empty else table.add_row()
        for cell, value in zip(row.cells, values):
            cell.text = value
    if notes:
        doc.add_paragraph(notes)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def rezip(data: bytes, *, replace: dict[str, bytes | None] | None = None,
          add: dict[str, bytes] | None = None, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Copy a zip, replacing (``None`` = dropping) and adding entries."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", compress) as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
                continue
            zout.writestr(info.filename, zin.read(info.filename))
        for name, blob in (add or {}).items():
            zout.writestr(name, blob)
    return out.getvalue()


def read_part(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(name)


# --------------------------------------------------------------------------- OLE / CFB


def ole_file(streams: dict[str, bytes]) -> bytes:
    """A minimal valid OLE compound file (CFB v3) holding ``streams`` in the root storage.
    Streams are padded to 4096 bytes so no mini stream is needed."""
    assert 1 <= len(streams) <= 3
    ENDOFCHAIN, FREESECT, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    fat = [FATSECT, ENDOFCHAIN]
    body = b""
    entries = []
    sector = 2
    for name, data in streams.items():
        data = data.ljust(4096, b"\0")
        n = math.ceil(len(data) / 512)
        entries.append((name, sector, len(data)))
        fat += [sector + i + 1 for i in range(n - 1)] + [ENDOFCHAIN]
        body += data.ljust(n * 512, b"\0")
        sector += n
    assert len(fat) <= 128
    fat += [FREESECT] * (128 - len(fat))

    def dirent(name: str, typ: int, child: int, right: int, start: int, size: int) -> bytes:
        raw = (name + "\0").encode("utf-16-le") if name else b""
        return struct.pack(
            "<64sHBBIII16sI8s8sIQ",
            raw, len(raw), typ, 1, NOSTREAM, right, child, b"\0" * 16, 0, b"\0" * 8, b"\0" * 8, start, size,
        )

    dirs = dirent("Root Entry", 5, 1, NOSTREAM, ENDOFCHAIN, 0)
    for i, (name, start, size) in enumerate(entries, start=1):
        right = i + 1 if i < len(entries) else NOSTREAM
        dirs += dirent(name, 2, NOSTREAM, right, start, size)
    while len(dirs) < 512:
        dirs += dirent("", 0, NOSTREAM, NOSTREAM, 0, 0)
    header = struct.pack(
        "<8s16sHHHHH6s9I109I",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\0" * 16, 0x3E, 3, 0xFFFE, 9, 6, b"\0" * 6,
        0, 1, 1, 0, 4096, ENDOFCHAIN, 0, ENDOFCHAIN, 0,
        0, *([FREESECT] * 108),
    )
    return header + struct.pack("<128I", *fat) + dirs + body


def encrypted_office() -> bytes:
    """What Word writes for a password-protected .docx: an OLE file with EncryptionInfo
    and EncryptedPackage streams (content here is random, detection needs only the names)."""
    info = struct.pack("<HHI", 4, 4, 0x40) + os.urandom(200)  # "agile" encryption version 4.4
    return ole_file({"EncryptionInfo": info, "EncryptedPackage": struct.pack("<Q", 5000) + os.urandom(5000)})


def legacy_doc(*, encrypted: bool = False) -> bytes:
    """A Word 97-2003 file: OLE with a WordDocument stream whose FIB has wIdent 0xA5EC."""
    flags = 0x0100 if encrypted else 0
    # FibBase: wIdent, nFib, unused, lid, pnNext, then the flags word (fEncrypted = 0x0100).
    fib = struct.pack("<HHHHHH", 0xA5EC, 0x00C1, 0, 0x041D, 0, flags) + b"\0" * 100
    return ole_file({"WordDocument": fib, "1Table": b"\0" * 100})


# --------------------------------------------------------------------------- hostile docx


def macro_docm(base: bytes) -> bytes:
    """A .docm: macro-enabled main content type plus a vbaProject.bin part."""
    ct = read_part(base, "[Content_Types].xml").decode()
    ct = ct.replace(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        "application/vnd.ms-word.document.macroEnabled.main+xml",
    ).replace("</Types>", '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>')
    rels = read_part(base, "word/_rels/document.xml.rels").decode().replace(
        "</Relationships>",
        '<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
        'Target="vbaProject.bin"/></Relationships>',
    )
    return rezip(
        base,
        replace={"[Content_Types].xml": ct.encode(), "word/_rels/document.xml.rels": rels.encode()},
        add={"word/vbaProject.bin": ole_file({"VBA": b"Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\nEnd Sub\r\n"})},
    )


def vba_part_only(base: bytes) -> bytes:
    """A .docx content type but with a vbaProject.bin smuggled in."""
    return rezip(base, add={"word/vbaProject.bin": ole_file({"VBA": b"Sub AutoOpen()\r\nEnd Sub"})})


def truncated(base: bytes) -> bytes:
    return base[: len(base) // 2]


def many_entries(base: bytes, n: int = 5000) -> bytes:
    return rezip(base, add={f"customXml/filler{i}.xml": b"<a/>" for i in range(n)}, compress=zipfile.ZIP_STORED)


def high_ratio_entry(base: bytes, size: int = 20 * 1024 * 1024) -> bytes:
    """A 'picture' of ``size`` zero bytes that deflates about 1000:1."""
    out = io.BytesIO(base)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("word/media/image1.png")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=False) as fh:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(size // len(chunk)):
                fh.write(chunk)
    return out.getvalue()


def declared_huge_part(base: bytes, declared: int = 1 << 30) -> bytes:
    """A linked 'image' that the zip directory declares as 1 GiB uncompressed (the bytes
    are small: the sizes in the local header and central directory are forged)."""
    data = rezip(base, add={"word/media/image2.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64},
                 compress=zipfile.ZIP_STORED)
    name = b"word/media/image2.png"
    buf = bytearray(data)
    pos = 0
    while True:
        cd = bytes(buf).find(b"PK\x01\x02", pos)
        assert cd >= 0
        nlen = struct.unpack_from("<H", buf, cd + 28)[0]
        if bytes(buf[cd + 46 : cd + 46 + nlen]) == name:
            struct.pack_into("<I", buf, cd + 24, declared)
            local = struct.unpack_from("<I", buf, cd + 42)[0]
            struct.pack_into("<I", buf, local + 22, declared)
            return bytes(buf)
        pos = cd + 4


def with_relationship(base: bytes, reltype: str, target: str) -> bytes:
    rels = read_part(base, "word/_rels/document.xml.rels").decode().replace(
        "</Relationships>",
        f'<Relationship Id="rIdExt9" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        f'relationships/{reltype}" Target="{target}" TargetMode="External"/></Relationships>',
    )
    return rezip(base, replace={"word/_rels/document.xml.rels": rels.encode()})


def billion_laughs(base: bytes) -> bytes:
    lol = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<!DOCTYPE w:document [{"".join(lol)}]>\n'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>'
    )
    return rezip(base, replace={"word/document.xml": xml.encode()})


def tracked_changes(base: bytes) -> bytes:
    """A decision typed with track changes on: an insertion and a deletion in one cell,
    and an inserted row owner."""
    doc = Document(io.BytesIO(base))
    table = decisions_table(doc)
    cells = table.rows[1].cells
    p = cells[0].paragraphs[0]
    p._p.append(parse_xml(f'<w:r xmlns:w="{W_NS}"><w:t xml:space="preserve">Ta fram </w:t></w:r>'))
    p._p.append(parse_xml(
        f'<w:del xmlns:w="{W_NS}" w:id="1" w:author="Värd" w:date="2023-02-06T10:00:00Z">'
        '<w:r><w:delText>en gammal</w:delText></w:r></w:del>'))
    p._p.append(parse_xml(
        f'<w:ins xmlns:w="{W_NS}" w:id="2" w:author="Värd" w:date="2023-02-06T10:00:00Z">'
        '<w:r><w:t>gemensam policy</w:t></w:r></w:ins>'))
    cells[1].paragraphs[0]._p.append(parse_xml(
        f'<w:ins xmlns:w="{W_NS}" w:id="3" w:author="Värd" w:date="2023-02-06T10:00:00Z">'
        '<w:r><w:t>Daniel Swärd</w:t></w:r></w:ins>'))
    cells[2].text = "2023-03-06"
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


# --------------------------------------------------------------------------- ODT


def make_odt(rows: list[tuple[str, str, str]], *, deleted: str = "", macro: bool = False,
             encrypted: bool = False) -> bytes:
    """A small hand-made OpenDocument text with a decisions table."""
    t = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
    tb = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
    o = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"

    def cell(s: str) -> str:
        return f"<table:table-cell><text:p>{s}</text:p></table:table-cell>"

    body_rows = "".join(
        "<table:table-row>" + "".join(cell(v) for v in r) + "</table:table-row>"
        for r in [("Beslut", "Ansvarig", "Klart till"), *rows, ("", "", "")]
    )
    changes = ""
    if deleted:
        changes = (
            '<text:tracked-changes><text:changed-region text:id="c1"><text:deletion>'
            f"<office:change-info><dc:creator xmlns:dc=\"http://purl.org/dc/elements/1.1/\">Värd</dc:creator></office:change-info>"
            f"<text:p>{deleted}</text:p></text:deletion></text:changed-region></text:tracked-changes>"
        )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="{o}" '
        f'xmlns:text="{t}" xmlns:table="{tb}" office:version="1.3"><office:body><office:text>'
        f'{changes}<text:h text:outline-level="1">Beslutsprotokoll</text:h>'
        f'<text:p>Tema:<text:s/>Affärsplanering<text:change text:change-id="c1"/></text:p>'
        f'<table:table table:name="Beslut">{body_rows}</table:table>'
        "</office:text></office:body></office:document-content>"
    )
    manifest_extra = ""
    if encrypted:
        manifest_extra = (
            '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
            '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
            "</manifest:file-entry>"
        )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        f"{manifest_extra}</manifest:manifest>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"application/vnd.oasis.opendocument.text")
        zf.writestr("content.xml", content)
        zf.writestr("META-INF/manifest.xml", manifest)
        if macro:
            zf.writestr("Basic/Standard/Module1.xml", "<script/>")
    return out.getvalue()


# --------------------------------------------------------------------------- PDF


def _pdf_str(s: str) -> bytes:
    raw = s.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(lines: list[str | list[tuple[float, str]]]) -> bytes:
    """A one-page PDF (Helvetica, WinAnsi) with one text line per entry; an entry can be a
    list of ``(x, text)`` cells to draw a table row."""
    ops = [b"BT /F1 11 Tf ET"]
    y = 800
    for line in lines:
        cells = [(50.0, line)] if isinstance(line, str) else line
        for x, text in cells:
            if text:
                ops.append(b"BT /F1 11 Tf %.1f %d Td " % (x, y) + _pdf_str(text) + b" Tj ET")
        y -= 16
    stream = b"\n".join(ops)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encrypted_pdf(data: bytes, *, user_password: str = "hemligt", owner_password: str = "ägare") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --------------------------------------------------------------------------- LibreOffice


def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def soffice_convert(src: Path, fmt: str, outdir: Path, *, timeout: float = 120) -> Path:
    """Convert ``src`` with LibreOffice headless using a private profile; return the output
    file, which is checked to exist (soffice can exit 0 without writing anything)."""
    exe = soffice()
    assert exe, "soffice not installed"
    profile = Path("/tmp") / f"kcg-lo-{uuid.uuid4().hex}"
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [exe, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
             "--convert-to", fmt, "--outdir", str(outdir), str(src)],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    ext = fmt.split(":", 1)[0]
    out = outdir / (src.stem + "." + ext)
    assert out.exists() and out.stat().st_size > 0, (
        f"LibreOffice wrote no {out.name} (exit {proc.returncode}): {proc.stdout} {proc.stderr}"
    )
    return out


def libreoffice_docx(docx: bytes, tmp: Path) -> bytes:
    """The protocol opened and re-saved as .docx by LibreOffice, as a host without Word would."""
    src = tmp / "in" / "protokoll.docx"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(docx)
    return soffice_convert(src, "docx:MS Word 2007 XML", tmp / "out").read_bytes()
