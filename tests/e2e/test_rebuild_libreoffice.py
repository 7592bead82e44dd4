"""The rebuilt file is still the network's protocol, for every way a host saves it: the
template filled in by python-docx (with two pictures), that document saved by LibreOffice
as .docx and .odt, and exported by it as .pdf. After the rebuild the decisions table, the
agenda and the rest of the text and the pictures are all there, python-docx opens the
.docx, and LibreOffice opens the rebuilt .docx and .odt (converted to PDF, whose text and
pictures are checked)."""

from __future__ import annotations

import io
import zipfile

import pytest
from support import cdr_checks as cdr  # noqa: E402
from support import hostile_files as h  # noqa: E402
from support.cdr_checks import ROWS, picture, with_pictures  # noqa: E402

from kcg_mail.documents.minutes import read_minutes  # noqa: E402
from kcg_mail.documents.rebuild import rebuild  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]

AGENDA = "Dagordning"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    if not h.soffice():
        pytest.skip("LibreOffice (soffice) not installed: run .ci/install-libreoffice.sh")
    tmp = tmp_path_factory.mktemp("lo")
    filled = with_pictures(h.fill_decisions(h.rendered_protocol(), ROWS), picture("PNG", (400, 300)),
                           picture("JPEG", (1200, 800)))
    src = tmp / "in" / "protokoll.docx"
    src.parent.mkdir()
    src.write_bytes(filled)
    return {
        "python-docx": ("docx", filled),
        "libreoffice-docx": ("docx", h.soffice_convert(src, "docx:MS Word 2007 XML", tmp / "docx").read_bytes()),
        "libreoffice-odt": ("odt", h.soffice_convert(src, "odt", tmp / "odt").read_bytes()),
        "libreoffice-pdf": ("pdf", h.soffice_convert(src, "pdf:writer_pdf_Export", tmp / "pdf").read_bytes()),
    }


def _pictures(kind: str, data: bytes) -> int:
    if kind == "pdf":
        from pypdf import PdfReader

        return len({(i.name, i.image.size) for p in PdfReader(io.BytesIO(data)).pages for i in p.images})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        folder = "word/media/" if kind == "docx" else "Pictures/"
        return sum(1 for n in zf.namelist() if n.startswith(folder))


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("host", ["python-docx", "libreoffice-docx", "libreoffice-odt", "libreoffice-pdf"])
def test_the_rebuilt_protocol_keeps_decisions_agenda_text_and_pictures(hosts, host, tmp_path):
    kind, original = hosts[host]
    rebuilt = rebuild(f"protokoll.{kind}", original)
    assert rebuilt.kind == kind
    assert cdr.active(kind, rebuilt.data) == []
    before = read_minutes(f"protokoll.{kind}", original)
    after = read_minutes(f"protokoll.{kind}", rebuilt.data)
    assert [(d.decision, d.owner, d.due) for d in after.decisions] == ROWS
    assert AGENDA in after.text
    assert _words(after.text) == _words(before.text)
    assert _pictures(kind, rebuilt.data) == _pictures(kind, original) == 2
    if kind == "docx":
        from docx import Document

        doc = Document(io.BytesIO(rebuilt.data))
        assert len(doc.inline_shapes) == 2
        assert any(AGENDA in p.text for p in doc.paragraphs)
    if kind in ("docx", "odt"):  # LibreOffice opens the rebuilt file: its PDF shows the text and pictures
        src = tmp_path / f"rebuilt.{kind}"
        src.write_bytes(rebuilt.data)
        pdf = h.soffice_convert(src, "pdf:writer_pdf_Export", tmp_path / "out").read_bytes()
        shown = read_minutes("rebuilt.pdf", pdf)
        assert [(d.decision, d.owner, d.due) for d in shown.decisions] == ROWS
        assert AGENDA in shown.text
        from pypdf import PdfReader

        shown_pictures = {(i.name, i.image.size) for p in PdfReader(io.BytesIO(pdf)).pages for i in p.images}
        assert len(shown_pictures) == 2  # LibreOffice shares one resource dictionary between the pages
