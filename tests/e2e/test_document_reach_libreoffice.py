"""Ordinary documents made by real LibreOffice still pass the 'cannot reach outside'
checks: page-number and date fields, a web hyperlink (field and
relationship), saved as .docx, .odt and exported to PDF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import hostile_files as h  # noqa: E402

from kcg_mail.documents.minutes import Decision, read_minutes  # noqa: E402

if h.soffice() is None:
    if os.environ.get("CI"):
        raise RuntimeError("soffice is missing in CI: run .ci/install-libreoffice.sh first")
    pytest.skip("LibreOffice (soffice) not installed", allow_module_level=True)

pytestmark = [pytest.mark.server, pytest.mark.slow]

DECISIONS = [("Ta fram gemensam policy", "Daniel Swärd", "2023-03-06")]


@pytest.fixture(scope="module")
def ordinary(tmp_path_factory) -> Path:
    """Our protocol, filled in, with what hosts put in minutes: a page number in the
    footer, a date field in the header, a web link as a HYPERLINK field and one as a
    hyperlink relationship."""
    data = h.fill_decisions(h.rendered_protocol(), DECISIONS)
    data = h.field_in_footer_simple(data, "PAGE")
    data = h.field_in_header(data, ' DATE \\@ "yyyy-MM-dd" ')
    data = h.field_in_document(data, ' HYPERLINK "https://www.keycities.example.se/protokoll" ')
    data = h.hyperlink_in_body(data)
    read_minutes("in.docx", data)  # the input itself passes
    src = tmp_path_factory.mktemp("lo") / "in" / "protokoll.docx"
    src.parent.mkdir(parents=True)
    src.write_bytes(data)
    return src


@pytest.mark.parametrize("fmt,ext", [("docx:MS Word 2007 XML", "docx"), ("odt", "odt"), ("pdf", "pdf")])
def test_libreoffice_made_documents_with_fields_and_links_pass(ordinary, tmp_path, fmt, ext):
    out = h.soffice_convert(ordinary, fmt, tmp_path / "out")
    data = out.read_bytes()
    if ext != "pdf":
        # LibreOffice kept the fields and the link, so the checks really looked at them
        import io
        import zipfile  # noqa: E401

        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml = b"".join(zf.read(n) for n in zf.namelist() if n.endswith(".xml") or n.endswith(".rels"))
        assert b"keycities.example.se" in xml or b"www.example.se" in xml
    else:
        # LibreOffice writes a plain-view /OpenAction (a destination): the check judged it
        assert b"/OpenAction" in data
    minutes = read_minutes(out.name, data)
    assert minutes.kind == ext
    assert minutes.decisions == [Decision(*DECISIONS[0])]
