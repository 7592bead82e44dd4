"""The pure intake core: parse + classify over the generated mail corpus,
plus unit tests for tokens, RFC 3834, calendar replies and malformed input."""

from __future__ import annotations

import email
import hashlib
import importlib.util
import io
import zipfile
from datetime import UTC, date, datetime

import pytest
from support.corpus import COORDINATOR, CORPUS, CTX, DOMAIN, MANIFEST, MEMBERS, NETWORK, PLAN, invitation_uid, make_ctx  # noqa: F401

from kcg_mail.core.inbound import (
    CalendarReply,
    ParsedMail,
    Verdict,
    classify,
    find_token,
    is_automatic,
    is_document_candidate,
    parse,
    subject_token,
)
from kcg_mail.ports import Attachment, message_id_for

# ----------------------------------------------------------------- the 2023 plan









# ----------------------------------------------------------------- corpus


def test_manifest_shape_and_coverage():
    assert len(MANIFEST) >= 45
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == {e["file"] for e in MANIFEST}
    kinds = {"minutes", "no_minutes", "calendar_response", "automatic", "not_allowed", "unmatched", "own"}
    for e in MANIFEST:
        assert set(e) == {"file", "kind", "meeting_id", "note"}
        assert e["kind"] in kinds
        assert e["meeting_id"] is None or find_token(subject_token(e["meeting_id"])) == e["meeting_id"]
    assert {e["kind"] for e in MANIFEST} == kinds


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_corpus_verdict(entry):
    mail = parse((CORPUS / entry["file"]).read_bytes())
    verdict = classify(mail, CTX)
    assert (verdict.kind, verdict.meeting_id) == (entry["kind"], entry["meeting_id"]), verdict.reason
    assert verdict.reason
    if verdict.kind == "minutes":
        assert verdict.attachments and all(is_document_candidate(a) for a in verdict.attachments)
        assert not any(a.content_type.startswith("image/") for a in verdict.attachments)
    else:
        assert verdict.attachments == ()
    assert (verdict.calendar_reply is not None) == (verdict.kind == "calendar_response")


def test_corpus_is_reproducible_byte_for_byte(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_corpus_copy", CORPUS / "make_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.CORPUS.clear()
    mod.build()
    generated = {name: data for name, _k, _m, _n, data in mod.CORPUS}
    assert set(generated) == {e["file"] for e in MANIFEST}
    for name, data in generated.items():
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256((CORPUS / name).read_bytes()).hexdigest(), name
    manifest = [{"file": f, "kind": k, "meeting_id": m, "note": n} for f, k, m, n, _ in mod.CORPUS]
    assert manifest == MANIFEST


def _mail(name: str) -> ParsedMail:
    return parse((CORPUS / name).read_bytes())


def test_outlook_reply_fields():
    m = _mail("01_outlook_win_docx_sv.eml")
    assert m.subject == "SV: [KCG-2023-02] Beslutsprotokoll – Policy & Branschpraxis"
    assert m.sender == "daniel@gavle.example.se" and m.sender_name == "Daniel Swärd"
    assert m.date == datetime(2023, 2, 7, 9, 41, 12, tzinfo=UTC)
    assert m.message_id == "<HE1P190MB0001A1B2C3D4E5F6@HE1P190MB0001.EURP190.PROD.OUTLOOK.COM>"
    assert m.in_reply_to == message_id_for("2023-02:template:daniel@gavle.example.se", DOMAIN)
    assert m.references == (m.in_reply_to,)
    assert m.auto_reason is None and m.calendar_reply is None
    assert "Här kommer protokollet" in m.text
    (att,) = m.attachments
    assert att.filename == "Beslutsprotokoll KCG Gävle – Policy & Branschpraxis.docx"
    assert "word/document.xml" in zipfile.ZipFile(io.BytesIO(att.data)).namelist()


def test_real_documents_in_corpus_open():
    docx = _mail("01_outlook_win_docx_sv.eml").attachments[0].data
    import docx as python_docx

    paragraphs = [p.text for p in python_docx.Document(io.BytesIO(docx)).paragraphs]
    assert paragraphs[0] == "Beslutsprotokoll Key Cities Group"
    from pypdf import PdfReader

    pdf = _mail("05_outlook_mobile_pdf.eml").attachments[0].data
    assert "Beslutsprotokoll" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


@pytest.mark.parametrize(
    "name, filename",
    [
        ("02_outlook_winmail_tnef.eml", "Beslutsprotokoll Norrköping – Affärsplanering.docx"),
        ("07_apple_mail_inline_docx.eml", "Beslutsprotokoll Helsingborg – Etablering.docx"),  # NFC from NFD
        ("08_thunderbird_rfc2231_continuation.eml", "Beslutsprotokoll Göteborg – Tema 5.docx"),
        ("06_gmail_docx_rfc2047_filename.eml", "Beslutsprotokoll Mobilitet & citylogistik – Stockholm.docx"),
        ("24_latin1_qp_rfc2047_filename.eml", "Beslutsprotokoll_Örebro.docx"),
        ("10_forwarded_rfc822.eml", "Beslutsprotokoll Borås december.docx"),
        ("60_raw_8bit_utf8_headers.eml", "Protokoll Malmö.docx"),
        ("23_tnef_swedish_long_name.eml", "Beslutsprotokoll Göteborg – Studieresa.docx"),
    ],
)
def test_attachment_filenames_decoded(name, filename):
    names = [a.filename for a in _mail(name).attachments]
    assert filename in names
    assert "winmail.dat" not in names


def test_inline_logo_is_attachment_but_not_candidate():
    m = _mail("03_outlook_html_only_logo_docx.eml")
    assert [a.filename for a in m.attachments] == ["image001.png", "Beslutsprotokoll Västerås april.docx"]
    v = classify(m, CTX)
    assert [a.filename for a in v.attachments] == ["Beslutsprotokoll Västerås april.docx"]
    assert "Se bifogat protokoll" in m.text  # HTML-only body turned into text


def test_all_document_candidates_handed_over():
    v = classify(_mail("14_docx_and_pdf_and_photo.eml"), CTX)
    assert [a.filename for a in v.attachments] == ["Beslutsprotokoll Södertälje.docx", "Beslutsprotokoll Södertälje.pdf"]
    v = classify(_mail("58_malformed_bad_charset_base64_date.eml"), CTX)
    assert [a.filename for a in v.attachments] == ["Beslutsprotokoll Uppsala.docx", "trasig.pdf"]


def test_matching_reasons():
    assert "In-Reply-To" in classify(_mail("19_match_in_reply_to_only.eml"), CTX).reason
    assert "sender files for 2023-11" in classify(_mail("21_match_sender_and_date.eml"), CTX).reason
    assert "quoted text" in classify(_mail("22_token_in_quoted_body.eml"), CTX).reason
    assert "ambiguous" in classify(_mail("37_coordinator_ambiguous.eml"), CTX).reason


def test_calendar_replies():
    v = classify(_mail("49_exchange_accept_ics.eml"), CTX)
    assert v.calendar_reply == CalendarReply(invitation_uid("2023-03"), "maria@vasteras.example.se", "ACCEPTED")
    v = classify(_mail("50_gmail_decline_ics.eml"), CTX)
    assert v.calendar_reply.partstat == "DECLINED" and v.calendar_reply.attendee_email == "isabel@lund.example.se"
    v = classify(_mail("52_godkand_subject_only.eml"), CTX)
    assert v.calendar_reply == CalendarReply(None, "daniel@gavle.example.se", "ACCEPTED")
    assert classify(_mail("54_tnef_meeting_response.eml"), CTX).calendar_reply.partstat == "TENTATIVE"


# ----------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[KCG-2023-02]", "2023-02"),
        ("SV: VB: Re: Fwd: AW: [KCG-2023-02] Beslutsprotokoll", "2023-02"),
        ("KCG 2023-02", "2023-02"),
        ("[KCG-2023-02 utan hakparentes", "2023-02"),
        ("sv: [kcg-2023-02]", "2023-02"),
        ("[ KCG - 2023 - 02 ]", "2023-02"),
        ("KCG-2023-2", "2023-02"),
        ("KCG_2024_01", "2024-01"),
        ("KCG2023-11", "2023-11"),
        ("[KCG-2023-\r\n 02]", "2023-02"),
        ("text [KCG-2023-12] and [KCG-2023-11]", "2023-12"),
        ("[KCG-2023-13]", None),
        ("[KCG-2023-00]", None),
        ("KCG-2023-021", None),
        ("BKCG-2023-02", None),
        ("2023-02", None),
        ("KCG 2023-2024 planering", None),
        ("", None),
        (None, None),
    ],
)
def test_find_token(text, expected):
    assert find_token(text) == expected


def test_subject_token_round_trip():
    for mid in PLAN:
        assert subject_token(mid) == f"[KCG-{mid}]"
        assert find_token(f"SV: {subject_token(mid)} Beslutsprotokoll") == mid


def test_token_in_encoded_word_split_subject():
    raw = (
        b"From: daniel@gavle.example.se\r\nSubject: =?utf-8?Q?SV:_[KCG-20?=\r\n =?utf-8?Q?23-02]_G=C3=A4?=\r\n"
        b" =?utf-8?Q?vle?=\r\n\r\nhej\r\n"
    )
    m = parse(raw)
    assert m.subject == "SV: [KCG-2023-02] Gävle"
    assert find_token(m.subject) == "2023-02"


# ----------------------------------------------------------------- RFC 3834


def _msg(headers: str, ctype: str = "text/plain") -> email.message.Message:
    return email.message_from_string(f"From: x@example.com\nSubject: hej\n{headers}Content-Type: {ctype}\n\nbody\n")


@pytest.mark.parametrize(
    "headers, ctype, automatic",
    [
        ("", "text/plain", False),
        ("Auto-Submitted: no\n", "text/plain", False),
        ("Auto-Submitted: No (comment)\n", "text/plain", False),
        ("Auto-Submitted: auto-replied\n", "text/plain", True),
        ("Auto-Submitted: auto-generated\n", "text/plain", True),
        ("Auto-Submitted: auto-notified; owner-email=x@example.com\n", "text/plain", True),
        ("X-Autoreply: yes\n", "text/plain", True),
        ("X-Autorespond: whatever\n", "text/plain", True),
        ("Precedence: bulk\n", "text/plain", True),
        ("Precedence: junk\n", "text/plain", True),
        ("Precedence: list\n", "text/plain", True),
        ("Precedence: first-class\n", "text/plain", False),
        ("Return-Path: <>\n", "text/plain", True),
        ("Return-Path: < >\n", "text/plain", True),
        ("Return-Path: <x@example.com>\n", "text/plain", False),
        ("", "multipart/report; report-type=delivery-status; boundary=b", True),
        ("", "multipart/report; report-type=disposition-notification; boundary=b", True),
        ("X-Auto-Response-Suppress: All\n", "text/plain", False),
        ("X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply\n", "text/plain", False),
        ("List-Id: <kcg.lists.example.se>\n", "text/plain", True),
    ],
)
def test_rfc3834_headers(headers, ctype, automatic):
    assert (is_automatic(_msg(headers, ctype)) is not None) is automatic


@pytest.mark.parametrize(
    "subject, automatic",
    [
        ("Frånvaro: [KCG-2023-02] Mall", True),
        ("Frånvarande: till 12 juni", True),
        ("Autosvar: [KCG-2023-02] Mall", True),
        ("Automatiskt svar: [KCG-2023-02] Mall", True),
        ("Out of Office: [KCG-2023-02]", True),
        ("Automatic reply: [KCG-2023-02]", True),
        ("Autoreply: semester", True),
        ("Auto-Reply: semester", True),
        ("Abwesenheitsnotiz: [KCG-2023-02]", True),
        ("Undeliverable: [KCG-2023-02]", True),
        ("SV: [KCG-2023-02] Beslutsprotokoll", False),
        ("SV: [KCG-2023-02] Frånvaro vid mötet", False),
        ("Protokoll med frånvarande ledamöter", False),
    ],
)
def test_out_of_office_subjects(subject, automatic):
    raw = ("From: a@example.com\nSubject: " + subject + "\nContent-Type: text/plain; charset=utf-8\n\nx\n").encode()
    msg = email.message_from_bytes(raw)
    assert (is_automatic(msg) is not None) is automatic
    assert (parse(raw).auto_reason is not None) is automatic


def test_is_automatic_accepts_email_message_policy_default():
    msg = email.message_from_bytes(b"From: a@example.com\nAuto-Submitted: auto-replied\n\nx", policy=email.policy.default)
    assert is_automatic(msg) == "Auto-Submitted: auto-replied"


# ----------------------------------------------------------------- classify order


def _pm(**kw) -> ParsedMail:
    base = dict(
        message_id="<x@example.com>", in_reply_to=None, references=(), subject="SV: [KCG-2023-02] Protokoll",
        sender="daniel@gavle.example.se", sender_name="Daniel", date=datetime(2023, 2, 7, tzinfo=UTC),
        auto_reason=None, text="", attachments=(Attachment("p.docx", "application/octet-stream", b"PK\x03\x04word/"),),
        calendar_reply=None,
    )
    base.update(kw)
    return ParsedMail(**base)


def test_classify_order():
    cal = CalendarReply("kcg-2023-02@" + DOMAIN, "daniel@gavle.example.se", "ACCEPTED")
    assert classify(_pm(sender=NETWORK, auto_reason="x", calendar_reply=cal), CTX).kind == "own"
    assert classify(_pm(auto_reason="Auto-Submitted: auto-replied", calendar_reply=cal), CTX).kind == "automatic"
    v = classify(_pm(calendar_reply=cal), CTX)
    assert (v.kind, v.meeting_id) == ("calendar_response", "2023-02")
    assert classify(_pm(), CTX).kind == "minutes"
    assert classify(_pm(attachments=()), CTX).kind == "no_minutes"
    assert classify(_pm(sender="isabel@lund.example.se"), CTX).kind == "not_allowed"
    assert classify(_pm(subject="hej", date=datetime(2023, 6, 1, tzinfo=UTC)), CTX).kind == "unmatched"


def test_in_reply_to_beats_subject_token():
    mid = message_id_for("2023-03:template:david@norrkoping.example.se", DOMAIN)
    v = classify(_pm(sender="david@norrkoping.example.se", in_reply_to=mid.upper()), CTX)
    assert (v.kind, v.meeting_id) == ("minutes", "2023-03")


def test_sender_date_window_edges():
    d = "daniel@gavle.example.se"  # hosts 2023-02-06 only
    no_token = dict(subject="Protokoll", sender=d)
    at = lambda y, m, dd: datetime(y, m, dd, 12, tzinfo=UTC)  # noqa: E731
    assert classify(_pm(date=at(2023, 3, 8), **no_token), CTX).meeting_id == "2023-02"  # 30 days after
    assert classify(_pm(date=at(2023, 3, 9), **no_token), CTX).meeting_id is None  # 31 days after
    assert classify(_pm(date=at(2023, 2, 4), **no_token), CTX).meeting_id == "2023-02"  # 2 days before
    assert classify(_pm(date=at(2023, 2, 3), **no_token), CTX).meeting_id is None  # 3 days before
    # no Date header: the context's today decides
    ctx = make_ctx(today=date(2023, 2, 10))
    assert classify(_pm(date=None, **no_token), ctx).meeting_id == "2023-02"


def test_document_candidates():
    assert is_document_candidate(Attachment("x.DOCX", "application/octet-stream", b""))
    assert is_document_candidate(Attachment("Protokoll", "application/octet-stream", b"%PDF-1.7\n"))
    assert is_document_candidate(Attachment("noname", "application/pdf", b""))
    assert is_document_candidate(Attachment("noname", "application/octet-stream", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"))
    assert not is_document_candidate(Attachment("image001.png", "image/png", b"\x89PNG"))
    assert not is_document_candidate(Attachment("logo.pdf", "image/png", b"\x89PNG"))
    assert not is_document_candidate(Attachment("Närvaro.xlsx", "application/octet-stream", b"PK\x03\x04xl/"))
    assert not is_document_candidate(Attachment("invite.ics", "text/calendar", b"BEGIN:VCALENDAR"))


# ----------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"garbage without headers",
        b"Subject: =?utf-8?B?####?=\n\n",
        b"Subject: =?no-such-charset?Q?abc?=\nFrom: =?utf-8?Q?=FF=FE?= <a@b.c>\n\n",
        b"From: <<<@>>>\nDate: 31 Feb 2023 99:99\nMessage-ID: \nIn-Reply-To: garbage\n\n",
        b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: message/rfc822\n\n--b--\n",
        b"Content-Type: multipart/mixed\n\nno boundary at all\n",
        b"Content-Type: text/plain; charset=\"utf-8\nContent-Transfer-Encoding: base64\n\n!!!!\n",
        b"Content-Type: application/ms-tnef; name=winmail.dat\nContent-Transfer-Encoding: base64\n\neJ8+IgEAAQaQCAAEAAAAAAABAAEA\n",
        b"Content-Type: text/calendar; method=REPLY\n\nBEGIN:VCALENDAR\nMETHOD:REPLY\nBEGIN:VEVENT\nATTENDEE;PARTSTAT=\"\n",
        b"Content-Disposition: attachment; filename*=bogus''%ZZ%\n\nx",
        b"Content-Disposition: attachment; filename*0*=utf-8''a%C3; filename*2=b\n\nx",
        ("Content-Type: multipart/mixed; boundary=b\n\n" + "--b\nContent-Type: multipart/mixed; boundary=b\n\n" * 200).encode(),
    ],
)
def test_malformed_never_raises(raw):
    m = parse(raw)
    assert isinstance(m, ParsedMail)
    assert isinstance(classify(m, CTX), Verdict)


def test_truncated_and_corrupted_corpus_never_raises():
    """A fuzz-ish loop: every corpus message cut at many points, and with a
    few bytes flipped, must parse and classify without raising."""
    import random

    rng = random.Random(20230206)
    count = 0
    for entry in MANIFEST:
        raw = (CORPUS / entry["file"]).read_bytes()
        cuts = sorted({int(len(raw) * f) for f in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)} | {1, len(raw) - 3})
        variants = [raw[:c] for c in cuts]
        for _ in range(3):
            b = bytearray(raw)
            for _ in range(8):
                b[rng.randrange(len(b))] = rng.randrange(256)
            variants.append(bytes(b))
        for v in variants:
            m = parse(v)
            assert isinstance(m, ParsedMail)
            assert classify(m, CTX).kind in {
                "minutes", "no_minutes", "calendar_response", "automatic", "not_allowed", "unmatched", "own"
            }
            count += 1
    assert count >= 45 * 10


def test_token_follows_the_networks_short_name():
    """Another network (short name "SSK") matches its own tokens, not KCG's."""
    from kcg_mail.core.inbound import find_token, subject_token

    assert subject_token("2023-02", "SSK") == "[SSK-2023-02]"
    assert find_token("SV: Protokollmall [SSK-2023-02]", "SSK") == "2023-02"
    assert find_token("SV: ssk 2023 2", "SSK") == "2023-02"
    assert find_token("SV: Protokollmall [KCG-2023-02]", "SSK") is None
    assert find_token("SV: Protokollmall [SSK-2023-02]") is None  # default tag KCG


# ----------------------------------------------------------------- header decoding vs the stdlib

#: The corpus messages whose headers the standard library decodes wrongly (see
#: ``kcg_mail.core.inbound.decode.decode_header_text``).
STDLIB_DIFFERS = {"18_encoded_word_split_token.eml": "Subject", "58_malformed_bad_charset_base64_date.eml": "From"}


def test_header_decoding_matches_stdlib():
    """Our RFC 2047 decoder gives what email.policy.default gives for every corpus
    header except the two shapes it exists for, where it must differ (and be right)."""
    import email as _email
    from email.headerregistry import HeaderRegistry

    from kcg_mail.core.inbound import decode as d

    reg = HeaderRegistry()
    differing = {}
    for f in sorted(CORPUS.glob("*.eml")):
        msg = _email.message_from_bytes(f.read_bytes(), policy=_email.policy.compat32)
        for name in ("Subject", "From", "Reply-To", "To"):
            for value in d.raw_headers(msg, name):
                ours = " ".join(d.decode_header_text(value).split())
                std = " ".join(str(reg("subject", d.unsurrogate(value))).split())  # unstructured text
                if ours != std:
                    differing[f.name] = name
                    assert "\ufffd" not in ours and " -04]" not in ours
    assert differing == STDLIB_DIFFERS


def test_reply_ids_inside_encoded_words_are_found():
    """Python's email package encodes an In-Reply-To longer than a line as RFC 2047
    words (our reply-key Message-IDs are that long); the ids must still be read."""
    from email.message import EmailMessage
    from email.policy import SMTP

    ours = "<kcg.2023-03.project_status_request.zlsxpdzcafntyyfqbx35.ve6esg4ylcrw@svenskastadskarnor.example.se>"
    m = EmailMessage(policy=SMTP)
    m["From"] = "Lisa Thörn <lisa@uppsala.example.se>"
    m["Subject"] = "SV: Status"
    m["In-Reply-To"] = ours
    m["References"] = ours
    m.set_content("Hej\n")
    raw = m.as_bytes()
    assert b"=?utf-8?q?" in raw  # the shape this test is about
    mail = parse(raw)
    assert mail.in_reply_to == ours and mail.references == (ours,)
