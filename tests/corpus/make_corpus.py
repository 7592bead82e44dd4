"""Generate the inbound mail corpus: real-world-shaped messages as .eml files
plus manifest.json with the expected verdict of each.

Run ``python tests/corpus/make_corpus.py`` from the repository root (or
anywhere). Output is byte-identical on every run: fixed dates, boundaries,
Message-IDs, and documents built by hand with fixed zip timestamps (no
python-docx / pypdf writer, whose output carries the current time).

Addresses follow the 2023 plan: hosts ``firstname@<city>.example.se``,
coordinator ``bjorn@svenskastadskarnor.example.se``, network mailbox
``kcg@svenskastadskarnor.example.se``. Our outgoing Message-IDs are
``message_id_for("<meeting>:template:<host>")`` and
``message_id_for("<meeting>:invitation")``; invitation UIDs are
``kcg-<meeting>@svenskastadskarnor.example.se`` (tests/test_inbound.py builds
the same MatchContext).
"""

from __future__ import annotations

import base64
import io
import json
import quopri
import struct
import sys
import unicodedata
import zipfile
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from kcg_mail.ports import MARKER_HEADER, message_id_for  # noqa: E402

DOMAIN = "svenskastadskarnor.example.se"
KCG = f"kcg@{DOMAIN}"
BJORN = f"bjorn@{DOMAIN}"
HOSTS = {
    "2023-01": "maria@vasteras.example.se",
    "2023-02": "daniel@gavle.example.se",
    "2023-03": "david@norrkoping.example.se",
    "2023-04": "maria@vasteras.example.se",
    "2023-05": "armina@orebro.example.se",
    "2023-06": "pia@malmo.example.se",
    "2023-08": "monica@stockholm.example.se",
    "2023-09": "hanna@helsingborg.example.se",
    "2023-10": "lena@goteborg.example.se",
    "2023-11": "lisa@uppsala.example.se",
    "2023-12": "linda@boras.example.se",
    "2024-01": "aljosa@sodertalje.example.se",
}


def template_id(meeting: str) -> str:
    return message_id_for(f"{meeting}:template:{HOSTS[meeting]}", DOMAIN)


def invitation_id(meeting: str) -> str:
    return message_id_for(f"{meeting}:invitation", DOMAIN)


def uid(meeting: str) -> str:
    return f"kcg-{meeting}@{DOMAIN}"


# --------------------------------------------------------------------------- documents

_ZIP_TIME = (2023, 2, 7, 9, 30, 0)


def _zip(entries: list[tuple[str, bytes]], stored_first: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED if (stored_first and i == 0) else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 0
            z.writestr(info, data)
    return buf.getvalue()


def _esc(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def docx(paragraphs: list[str], macro: bool = False) -> bytes:
    """A minimal but valid WordprocessingML package (python-docx opens it)."""
    main_ct = (
        "application/vnd.ms-word.document.macroEnabled.main+xml"
        if macro
        else "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    )
    ct = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        + ('<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>' if macro else "")
        + f'<Override PartName="/word/document.xml" ContentType="{main_ct}"/>'
        "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
        "</Relationships>"
    )
    body = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{_esc(p)}</w:t></w:r></w:p>" for p in paragraphs)
    doc = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body>{body}<w:sectPr/></w:body></w:document>"
    )
    entries = [
        ("[Content_Types].xml", ct.encode()),
        ("_rels/.rels", rels.encode()),
        ("word/document.xml", doc.encode()),
    ]
    if macro:
        doc_rels = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/>'
            "</Relationships>"
        )
        entries += [
            ("word/_rels/document.xml.rels", doc_rels.encode()),
            ("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56),
        ]
    return _zip(entries)


def odt(paragraphs: list[str]) -> bytes:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        "<office:body><office:text>"
        + "".join(f"<text:p>{_esc(p)}</text:p>" for p in paragraphs)
        + "</office:text></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    return _zip(
        [
            ("mimetype", b"application/vnd.oasis.opendocument.text"),
            ("content.xml", content.encode()),
            ("META-INF/manifest.xml", manifest.encode()),
        ],
        stored_first=True,
    )


def xlsx() -> bytes:
    return _zip(
        [
            ("[Content_Types].xml", b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
            ("xl/workbook.xml", b'<?xml version="1.0"?><workbook/>'),
        ]
    )


def pdf(lines: list[str]) -> bytes:
    """A one-page PDF with correct xref offsets (pypdf reads it and extracts text)."""
    text_ops = "BT /F1 12 Tf 72 760 Td 16 TL " + " ".join(
        "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '" for ln in lines
    ) + " ET"
    stream = text_ops.encode("latin-1")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def png_logo() -> bytes:
    """A real 1x1 PNG (a signature logo)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\x1f\x4e\x8c", 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def ole_doc() -> bytes:
    """The start of a legacy Word 97-2003 file (OLE compound document header)."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16 + b"\x3e\x00\x03\x00\xfe\xff\x09\x00" + b"\x00" * 480


# --------------------------------------------------------------------------- TNEF (winmail.dat)


def _tnef_attr(level: int, attr_id: int, data: bytes) -> bytes:
    return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def _mapi_unicode(prop_id: int, value: str) -> bytes:
    raw = value.encode("utf-16-le") + b"\x00\x00"
    pad = b"\x00" * (-len(raw) % 4)
    return struct.pack("<HHII", 0x001F, prop_id, 1, len(raw)) + raw + pad


def tnef(attachments: list[tuple[str, str, bytes]], message_class: str = "IPM.Note", body: str = "") -> bytes:
    """A winmail.dat as Outlook writes it: (8.3 name, long name, data) per attachment."""
    out = bytearray(struct.pack("<IH", 0x223E9F78, 0x1A2B))
    out += _tnef_attr(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attr(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += _tnef_attr(1, 0x00078008, message_class.encode("cp1252") + b"\x00")  # attMessageClass
    if body:
        out += _tnef_attr(1, 0x0002800C, body.encode("cp1252"))  # attBody
    for short, long, data in attachments:
        out += _tnef_attr(2, 0x00069002, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 8)  # attAttachRendData
        out += _tnef_attr(2, 0x00018010, short.encode("cp1252") + b"\x00")  # attAttachTitle
        out += _tnef_attr(2, 0x0006800F, data)  # attAttachData
        props = struct.pack("<I", 1) + _mapi_unicode(0x3707, long)  # PR_ATTACH_LONG_FILENAME
        out += _tnef_attr(2, 0x00069005, props)  # attAttachment
    return bytes(out)


# --------------------------------------------------------------------------- MIME helpers


def b64(data: bytes) -> str:
    s = base64.b64encode(data).decode()
    return "\n".join(s[i : i + 76] for i in range(0, len(s), 76))


def qp(text: str, charset: str = "utf-8") -> str:
    return quopri.encodestring(text.encode(charset)).decode("ascii")


def ew(text: str, enc: str = "B", charset: str = "utf-8") -> str:
    """One RFC 2047 encoded word."""
    raw = text.encode(charset)
    if enc == "B":
        return f"=?{charset}?B?{base64.b64encode(raw).decode()}?="
    q = "".join(
        chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else ("_" if b == 32 else f"={b:02X}")
        for b in raw
    )
    return f"=?{charset}?Q?{q}?="


def rfc2231(name: str) -> str:
    return "utf-8''" + quote(name, safe="")


DOCX_CT = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOCM_CT = "application/vnd.ms-word.document.macroEnabled.12"


def att_outlook(name: str, data: bytes, ct: str = DOCX_CT) -> str:
    """An attachment part the way Outlook for Windows writes it."""
    ascii_ok = all(ord(c) < 128 for c in name)
    if ascii_ok:
        ctline = f'Content-Type: {ct};\n\tname="{name}"'
        cd = f'Content-Disposition: attachment;\n\tfilename="{name}"; size={len(data)};\n' \
             '\tcreation-date="Tue, 07 Feb 2023 09:30:00 GMT";\n\tmodification-date="Tue, 07 Feb 2023 09:30:00 GMT"'
    else:
        ctline = f'Content-Type: {ct};\n\tname="{ew(name)}"'
        cd = f"Content-Disposition: attachment;\n\tfilename*={rfc2231(name)}; size={len(data)}"
    return f"{ctline}\n{cd}\nContent-Transfer-Encoding: base64\n\n{b64(data)}\n"


def part(headers: str, body: str) -> str:
    return headers.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"


def multipart(boundary: str, parts: list[str]) -> str:
    out = ""
    for p in parts:
        out += f"--{boundary}\n{p}"
    out += f"--{boundary}--\n"
    return out


def message(headers: list[tuple[str, str]], content_type: str, body: str, preamble: str = "") -> str:
    h = "".join(f"{k}: {v}\n" for k, v in headers)
    h += "MIME-Version: 1.0\n" if not any(k.lower() == "mime-version" for k, _ in headers) else ""
    h += f"Content-Type: {content_type}\n"
    return h + "\n" + (preamble + "\n" if preamble else "") + body


def std_headers(
    sender: str,
    name: str,
    subject: str,
    day: str,
    msgid: str,
    in_reply_to: str | None = None,
    references: str | None = None,
    to: str = f"Key Cities Group <{KCG}>",
    extra: list[tuple[str, str]] | None = None,
    return_path: bool = True,
) -> list[tuple[str, str]]:
    h: list[tuple[str, str]] = []
    if return_path:
        h.append(("Return-Path", f"<{sender}>"))
        h.append(
            (
                "Received",
                "from mail.example.net (mail.example.net [192.0.2.10])\n\tby mx.svenskastadskarnor.example.se "
                f"(Postfix) with ESMTPS id 4PBx1Z2s3Kz9; {day}",
            )
        )
    disp = name if all(ord(c) < 128 for c in name) else ew(name, "Q")
    h += [
        ("From", f'"{disp}" <{sender}>' if disp == name else f"{disp} <{sender}>"),
        ("To", to),
        ("Subject", subject),
        ("Date", day),
        ("Message-ID", msgid),
    ]
    if in_reply_to:
        h.append(("In-Reply-To", in_reply_to))
    if references:
        h.append(("References", references))
    h += extra or []
    return h


def html_doc(inner: str) -> str:
    return (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        "<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt; font-family:\"Calibri\",sans-serif;} --></style>"
        f'</head><body lang="SV"><div class="WordSection1">{inner}</div></body></html>'
    )


def outlook_quote_sv(meeting: str, title: str) -> str:
    return (
        "\n\nFrån: Key Cities Group <kcg@svenskastadskarnor.example.se>\n"
        "Skickat: den 6 februari 2023 16:02\n"
        "Till: Daniel Swärd <daniel@gavle.example.se>\n"
        f"Ämne: [KCG-{meeting}] {title}\n\n"
        "Hej!\nBifogat finns mallen för beslutsprotokollet. Fyll i och svara på detta mejl med protokollet bifogat.\n"
    )


MINUTES_TEXT = [
    "Beslutsprotokoll Key Cities Group",
    "Datum: 2023-02-06",
    "Närvarande: Daniel, David, Maria, Pia, Björn",
    "§1 Mötet öppnades av värden.",
    "§2 Beslutades att ta fram gemensam policy för branschpraxis.",
    "§3 Nästa möte: 2023-03-06, värd David.",
]


# --------------------------------------------------------------------------- the corpus

CORPUS: list[tuple[str, str, str | None, str, bytes]] = []


def add(file: str, kind: str, meeting: str | None, note: str, text: str | bytes) -> None:
    if isinstance(text, str):
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    else:
        data = text
    CORPUS.append((file, kind, meeting, note, data))


def build() -> None:  # noqa: C901 - a long list of messages, one after the other
    D = docx(MINUTES_TEXT)
    P = pdf(["Beslutsprotokoll Key Cities Group", "Tema 5: Omvarldsanalys", "Beslut: ta fram omvarldsanalys."])
    LOGO = png_logo()

    # ---------------------------------------------------------------- Outlook for Windows
    m = "2023-02"
    tid = template_id(m)
    alt = multipart(
        "_000_HE1P190MB0001A_",
        [
            part(
                "Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable",
                qp("Hej,\n\nHär kommer protokollet från mötet.\n\nMed vänlig hälsning\nDaniel Swärd\nVD Gävle City"
                   + outlook_quote_sv(m, "Beslutsprotokoll – Policy & Branschpraxis")),
            ),
            part(
                "Content-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable",
                qp(html_doc("<p class=MsoNormal>Hej,</p><p class=MsoNormal>Här kommer protokollet från mötet.</p>"
                            "<p class=MsoNormal>Med vänlig hälsning<br>Daniel Swärd</p>")),
            ),
        ],
    )
    body = multipart(
        "_004_HE1P190MB0001A_",
        [
            part('Content-Type: multipart/alternative;\n\tboundary="_000_HE1P190MB0001A_"', alt),
            att_outlook("Beslutsprotokoll KCG Gävle – Policy & Branschpraxis.docx", D),
        ],
    )
    add(
        "01_outlook_win_docx_sv.eml", "minutes", m,
        "Outlook 16 for Windows, SV: reply, RFC 2231 Swedish filename, RFC 2047 name=",
        message(
            std_headers("daniel@gavle.example.se", "Daniel Swärd",
                        f"SV: [KCG-{m}] Beslutsprotokoll =?utf-8?Q?=E2=80=93?= Policy & Branschpraxis",
                        "Tue, 7 Feb 2023 09:41:12 +0000", "<HE1P190MB0001A1B2C3D4E5F6@HE1P190MB0001.EURP190.PROD.OUTLOOK.COM>",
                        tid, tid,
                        extra=[("Thread-Topic", "[KCG-2023-02] Beslutsprotokoll"), ("Thread-Index", "AQHZOtest"),
                               ("Accept-Language", "sv-SE, en-US"), ("Content-Language", "sv-SE"),
                               ("X-MS-Has-Attach", "yes"), ("X-MS-TNEF-Correlator", "")]),
            'multipart/mixed;\n\tboundary="_004_HE1P190MB0001A_"', body),
    )

    # Outlook with winmail.dat (TNEF, "rich text" format sent over Exchange)
    m = "2023-03"
    w = tnef([("BESLUT~1.DOC", "Beslutsprotokoll Norrköping – Affärsplanering.docx", D)],
             body="Hej! Protokollet bifogat. /David")
    body = multipart(
        "_005_VI1P190MB0777_",
        [
            part('Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: quoted-printable',
                 qp("Hej!\n\nProtokollet bifogat.\n\n/David Nilsson, NKPG City\n", "iso-8859-1")),
            part('Content-Type: application/ms-tnef; name="winmail.dat"\nContent-Disposition: attachment; filename="winmail.dat"\n'
                 "Content-Transfer-Encoding: base64", b64(w)),
        ],
    )
    add(
        "02_outlook_winmail_tnef.eml", "minutes", m, "Outlook rich text: the .docx is inside winmail.dat (TNEF)",
        message(std_headers("david@norrkoping.example.se", "David Nilsson", f"SV: [KCG-{m}] Mall för beslutsprotokoll",
                            "Tue, 7 Mar 2023 13:05:00 +0100", "<VI1P190MB0777AA@VI1P190MB0777.EURP190.PROD.OUTLOOK.COM>",
                            template_id(m), template_id(m),
                            extra=[("X-MS-TNEF-Correlator", "<VI1P190MB0777AA@VI1P190MB0777.EURP190.PROD.OUTLOOK.COM>")]),
                'multipart/mixed;\n\tboundary="_005_VI1P190MB0777_"', body),
    )

    # Outlook HTML-only with an inline logo, plus the minutes
    def html_logo_mail(meeting: str, sender: str, name: str, with_doc: bool, tag: str) -> str:
        html = html_doc(
            "<p class=MsoNormal>Hej!</p><p class=MsoNormal>Se bifogat protokoll.</p>"
            f"<p class=MsoNormal>{name}</p><p class=MsoNormal><img width=120 height=40 src=\"cid:image001.png@01D93A1B.5E0F2C30\" alt=\"logo\"></p>"
            "<div style='border:none;border-top:solid #E1E1E1 1.0pt'><p class=MsoNormal><b>Från:</b> Key Cities Group "
            "&lt;kcg@svenskastadskarnor.example.se&gt;<br><b>Skickat:</b> den 3 april 2023 16:00<br>"
            f"<b>Ämne:</b> [KCG-{meeting}] Beslutsprotokoll</p></div>"
        )
        related = multipart(
            f"_006_{tag}_rel_",
            [
                part('Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable', qp(html)),
                part('Content-Type: image/png; name="image001.png"\nContent-Description: image001.png\n'
                     'Content-Disposition: inline; filename="image001.png"; size=' + str(len(LOGO)) + "\n"
                     "Content-ID: <image001.png@01D93A1B.5E0F2C30>\nContent-Transfer-Encoding: base64", b64(LOGO)),
            ],
        )
        rel_part = part(f'Content-Type: multipart/related;\n\tboundary="_006_{tag}_rel_";\n\ttype="text/html"', related)
        if not with_doc:
            return rel_part
        return multipart(f"_007_{tag}_mix_", [rel_part, att_outlook("Beslutsprotokoll Västerås april.docx", D)])

    m = "2023-04"
    add(
        "03_outlook_html_only_logo_docx.eml", "minutes", m, "Outlook HTML-only body, inline signature logo, .docx attached",
        message(std_headers("maria@vasteras.example.se", "Maria Martinsson", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Wed, 5 Apr 2023 08:12:45 +0200", "<AM0P190MB0042@AM0P190MB0042.EURP190.PROD.OUTLOOK.COM>",
                            template_id(m), template_id(m)),
                'multipart/mixed;\n\tboundary="_007_A_mix_"', html_logo_mail(m, "", "Maria Martinsson", True, "A")),
    )
    m = "2023-05"
    rel = html_logo_mail(m, "", "Armina Ilijasevic", False, "B")
    hdr, _, rbody = rel.partition("\n\n")
    add(
        "04_outlook_html_only_logo_no_doc.eml", "no_minutes", m,
        "Outlook HTML-only with inline logo image but no document: the logo is not a candidate",
        message(std_headers("armina@orebro.example.se", "Armina Ilijasevic", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 9 May 2023 10:00:00 +0200", "<AM0P190MB0043@AM0P190MB0043.EURP190.PROD.OUTLOOK.COM>",
                            template_id(m), template_id(m)),
                'multipart/related;\n\tboundary="_006_B_rel_";\n\ttype="text/html"', rbody),
    )

    # ---------------------------------------------------------------- Outlook mobile, PDF
    m = "2023-06"
    alt = multipart("_000_mobile_alt_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64',
             b64("Protokollet i pdf.\n\nHämta Outlook för iOS<https://aka.ms/o0ukef>\n".encode())),
        part('Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: base64',
             b64(html_doc("<div dir=\"auto\">Protokollet i pdf.</div><div id=\"ms-outlook-mobile-signature\">"
                          "Hämta <a href=\"https://aka.ms/o0ukef\">Outlook för iOS</a></div>").encode())),
    ])
    body = multipart("_004_mobile_mix_", [
        part('Content-Type: multipart/alternative;\n\tboundary="_000_mobile_alt_"', alt),
        part('Content-Type: application/pdf; name="Protokoll juni.pdf"\nContent-Description: Protokoll juni.pdf\n'
             'Content-Disposition: attachment; filename="Protokoll juni.pdf"; size=' + str(len(P)) + "\n"
             "Content-Transfer-Encoding: base64", b64(P)),
    ])
    add(
        "05_outlook_mobile_pdf.eml", "minutes", m, "Outlook for iOS, Re: subject, PDF minutes",
        message(std_headers("pia@malmo.example.se", "Pia Sandin", f"Re: [KCG-{m}] Beslutsprotokoll Omvärldsanalys",
                            "Tue, 6 Jun 2023 18:22:01 +0000", "<DB9P190MB1111@DB9P190MB1111.EURP190.PROD.OUTLOOK.COM>",
                            template_id(m), template_id(m)),
                'multipart/mixed;\n\tboundary="_004_mobile_mix_"', body),
    )

    # ---------------------------------------------------------------- Gmail
    m = "2023-08"
    gm_name = "Beslutsprotokoll Mobilitet & citylogistik – Stockholm.docx"
    alt = multipart("000000000000a1b2c305f0d1e2f3", [
        part('Content-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable',
             qp(f"Hej,\nhär är protokollet.\nMonica\n\nDen mån 7 aug. 2023 kl 16:00 skrev Key Cities Group <\n"
                f"kcg@svenskastadskarnor.example.se>:\n\n> Hej!\n> Bifogat finns mallen. [KCG-{m}]\n>\n")),
        part('Content-Type: text/html; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable',
             qp('<div dir="ltr">Hej,<div>här är protokollet.</div><div>Monica</div></div><br><div class="gmail_quote">'
                '<div dir="ltr" class="gmail_attr">Den mån 7 aug. 2023 kl 16:00 skrev Key Cities Group</div>'
                '<blockquote class="gmail_quote">Hej!<br>Bifogat finns mallen.</blockquote></div>\n')),
    ])
    body = multipart("000000000000a1b2c405f0d1e2f3", [
        part('Content-Type: multipart/alternative; boundary="000000000000a1b2c305f0d1e2f3"', alt),
        part(f'Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; \n\tname="{ew(gm_name)}"\n'
             f'Content-Disposition: attachment; \n\tfilename="{ew(gm_name)}"\n'
             "Content-Transfer-Encoding: base64\nContent-ID: <f_lkx1abc0>\nX-Attachment-Id: f_lkx1abc0", b64(D)),
    ])
    add(
        "06_gmail_docx_rfc2047_filename.eml", "minutes", m, "Gmail Re:, multipart/alternative, RFC 2047 encoded filename",
        message(std_headers("monica@stockholm.example.se", "Monica Bruvik", f"Re: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 8 Aug 2023 09:15:33 +0200", "<CAF=gmail+abc123DEF456@mail.gmail.com>",
                            template_id(m), template_id(m)),
                'multipart/mixed; boundary="000000000000a1b2c405f0d1e2f3"', body),
    )

    # ---------------------------------------------------------------- Apple Mail
    m = "2023-09"
    apple_name = unicodedata.normalize("NFD", "Beslutsprotokoll Helsingborg – Etablering.docx")
    body = multipart("Apple-Mail=_5B3C1D2E-1111-4A2B-9C3D-ABCDEF012345", [
        part('Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain;\n\tcharset=utf-8',
             qp("Hej!\n\nHär kommer protokollet.\n\n")),
        part(f"Content-Disposition: inline;\n\tfilename*={rfc2231(apple_name)}\n"
             f"Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;\n\tx-unix-mode=0644;\n"
             f"\tname*={rfc2231(apple_name)}\nContent-Transfer-Encoding: base64", b64(D)),
        part('Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain;\n\tcharset=utf-8',
             qp("\n\nVänliga hälsningar\nHanna Candell\nHelsingborg City\n\n> 5 sep. 2023 kl. 16:00 skrev Key Cities Group:\n>\n")),
    ])
    add(
        "07_apple_mail_inline_docx.eml", "minutes", m,
        "Apple Mail: quoted-printable, the .docx as Content-Disposition inline, NFD-decomposed RFC 2231 name",
        message(std_headers("hanna@helsingborg.example.se", "Hanna Candell", f"Re: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 5 Sep 2023 17:02:11 +0200", "<5B3C1D2E-2222-4A2B-9C3D-ABCDEF012345@helsingborg.example.se>",
                            template_id(m), template_id(m),
                            extra=[("X-Mailer", "Apple Mail (2.3731.600.7)"), ("Mime-Version", "1.0 (Mac OS X Mail 16.0 \\(3731.600.7\\))")]),
                'multipart/mixed;\n\tboundary="Apple-Mail=_5B3C1D2E-1111-4A2B-9C3D-ABCDEF012345"', body),
    )

    # Thunderbird style RFC 2231 continuations with a Swedish name
    m = "2023-10"
    name = "Beslutsprotokoll Göteborg – Tema 5.docx"
    enc = rfc2231(name)
    cut = 40
    while "%" in enc[cut - 2 : cut]:  # each RFC 2231 segment must hold whole %XX escapes
        cut += 1
    c0, c1 = enc[:cut], enc[cut:]
    body = multipart("------------0A1B2C3D4E5F60718293A4B5", [
        part("Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 8bit",
             "Hej, protokollet från studieresan är bifogat.\n/Lena\n"),
        part(f'Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;\n name*0*={c0};\n name*1*={c1}\n'
             f"Content-Disposition: attachment;\n filename*0*={c0};\n filename*1*={c1}\nContent-Transfer-Encoding: base64", b64(D)),
    ])
    add(
        "08_thunderbird_rfc2231_continuation.eml", "minutes", m,
        "RFC 2231 continuation with UTF-8 Swedish filename (Beslutsprotokoll Göteborg – Tema 5.docx), 8bit text",
        message(std_headers("lena@goteborg.example.se", "Lena Dalerup", f"Re: [KCG-{m}] Beslutsprotokoll",
                            "Wed, 4 Oct 2023 11:00:00 +0200", "<a1b2c3d4-0000-1111-2222-333344445555@goteborg.example.se>",
                            template_id(m), template_id(m), extra=[("User-Agent", "Mozilla Thunderbird")]),
                'multipart/mixed; boundary="------------0A1B2C3D4E5F60718293A4B5"', body),
    )

    # .docm (macro) minutes: still "minutes"; the shell rejects it later
    m = "2023-11"
    body = multipart("_004_docm_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable', qp("Hej! Protokoll bifogat.\nLisa\n")),
        att_outlook("Beslutsprotokoll Uppsala.docm", docx(MINUTES_TEXT, macro=True), DOCM_CT),
    ])
    add(
        "09_docm_minutes.eml", "minutes", m, ".docm with macros: handed over as a candidate, the shell rejects it",
        message(std_headers("lisa@uppsala.example.se", "Lisa Thörn", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 7 Nov 2023 08:00:00 +0100", "<docm-lisa-0001@uppsala.example.se>", template_id(m), template_id(m)),
                'multipart/mixed; boundary="_004_docm_"', body),
    )

    # Minutes inside a forwarded message/rfc822
    m = "2023-12"
    inner_body = multipart("_inner_mix_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable',
             qp("Hej Linda, här är protokollet jag skrev under mötet.\n/Karin\n")),
        att_outlook("Beslutsprotokoll Borås december.docx", D),
    ])
    inner = message(std_headers("karin@boras.example.se", "Karin Assistent", "Protokoll KCG december",
                                "Mon, 4 Dec 2023 15:10:00 +0100", "<inner-karin-1@boras.example.se>", return_path=False,
                                to="Linda Sjöstrand <linda@boras.example.se>".replace("ö", "o")),
                    'multipart/mixed; boundary="_inner_mix_"', inner_body)
    body = multipart("_fwd_mix_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable',
             qp("Vidarebefordrar protokollet från Karin.\n/Linda\n")),
        part('Content-Type: message/rfc822\nContent-Disposition: attachment; filename="Protokoll KCG december.eml"', inner),
    ])
    add(
        "10_forwarded_rfc822.eml", "minutes", m, "host forwards her assistant's mail as attachment: .docx inside message/rfc822",
        message(std_headers("linda@boras.example.se", "Linda Sjöstrand", f"VB: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 5 Dec 2023 09:00:00 +0100", "<fwd-linda-1@boras.example.se>", template_id(m), template_id(m)),
                'multipart/mixed; boundary="_fwd_mix_"', body),
    )

    # Backup host files for January
    m = "2023-01"
    body = multipart("_mix_backup_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable',
             qp("Hej, Maria är sjuk så jag skickar protokollet från det fysiska mötet.\n/Monica\n")),
        att_outlook("Beslutsprotokoll Handlingsplan 2023.docx", D),
    ])
    add(
        "11_backup_host_files.eml", "minutes", m, "the backup host (Monica) files for January",
        message(std_headers("monica@stockholm.example.se", "Monica Bruvik", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Wed, 11 Jan 2023 10:00:00 +0100", "<backup-monica-1@stockholm.example.se>"),
                'multipart/mixed; boundary="_mix_backup_"', body),
    )

    # Coordinator files
    m = "2023-06"
    body = multipart("_mix_bjorn_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit', "Pia bad mig skicka in det.\nBjörn\n"),
        att_outlook("Beslutsprotokoll juni.pdf", P, "application/pdf"),
    ])
    add(
        "12_coordinator_files.eml", "minutes", m, "the coordinator files on behalf of the host",
        message(std_headers(BJORN, "Björn Bergman", f"[KCG-{m}] protokoll från Pia",
                            "Thu, 8 Jun 2023 10:00:00 +0200", "<bjorn-1@svenskastadskarnor.example.se>"),
                'multipart/mixed; boundary="_mix_bjorn_"', body),
    )

    # PDF as application/octet-stream without extension: sniffed
    m = "2024-01"
    body = multipart("_mix_sniff_", [
        part('Content-Type: text/plain; charset="utf-8"', "Protokollet.\nJessica\n"),
        part('Content-Type: application/octet-stream; name="Protokoll"\nContent-Disposition: attachment; filename="Protokoll"\n'
             "Content-Transfer-Encoding: base64", b64(P)),
    ])
    add(
        "13_pdf_octet_stream_no_extension.eml", "minutes", m, "backup host, PDF without extension as octet-stream: found by sniffing",
        message(std_headers("jessica@linkoping.example.se", "Jessica Stille Törnqvist", f"Re: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 9 Jan 2024 12:00:00 +0100", "<sniff-jessica-1@linkoping.example.se>"),
                'multipart/mixed; boundary="_mix_sniff_"', body),
    )

    # Both docx and pdf
    body = multipart("_mix_two_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable',
             qp("Hej! Protokollet i både Word och PDF.\nAljoša\n")),
        att_outlook("Beslutsprotokoll Södertälje.docx", D),
        att_outlook("Beslutsprotokoll Södertälje.pdf", P, "application/pdf"),
        part('Content-Type: image/jpeg; name="IMG_2024.jpg"\nContent-Disposition: attachment; filename="IMG_2024.jpg"\n'
             "Content-Transfer-Encoding: base64", b64(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40 + b"\xff\xd9")),
    ])
    add(
        "14_docx_and_pdf_and_photo.eml", "minutes", m, "two document candidates (docx + pdf) and a photo (not a candidate)",
        message(std_headers("aljosa@sodertalje.example.se", "Aljoša Lagumdžija", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Wed, 10 Jan 2024 08:30:00 +0100", "<two-aljosa-1@sodertalje.example.se>", template_id(m), template_id(m)),
                'multipart/mixed; boundary="_mix_two_"', body),
    )

    # RFC 2047 encoded (base64) subject, base64 body
    m = "2023-02"
    subj = ew(f"SV: [KCG-{m}] Beslutsprotokoll – Gävle", "B")
    body = multipart("_mix_b64subj_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64',
             b64("Hej!\nHär är protokollet från februari.\n/Daniel\n".encode())),
        att_outlook("Protokoll.docx", D),
    ])
    add(
        "15_rfc2047_b64_subject.eml", "minutes", m, "RFC 2047 base64 subject, base64 text body",
        message(std_headers("daniel@gavle.example.se", "Daniel Swärd", subj, "Wed, 8 Feb 2023 07:45:00 +0100",
                            "<b64subj-daniel-1@gavle.example.se>"),
                'multipart/mixed; boundary="_mix_b64subj_"', body),
    )

    # Mangled tokens
    def simple_minutes(file, sender, name, subject, day, msgid, note, meeting, kind="minutes", doc=True,
                       irt=None, refs=None, text="Hej! Protokollet bifogat.\n", extra=None, att=None):
        parts = [part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable', qp(text))]
        if doc:
            parts.append(att or att_outlook("Beslutsprotokoll.docx", D))
        bnd = "_mix_" + file.split("_")[0] + "_"
        add(file, kind, meeting, note,
            message(std_headers(sender, name, subject, day, msgid, irt, refs, extra=extra),
                    f'multipart/mixed; boundary="{bnd}"', multipart(bnd, parts)))

    simple_minutes("16_mangled_token_no_bracket.eml", "daniel@gavle.example.se", "Daniel Swärd",
                   "SV: VB: Re: Fwd: AW: [KCG-2023-02 Beslutsprotokoll", "Thu, 9 Feb 2023 10:00:00 +0100",
                   "<mangled1@gavle.example.se>", "prefix pile and missing closing bracket", "2023-02")
    simple_minutes("17_mangled_token_lower_spaces.eml", "david@norrkoping.example.se", "David Nilsson",
                   "sv:  kcg  2023 - 03   protokoll", "Wed, 8 Mar 2023 10:00:00 +0100",
                   "<mangled2@norrkoping.example.se>", "lower case, no brackets, extra spaces", "2023-03")
    simple_minutes("18_encoded_word_split_token.eml", "maria@vasteras.example.se", "Maria Martinsson",
                   "=?utf-8?Q?SV:_[KCG-2023?=\n =?utf-8?Q?-04]_Beslutsprotokoll_V=C3=A4?=\n =?utf-8?Q?ster=C3=A5s?=",
                   "Thu, 6 Apr 2023 10:00:00 +0200", "<split1@vasteras.example.se>",
                   "token split over two folded encoded words (and å split too)", "2023-04")

    # Matching by In-Reply-To / References / sender+date / quoted text
    simple_minutes("19_match_in_reply_to_only.eml", "pia@malmo.example.se", "Pia Sandin",
                   "Protokoll från mötet", "Wed, 7 Jun 2023 10:00:00 +0200", "<irt1@malmo.example.se>",
                   "subject without token: matched by In-Reply-To", "2023-06", irt=template_id("2023-06"))
    simple_minutes("20_match_references_only.eml", "armina@orebro.example.se", "Armina Ilijasevic",
                   "Protokoll", "Sat, 17 Jun 2023 10:00:00 +0200", "<refs1@orebro.example.se>",
                   "no token, In-Reply-To unknown, References hold our template id (date outside sender window)", "2023-05",
                   irt="<someone-else-1@orebro.example.se>",
                   refs=f"{template_id('2023-05')}\n <someone-else-1@orebro.example.se>")
    simple_minutes("21_match_sender_and_date.eml", "lisa@uppsala.example.se", "Lisa Thörn",
                   "Protokoll", "Wed, 8 Nov 2023 10:00:00 +0100", "<sd1@uppsala.example.se>",
                   "fresh mail (no token, no references): host of exactly one meeting 2 days ago", "2023-11")
    simple_minutes("22_token_in_quoted_body.eml", "monica@stockholm.example.se", "Monica Bruvik",
                   "Protokollet!", "Fri, 20 Oct 2023 10:00:00 +0200", "<qb1@stockholm.example.se>",
                   "token only in the quoted Outlook header block of the body", "2023-08",
                   text="Ursäkta dröjsmålet, här är protokollet.\n\nFrån: Key Cities Group <kcg@svenskastadskarnor.example.se>\n"
                        "Skickat: den 7 augusti 2023 16:00\nÄmne: [KCG-2023-08] Mall för beslutsprotokoll\n")

    # TNEF with Swedish long name and a second attachment
    m = "2023-10"
    w = tnef([("BESLUT~1.DOC", "Beslutsprotokoll Göteborg – Studieresa.docx", D), ("image001.png", "image001.png", LOGO)])
    body = multipart("_tnef2_", [
        part('Content-Type: text/plain; charset="Windows-1252"\nContent-Transfer-Encoding: quoted-printable',
             qp("Hej! Här är protokollet från Göteborg.\n", "cp1252")),
        part('Content-Type: application/ms-tnef; name="winmail.dat"\nContent-Disposition: attachment; filename="winmail.dat"\n'
             "Content-Transfer-Encoding: base64", b64(w)),
    ])
    add(
        "23_tnef_swedish_long_name.eml", "minutes", m, "winmail.dat with a Unicode long filename and an image",
        message(std_headers("lena@goteborg.example.se", "Lena Dalerup", f"SV: [KCG-{m}] Beslutsprotokoll",
                            "Thu, 5 Oct 2023 10:00:00 +0200", "<tnef2@goteborg.example.se>", template_id(m), template_id(m)),
                'multipart/mixed; boundary="_tnef2_"', body),
    )

    # Latin-1 quoted-printable text, RFC 2047 latin-1 filename
    m = "2023-05"
    fname = "Beslutsprotokoll_Örebro.docx"
    simple_minutes("24_latin1_qp_rfc2047_filename.eml", "armina@orebro.example.se", "Armina Ilijasevic",
                   "SV: [KCG-2023-05] " + ew("Beslutsprotokoll Medlemserbjudande - Örebro", "Q", "iso-8859-1"),
                   "Tue, 9 May 2023 16:00:00 +0200", "<latin1@orebro.example.se>",
                   "iso-8859-1 quoted-printable subject; filename as an iso-8859-1 encoded word", m,
                   att=f'Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name="{ew(fname, "Q", "iso-8859-1")}"\n'
                       f'Content-Disposition: attachment; filename="{ew(fname, "Q", "iso-8859-1")}"\nContent-Transfer-Encoding: base64\n\n{b64(D)}\n')

    simple_minutes("25_odt_minutes.eml", "hanna@helsingborg.example.se", "Hanna Candell", "SV: [KCG-2023-09] Protokoll",
                   "Wed, 6 Sep 2023 10:00:00 +0200", "<odt1@helsingborg.example.se>", "LibreOffice .odt", "2023-09",
                   att=att_outlook("Beslutsprotokoll.odt", odt(MINUTES_TEXT), "application/vnd.oasis.opendocument.text"))
    simple_minutes("26_legacy_doc.eml", "david@norrkoping.example.se", "David Nilsson", "SV: [KCG-2023-03] Protokoll",
                   "Thu, 9 Mar 2023 10:00:00 +0100", "<doc1@norrkoping.example.se>",
                   "legacy .doc (OLE); candidate by name, the shell decides", "2023-03",
                   att=att_outlook("Beslutsprotokoll.doc", ole_doc(), "application/msword"))

    # ---------------------------------------------------------------- no minutes
    simple_minutes("27_forgot_attachment.eml", "david@norrkoping.example.se", "David Nilsson",
                   "SV: [KCG-2023-03] Beslutsprotokoll", "Tue, 7 Mar 2023 12:00:00 +0100", "<forgot1@norrkoping.example.se>",
                   "host says the minutes are attached but forgot them", "2023-03", kind="no_minutes", doc=False,
                   irt=template_id("2023-03"), text="Hej! Här kommer protokollet.\n/David\n")
    m = "2023-04"
    pasted = ("Hej, jag klistrar in protokollet här:\n\nBeslutsprotokoll KCG april\n§1 Mötet öppnades.\n"
              "§2 Beslutades att samla in omsättningsstatistik kvartalsvis.\n\nMaria\n")
    alt = multipart("000000000000pasted", [
        part('Content-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable', qp(pasted)),
        part('Content-Type: text/html; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable',
             qp("<div dir=\"ltr\">" + pasted.replace("\n", "<br>") + "</div>")),
    ])
    add("28_gmail_pasted_text.eml", "no_minutes", m, "Gmail: minutes pasted into the body, no attachment",
        message(std_headers("maria@vasteras.example.se", "Maria Martinsson", f"Re: [KCG-{m}] Beslutsprotokoll",
                            "Tue, 4 Apr 2023 09:00:00 +0200", "<CAPasted@mail.gmail.com>"),
                'multipart/alternative; boundary="000000000000pasted"', alt))
    simple_minutes("29_signature_logo_only.eml", "pia@malmo.example.se", "Pia Sandin",
                   "SV: [KCG-2023-06] Beslutsprotokoll", "Mon, 5 Jun 2023 20:00:00 +0200", "<logo1@malmo.example.se>",
                   "only an inline signature logo (image/png with filename): not a candidate", "2023-06", kind="no_minutes",
                   att='Content-Type: image/png; name="image001.png"\nContent-Disposition: inline; filename="image001.png"\n'
                       f"Content-ID: <image001.png@01D9>\nContent-Transfer-Encoding: base64\n\n{b64(LOGO)}\n")
    simple_minutes("30_xlsx_only.eml", "hanna@helsingborg.example.se", "Hanna Candell",
                   "SV: [KCG-2023-09] Närvarolista", "Mon, 4 Sep 2023 20:00:00 +0200", "<xlsx1@helsingborg.example.se>",
                   "a spreadsheet is not a minutes candidate", "2023-09", kind="no_minutes",
                   att=att_outlook("Närvaro.xlsx", xlsx(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))

    # ---------------------------------------------------------------- not allowed
    simple_minutes("31_member_not_filer.eml", "isabel@lund.example.se", "Isabel Gölles",
                   "SV: [KCG-2023-02] Beslutsprotokoll", "Wed, 8 Feb 2023 10:00:00 +0100", "<isabel1@lund.example.se>",
                   "a member who is not host, backup or coordinator", "2023-02", kind="not_allowed")
    simple_minutes("32_stranger_with_token.eml", "someone@example.com", "Some One",
                   "Re: [KCG-2023-08] Beslutsprotokoll", "Wed, 9 Aug 2023 10:00:00 +0200", "<stranger1@example.com>",
                   "a stranger replying on the thread with a document", "2023-08", kind="not_allowed")
    simple_minutes("33_host_of_other_meeting.eml", "daniel@gavle.example.se", "Daniel Swärd",
                   "SV: [KCG-2023-09] Beslutsprotokoll", "Tue, 5 Sep 2023 10:00:00 +0200", "<other1@gavle.example.se>",
                   "Daniel hosts February, not September", "2023-09", kind="not_allowed")

    # ---------------------------------------------------------------- unmatched
    simple_minutes("34_unmatched_member_question.eml", "isabel@lund.example.se", "Isabel Gölles",
                   "Fråga om parkering", "Mon, 13 Mar 2023 10:00:00 +0100", "<q1@lund.example.se>",
                   "a member asking something, no token", None, kind="unmatched", doc=False,
                   text="Hej, var parkerar man vid nästa fysiska möte?\n")
    simple_minutes("35_unmatched_stranger_offer.eml", "sales@konferens.example.com", "Konferens AB",
                   "Offert: konferenslokal hösten 2023", "Mon, 13 Mar 2023 10:00:00 +0100", "<offer1@konferens.example.com>",
                   "a stranger's offer with a PDF, no token", None, kind="unmatched",
                   att=att_outlook("Offert.pdf", P, "application/pdf"))
    simple_minutes("36_unknown_meeting_token.eml", "daniel@gavle.example.se", "Daniel Swärd",
                   "SV: [KCG-2022-05] Beslutsprotokoll", "Tue, 7 Feb 2023 10:00:00 +0100", "<old1@gavle.example.se>",
                   "token names a meeting that is not in the plan: not reassigned by sender+date", None, kind="unmatched")
    simple_minutes("37_coordinator_ambiguous.eml", BJORN, "Björn Bergman",
                   "Protokoll", "Mon, 6 Mar 2023 18:00:00 +0100", "<amb1@svenskastadskarnor.example.se>",
                   "coordinator files for every meeting: two within the window, ambiguous", None, kind="unmatched")
    simple_minutes("38_filer_too_late.eml", "daniel@gavle.example.se", "Daniel Swärd",
                   "Protokoll", "Thu, 20 Apr 2023 10:00:00 +0200", "<late1@gavle.example.se>",
                   "host without token more than 30 days after his meeting", None, kind="unmatched")

    # ---------------------------------------------------------------- automatic
    m = "2023-05"
    orig = message([("From", f"Key Cities Group <{KCG}>"), ("To", "nobody@oldcity.example.se"),
                    ("Subject", f"[KCG-{m}] Mall för beslutsprotokoll"), ("Date", "Mon, 8 May 2023 16:00:00 +0200"),
                    ("Message-ID", template_id(m)), (MARKER_HEADER, f"{m}:template:nobody@oldcity.example.se"),
                    ("Auto-Submitted", "auto-generated")], "text/plain; charset=utf-8", "Hej!\n")
    body = multipart("4QBx1Z2s3Kz9.1683561600/mx.svenskastadskarnor.example.se", [
        part("Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii",
             "This is the mail system at host mx.svenskastadskarnor.example.se.\n\nI'm sorry to have to inform you that your "
             "message could not\nbe delivered to one or more recipients.\n\n<nobody@oldcity.example.se>: host mx.oldcity.example.se "
             "said: 550 5.1.1 User unknown\n"),
        part("Content-Description: Delivery report\nContent-Type: message/delivery-status",
             "Reporting-MTA: dns; mx.svenskastadskarnor.example.se\nArrival-Date: Mon,  8 May 2023 16:00:01 +0200 (CEST)\n\n"
             "Final-Recipient: rfc822; nobody@oldcity.example.se\nAction: failed\nStatus: 5.1.1\n"
             "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"),
        part("Content-Description: Undelivered Message\nContent-Type: message/rfc822", orig),
    ])
    add("39_dsn_multipart_report.eml", "automatic", None, "Postfix DSN (multipart/report; delivery-status) with our original inside",
        message([("Return-Path", "<>"), ("From", "MAILER-DAEMON@mx.svenskastadskarnor.example.se (Mail Delivery System)"),
                 ("To", KCG), ("Subject", "Undelivered Mail Returned to Sender"), ("Date", "Mon, 8 May 2023 16:00:02 +0200"),
                 ("Message-ID", "<20230508140002.DSN1@mx.svenskastadskarnor.example.se>"), ("Auto-Submitted", "auto-replied")],
                'multipart/report; report-type=delivery-status;\n\tboundary="4QBx1Z2s3Kz9.1683561600/mx.svenskastadskarnor.example.se"',
                body, preamble="This is a MIME-encapsulated message."))

    def plain_mail(file, kind, meeting, note, sender, name, subject, day, msgid, text, extra=None, irt=None,
                   return_path=True, charset="utf-8", declared=None):
        add(file, kind, meeting, note,
            message(std_headers(sender, name, subject, day, msgid, irt, irt, extra=extra, return_path=return_path),
                    f'text/plain; charset="{declared or charset}"\nContent-Transfer-Encoding: quoted-printable',
                    qp(text, charset)))

    plain_mail("40_oof_sv_franvaro_subject_only.eml", "automatic", None,
               "Swedish out-of-office recognised by its subject alone (no auto headers)",
               "pia@malmo.example.se", "Pia Sandin", "Frånvaro: [KCG-2023-05] Mall för beslutsprotokoll".replace(
                   "Frånvaro", ew("Frånvaro", "Q", "iso-8859-1")),
               "Mon, 8 May 2023 16:00:05 +0200", "<oof1@malmo.example.se>",
               "Jag är på semester till och med 15 maj och har begränsad tillgång till e-post.\n", charset="iso-8859-1")
    plain_mail("41_oof_en_automatic_reply_exchange.eml", "automatic", None,
               "Exchange OOF: Automatic reply:, Auto-Submitted: auto-generated, X-Auto-Response-Suppress",
               "david@norrkoping.example.se", "David Nilsson", "Automatic reply: [KCG-2023-06] Mall för beslutsprotokoll",
               "Mon, 5 Jun 2023 16:00:03 +0200", "<oof2@norrkoping.example.se>",
               "I am out of the office until June 12.\n",
               extra=[("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"),
                      ("X-MS-Exchange-Inbox-Rules-Loop", "david@norrkoping.example.se")],
               irt=template_id("2023-06"))
    plain_mail("42_oof_gmail_auto_replied.eml", "automatic", None,
               "Gmail vacation responder: Auto-Submitted: auto-replied, original subject with token, from the host",
               "monica@stockholm.example.se", "Monica Bruvik", "Re: [KCG-2023-08] Mall för beslutsprotokoll",
               "Mon, 7 Aug 2023 16:00:09 +0200", "<CAvacation@mail.gmail.com>",
               "Tack för ditt mejl. Jag är på semester.\n", extra=[("Auto-Submitted", "auto-replied")],
               irt=template_id("2023-08"))
    plain_mail("43_oof_apple_x_autoreply.eml", "automatic", None,
               "iCloud vacation: X-Autoreply: yes only",
               "hanna@helsingborg.example.se", "Hanna Candell", "Re: [KCG-2023-09] Mall för beslutsprotokoll",
               "Mon, 4 Sep 2023 16:00:09 +0200", "<icloud-vac@helsingborg.example.se>",
               "Jag är ledig denna vecka.\n", extra=[("X-Autoreply", "yes")])
    plain_mail("44_newsletter_precedence_bulk.eml", "automatic", None, "newsletter: Precedence: bulk, List-Unsubscribe",
               "nyheter@stadsutveckling.example.org", "Stadsutveckling Nyhetsbrev", "Nyhetsbrev mars: KCG 2023-03 i fokus",
               "Wed, 1 Mar 2023 07:00:00 +0100", "<news-2023-03@stadsutveckling.example.org>",
               "Läs om årets stadskärnedag...\n",
               extra=[("Precedence", "bulk"), ("List-Unsubscribe", "<https://stadsutveckling.example.org/unsub?u=1>")])
    m = "2023-04"
    body = multipart("mdn_boundary_1", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable',
             qp(f"Ditt meddelande\n\nTill: Maria Martinsson\nÄmne: [KCG-{m}] Mall för beslutsprotokoll\n\nlästes måndag 3 april 2023.\n")),
        part("Content-Type: message/disposition-notification",
             f"Reporting-UA: vasteras.example.se; Microsoft Outlook 16.0\nFinal-Recipient: rfc822;maria@vasteras.example.se\n"
             f"Original-Message-ID: {template_id(m)}\nDisposition: manual-action/MDN-sent-manually; displayed\n"),
    ])
    add("45_mdn_read_receipt.eml", "automatic", None, "Outlook read receipt (multipart/report; disposition-notification), Läst:",
        message(std_headers("maria@vasteras.example.se", "Maria Martinsson", f"{ew('Läst:', 'Q')} [KCG-{m}] Mall för beslutsprotokoll",
                            "Mon, 3 Apr 2023 17:00:00 +0200", "<mdn1@vasteras.example.se>"),
                'multipart/report; report-type=disposition-notification;\n\tboundary="mdn_boundary_1"', body))
    add("46_empty_return_path.eml", "automatic", None, "a notice with an empty envelope sender Return-Path: <>",
        message([("Return-Path", "<>"), ("From", "Kalendern <calendar@lund.example.se>"), ("To", KCG),
                 ("Subject", "Påminnelse: [KCG-2023-03] Månadsmöte"), ("Date", "Mon, 6 Mar 2023 08:00:00 +0100"),
                 ("Message-ID", "<rem1@lund.example.se>")],
                "text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit", "Påminnelse om mötet kl 09.00.\n"))
    simple_minutes("47_human_with_x_auto_response_suppress.eml", "daniel@gavle.example.se", "Daniel Swärd",
                   "SV: [KCG-2023-02] Beslutsprotokoll", "Tue, 7 Feb 2023 11:00:00 +0100", "<xars1@gavle.example.se>",
                   "X-Auto-Response-Suppress alone does not make a mail automatic", "2023-02",
                   extra=[("X-Auto-Response-Suppress", "All")])
    simple_minutes("48_auto_submitted_no.eml", "david@norrkoping.example.se", "David Nilsson",
                   "SV: [KCG-2023-03] Beslutsprotokoll", "Tue, 7 Mar 2023 11:00:00 +0100", "<asno1@norrkoping.example.se>",
                   "Auto-Submitted: no is a human message", "2023-03", extra=[("Auto-Submitted", "no")])

    # ---------------------------------------------------------------- calendar responses
    def ics_reply(meeting: str, attendee: str, partstat: str, prodid: str, seq: int = 0) -> str:
        return (
            "BEGIN:VCALENDAR\nMETHOD:REPLY\nPRODID:" + prodid + "\nVERSION:2.0\nBEGIN:VEVENT\n"
            f"ATTENDEE;PARTSTAT={partstat};CN=\"Medlem, Key Cities\":mailto:{attendee}\n"
            f"UID:{uid(meeting)}\nSEQUENCE:{seq}\nDTSTAMP:20230301T080000Z\n"
            "DTSTART;TZID=W. Europe Standard Time:20230306T090000\nDTEND;TZID=W. Europe Standard Time:20230306T103000\n"
            f"ORGANIZER;CN=Key Cities Group:mailto:{KCG}\nSUMMARY;LANGUAGE=sv-SE:Accepterat: KCG månadsmöte\n"
            "END:VEVENT\nEND:VCALENDAR\n"
        )

    m = "2023-03"
    alt = multipart("_000_accept_", [
        part('Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable', qp("\n")),
        part('Content-Type: text/calendar; charset="utf-8"; method=REPLY\nContent-Transfer-Encoding: base64',
             b64(ics_reply(m, "maria@vasteras.example.se", "ACCEPTED", "Microsoft Exchange Server 2010").replace("\n", "\r\n").encode())),
    ])
    add("49_exchange_accept_ics.eml", "calendar_response", m, "Exchange meeting response: Accepterat:, text/calendar METHOD:REPLY (base64)",
        message(std_headers("maria@vasteras.example.se", "Maria Martinsson", "Accepterat: KCG månadsmöte – Affärsplanering".replace(
                    "Accepterat: KCG månadsmöte – Affärsplanering", ew("Accepterat: KCG månadsmöte – Affärsplanering", "Q")),
                            "Wed, 1 Mar 2023 09:00:00 +0100", "<accept1@vasteras.example.se>",
                            extra=[("Thread-Topic", "KCG månadsmöte"), ("X-MS-Exchange-Calendar-Series-Instance-Id", "BAAAAJ")]),
                'multipart/alternative;\n\tboundary="_000_accept_"', alt))
    m = "2023-05"
    ics = ics_reply(m, "isabel@lund.example.se", "DECLINED", "-//Google Inc//Google Calendar 70.9054//EN")
    body = multipart("00000000000011decline", [
        part('Content-Type: multipart/alternative; boundary="00000000000011declalt"', multipart("00000000000011declalt", [
            part('Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes\nContent-Transfer-Encoding: base64',
                 b64("Isabel Gölles has declined this invitation.\n".encode())),
            part('Content-Type: text/calendar; charset="UTF-8"; method=REPLY\nContent-Transfer-Encoding: 7bit', ics),
        ])),
        part('Content-Type: application/ics; name="invite.ics"\nContent-Disposition: attachment; filename="invite.ics"\n'
             "Content-Transfer-Encoding: base64", b64(ics.encode())),
    ])
    add("50_gmail_decline_ics.eml", "calendar_response", m, "Google Calendar decline from a member: METHOD:REPLY + invite.ics",
        message(std_headers("isabel@lund.example.se", "Isabel Gölles",
                            "Declined: [KCG-2023-05] Månadsmöte @ Mon 8 May 2023 09:00 - 10:30 (CEST) (kcg@svenskastadskarnor.example.se)".replace(
                                "Månadsmöte", ew("Månadsmöte", "Q")),
                            "Tue, 2 May 2023 09:00:00 +0000", "<calendar-decline-1@google.com>",
                            extra=[("Sender", "Google Calendar <calendar-notification@google.com>")]),
                'multipart/mixed; boundary="00000000000011decline"', body))
    m = "2023-08"
    ics = ics_reply(m, "lisa@uppsala.example.se", "TENTATIVE", "-//Apple Inc.//macOS 13.4//EN")
    body = multipart("Apple-Mail=_TENT", [
        part("Content-Transfer-Encoding: 7bit\nContent-Type: text/plain;\n\tcharset=us-ascii", "\n"),
        part('Content-Disposition: attachment;\n\tfilename="iCal-20230801-090000.ics"\n'
             'Content-Type: text/calendar;\n\tx-unix-mode=0644;\n\tname="iCal-20230801-090000.ics";\n\tmethod=REPLY\n'
             "Content-Transfer-Encoding: quoted-printable", qp(ics)),
    ])
    add("51_apple_tentative_ics_attachment.eml", "calendar_response", m, "Apple Calendar: tentative, .ics as attachment only",
        message(std_headers("lisa@uppsala.example.se", "Lisa Thörn", ew("Invitation: KCG möte för alla (Tentative)", "Q"),
                            "Tue, 1 Aug 2023 09:00:00 +0200", "<tent1@uppsala.example.se>"),
                'multipart/mixed;\n\tboundary="Apple-Mail=_TENT"', body))
    plain_mail("52_godkand_subject_only.eml", "calendar_response", "2023-04",
               "Exchange-style subject Godkänd: without any iCalendar part (token in subject)",
               "daniel@gavle.example.se", "Daniel Swärd", ew("Godkänd: [KCG-2023-04] Månadsmöte – Omsättningsstatistik", "Q"),
               "Mon, 27 Mar 2023 09:00:00 +0200", "<godk1@gavle.example.se>", "\n")
    plain_mail("53_avbojt_subject_in_reply_to.eml", "calendar_response", "2023-05",
               "Avböjt: subject only, matched through In-Reply-To our invitation",
               "lena@goteborg.example.se", "Lena Dalerup", ew("Avböjt: KCG månadsmöte", "Q"),
               "Tue, 2 May 2023 09:00:00 +0200", "<avb1@goteborg.example.se>", "Tyvärr kan jag inte.\n",
               irt=invitation_id("2023-05"))
    m = "2023-06"
    w = tnef([], message_class="IPM.Schedule.Meeting.Resp.Tent", body="Jag försöker hinna.")
    body = multipart("_tnef_resp_", [
        part('Content-Type: text/plain; charset="utf-8"', "Jag försöker hinna.\n"),
        part('Content-Type: application/ms-tnef; name="winmail.dat"\nContent-Disposition: attachment; filename="winmail.dat"\n'
             "Content-Transfer-Encoding: base64", b64(w)),
    ])
    add("54_tnef_meeting_response.eml", "calendar_response", m,
        "Outlook meeting response inside winmail.dat (message class IPM.Schedule.Meeting.Resp.Tent), unlisted subject prefix",
        message(std_headers("david@norrkoping.example.se", "David Nilsson", "Mit Vorbehalt angenommen KCG [KCG-2023-06]",
                            "Thu, 1 Jun 2023 09:00:00 +0200", "<tnefresp1@norrkoping.example.se>"),
                'multipart/mixed; boundary="_tnef_resp_"', body))
    m = "2023-03"
    alt = multipart("_000_accept2_", [
        part('Content-Type: text/plain; charset="utf-8"', "Ja\n"),
        part('Content-Type: text/calendar; charset="utf-8"; method=REPLY',
             ics_reply("1999-01", "someone@example.com", "ACCEPTED", "x").replace(uid("1999-01"), "0400000082E00074C5B7101A82E00800@example.com")),
    ])
    add("55_calendar_reply_unknown_uid.eml", "calendar_response", None, "a calendar reply to an invitation we do not know",
        message(std_headers("someone@example.com", "Some One", "Accepted: Lunch",
                            "Wed, 1 Mar 2023 09:00:00 +0100", "<acc-unknown@example.com>"),
                'multipart/alternative; boundary="_000_accept2_"', alt))

    # ---------------------------------------------------------------- own
    plain_mail("56_own_sent_copy.eml", "own", None, "our own sent copy (marker header) landing in the inbox",
               KCG, "Key Cities Group", "[KCG-2023-09] Mall för beslutsprotokoll", "Mon, 4 Sep 2023 16:00:00 +0200",
               template_id("2023-09"), "Hej!\nBifogat finns mallen.\n",
               extra=[(MARKER_HEADER, "2023-09:template:hanna@helsingborg.example.se"), ("Auto-Submitted", "auto-generated")])
    plain_mail("57_own_address_bounce_loop.eml", "own", None, "a reply from our own mailbox (loop): own wins over automatic",
               KCG.upper(), "Key Cities Group", "Automatic reply: SV: [KCG-2023-10] Beslutsprotokoll",
               "Thu, 5 Oct 2023 10:00:05 +0200", "<loop1@svenskastadskarnor.example.se>", "Tack, vi har tagit emot ditt mejl.\n",
               extra=[("Auto-Submitted", "auto-replied")])

    # ---------------------------------------------------------------- malformed
    m = "2023-11"
    bad = (
        "Return-Path: <lisa@uppsala.example.se>\nFrom: =?x-broken-charset?Q?Lisa_Th=F6rn?= <lisa@uppsala.example.se>\n"
        "To: kcg@svenskastadskarnor.example.se\nSubject: SV: [KCG-2023-11] =?utf-8?B?QmVzbHV0c3Byb3Rva29sbA?= =?utf-8?B?!!!?=\n"
        "Date: Someday, 99 Foo 20xx 25:61:00 +9999\nMessage-ID: <broken1@uppsala.example.se>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="bnd"\n\n--bnd\n'
        'Content-Type: text/plain; charset="x-unknown-foo"\nContent-Transfer-Encoding: base64\n\nSGVq!!!IQ\n--bnd\n'
        'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n<p>Hej =ZZ =C3=A5 trasig</p>\n--bnd\n'
        + att_outlook("Beslutsprotokoll Uppsala.docx", D)
        + "--bnd\nContent-Type: application/pdf; name=\"trasig.pdf\"\nContent-Transfer-Encoding: base64\n\n%%%%not base64%%%%\n"
        "--bnd\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n"
        + b64(b"\x78\x9f\x3e\x22\x01\x00\x01\x06\x90\x08\x00\xff\xff\xff\x7f") + "\n"
    )  # no closing boundary
    add("58_malformed_bad_charset_base64_date.eml", "minutes", m,
        "unknown charsets, bad base64, bad date, truncated TNEF, no closing boundary: degrades, still finds the .docx (and the broken pdf)",
        bad)
    add("59_malformed_headers_garbage.eml", "unmatched", None, "garbage header lines, no From, no Date",
        "This is not a header\n: empty name\nSubject: [KCG-9999-99 \x01\x02\nContent-Type: multipart/mixed; boundary=\n\n--\n--\n")
    raw8 = (
        "Return-Path: <pia@malmo.example.se>\nFrom: Pia Sandin <pia@malmo.example.se>\nTo: kcg@svenskastadskarnor.example.se\n"
        "Subject: SV: [KCG-2023-06] Beslutsprotokoll Omvärldsanalys – Malmö\nDate: Wed, 7 Jun 2023 10:00:00 +0200\n"
        "Message-ID: <raw8@malmo.example.se>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"r8\"\n\n--r8\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHär är protokollet från Malmö.\n--r8\n"
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name=\"Protokoll Malmö.docx\"\n"
        "Content-Disposition: attachment; filename=\"Protokoll Malmö.docx\"\nContent-Transfer-Encoding: base64\n\n"
        + b64(D) + "\n--r8--\n"
    )
    add("60_raw_8bit_utf8_headers.eml", "minutes", "2023-06", "raw 8-bit UTF-8 in Subject and filename (no RFC 2047)", raw8)
    plain_mail("61_cp1252_mislabelled.eml", "no_minutes", "2023-12",
               "text declared iso-8859-1 but Windows-1252 (en dash) and subject Latin-1 word: no attachment",
               "linda@boras.example.se", "Linda Sjöstrand", "VB: [KCG-2023-12] " + ew("Protokoll – kommer", "Q", "windows-1252"),
               "Mon, 4 Dec 2023 18:00:00 +0100", "<cp1252@boras.example.se>", "Protokollet kommer i morgon – förlåt!\n",
               charset="windows-1252", declared="iso-8859-1")


def main() -> None:
    build()
    names = [c[0] for c in CORPUS]
    assert len(names) == len(set(names)), "duplicate file names"
    keep = set(names)
    for old in HERE.glob("*.eml"):
        if old.name not in keep:
            old.unlink()
    manifest = []
    for file, kind, meeting, note, data in CORPUS:
        (HERE / file).write_bytes(data)
        manifest.append({"file": file, "kind": kind, "meeting_id": meeting, "note": note})
    (HERE / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(manifest)} messages to {HERE}")


if __name__ == "__main__":
    main()
