"""Protocol template, renderer, template check and reading of returned minutes."""

from __future__ import annotations

import copy
import importlib.util
import io
import zipfile
from pathlib import Path

import jinja2
import pytest
from docx import Document
from docxtpl import DocxTemplate
from support import hostile_files as h  # noqa: E402

from kcg_mail.documents.context import CONTEXT_SCHEMA, SAMPLE_CONTEXT  # noqa: E402
from kcg_mail.documents.minutes import Decision, Minutes, read_minutes  # noqa: E402
from kcg_mail.documents.ooxml import REJECT_CODES, MinutesRejected  # noqa: E402
from kcg_mail.documents.render import ProtocolRenderer  # noqa: E402
from kcg_mail.documents.template_check import check_template  # noqa: E402

TEMPLATE = h.TEMPLATE


def ctx_with(**meeting) -> dict:
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    ctx["meeting"].update(meeting)
    return ctx


@pytest.fixture(scope="module")
def base() -> bytes:
    return h.rendered_protocol()


# --------------------------------------------------------------------------- template


def test_committed_template_is_what_the_script_generates():
    spec = importlib.util.spec_from_file_location("make_protocol_template", TEMPLATE.with_name("make_protocol_template.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    first, second = mod.build_bytes(), mod.build_bytes()
    assert first == second, "template generation is not reproducible"
    assert first == TEMPLATE.read_bytes(), "run python templates/make_protocol_template.py and commit the result"


def test_template_opens_in_python_docx_and_has_the_required_structure():
    doc = Document(str(TEMPLATE))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "Beslutsprotokoll" in text and "KCG – Key Cities Group" in text
    header = doc.sections[0].header.paragraphs[0].text
    assert "{{ network.short }}" in header and "Beslutsprotokoll" in header
    assert "{% for rule in rules %}" in doc.sections[0].footer.paragraphs[0].text
    heads = [[c.text for c in t.rows[0].cells] for t in doc.tables]
    assert ["Beslut", "Ansvarig", "Klart till"] in heads
    assert ["Stad", "Namn", "Organisation", "Närvarande"] in heads


def test_shipped_template_passes_check_template():
    assert check_template(TEMPLATE) == []


# --------------------------------------------------------------------------- rendering


def test_render_fills_every_section(base):
    doc = Document(io.BytesIO(base))
    body = "\n".join(p.text for p in doc.paragraphs)
    assert "Månadsmöte måndag 6 februari 2023 – Tema 1: Policy & Branschpraxis – del 1" in body
    for i, point in enumerate(SAMPLE_CONTEXT["agenda"], start=1):
        assert f"{i}. {point}" in body
    assert "Samarbete och handlingskraft för resultat · Öppenhet" in body
    assert "Mötesreferens: 2023-02 / k7q2m9x4" in body
    assert doc.sections[0].header.paragraphs[0].text == "KCG – Key Cities Group\t\tBeslutsprotokoll"
    footer = doc.sections[0].footer.paragraphs[0].text
    assert footer == (
        "Spelregler: 1. Allas åsikter är lika viktiga  ·  2. Alla funderingar skall upp på bordet"
        "  ·  3. Alla är ansvariga för resultatet"
    )
    facts = {r.cells[0].text: r.cells[1].text for r in doc.tables[0].rows}
    assert facts["Datum"] == "måndag 6 februari 2023"
    assert facts["Tid"] == "09:00–10:30"
    assert facts["Värd"] == "Daniel Swärd, Gävle City"
    assert facts["Reservvärd"] == "David Nilsson, NKPG City"
    assert facts["Plats / länk"] == SAMPLE_CONTEXT["meeting"]["link"]
    nxt = {r.cells[0].text: r.cells[1].text for r in doc.tables[-1].rows}
    assert nxt == {"Datum": "måndag 6 mars 2023", "Värd": "David Nilsson", "Tema": "Tema 2: Affärsplanering"}


def test_attendance_lists_all_members_by_city_with_known_answers(base):
    doc = Document(io.BytesIO(base))
    table = next(t for t in doc.tables if t.rows[0].cells[-1].text == "Närvarande")
    rows = [[c.text for c in r.cells] for r in table.rows[1:]]
    assert len(rows) == len(SAMPLE_CONTEXT["members"])
    cities = [r[0] for r in rows]
    assert cities == sorted(cities, key=str.lower)
    by_name = {r[1]: r[3] for r in rows}
    assert by_name["Daniel Swärd"] == "Ja"
    assert by_name["David Nilsson"] == "Nej"
    assert by_name["Pia Sandin"] == ""


def test_decisions_table_has_header_and_requested_empty_rows():
    for n in (0, 3, 6):
        doc = Document(io.BytesIO(h.rendered_protocol(dict(copy.deepcopy(SAMPLE_CONTEXT), decision_rows=n))))
        table = h.decisions_table(doc)
        assert [c.text for c in table.rows[0].cells] == ["Beslut", "Ansvarig", "Klart till"]
        assert len(table.rows) == 1 + n
        assert all(c.text == "" for r in table.rows[1:] for c in r.cells)


def test_special_characters_are_escaped_not_lost():
    out = h.rendered_protocol(ctx_with(theme="A & B <c>", comment='"Citat" & <b>fet</b>'))
    xml = h.read_part(out, "word/document.xml").decode()
    assert "A &amp; B &lt;c&gt;" in xml
    doc = Document(io.BytesIO(out))
    facts = {r.cells[0].text: r.cells[1].text for r in doc.tables[0].rows}
    assert facts["Tema"] == "Tema 1: A & B <c>"
    assert facts["Kommentar"] == '"Citat" & <b>fet</b>'


def test_newline_in_comment_becomes_a_line_break():
    out = h.rendered_protocol(ctx_with(comment="Rad ett\nRad två"))
    xml = h.read_part(out, "word/document.xml").decode()
    assert "Rad ett</w:t><w:br/><w:t" in xml


def test_sparse_context_renders_the_empty_branches():
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    ctx["meeting"].update(place="Stadshuset", link="", theme_no=None, backup_host=None, guests=["Anna Gäst"])
    ctx["next_meeting"] = None
    doc = Document(io.BytesIO(h.rendered_protocol(ctx)))
    facts = {r.cells[0].text: r.cells[1].text for r in doc.tables[0].rows}
    assert facts["Reservvärd"] == "–"
    assert facts["Plats / länk"] == "Stadshuset"
    assert facts["Tema"] == "Policy & Branschpraxis – del 1"
    assert facts["Gäster"] == "Anna Gäst"
    att = [[c.text for c in r.cells] for r in doc.tables[1].rows]
    assert att[-1] == ["Gäst", "Anna Gäst", "", "Ja"]
    assert all(r.cells[1].text == "" for r in doc.tables[-1].rows)


def test_missing_context_key_raises_strict_undefined():
    renderer = h.renderer()
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    del ctx["rules"]
    with pytest.raises(jinja2.UndefinedError, match="rules"):
        renderer.render(ctx)
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    del ctx["meeting"]["host"]
    with pytest.raises(jinja2.UndefinedError, match="host"):
        renderer.render(ctx)


def test_renders_are_independent_and_match_plain_docxtpl():
    renderer = ProtocolRenderer(TEMPLATE)
    a = renderer.render(ctx_with(theme="UNIKT-ETT"))
    b = renderer.render(ctx_with(theme="Andra"))
    assert b"UNIKT-ETT" in h.read_part(a, "word/document.xml")
    assert b"UNIKT-ETT" not in h.read_part(b, "word/document.xml")
    assert renderer.render(ctx_with(theme="Andra")) == b  # deterministic
    tpl = DocxTemplate(TEMPLATE)
    tpl.render(ctx_with(theme="Andra"), autoescape=True)
    buf = io.BytesIO()
    tpl.save(buf)
    ours, theirs = read_minutes("a.docx", b), read_minutes("b.docx", buf.getvalue())
    assert ours.text == theirs.text
    theirs_doc, ours_doc = Document(buf), Document(io.BytesIO(b))
    assert ours_doc.sections[0].footer.paragraphs[0].text == theirs_doc.sections[0].footer.paragraphs[0].text
    with zipfile.ZipFile(io.BytesIO(a)) as za, zipfile.ZipFile(buf) as zt:
        assert sorted(za.namelist()) == sorted(zt.namelist())
        assert za.namelist()[0] == "[Content_Types].xml"
        assert za.testzip() is None


# --------------------------------------------------------------------------- check_template


def _edited_template(tmp_path: Path, *paragraphs: str) -> Path:
    doc = Document(str(TEMPLATE))
    for text in paragraphs:
        doc.add_paragraph(text)
    path = tmp_path / "edited.docx"
    doc.save(str(path))
    return path


def test_check_template_names_unknown_placeholders(tmp_path):
    path = _edited_template(tmp_path, "Värd: {{ meeting.hostt }}", "{{ motesdatum }}", "{{ meeting.host.nmae }}",
                            "{% for m in members %}{{ m.telefon }}{% endfor %}")
    problems = check_template(path)
    joined = "\n".join(problems)
    for placeholder in ("meeting.hostt", "motesdatum", "meeting.host.nmae", "m.telefon"):
        assert f"'{placeholder}'" in joined
    assert all("unknown placeholder" in p or "trial render" in p for p in problems)


def test_check_template_accepts_known_placeholders_and_locals(tmp_path):
    path = _edited_template(
        tmp_path,
        "{{ meeting.host.email }} {{ meeting['theme'] }} {{ members | length }}",
        "{% set n = decision_rows %}{{ n }}{% for g in meeting.guests %}{{ g | upper }}{% endfor %}",
    )
    assert check_template(path) == []


def test_check_template_reports_bad_jinja_syntax(tmp_path):
    path = _edited_template(tmp_path, "Tema: {{ meeting.theme }")
    problems = check_template(path)
    assert len(problems) == 1
    assert "syntax error" in problems[0] and "Tema" in problems[0]
    path = _edited_template(tmp_path, "{% if meeting.link %}Länk")
    assert any("syntax error" in p and "endif" in p for p in check_template(path))


def test_check_template_catches_a_value_that_is_none_in_some_meetings(tmp_path):
    path = _edited_template(tmp_path, "Reserv: {{ meeting.backup_host.name }}")
    problems = check_template(path)
    assert len(problems) == 1
    assert "sparse" in problems[0] and "{{ meeting.backup_host.name }}" in problems[0]


def test_check_template_rejects_what_is_not_a_docx(tmp_path):
    (tmp_path / "t.docx").write_bytes(h.make_pdf(["hej"]))
    assert "cannot be used as a template" in check_template(tmp_path / "t.docx")[0]
    (tmp_path / "m.docx").write_bytes(h.macro_docm(TEMPLATE.read_bytes()))
    assert "macro" in check_template(tmp_path / "m.docx")[0]
    assert "cannot read" in check_template(tmp_path / "missing.docx")[0]


def test_schema_and_sample_context_agree():
    def same_shape(schema, value, path):
        if value is None:
            return
        if isinstance(schema, dict):
            assert set(value) == set(schema), path
            for k in schema:
                same_shape(schema[k], value[k], f"{path}.{k}")
        elif isinstance(schema, list):
            for v in value:
                same_shape(schema[0], v, path + "[]")
        else:
            assert isinstance(value, schema), path

    same_shape(CONTEXT_SCHEMA, SAMPLE_CONTEXT, "context")
    assert len(SAMPLE_CONTEXT["agenda"]) == 7 and len(SAMPLE_CONTEXT["rules"]) == 3


# --------------------------------------------------------------------------- read_minutes


def test_filled_decisions_are_read_back(base):
    filled = h.fill_decisions(
        base,
        [("Ta fram gemensam branschpraxis", "Daniel Swärd", "2023-03-06"),
         ("Boka studieresa", "Lena Dalerup", "oktober")]
        + [(f"Beslut {i}", "Pia", "") for i in range(3, 9)],  # more rows than drawn: host adds rows
    )
    minutes = read_minutes("KCG 2023-02 beslutsprotokoll.docx", filled)
    assert isinstance(minutes, Minutes) and minutes.kind == "docx"
    assert minutes.filename == "KCG 2023-02 beslutsprotokoll.docx"
    assert minutes.decisions[:2] == [
        Decision("Ta fram gemensam branschpraxis", "Daniel Swärd", "2023-03-06"),
        Decision("Boka studieresa", "Lena Dalerup", "oktober"),
    ]
    assert len(minutes.decisions) == 8 and minutes.decisions[-1] == Decision("Beslut 8", "Pia", "")
    assert "Daniel Swärd" in minutes.text and "Tema 1: Policy & Branschpraxis" in minutes.text


def test_empty_rows_give_no_decisions(base):
    assert read_minutes("p.docx", base).decisions == []


def test_decision_header_is_found_case_and_punctuation_tolerant():
    doc = Document()
    doc.add_paragraph("Protokoll")
    other = doc.add_table(rows=2, cols=3)
    other.rows[0].cells[0].text = "Punkt"
    t = doc.add_table(rows=4, cols=3)
    for cell, text in zip(t.rows[0].cells, ("BESLUT:", "Ansvarig person", "Klart till (datum)")):
        cell.text = text
    for cell, text in zip(t.rows[2].cells, ("Nytt  beslut", "Maria", "1/6")):
        cell.text = text
    t.rows[3].cells[0].add_paragraph("andra stycket")
    t.rows[3].cells[0].paragraphs[0].text = "Första stycket"
    buf = io.BytesIO()
    doc.save(buf)
    decisions = read_minutes("x.docx", buf.getvalue()).decisions
    assert decisions == [Decision("Nytt  beslut", "Maria", "1/6"), Decision("Första stycket\nandra stycket", "", "")]


def test_tracked_insertions_are_kept_and_deletions_dropped(base):
    minutes = read_minutes("spårade.docx", h.tracked_changes(base))
    assert minutes.decisions == [Decision("Ta fram gemensam policy", "Daniel Swärd", "2023-03-06")]
    assert "en gammal" not in minutes.text


def test_name_without_known_extension_is_judged_by_content(base):
    assert read_minutes("ATT00001.bin", base).kind == "docx"
    assert read_minutes("protokoll", h.make_pdf(["Beslutsprotokoll"])).kind == "pdf"


def test_hyperlinks_and_local_template_links_are_accepted(base):
    for data in (h.with_relationship(base, "hyperlink", "https://example.se/a?b=1&amp;c=2"),
                 h.with_relationship(base, "attachedTemplate", "file:///C:/Users/x/Normal.dotm"),
                 h.with_relationship(base, "image", r"C:\Bilder\logo.png")):
        assert read_minutes("p.docx", data).kind == "docx"


def test_odt_is_read_with_decisions_and_without_deleted_text():
    minutes = read_minutes("protokoll.odt", h.make_odt([("Ta fram policy", "Pia Sandin", "2023-05-01")],
                                                       deleted="struken mening"))
    assert minutes.kind == "odt"
    assert minutes.decisions == [Decision("Ta fram policy", "Pia Sandin", "2023-05-01")]
    assert "Tema: Affärsplanering" in minutes.text and "struken mening" not in minutes.text


def test_pdf_text_and_best_effort_decisions():
    pdf = h.make_pdf([
        "Beslutsprotokoll – Tema 3: Omsättningsstatistik",
        "Beslut",
        [(50, "Beslut"), (330, "Ansvarig"), (450, "Klart till")],
        [(50, "Samla in statistik"), (330, "Maria"), (450, "2023-05-01")],
        [(50, "från alla städer")],
        [(50, "Dela rapporten"), (330, "Björn"), (450, "2023-06-")],
        [(450, "30")],
        "",
        "Nästa möte",
    ])
    minutes = read_minutes("protokoll.pdf", pdf)
    assert minutes.kind == "pdf"
    assert "Tema 3: Omsättningsstatistik" in minutes.text
    assert minutes.decisions == [
        Decision("Samla in statistik från alla städer", "Maria", "2023-05-01"),
        Decision("Dela rapporten", "Björn", "2023-06-30"),
    ]


def test_pdf_with_only_an_owner_password_is_readable():
    pdf = h.encrypted_pdf(h.make_pdf(["Beslutsprotokoll"]), user_password="")
    assert "Beslutsprotokoll" in read_minutes("p.pdf", pdf).text


HOSTILE = {
    # id: (filename, factory(base) -> bytes, expected code)
    "docm_macro": ("protokoll.docm", h.macro_docm, "macro"),
    "docm_renamed_docx": ("protokoll.docx", h.macro_docm, "macro"),
    "vba_part_only": ("protokoll.docx", h.vba_part_only, "macro"),
    "odt_macro": ("protokoll.odt", lambda b: h.make_odt([], macro=True), "macro"),
    "encrypted_docx": ("protokoll.docx", lambda b: h.encrypted_office(), "encrypted"),
    "encrypted_odt": ("protokoll.odt", lambda b: h.make_odt([], encrypted=True), "encrypted"),
    "encrypted_pdf": ("protokoll.pdf", lambda b: h.encrypted_pdf(h.make_pdf(["hemligt"])), "encrypted"),
    "encrypted_doc": ("protokoll.doc", lambda b: h.legacy_doc(encrypted=True), "encrypted"),
    "legacy_doc": ("protokoll.doc", lambda b: h.legacy_doc(), "legacy_doc"),
    "truncated_docx": ("protokoll.docx", h.truncated, "corrupt"),
    "garbage_after_zip_magic": ("protokoll.docx", lambda b: b"PK\x03\x04" + b"\x00" * 200, "corrupt"),
    "broken_pdf": ("protokoll.pdf", lambda b: b"%PDF-1.7\n" + b"\x00garbage" * 50, "corrupt"),
    "pdf_named_docx": ("protokoll.docx", lambda b: h.make_pdf(["Beslutsprotokoll"]), "wrong_type"),
    "docx_named_pdf": ("protokoll.pdf", lambda b: b, "wrong_type"),
    "zip_many_entries": ("protokoll.docx", h.many_entries, "zip_bomb"),
    "zip_high_ratio": ("protokoll.docx", h.high_ratio_entry, "zip_bomb"),
    "declared_huge_image": ("protokoll.docx", h.declared_huge_part, "zip_bomb"),
    "external_image_http": ("protokoll.docx", lambda b: h.with_relationship(b, "image", "http://evil.example/x.png"), "external_link"),
    "external_image_unc": ("protokoll.docx", lambda b: h.with_relationship(b, "image", r"\\evil\share\x.png"), "external_link"),
    "remote_template": ("protokoll.docx", lambda b: h.with_relationship(b, "attachedTemplate", "https://evil.example/t.dotm"), "external_link"),
    "billion_laughs": ("protokoll.docx", h.billion_laughs, "unsafe_xml"),
    "empty": ("protokoll.docx", lambda b: b"", "empty"),
    "plain_text": ("protokoll.txt", lambda b: b"Beslut: inga", "unsupported"),
    "rtf": ("protokoll.rtf", lambda b: b"{\\rtf1\\ansi hej}", "unsupported"),
    "xlsx": ("protokoll.xlsx", lambda b: h.rezip(b, add={"xl/workbook.xml": b"<workbook/>"},
                                                  replace={"word/document.xml": None, "_rels/.rels": None}), "unsupported"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_rejected_with_a_reason(case, base):
    filename, factory, code = HOSTILE[case]
    with pytest.raises(MinutesRejected) as info:
        read_minutes(filename, factory(base))
    exc = info.value
    assert exc.code == code, exc.detail
    assert exc.code in REJECT_CODES
    assert exc.message_sv.endswith(".") and len(exc.message_sv) < 220
    assert exc.detail and exc.detail != exc.code


def test_oversized_file_is_rejected_before_anything_else(base):
    with pytest.raises(MinutesRejected) as info:
        read_minutes("protokoll.docx", base, max_bytes=1000)
    assert info.value.code == "too_large"
    assert "över 1 kB" in info.value.message_sv
    with pytest.raises(MinutesRejected) as info:
        read_minutes("protokoll.docx", b"x" * (21 * 1024 * 1024))
    assert info.value.code == "too_large" and "20 MB" in info.value.message_sv


def test_wrong_type_message_names_both_types():
    with pytest.raises(MinutesRejected) as info:
        read_minutes("protokoll.docx", h.make_pdf(["x"]))
    assert ".docx" in info.value.message_sv and "PDF" in info.value.message_sv


def test_macro_message_is_the_agreed_swedish_sentence(base):
    with pytest.raises(MinutesRejected) as info:
        read_minutes("p.docm", h.macro_docm(base))
    assert info.value.message_sv == (
        "Filen innehåller makron (.docm). Spara protokollet som vanligt Word-dokument (.docx) "
        "eller PDF och skicka det igen."
    )
