"""The adopted plan is read back from the January protocol however the host saves it:
the template filled in with python-docx (.docx), that document saved by LibreOffice
as .odt and as .docx (a LibreOffice-made file), each after the rebuild the intake
files (the reader works on the rebuilt bytes); and the coordinator's Word table
("Årsplan 2024 – utkast.docx") the same ways. What the host wrote in the section
is what is read and checked."""

from __future__ import annotations

import copy
import io

import docx
import pytest
from support import hostile_files as h
from support.helpers import renderer, shipped_config

from kcg_mail.core.plan_adoption import check_rows
from kcg_mail.documents.context import SAMPLE_CONTEXT
from kcg_mail.documents.minutes import read_minutes
from kcg_mail.documents.plan_table import read_plan_document, render_plan_table
from kcg_mail.documents.rebuild import rebuild

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROWS = [
    ("Februari 2024", "måndag 5 februari 2024", "Tema 1: Studieresa", "Maria Martinsson", "Monica Bruvik",
     "Månadsmöte (digitalt)"),
    ("Mars 2024", "måndag 4 mars 2024", "Tema 2: Gemensamt finansierad omvärldsanalys", "Daniel Swärd",
     "Lisa Thörn", "Månadsmöte (digitalt)"),
    ("Augusti 2024", "måndag 5 augusti 2024", "Tema 3: Mobilitet & citylogistik", "Monica Bruvik", "Pia Sandin",
     "Möte för alla"),
    ("Oktober 2024", "bestäms av samordnaren", "Studieresa", "Lena Dalerup", "Pia Sandin", "Studieresa"),
    ("Januari 2025", "bestäms av samordnaren", "Fysiskt möte 2025 – handlingsplan 2025", "Hanna Candell",
     "David Nilsson", "Fysiskt möte"),
]


def _protocol() -> bytes:
    """The January protocol as the product sends it, filled in at the workshop (python-docx)."""
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    ctx["plan"] = {
        "year": 2024,
        "focus": [{"area": "Omvärldsbevakning", "topic": "Studieresa", "votes": "22"}],
        "rows": [dict(zip(("month", "date", "theme", "host", "backup_host", "kind"), r)) for r in ROWS],
        "tasks": [{"what": "Beslutsprotokoll efter varje möte", "who": "Mötets värd", "when": "två arbetsdagar efter"}],
    }
    document = docx.Document(io.BytesIO(renderer().render(ctx)))
    table = next(t for t in document.tables if t.rows[0].cells[0].text == "Månad")
    # the workshop decides: March gets another host, a task is added
    table.rows[2].cells[3].paragraphs[0].runs[0].text = "Isabel Gölles"
    tasks = next(t for t in document.tables if t.rows[0].cells[0].text == "Vad")
    cells = tasks.add_row().cells
    for cell, text in zip(cells, ("Projektgrupp Trygghet: lägesrapport", "Lisa Thörn", "inför varje månadsmöte")):
        cell.text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def saved_ways(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    if not h.soffice():
        pytest.skip("LibreOffice (soffice) not installed: run .ci/install-libreoffice.sh")
    tmp = tmp_path_factory.mktemp("plan-lo")
    out: dict[str, tuple[str, bytes]] = {}
    cfg = shipped_config()
    table = render_plan_table(cfg.network.name, 2024, ROWS, signed="Björn Bergman, Svenska Stadskärnor")
    for label, data in (("protocol", _protocol()), ("table", table)):
        src = tmp / label / "in.docx"
        src.parent.mkdir()
        src.write_bytes(data)
        out[f"{label}-python-docx"] = ("docx", data)
        out[f"{label}-libreoffice-docx"] = ("docx", h.soffice_convert(src, "docx:MS Word 2007 XML",
                                                                      tmp / label / "docx").read_bytes())
        out[f"{label}-libreoffice-odt"] = ("odt", h.soffice_convert(src, "odt", tmp / label / "odt").read_bytes())
    return out


@pytest.mark.parametrize("way", ["protocol-python-docx", "protocol-libreoffice-docx", "protocol-libreoffice-odt",
                                 "table-python-docx", "table-libreoffice-docx", "table-libreoffice-odt"])
def test_the_plan_reads_back_from_every_way_of_saving(saved_ways, way):
    kind, data = saved_ways[way]
    if kind == "odt":
        assert data[30:38] == b"mimetype" and b"opendocument.text" in data[:100]
    rebuilt = rebuild(f"protokoll.{kind}", data)  # what the intake files and reads
    doc = read_plan_document(f"protokoll.{kind}", rebuilt.data)
    assert doc is not None
    expected = [list(r) for r in ROWS]
    if way.startswith("protocol"):
        expected[1][3] = "Isabel Gölles"
        assert doc.focus == (("Omvärldsbevakning", "Studieresa"),)
        assert ("Projektgrupp Trygghet: lägesrapport", "Lisa Thörn", "inför varje månadsmöte") in doc.tasks
        # the rest of the protocol reads as before: the plan's tables are not taken for decisions
        assert read_minutes(f"protokoll.{kind}", rebuilt.data).decisions == []
    assert [[r.month, r.date, r.theme, r.host, r.backup_host, r.kind] for r in doc.rows] == expected
    cfg = shipped_config()
    checked = check_rows(doc.rows, 2024, cfg.network.members, cfg.meetings.kind_labels)
    assert checked.ok, checked.problems
    assert checked.plan is not None
    by_month = {m.month: m for m in checked.plan.meetings}
    assert set(by_month) == {"2024-02", "2024-03", "2024-08", "2024-10", "2025-01"}
    assert by_month["2024-03"].host == ("isabel" if way.startswith("protocol") else "daniel")
    assert by_month["2024-08"].kind == "all_members" and by_month["2024-10"].tentative
    assert by_month["2024-02"].theme_no == 1 and by_month["2024-02"].theme == "Studieresa"
