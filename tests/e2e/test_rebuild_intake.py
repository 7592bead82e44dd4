"""The rebuild wired into the REAL intake on the Maildir transport: what is filed in the
archive, what members get attached, and what the decision log is read from is the rebuilt
file; the host's original is kept only in local quarantine storage under the work
directory. With the deny-list layer switched off, hostile files still reach members with
nothing active in them: the rebuild alone keeps it out."""

from __future__ import annotations

import email
import io
import zipfile
from datetime import timedelta
from email.policy import SMTP, default
from pathlib import Path

import pytest
from support import cdr_checks as cdr  # noqa: E402
from support import hostile_files as h  # noqa: E402
from support.helpers import (  # noqa: E402
    at,
    attachment_of,
    close,
    config_with,
    make_app,
    meeting,
    recipients,
    sent_with_action,
    shipped_config,
)

from kcg_mail.documents import minutes as minutes_module  # noqa: E402
from kcg_mail.documents.inflate import inflate_package  # noqa: E402
from kcg_mail.documents.minutes import read_minutes  # noqa: E402
from kcg_mail.documents.ooxml import MinutesRejected  # noqa: E402
from kcg_mail.documents.rebuild import rebuild  # noqa: E402
from kcg_mail.entrypoints.demo import host_reply  # noqa: E402
from kcg_mail.services.daily import run_daily  # noqa: E402
from kcg_mail.services.intake import run_intake  # noqa: E402

FEB = meeting("2023-02")
_CTYPE = {"docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          "odt": "application/vnd.oasis.opendocument.text", "pdf": "application/pdf"}


def with_attachment(raw: bytes, filename: str, data: bytes) -> bytes:
    """The host's genuine reply with its attachment swapped for ``data``."""
    msg = email.message_from_bytes(raw, policy=SMTP)
    body = msg.get_body(("plain",)).get_content()
    msg.clear_content()
    msg.set_content(body)
    maintype, _, subtype = _CTYPE[filename.rsplit(".", 1)[1]].partition("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _reply(tmp_path: Path):
    app = make_app(tmp_path, config_with(shipped_config(), ["2023-02"]))
    run_daily(app, at(FEB.date - timedelta(days=3)))  # the template goes out
    day = FEB.date + timedelta(days=1)
    return app, day, host_reply(app, FEB, at(day, 10))


def _distributed(tmp_path: Path) -> tuple[str, bytes]:
    [dist] = sent_with_action(tmp_path, "distribute")
    assert recipients(dist) == {p.email for p in shipped_config().network.active_members}
    msg = email.message_from_bytes(dist.as_bytes(), policy=default)
    [att] = list(msg.iter_attachments())
    return att.get_filename(), att.get_content()


def _archived(tmp_path: Path) -> list[Path]:
    root = tmp_path / "dropbox"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".docx", ".odt", ".pdf"))


def test_what_is_filed_distributed_and_read_is_the_rebuilt_file(tmp_path):
    app, day, raw = _reply(tmp_path)
    try:
        name, original = attachment_of(raw)
        original = h.packager_ole_bat(original)  # passes the deny-list: only the rebuild takes it out
        read_minutes(name, original)
        app.mail.deliver(with_attachment(raw, name, original), "reply.eml")
        report = run_intake(app, at(day, 12))
        assert [x.outcome for x in report.handled] == ["minutes"], report
        expected = rebuild(name, original).data
        [filed] = _archived(tmp_path)
        assert filed.read_bytes() == expected
        assert _distributed(tmp_path) == (filed.name, expected)
        assert cdr.docx_active(expected) == [] and cdr.docx_active(original) != []
        recorded = [(d["decision"], d["owner"], d["due"]) for d in app.state.decisions()]
        assert recorded == [(d.decision, d.owner, d.due) for d in read_minutes(name, expected).decisions] != []
        # the original: only in local quarantine storage, never in the shared archive
        kept = [p for p in (tmp_path / "quarantine" / "originals").rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in kept] == [original]
        assert oct(kept[0].stat().st_mode & 0o777) == "0o600"
        assert not any(p.read_bytes() == original for p in (tmp_path / "dropbox").rglob("*") if p.is_file())
        import hashlib
        import json

        note = json.loads(app.state.get(f"original:2023-02:{hashlib.sha256(expected).hexdigest()}"))
        assert note["path"] == str(kept[0]) and "inbäddat objekt (OLE)" in note["removed"]
        # the same mail again (a crash before it left the inbox): the same rebuilt version, nothing new
        app.mail.deliver(with_attachment(raw, name, original), "again.eml")
        again = run_intake(app, at(day, 13))
        assert [x.outcome for x in again.handled] in (["duplicate"], ["already_handled"])
        assert len(_archived(tmp_path)) == 1 and len(sent_with_action(tmp_path, "distribute")) == 1
    finally:
        close(app)


def accept_everything(filename: str, data: bytes, *, max_bytes: int, _depth: int = 0):
    """The deny-list layer switched off (ONLY for the tests below): no check at all, just
    the kind and the inflated package the reader needs."""
    if data.startswith(b"PK"):
        zf = zipfile.ZipFile(io.BytesIO(data))
        pkg = inflate_package(zf, data, zf.infolist(), part_cap=200 << 20, total_cap=400 << 20)
        if pkg.has("mimetype"):
            return "odt", pkg.by_lower["content.xml"], pkg
        return "docx", pkg.by_lower["word/document.xml"], pkg
    return "pdf", "", None


SECOND_LAYER_OFF = {
    "ddeauto_name_built_by_nested_field": ("docx", h.nested_field_ddeauto),
    "packager_ole_with_bat": ("docx", h.packager_ole_bat),
    "equation_editor_ole": ("docx", h.equation_editor_ole),
    "altchunk_html_char_references": ("docx", h.alt_chunk_html_charref),
    "altchunk_rtf_includepicture": ("docx", h.alt_chunk_rtf_escaped),
    "macro_docm": ("docx", h.macro_docm),
    "remote_template": ("docx", h.remote_template_in_settings),
    "pdf_javascript_openaction": ("pdf", lambda b: h.pdf_open_javascript()),
    "pdf_launch": ("pdf", lambda b: h.pdf_launch_link()),
    "pdf_embedded_file": ("pdf", lambda b: h.pdf_embedded_file()),
    "pdf_xfa": ("pdf", lambda b: h.pdf_xfa()),
    "pdf_incremental_update": ("pdf", lambda b: h.pdf_incremental_update()),
    "odt_dde": ("odt", lambda b: h.odt_dde()),
    "odt_linked_section": ("odt", lambda b: h.odt_linked_section()),
    "odt_linked_image": ("odt", lambda b: h.odt_linked_image()),
}


@pytest.mark.parametrize("case", sorted(SECOND_LAYER_OFF))
def test_with_the_deny_list_off_members_still_get_nothing_active(tmp_path, monkeypatch, case):
    kind, factory = SECOND_LAYER_OFF[case]
    monkeypatch.setattr(minutes_module, "vet_file", accept_everything)
    app, day, raw = _reply(tmp_path)
    try:
        name, filled = attachment_of(raw)
        hostile = factory(filled)
        filename = f"protokoll.{kind}"
        read_minutes(filename, hostile)  # the second layer is really off: it lets the hostile file through
        assert cdr.active(kind, hostile) != []
        app.mail.deliver(with_attachment(raw, filename, hostile), "hostile.eml")
        report = run_intake(app, at(day, 12))
        assert report.errors == []
        assert [x.outcome for x in report.handled] == ["minutes"], report.handled
        got_name, got = _distributed(tmp_path)
        assert got_name.endswith("." + kind)
        assert cdr.active(kind, got) == []  # what each member received
        [filed] = _archived(tmp_path)
        assert filed.read_bytes() == got
        assert [p.read_bytes() for p in (tmp_path / "quarantine" / "originals").rglob("*") if p.is_file()] == [hostile]
        if kind == "docx":
            assert [d["decision"] for d in app.state.decisions()] == \
                [d.decision for d in read_minutes(name, filled).decisions]
    finally:
        close(app)


def test_the_deny_list_still_answers_the_host_first(tmp_path):
    """Layer two on (the default): a file it refuses is answered politely and never rebuilt,
    filed or kept."""
    app, day, raw = _reply(tmp_path)
    try:
        name, filled = attachment_of(raw)
        hostile = h.field_in_document(filled, " DDEAUTO cmd \"/c calc\" ")
        with pytest.raises(MinutesRejected):
            read_minutes(name, hostile)
        app.mail.deliver(with_attachment(raw, name, hostile), "hostile.eml")
        report = run_intake(app, at(day, 12))
        assert [x.outcome for x in report.handled] == ["bad_minutes"]
        assert len(sent_with_action(tmp_path, "reply_problem")) == 1
        assert _archived(tmp_path) == [] and sent_with_action(tmp_path, "distribute") == []
        assert not (tmp_path / "quarantine" / "originals").exists()
    finally:
        close(app)
