"""The Word ballot filled in and read back (kcg_mail.documents.round_forms):
filled in with python-docx, with the structures Word writes into a cell
(runs split by the spelling checker, a content control, a tracked change), and
opened and saved again by LibreOffice (soffice headless, like
tests/e2e/test_rebuild_libreoffice.py). The votes are checked by the core as
for a mail, so "fyra" and "4 röster" in a cell count like "4"."""

from __future__ import annotations

import io
import re

import docx
import pytest
from support import hostile_files as h

from kcg_mail.core import ballot as bl
from kcg_mail.core.round import Area
from kcg_mail.documents.ooxml import MinutesRejected
from kcg_mail.documents.round_forms import ballot_form, read_ballot_form
from kcg_mail.entrypoints.demo_hosts import fill_ballot

AREAS = [Area(name="Omvärldsbevakning"), Area(name="Kollegialt stöd")]
TOPICS = [bl.Topic(1, "Omvärldsbevakning", "Studieresa"), bl.Topic(2, "Omvärldsbevakning", "Finansiering"),
          bl.Topic(3, "Omvärldsbevakning", "Framtidens stadskärna"), bl.Topic(4, "Kollegialt stöd", "Fadder"),
          bl.Topic(5, "Kollegialt stöd", "Gränsdragning SSK, CU, KCG")]


def blank() -> bytes:
    return ballot_form("Key Cities Group", 2024, AREAS, TOPICS, 10)


def votes(data: bytes) -> bl.BallotCheck:
    return bl.validate_ballot(read_ballot_form("KCG Röstsedel 2024.docx", data), TOPICS, 10)


def rewrite(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The document with its body text changed by ``change`` (str -> str)."""
    body = h.read_part(data, "word/document.xml").decode("utf-8")
    return h.rezip(data, replace={"word/document.xml": change(body).encode("utf-8")})


def test_the_blank_ballot_lists_every_topic_with_an_empty_votes_column():
    doc = docx.Document(io.BytesIO(blank()))
    rows = [[c.text for c in r.cells] for t in doc.tables for r in t.rows]
    assert rows[0] == ["Nr", "Omvärldsbevakning", "Röster"]
    assert ["1", "Studieresa", ""] in rows and ["5", "Gränsdragning SSK, CU, KCG", ""] in rows
    intro = "\n".join(p.text for p in doc.paragraphs)
    assert "tio röster" in intro and "kolumnen Röster" in intro


def test_filled_in_with_python_docx_digits_words_and_units():
    c = votes(fill_ballot(blank(), {1: "4", 2: "fyra", 4: "2 röster"}))
    assert c.ok, c.problems
    assert c.votes == {1: 4, 2: 4, 4: 2}


def test_what_word_writes_into_a_cell_reads_the_same():
    marked = fill_ballot(blank(), {1: "@@A@@", 3: "@@B@@", 5: "@@C@@"})

    def word(xml: str) -> str:
        run = r"<w:r>(?:(?!</w:r>).)*?<w:t>{}</w:t></w:r>"
        # the spelling checker splits a word into runs; a content control wraps it
        xml = re.sub(run.format("@@A@@"), '<w:sdt><w:sdtPr><w:alias w:val="Röster"/></w:sdtPr><w:sdtContent>'
                     '<w:r><w:t>fy</w:t></w:r><w:proofErr w:type="spellStart"/><w:r><w:t>ra</w:t></w:r>'
                     '<w:proofErr w:type="spellEnd"/></w:sdtContent></w:sdt>', xml, flags=re.S)
        # a tracked change: 6 deleted, 3 inserted (the visible text is 3)
        xml = re.sub(run.format("@@B@@"), '<w:del w:id="1" w:author="Lena"><w:r><w:delText>6</w:delText></w:r></w:del>'
                     '<w:ins w:id="2" w:author="Lena"><w:r><w:t>3</w:t></w:r></w:ins>', xml, flags=re.S)
        xml = re.sub(run.format("@@C@@"), '<w:r><w:t xml:space="preserve"> 3 </w:t></w:r>', xml, flags=re.S)
        assert "@@" not in xml
        return xml

    c = votes(rewrite(marked, word))
    assert c.ok, c.problems
    assert c.votes == {1: 4, 3: 3, 5: 3}


def test_an_added_column_or_a_renamed_header_still_reads():
    doc = docx.Document(io.BytesIO(fill_ballot(blank(), {1: "6", 4: "4"})))
    for table in doc.tables:
        table.add_column(docx.shared.Cm(3)).cells[0].text = "Kommentar"
        table.rows[0].cells[2].text = "Röster (antal)"
        table.rows[1].cells[3].text = "Viktigast för oss"
    out = io.BytesIO()
    doc.save(out)
    assert votes(out.getvalue()).votes == {1: 6, 4: 4}


def test_a_cell_that_is_not_a_count_is_not_guessed():
    c = votes(fill_ballot(blank(), {1: "X", 2: "många"}))
    assert not c.ok
    assert "Vid nummer 1 står ”X”. Skriv antalet röster som ett helt tal, t.ex. ”1: 2”." in c.problems
    over = votes(fill_ballot(blank(), {1: "6", 2: "sex"}))
    assert over.problems == ("Vi fick 12 röster från dig, men var och en har tio.",)


def test_another_document_is_answered_in_swedish():
    doc = docx.Document()
    doc.add_paragraph("Hej! Mina röster: 1: 4")
    out = io.BytesIO()
    doc.save(out)
    with pytest.raises(MinutesRejected) as exc:
        read_ballot_form("mina röster.docx", out.getvalue())
    assert "Bilagan är inte röstsedeln" in exc.value.message_sv


@pytest.mark.server
@pytest.mark.slow
def test_saved_again_by_libreoffice(tmp_path):
    if not h.soffice():
        pytest.skip("LibreOffice (soffice) not installed: run .ci/install-libreoffice.sh")
    filled = fill_ballot(blank(), {1: "4", 3: "tre", 5: "3 röster"})
    src = tmp_path / "in" / "KCG Röstsedel 2024.docx"
    src.parent.mkdir()
    src.write_bytes(filled)
    saved = h.soffice_convert(src, "docx:MS Word 2007 XML", tmp_path / "out").read_bytes()
    assert saved != filled  # LibreOffice wrote its own package
    c = votes(saved)
    assert c.ok, c.problems
    assert c.votes == {1: 4, 3: 3, 5: 3}
    # filled in LibreOffice's own format first, then saved as Word
    odt = h.soffice_convert(src, "odt", tmp_path / "odt")
    back = h.soffice_convert(odt, "docx:MS Word 2007 XML", tmp_path / "back").read_bytes()
    assert votes(back).votes == {1: 4, 3: 3, 5: 3}
