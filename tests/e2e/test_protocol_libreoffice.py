"""Rendered protocols through real LibreOffice (headless): PDF export and a host who
re-saves the .docx with LibreOffice instead of Word.

Skipped only when soffice is missing on a developer machine; with CI set it must run
(CI installs it with .ci/install-libreoffice.sh).
"""

from __future__ import annotations

import copy
import io
import os

import pytest
from pypdf import PdfReader
from support import hostile_files as h  # noqa: E402

from kcg_mail.documents.context import SAMPLE_CONTEXT  # noqa: E402
from kcg_mail.documents.minutes import Decision, read_minutes  # noqa: E402

if h.soffice() is None:
    if os.environ.get("CI"):
        raise RuntimeError("soffice is missing in CI: run .ci/install-libreoffice.sh first")
    pytest.skip("LibreOffice (soffice) not installed", allow_module_level=True)

pytestmark = pytest.mark.server

DECISIONS = [
    ("Ta fram gemensam policy för branschpraxis", "Daniel Swärd", "2023-03-06"),
    ("Boka studieresa vecka 39", "Lena Dalerup", "2023-06-01"),
]


@pytest.fixture(scope="module")
def filled() -> bytes:
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    ctx["meeting"]["theme"] = "Mobilitet & citylogistik <del 2>"
    ctx["meeting"]["theme_no"] = 6
    return h.fill_decisions(h.rendered_protocol(ctx), DECISIONS)


def test_protocol_converts_to_pdf_showing_the_filled_in_values(filled, tmp_path):
    src = tmp_path / "in" / "KCG 2023-08 beslutsprotokoll.docx"
    src.parent.mkdir()
    src.write_bytes(filled)
    pdf = h.soffice_convert(src, "pdf", tmp_path / "out")
    reader = PdfReader(io.BytesIO(pdf.read_bytes()))
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "Tema 6: Mobilitet & citylogistik <del 2>" in flat
    assert "Daniel Swärd, Gävle City" in flat
    assert "måndag 6 februari 2023" in flat
    assert "Spelregler: 1. Allas åsikter är lika viktiga" in flat
    assert "Beslut Ansvarig Klart till" in flat
    # And the minutes reader gets the decisions back from LibreOffice's PDF (best effort
    # in general, but it must work for our own template).
    minutes = read_minutes(pdf.name, pdf.read_bytes())
    assert minutes.kind == "pdf"
    assert minutes.decisions == [Decision(*d) for d in DECISIONS]


def test_docx_resaved_by_libreoffice_is_read_back(filled, tmp_path):
    resaved = h.libreoffice_docx(filled, tmp_path)
    assert resaved != filled
    minutes = read_minutes("protokoll.docx", resaved)
    assert minutes.kind == "docx"
    assert minutes.decisions == [Decision(*d) for d in DECISIONS]
    assert "Tema 6: Mobilitet & citylogistik <del 2>" in minutes.text
    assert "Daniel Swärd" in minutes.text


def test_handlingsplan_opens_in_libreoffice_as_an_a4_draft_on_every_page(tmp_path):
    from kcg_mail.core.plan_adoption import Task
    from kcg_mail.documents.round_action_plan import ActionPlan, PlanRow, TopicVotes, render_action_plan

    ap = ActionPlan(
        year=2024, network="Key Cities Group", short="KCG", purpose="Samverkan mellan Sveriges största stadskärnor.",
        values=["Lustfyllt och roligt"], rules=["Allas åsikter är lika viktiga"],
        members=[("Pia Sandin", "Malmö Citysamverkan"), ("Aljoša Lagumdžija", "Södertälje City")],
        areas={"Omvärldsbevakning": [TopicVotes(1, "Studieresa", 22, True), TopicVotes(2, "Finansiering", 3, False)],
               "Kollegialt stöd": [TopicVotes(3, "Roterande faddergrupper", 1, False)]},
        plan=[PlanRow(f"{m} 2024", "måndag 5 februari", "Månadsmöte (digitalt)",
                      "Tema 1: Gemensamt finansierad omvärldsanalys eller via abonnemang", "Aljoša (Jessica)")
              for m in ("Februari", "Mars", "April", "Maj", "Juni", "Augusti", "September", "November", "December")]
        + [PlanRow("Oktober 2024", "bestäms av samordnaren", "Studieresa", "Studieresa", "Lena (Pia)")],
        agenda=["Välkomna", "Övriga frågor"], ballots=14,
        tasks=[Task("Beslutsprotokoll efter varje möte, på nätverkets mall", "Mötets värd", "senast två arbetsdagar efter mötet")],
        adopt_at="vid det fysiska mötet tisdag 2 januari 2024", min_share=0.05)
    src = tmp_path / "in" / "Handlingsplan 2024.docx"
    src.parent.mkdir()
    src.write_bytes(render_action_plan(ap))
    pdf = h.soffice_convert(src, "pdf", tmp_path / "out")
    reader = PdfReader(io.BytesIO(pdf.read_bytes()))
    assert len(reader.pages) >= 2
    for page in reader.pages:
        w, hgt = float(page.mediabox.width), float(page.mediabox.height)
        assert abs(w - 595.3) < 2 and abs(hgt - 841.9) < 2, (w, hgt)  # A4, not US Letter (612 x 792)
        assert "UTKAST – Handlingsplan 2024" in page.extract_text()
    flat = " ".join("\n".join(p.extract_text() for p in reader.pages).split())
    assert "Handlingsplan 2024 – utkast" in flat and "Vem gör vad och när" in flat
    assert "Tema 1: Gemensamt finansierad omvärldsanalys eller via abonnemang" in flat  # the column is wide enough
