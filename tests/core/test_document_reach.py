"""Returned documents cannot reach outside: fields that fetch or run,
external relationships of any part, ODF links and DDE, active PDFs, and zip entries whose
declared sizes lie. Each hostile file is refused with its code and a short Swedish
answer; ordinary documents (hyperlinks, page fields, plain-view PDFs) still pass."""

from __future__ import annotations

import pytest
from support import hostile_files as h  # noqa: E402

from kcg_mail.documents import pdf_safety  # noqa: E402
from kcg_mail.documents.minutes import read_minutes  # noqa: E402
from kcg_mail.documents.ooxml import REJECT_CODES, MinutesRejected  # noqa: E402

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def base() -> bytes:
    return h.fill_decisions(h.rendered_protocol(), [("Ta fram policy", "Pia Sandin", "2023-05-01")])


REACHING = {
    # id: (filename, factory(base) -> bytes, expected code)
    "ddeauto_split_runs": ("p.docx", lambda b: h.field_in_document(b, " DD", "EAUTO c:\\\\windows\\\\system32\\\\cmd.exe ",
                                                                      '"/k calc" '), "active_field"),
    "dde_fldsimple": ("p.docx", lambda b: h.simple_field_in_document(b, 'DDE excel "C:\\\\x.xls" R1C1'), "active_field"),
    "dde_lower_case": ("p.docx", lambda b: h.field_in_document(b, ' dde excel "x" ', "R1C1"), "active_field"),
    "includepicture_header": ("p.docx", lambda b: h.field_in_header(b, ' INCLUDEPICTURE "http://evil.example/', 'x.png" \\d '),
                              "active_field"),
    "includetext_unc_footnote": ("p.docx", lambda b: h.field_in_notes(b, "footnotes", ' INCLUDETEXT "\\\\\\\\evil\\\\share\\\\x.docx" '),
                                 "active_field"),
    "includetext_endnote": ("p.docx", lambda b: h.field_in_notes(b, "endnotes", " INCLUDETEXT ", '"C:\\\\a.docx"'), "active_field"),
    "link_in_comment": ("p.docx", lambda b: h.field_in_comment(b, ' LINK Excel.Sheet.12 "C:\\\\b.xlsx" "Blad1" \\a '),
                        "active_field"),
    "import_in_glossary": ("p.docx", lambda b: h.field_in_glossary(b, ' IMPORT "http://evil.example/x.wmf" '), "active_field"),
    "url_in_footer_field": ("p.docx", lambda b: h.field_in_footer_simple(b, 'QUOTE "https://evil.example/t"'), "active_field"),
    "unc_in_if_field": ("p.docx", lambda b: h.field_in_document(b, ' IF 1 = 1 "', '\\\\\\\\evil.example\\\\s\\\\a" ""'),
                        "active_field"),
    "nested_includepicture": ("p.docx", h.nested_field, "active_field"),
    "external_image_in_header_rels": ("p.docx", lambda b: h.relationship_in_part(
        b, "word/_rels/header1.xml.rels", "image", "http://evil.example/p.png"), "external_link"),
    "external_mode_lower_case": ("p.docx", lambda b: h.relationship_in_part(
        b, "word/_rels/document.xml.rels", "image", "https://evil.example/p.png", mode="external"), "external_link"),
    "external_mode_upper_case": ("p.docx", lambda b: h.relationship_in_part(
        b, "word/_rels/footer1.xml.rels", "oleObject", "\\\\evil.example\\x", mode="EXTERNAL"), "external_link"),
    "remote_template_settings": ("p.docx", h.remote_template_in_settings, "external_link"),
    "forward_slash_unc": ("p.docx", lambda b: h.relationship_in_part(
        b, "word/_rels/document.xml.rels", "image", "//evil.example/share/p.png"), "external_link"),
    "rels_part_upper_case": ("p.docx", h.rels_part_in_upper_case, "external_link"),
    "hyperlink_rel_used_as_picture": ("p.docx", h.hyperlink_used_as_picture, "external_link"),
    "declared_small_inflates_huge": ("p.docx", h.lying_small_declared_size, "zip_bomb"),
    "declared_small_inflates_more": ("p.docx", h.entry_bigger_than_declared, "zip_bomb"),
    "odt_linked_image": ("p.odt", lambda b: h.odt_linked_image(), "external_link"),
    "odt_linked_section_unc": ("p.odt", lambda b: h.odt_linked_section(), "external_link"),
    "odt_dde": ("p.odt", lambda b: h.odt_dde(), "active_field"),
    "pdf_open_javascript": ("p.pdf", lambda b: h.pdf_open_javascript(), "pdf_active"),
    "pdf_escaped_javascript": ("p.pdf", lambda b: h.pdf_escaped_javascript(), "pdf_active"),
    "pdf_names_javascript": ("p.pdf", lambda b: h.pdf_names_javascript(), "pdf_active"),
    "pdf_launch": ("p.pdf", lambda b: h.pdf_launch(), "pdf_active"),
    "pdf_submit_form": ("p.pdf", lambda b: h.pdf_submit_form(), "pdf_active"),
    "pdf_import_data": ("p.pdf", lambda b: h.pdf_import_data(), "pdf_active"),
    "pdf_embedded_file": ("p.pdf", lambda b: h.pdf_embedded_file(), "pdf_active"),
    "pdf_page_aa": ("p.pdf", lambda b: h.pdf_page_aa(), "pdf_active"),
    "pdf_open_uri": ("p.pdf", lambda b: h.pdf_open_uri(), "pdf_active"),
    "pdf_objstm_javascript": ("p.pdf", lambda b: h.pdf_objstm_javascript(), "pdf_active"),
}


@pytest.mark.parametrize("case", sorted(REACHING))
def test_documents_that_reach_outside_are_refused(case, base):
    filename, factory, code = REACHING[case]
    data = factory(base)
    with pytest.raises(MinutesRejected) as info:
        read_minutes(filename, data)
    exc = info.value
    assert exc.code == code, exc.detail
    assert exc.message_sv == REJECT_CODES[code]
    assert exc.message_sv.endswith(".") and len(exc.message_sv) < 220
    assert exc.detail and exc.detail != exc.code


def test_the_hostile_builders_change_only_the_hostile_part(base):
    """The same structures without the fetching instruction pass: the refusals above are
    caused by the field, link or action, not by a broken package."""
    ok = [
        ("p.docx", h.field_in_document(base, " PA", "GE ")),
        ("p.docx", h.simple_field_in_document(base, "NUMPAGES")),
        ("p.docx", h.field_in_header(base, " DATE \\@ ", '"yyyy-MM-dd HH:mm" ')),
        ("p.docx", h.field_in_notes(base, "footnotes", " PAGEREF _Toc1 \\h ")),
        ("p.docx", h.field_in_notes(base, "endnotes", " SEQ Tabell ")),
        ("p.docx", h.field_in_comment(base, " AUTHOR ")),
        ("p.docx", h.field_in_glossary(base, " TIME ")),
        ("p.docx", h.field_in_footer_simple(base, "PAGE")),
        ("p.docx", h.field_in_document(base, ' HYPERLINK "https://www.example.se/protokoll" ')),
        ("p.docx", h.relationship_in_part(base, "word/_rels/header1.xml.rels", "hyperlink", "https://example.se/")),
        ("p.docx", h.hyperlink_in_body(base)),
        ("p.docx", h.remote_template_in_settings(base, target="file:///C:/Mallar/Normal.dotm")),
        ("p.odt", h.odt_hyperlink()),
        ("p.pdf", h.pdf_open_view()),
        ("p.pdf", h.pdf_link_annotation()),
        ("p.pdf", h.pdf_with_catalog(b"")),
    ]
    for filename, data in ok:
        minutes = read_minutes(filename, data)
        assert minutes.kind == filename.rsplit(".", 1)[1]
    docx = read_minutes("p.docx", h.field_in_header(base, " DATE "))
    assert [d.decision for d in docx.decisions] == ["Ta fram policy"]


def test_pdf_raw_scan_and_object_tree_each_catch_the_object_stream_case():
    data = h.pdf_objstm_javascript()
    with pytest.raises(MinutesRejected, match="object stream"):
        pdf_safety._raw_scan(data)
    with pytest.raises(MinutesRejected, match="pdf_active"):
        pdf_safety._tree_scan(data)
    # and the escaped name is seen by both looks too
    esc = h.pdf_escaped_javascript()
    with pytest.raises(MinutesRejected):
        pdf_safety._raw_scan(esc)
    with pytest.raises(MinutesRejected):
        pdf_safety._tree_scan(esc)


def test_inflation_counts_produced_bytes_not_declared_ones(base):
    data = h.lying_small_declared_size(base)
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docx", data)
    assert "inflates to more than" in info.value.detail  # stopped at the cap, not after 120 MiB
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docx", h.entry_bigger_than_declared(base))
    assert "declares 4096 bytes but inflates to 2097152" in info.value.detail


def test_internal_relationship_named_by_a_url_is_refused(base):
    data = h.relationship_in_part(base, "word/_rels/document.xml.rels", "image", "http://evil.example/p.png",
                                  mode="Internal")
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docx", data)
    assert info.value.code == "external_link"


@pytest.mark.parametrize("case", ["rtf_includepicture", "rtf_objupdate", "docx_with_dde", "unknown_type"])
def test_imported_chunks_that_reach_outside_are_refused(base, case):
    data = {
        "rtf_includepicture": lambda: h.alt_chunk_rtf(base),
        "rtf_objupdate": lambda: h.alt_chunk_rtf_objupdate(base),
        "docx_with_dde": lambda: h.alt_chunk_docx(base, h.field_in_document(base, " DDEAUTO cmd ", '"/c calc"')),
        "unknown_type": lambda: h.with_alt_chunk(base, "afchunk.bin", b"\x00\x01binary", "application/octet-stream"),
    }[case]()
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docx", data)
    assert info.value.code == "active_field", info.value.detail


def test_harmless_imported_chunks_pass(base):
    assert read_minutes("p.docx", h.alt_chunk_rtf(base, fldinst="{PAGE}")).kind == "docx"
    assert read_minutes("p.docx", h.alt_chunk_docx(base, base)).kind == "docx"


def test_mail_merge_main_document_is_refused(base):
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docx", h.mail_merge_settings(base))
    assert info.value.code == "active_field" and "mail merge" in info.value.detail
