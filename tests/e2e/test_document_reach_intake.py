"""A host's reply carrying a document that reaches outside, through the real intake on
Maildir: nothing is filed or distributed, and the host gets the short Swedish answer
for the refusal."""

from __future__ import annotations

import email
from datetime import timedelta
from email.policy import SMTP

import pytest
from support import hostile_files as h  # noqa: E402
from support.helpers import (  # noqa: E402
    archive_files,
    at,
    attachment_of,
    body_text,
    close,
    config_with,
    mailbox_files,
    make_app,
    meeting,
    recipients,
    sent_with_action,
    shipped_config,
)

from kcg_mail.documents.ooxml import REJECT_CODES  # noqa: E402
from kcg_mail.entrypoints.demo_hosts import host_reply  # noqa: E402
from kcg_mail.services.daily import run_daily  # noqa: E402
from kcg_mail.services.intake import run_intake  # noqa: E402

pytestmark = pytest.mark.core

FEB = meeting("2023-02")

CASES = {
    # id: (file name, factory(filled docx) -> bytes, expected code)
    "ddeauto_field": ("protokoll.docx", lambda b: h.field_in_document(b, " DDE", "AUTO cmd \"/c calc\" "), "active_field"),
    "includepicture_in_header": ("protokoll.docx", lambda b: h.field_in_header(b, ' INCLUDEPICTURE "http://evil.example/p.png" '),
                                 "active_field"),
    "remote_template": ("protokoll.docx", h.remote_template_in_settings, "external_link"),
    "rels_upper_case": ("protokoll.docx", h.rels_part_in_upper_case, "external_link"),
    "lying_zip_size": ("protokoll.docx", h.lying_small_declared_size, "zip_bomb"),
    "odt_linked_image": ("protokoll.odt", lambda b: h.odt_linked_image(), "external_link"),
    "pdf_javascript": ("protokoll.pdf", lambda b: h.pdf_escaped_javascript(), "pdf_active"),
    "pdf_objstm_javascript": ("protokoll.pdf", lambda b: h.pdf_objstm_javascript(), "pdf_active"),
}

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


@pytest.mark.parametrize("case", sorted(CASES))
def test_reply_with_a_document_that_reaches_outside_is_answered_not_filed(tmp_path, case):
    filename, factory, code = CASES[case]
    app = make_app(tmp_path, config_with(shipped_config(), ["2023-02"]))
    try:
        run_daily(app, at(FEB.date - timedelta(days=3)))  # the Friday before: the template goes out on a working day
        day = FEB.date + timedelta(days=1)
        raw = host_reply(app, FEB, at(day, 10))
        _, filled = attachment_of(raw)
        hostile = factory(filled)
        app.mail.deliver(with_attachment(raw, filename, hostile), "hostile.eml")
        report = run_intake(app, at(day, 12))
        assert report.errors == []
        assert [(x.outcome, x.meeting_id) for x in report.handled] == [("bad_minutes", "2023-02")]
        assert report.handled[0].reason.startswith(code + ":")
        assert [f for f in archive_files(tmp_path, "") if "Kalender" not in f.parts] == []  # nothing filed, no decision log (the year's calendar feed is there)
        assert sent_with_action(tmp_path, "distribute") == []
        replies = sent_with_action(tmp_path, "reply_problem")
        assert len(replies) == 1
        assert recipients(replies[0]) == {FEB.host.email}
        assert REJECT_CODES[code] in " ".join(body_text(replies[0]).split())
        assert len(mailbox_files(tmp_path, "quarantine")) + len(mailbox_files(tmp_path, "processed")) == 1
        assert mailbox_files(tmp_path, "inbox") == []
        assert [m.outcome for m in app.state.messages()] == ["bad_minutes"]
        assert code in app.state.messages()[0].reason
    finally:
        close(app)


def test_the_genuine_reply_itself_is_filed(tmp_path):
    """Control: the same reply with the host's real file goes through (the refusals
    above come from the hostile content, not from the way the mail is built)."""
    app = make_app(tmp_path, config_with(shipped_config(), ["2023-02"]))
    try:
        run_daily(app, at(FEB.date - timedelta(days=3)))  # the Friday before: the template goes out on a working day
        day = FEB.date + timedelta(days=1)
        raw = host_reply(app, FEB, at(day, 10))
        name, filled = attachment_of(raw)
        app.mail.deliver(with_attachment(raw, name, filled), "genuine.eml")
        report = run_intake(app, at(day, 12))
        assert [x.outcome for x in report.handled] == ["minutes"]
        assert len(sent_with_action(tmp_path, "distribute")) == 1
    finally:
        close(app)
