"""Content disarm and reconstruction (``kcg_mail.documents.rebuild``): every hostile file
goes THROUGH the rebuild and the assertions are on the REBUILT BYTES (tests/support/cdr_checks.py,
independent of our deny-list checks): no fields, no instruction text, no embedded or OLE
parts, no altChunk, no external relationships, no ActiveX, customXml or VBA; no
JavaScript, actions, forms, XFA, attachments or earlier revisions in a PDF. Each case also
shows the check finds the danger in the host's original, so it can fail. What a protocol
needs survives: decisions, text, headers, lists, pictures."""

from __future__ import annotations

import io
import zipfile

import pytest
from support import cdr_checks as cdr  # noqa: E402
from support import hostile_files as h  # noqa: E402
from support.cdr_checks import ROWS, picture, with_pictures  # noqa: E402

from kcg_mail.documents.minutes import read_minutes  # noqa: E402
from kcg_mail.documents.ooxml import MinutesRejected  # noqa: E402
from kcg_mail.documents.rebuild import MAX_SIDE, rebuild  # noqa: E402


@pytest.fixture(scope="module")
def filled() -> bytes:
    return h.fill_decisions(h.rendered_protocol(), ROWS, notes="Anteckning: nästa möte i Umeå.")


def _decisions(name: str, data: bytes) -> list[tuple[str, str, str]]:
    return [(d.decision, d.owner, d.due) for d in read_minutes(name, data).decisions]


DOCX_CASES = {
    "ddeauto_field": lambda b: h.field_in_document(b, " DDE", "AUTO cmd \"/c calc\" "),
    "ddeauto_name_built_by_nested_field": h.nested_field_ddeauto,
    "includepicture_nested_in_if": h.nested_field,
    "simple_field_include": lambda b: h.simple_field_in_document(b, 'INCLUDETEXT "http://evil.example/t.docx"'),
    "field_in_header": lambda b: h.field_in_header(b, ' INCLUDEPICTURE "http://evil.example/p.png" '),
    "field_in_footer": lambda b: h.field_in_footer_simple(b, 'LINK Excel.Sheet "\\\\\\\\evil.example\\\\s\\\\x.xlsx" ""'),
    "field_in_footnote": lambda b: h.field_in_notes(b, "footnotes", ' INCLUDEPICTURE "http://evil.example/f.png" '),
    "field_in_comment": lambda b: h.field_in_comment(b, ' INCLUDEPICTURE "http://evil.example/c.png" '),
    "field_in_glossary": lambda b: h.field_in_glossary(b, ' INCLUDEPICTURE "http://evil.example/g.png" '),
    "packager_ole_with_bat": h.packager_ole_bat,
    "equation_editor_ole": h.equation_editor_ole,
    "altchunk_rtf_field": h.alt_chunk_rtf,
    "altchunk_rtf_escaped_link": h.alt_chunk_rtf_escaped,
    "altchunk_rtf_objupdate": h.alt_chunk_rtf_objupdate,
    "altchunk_html_char_references": h.alt_chunk_html_charref,
    "altchunk_html_utf16": h.alt_chunk_html_utf16,
    "altchunk_nested_docx": lambda b: h.alt_chunk_docx(b, h.field_in_document(b, " DDEAUTO cmd \"/c calc\" ")),
    "remote_template": h.remote_template_in_settings,
    "mail_merge_query": h.mail_merge_settings,
    "external_image_relationship": lambda b: h.with_relationship(b, "image", "http://evil.example/pixel.png"),
    "rels_part_in_upper_case": h.rels_part_in_upper_case,
    "hyperlink_used_as_picture": h.hyperlink_used_as_picture,
    "hyperlink": lambda b: h.hyperlink_in_body(b, "http://evil.example/klick"),
    "macro_docm": h.macro_docm,
    "vba_part_only": h.vba_part_only,
}


@pytest.mark.parametrize("case", sorted(DOCX_CASES))
def test_hostile_docx_rebuilt_holds_nothing_active(filled, case):
    hostile = DOCX_CASES[case](filled)
    assert cdr.docx_active(hostile), "the check must see the danger in the original"
    rebuilt = rebuild("protokoll.docx", hostile)
    assert rebuilt.kind == "docx"
    assert cdr.docx_active(rebuilt.data) == []
    assert rebuilt.removed, "what was left out is said in words"
    assert _decisions("protokoll.docx", rebuilt.data) == ROWS


def test_a_field_shows_its_result_text_and_nested_fields_leave_nothing_of_their_instruction(filled):
    rebuilt = rebuild("p.docx", h.nested_field_ddeauto(filled))
    text = read_minutes("p.docx", rebuilt.data).text
    assert "Kursen" in text  # the outer field's shown result
    assert "DDE" not in text and "AUTO" not in text  # the inner field sat in the outer instruction
    assert "fält (ersatt av sin visade text) (2)" in rebuilt.removed


PDF_CASES = ["pdf_open_javascript", "pdf_escaped_javascript", "pdf_names_javascript", "pdf_launch",
             "pdf_submit_form", "pdf_import_data", "pdf_embedded_file", "pdf_page_aa", "pdf_open_uri",
             "pdf_link_annotation", "pdf_objstm_javascript", "pdf_xfa", "pdf_incremental_update",
             "pdf_launch_link", "pdf_file_attachment_annotation", "pdf_action_in_font"]


@pytest.mark.parametrize("case", PDF_CASES)
def test_hostile_pdf_rebuilt_holds_nothing_active(case):
    hostile = getattr(h, case)()
    assert cdr.pdf_active(hostile), "the check must see the danger in the original"
    rebuilt = rebuild("protokoll.pdf", hostile)
    assert rebuilt.kind == "pdf"
    assert cdr.pdf_active(rebuilt.data) == []
    assert rebuilt.removed
    assert read_minutes("protokoll.pdf", rebuilt.data).text == "Beslutsprotokoll"


def odt_object_and_scripts() -> bytes:
    """An ODT with an embedded OLE object, a Basic library, an event listener and a form."""
    base = h.odt_with('<draw:frame draw:name="Obj1" svg:width="2cm" svg:height="1cm"><draw:object-ole '
                      'xlink:href="./Object 1" xlink:type="simple"/></draw:frame>')
    content = h.read_part(base, "content.xml").decode().replace(
        "<office:body>",
        '<office:scripts><office:event-listeners><script:event-listener xmlns:script="urn:oasis:names:tc:opendocument:'
        'xmlns:script:1.0" script:language="ooo:script" script:event-name="dom:load" '
        'xlink:href="vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document"/>'
        '</office:event-listeners></office:scripts><office:body>', 1)
    return h.rezip(base, replace={"content.xml": content.encode()},
                   add={"Object 1": h.packager_ole_bat.__doc__.encode(), "Basic/Standard/Module1.xml":
                        b'<script:module xmlns:script="http://openoffice.org/2000/script">Sub Main\nShell("cmd.exe /c calc")\nEnd Sub</script:module>'})


ODT_CASES = {
    "linked_image": h.odt_linked_image,
    "linked_section": h.odt_linked_section,
    "dde_field": h.odt_dde,
    "hyperlink": lambda: h.odt_with('<text:a xlink:type="simple" xlink:href="http://evil.example/">webbplatsen</text:a>'),
    "object_scripts_events": odt_object_and_scripts,
}


@pytest.mark.parametrize("case", sorted(ODT_CASES))
def test_hostile_odt_rebuilt_holds_nothing_active(case):
    hostile = ODT_CASES[case]()
    assert cdr.odt_active(hostile), "the check must see the danger in the original"
    rebuilt = rebuild("protokoll.odt", hostile)
    assert rebuilt.kind == "odt"
    assert cdr.odt_active(rebuilt.data) == []
    assert rebuilt.removed
    assert _decisions("protokoll.odt", rebuilt.data) == [("Ta fram policy", "Pia Sandin", "2023-05-01")]


# ------------------------------------------------------------------ what survives


def test_protocol_survives_the_rebuild_text_decisions_header_lists_pictures(filled):
    from docx import Document

    original = with_pictures(filled, picture("PNG", (400, 300)), picture("JPEG", (5000, 2500)))
    rebuilt = rebuild("protokoll.docx", original)
    assert cdr.docx_active(rebuilt.data) == []
    assert read_minutes("p.docx", rebuilt.data).text == read_minutes("p.docx", original).text
    assert _decisions("p.docx", rebuilt.data) == ROWS
    before, after = Document(io.BytesIO(original)), Document(io.BytesIO(rebuilt.data))
    assert [p.text for p in after.paragraphs] == [p.text for p in before.paragraphs]
    assert [p.style.name for p in after.paragraphs] == [p.style.name for p in before.paragraphs]
    assert [[c.text for c in r.cells] for t in after.tables for r in t.rows] == \
        [[c.text for c in r.cells] for t in before.tables for r in t.rows]
    assert after.sections[0].header.paragraphs[0].text == before.sections[0].header.paragraphs[0].text
    assert [p.text for p in after.sections[0].footer.paragraphs] == [p.text for p in before.sections[0].footer.paragraphs]
    assert after.sections[0].page_width == before.sections[0].page_width
    shapes = after.inline_shapes
    assert len(shapes) == 2
    assert [(s.width, s.height) for s in shapes] == [(s.width, s.height) for s in before.inline_shapes]
    from PIL import Image

    media = {n: z for n, z in _parts(rebuilt.data).items() if n.startswith("word/media/")}
    sizes = sorted(Image.open(io.BytesIO(b)).size for b in media.values())
    assert sizes == [(400, 300), (MAX_SIDE, MAX_SIDE // 2)]  # the 5000 px photo is scaled down
    parts = _parts(rebuilt.data)
    from lxml import etree

    ids = [r.get("Id") for r in etree.fromstring(parts["word/_rels/document.xml.rels"])]
    assert len(ids) == len(set(ids)) == 7  # styles, numbering, header, footer, settings, two pictures
    assert b"<w:abstractNum " in parts["word/numbering.xml"] and b"<w:numPr>" in parts["word/styles.xml"]  # lists


def _parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_rebuild_is_deterministic(filled):
    """Same input, same bytes: a re-run after a crash files the same version, not a new one."""
    doc = with_pictures(filled, picture("PNG", (50, 40)))
    assert rebuild("p.docx", doc).data == rebuild("p.docx", doc).data
    assert rebuild("p.pdf", h.pdf_open_javascript()).data == rebuild("p.pdf", h.pdf_open_javascript()).data
    assert rebuild("p.odt", h.odt_dde()).data == rebuild("p.odt", h.odt_dde()).data


def test_a_picture_bomb_is_left_out_not_decoded(filled):
    """A PNG that declares 100 000 x 100 000 pixels is never decoded: the picture is left out."""
    import struct
    import zlib as z

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", z.crc32(kind + body))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", z.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    doc = with_pictures(filled, picture("PNG", (10, 10)))
    media = next(n for n in _parts(doc) if n.startswith("word/media/"))
    hostile = h.rezip(doc, replace={media: bomb})
    rebuilt = rebuild("p.docx", hostile)
    assert not any(n.startswith("word/media/") for n in _parts(rebuilt.data))
    assert "bild som inte kunde läsas" in rebuilt.removed
    assert _decisions("p.docx", rebuilt.data) == ROWS


@pytest.mark.parametrize("real,code", [(120 * 1024 * 1024, "zip_bomb"), (2 * 1024 * 1024, "zip_bomb")])
def test_a_picture_that_inflates_beyond_its_declared_size_is_refused(filled, real, code):
    """The rebuild inflates the parts it copies itself, counting the bytes produced:
    a picture whose zip entry lies about its size stops the rebuild."""
    import zlib as z

    doc = with_pictures(filled, picture("PNG", (10, 10)))
    media = next(n for n in _parts(doc) if n.startswith("word/media/"))
    comp = z.compressobj(9, z.DEFLATED, -15)
    blob = b"".join(comp.compress(b"\0" * (1024 * 1024)) for _ in range(real // (1024 * 1024))) + comp.flush()
    hostile = h._swap_entry(doc, media.encode(), blob, declared=4096, crc=z.crc32(b"\0" * 4096))
    with pytest.raises(MinutesRejected) as exc:
        rebuild("p.docx", hostile)
    assert exc.value.code == code


def test_parts_the_rebuild_does_not_copy_are_never_inflated(filled):
    """A lying entry that nothing refers to is simply not part of the new package."""
    rebuilt = rebuild("p.docx", h.lying_small_declared_size(filled))
    assert "word/media/image3.png" not in _parts(rebuilt.data)
    assert _decisions("p.docx", rebuilt.data) == ROWS


def test_a_broken_package_is_refused(filled):
    with pytest.raises(MinutesRejected) as exc:
        rebuild("p.docx", h.truncated(filled))
    assert exc.value.code == "corrupt"


@pytest.mark.parametrize("name,data,code", [
    ("p.doc", h.legacy_doc(), "unsupported"),
    ("p.pdf", h.encrypted_pdf(h.make_pdf(["Beslutsprotokoll"])), "encrypted"),
    ("p.txt", b"just text", "unsupported"),
])
def test_what_cannot_be_rebuilt_is_refused(name, data, code):
    with pytest.raises(MinutesRejected) as exc:
        rebuild(name, data)
    assert exc.value.code == code


def test_a_picture_in_the_header_survives_with_its_own_relationship(filled):
    """A logo in the header: the header part gets its own, new relationship to the re-encoded picture."""
    from docx import Document
    from docx.shared import Cm

    doc = Document(io.BytesIO(filled))
    doc.sections[0].header.paragraphs[0].add_run().add_picture(io.BytesIO(picture("PNG", (120, 40))), width=Cm(3))
    out = io.BytesIO()
    doc.save(out)
    rebuilt = rebuild("p.docx", out.getvalue())
    assert cdr.docx_active(rebuilt.data) == []
    parts = _parts(rebuilt.data)
    assert b'Target="media/image1.png"' in parts["word/_rels/header1.xml.rels"]
    after = Document(io.BytesIO(rebuilt.data))
    blips = after.sections[0].header.part.element.xpath(".//a:blip")
    assert len(blips) == 1
    assert after.sections[0].header.part.related_parts[blips[0].get(f"{{{h.R_NS}}}embed")].blob == \
        parts["word/media/image1.png"]
    assert _decisions("p.docx", rebuilt.data) == ROWS


def test_a_floating_picture_and_a_picture_in_markup_compatibility_come_back_inline(filled):
    """A floating (anchored) picture, and one wrapped in mc:AlternateContent as Word writes
    newer drawings, are rebuilt as plain inline pictures of the same size."""
    from docx import Document

    doc = with_pictures(filled, picture("PNG", (200, 100)), picture("JPEG", (300, 200)))
    xml = _parts(doc)["word/document.xml"].decode()
    first = xml.index("<wp:inline")
    end = xml.index("</wp:inline>", first) + len("</wp:inline>")
    anchored = xml[first:end].replace("<wp:inline", '<wp:anchor behindDoc="0" simplePos="0" locked="0" '
                                      'layoutInCell="1" allowOverlap="1" relativeHeight="2"', 1)
    anchored = anchored.replace("</wp:inline>", "</wp:anchor>").replace("<wp:extent", '<wp:simplePos x="0" y="0"/>'
                                                                         '<wp:positionH relativeFrom="column"><wp:posOffset>0'
                                                                         '</wp:posOffset></wp:positionH><wp:positionV '
                                                                         'relativeFrom="paragraph"><wp:posOffset>0</wp:posOffset>'
                                                                         '</wp:positionV><wp:extent', 1)
    xml = xml[:first] + anchored + xml[end:]
    second = xml.index("<w:drawing>", xml.index("</wp:anchor>"))
    close = xml.index("</w:drawing>", second) + len("</w:drawing>")
    mc = "http://schemas.openxmlformats.org/markup-compatibility/2006"
    xml = (xml[:second] + f'<mc:AlternateContent xmlns:mc="{mc}"><mc:Choice Requires="wps">' + xml[second:close]
           + "</mc:Choice><mc:Fallback/></mc:AlternateContent>" + xml[close:])
    hostile = h.rezip(doc, replace={"word/document.xml": xml.encode()})
    assert b"<wp:anchor" in _parts(hostile)["word/document.xml"] and b"<mc:AlternateContent" in _parts(hostile)["word/document.xml"]
    before = Document(io.BytesIO(doc))
    rebuilt = rebuild("p.docx", hostile)
    assert cdr.docx_active(rebuilt.data) == []
    after = Document(io.BytesIO(rebuilt.data))
    assert [(s.width, s.height) for s in after.inline_shapes] == [(s.width, s.height) for s in before.inline_shapes]
    assert len(after.inline_shapes) == 2
