"""Trust in the pure core: RFC 8601 parsing, alignment, reply keys, the rule
chain, and property tests (hypothesis) that no combination of headers without
a trusted authentication result, nor (with ``require_reply_key``) without a
valid reply key, ever lets minutes through to filing and distribution."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcg_mail.core import inbound, replykey
from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.authres import (
    aligned,
    mail_authenticated,
    parse_authentication_results,
    trusted_results,
)
from kcg_mail.core.inbound.versions import effective_date, is_late_copy, over_daily_limit

pytestmark = pytest.mark.core

OURS = "mx.kcg.example.se"
SECRET = b"s3cret"
HOST = "anna@host.example.se"
MEMBER = "bo@member.example.se"
COORD = "cc@kcg.example.se"
STRANGER = "x@evil.example"
MAILBOX = "kcg@kcg.example.se"


def ctx(require: bool = False) -> inbound.MatchContext:
    meetings = (
        inbound.MeetingRef("2023-02", "[KCG-2023-02]", date(2023, 2, 6), frozenset({HOST, COORD}), "kcg-2023-02@x"),
        inbound.MeetingRef("2023-03", "[KCG-2023-03]", date(2023, 3, 6), frozenset({MEMBER, COORD}), "kcg-2023-03@x"),
    )
    return inbound.MatchContext(meetings=meetings, sent_ids={}, members=frozenset({HOST, MEMBER, COORD}),
                                own_addresses=frozenset({MAILBOX}), today=date(2023, 2, 7),
                                trusted_authserv_ids=frozenset({OURS}), reply_secret=SECRET, require_reply_key=require)


# ------------------------------------------------------------------ RFC 8601


def test_parse_postfix_opendmarc_field():
    ar = parse_authentication_results(
        "mx.kcg.example.se (OpenDMARC); dmarc=pass (p=none dis=none) header.from=host.example.se")
    assert ar.authserv_id == "mx.kcg.example.se"
    assert [(r.method, r.result, r.props.get("header.from")) for r in ar.results] == [
        ("dmarc", "pass", "host.example.se")]


def test_parse_google_field_with_version_and_comments():
    ar = parse_authentication_results(
        "mx.google.com; dkim=pass header.i=@host.example.se header.s=s1 header.b=abc; "
        "spf=pass (google.com: domain of a@host.example.se designates 1.2.3.4 as permitted sender) "
        "smtp.mailfrom=a@host.example.se; dmarc=pass (p=QUARANTINE sp=NONE dis=NONE) header.from=host.example.se")
    assert ar.authserv_id == "mx.google.com"
    assert [r.method for r in ar.results] == ["dkim", "spf", "dmarc"]
    assert ar.of("spf")[0].props["smtp.mailfrom"] == "a@host.example.se"


def test_exchange_online_field_has_no_authserv_id():
    ar = parse_authentication_results(
        "spf=pass (sender IP is 40.107.1.1) smtp.mailfrom=host.example.se; dkim=pass (signature was verified) "
        "header.d=host.example.se;dmarc=pass action=none header.from=host.example.se;compauth=pass reason=100")
    assert ar.authserv_id == ""
    assert {r.method for r in ar.results} == {"spf", "dkim", "dmarc", "compauth"}
    fields = [ar_text := ("spf=pass smtp.mailfrom=host.example.se; dmarc=pass header.from=host.example.se")]
    assert mail_authenticated(fields, {"exchange-online"}, HOST)[0]
    # only when it is the topmost field: a sender's own id-less field below ours proves nothing
    assert not mail_authenticated([f"{OURS}; dmarc=fail header.from=host.example.se", ar_text],
                                  {"exchange-online"}, HOST)[0]


def test_topmost_trusted_field_wins():
    fields = ["other.example; dmarc=pass header.from=host.example.se",
              f"{OURS}; dmarc=fail header.from=host.example.se",
              f"{OURS}; dmarc=pass header.from=host.example.se"]
    assert trusted_results(fields, {OURS}).results[0].result == "fail"
    assert not mail_authenticated(fields, {OURS}, HOST)[0]


def test_alignment():
    assert aligned("host.example.se", "mail.host.example.se")
    assert aligned("a@host.example.se", "host.example.se")
    assert not aligned("se", "host.se") and not aligned("evil.example", "host.example.se")


def test_dmarc_none_falls_back_to_aligned_dkim():
    ok, how = mail_authenticated([f"{OURS}; dkim=pass header.d=host.example.se; dmarc=none"], {OURS}, HOST)
    assert ok and "dkim" in how


# ------------------------------------------------------------------ reply keys


def test_reply_key_binds_meeting_action_and_recipient():
    k = replykey.reply_key(SECRET, "2023-02", "send_template", HOST)
    assert replykey.verify(SECRET, k, HOST, ["2023-02"]).meeting_id == "2023-02"
    assert replykey.verify(SECRET, k.upper(), HOST.upper(), ["2023-02"]) is not None  # case folded by some MTAs
    assert replykey.verify(SECRET, k, MEMBER, ["2023-02"]) is None
    assert replykey.verify(SECRET, k.replace("2023-02", "2023-03"), HOST, ["2023-03"]) is None
    assert replykey.verify(b"other", k, HOST, ["2023-02"]) is None
    assert replykey.verify(b"", k, HOST, ["2023-02"]) is None
    group = replykey.reply_key(SECRET, "2023-02", "invite", "members")
    assert replykey.verify(SECRET, group, MEMBER, ["2023-02"]).recipient == "members"


def test_our_message_id_is_recognised_only_with_the_secret_and_the_key():
    key = "2023-02:distribute:members:v1"
    mid = replykey.message_id(SECRET, key, "kcg.example.se")
    assert replykey.is_our_message_id(SECRET, key, mid)
    assert replykey.is_our_message_id(SECRET, key, f"  {mid[:20]}\r\n {mid[20:]} ")  # folded by a server
    assert replykey.is_our_message_id(SECRET, key, mid.upper())  # some servers change the case
    assert not replykey.is_our_message_id(b"other", key, mid)
    assert not replykey.is_our_message_id(SECRET, "2023-02:distribute:members:v2", mid)
    assert not replykey.is_our_message_id(SECRET, key, "<123@attack.test>")
    assert not replykey.is_our_message_id(SECRET, key, "")


def test_keys_found_in_message_ids_and_plus_addresses():
    mid = replykey.message_id(SECRET, f"2023-02:send_template:{HOST}", "kcg.example.se")
    k = replykey.reply_key(SECRET, "2023-02", "send_template", HOST)
    assert mid.startswith(f"<kcg.{k}.")
    assert replykey.keys_in([mid], []) == (k,)
    assert replykey.keys_in([], [f"KCG <{replykey.reply_address(MAILBOX, k)}>"]) == (k,)


def test_reply_key_matches_first():
    k = replykey.reply_key(SECRET, "2023-02", "send_template", HOST)
    raw = (f"Authentication-Results: {OURS}; dmarc=pass header.from=host.example.se\r\nFrom: {HOST}\r\n"
           f"To: <kcg+{k}@kcg.example.se>\r\nSubject: Re: [KCG-2023-03]\r\nDate: Tue, 7 Feb 2023 10:00:00 +0100\r\n\r\nhej\r\n").encode()
    v = inbound.classify(inbound.parse(raw), ctx())
    assert v.meeting_id == "2023-02" and "reply key" in v.reason


# ------------------------------------------------------------------ versions


def test_versions():
    t = datetime(2023, 2, 7, 10, tzinfo=UTC)
    assert effective_date(t + timedelta(days=9), t) == t  # a future Date does not make a copy newer
    assert effective_date(None, t) == t
    assert is_late_copy(t, [t + timedelta(hours=1)]) and not is_late_copy(t, [t])
    assert over_daily_limit([1, 2], 3, 2) and not over_daily_limit([1, 2], 2, 2) and not over_daily_limit([1], 2, 2)


# ------------------------------------------------------------------ properties

DOMAINS = ["host.example.se", "member.example.se", "evil.example", "kcg.example.se", "example.se", "se"]
ADDRS = [HOST, MEMBER, COORD, STRANGER, MAILBOX, "ANNA@HOST.EXAMPLE.SE"]
results = st.sampled_from(["pass", "fail", "none", "softfail", "neutral", "temperror", "permerror", "policy"])
foreign_ids = st.sampled_from(["mx.evil.example", "mx.google.com", OURS + ".evil.example", "evil", "kcg.example.se"])


@st.composite
def ar_field(draw, ids):
    aid = draw(ids)
    parts = []
    for method, prop in (("spf", "smtp.mailfrom"), ("dkim", "header.d"), ("dmarc", "header.from")):
        if draw(st.booleans()):
            parts.append(f"{method}={draw(results)} {prop}={draw(st.sampled_from(DOMAINS))}")
    if draw(st.booleans()):
        parts.append(f"x-note=\"{draw(st.sampled_from(['dmarc=pass', OURS, 'a;b']))}\"")
    body = "; ".join([aid] + parts) if aid else "; ".join(parts) or "none"
    if draw(st.booleans()):
        body = body.replace(";", f" ({draw(st.sampled_from([OURS, 'dmarc=pass', 'x']))});", 1)
    return body


@st.composite
def our_untrusting_field(draw):
    """A field of OUR server that does not authenticate the sender: nothing passes,
    or what passes is not aligned with the From domain."""
    parts = []
    for method, prop in (("spf", "smtp.mailfrom"), ("dkim", "header.d"), ("dmarc", "header.from")):
        if draw(st.booleans()):
            parts.append(f"{method}={draw(results.filter(lambda r: r != 'pass'))} {prop}=host.example.se")
    if draw(st.booleans()):
        parts.append(f"dkim=pass header.d={draw(st.sampled_from(['evil.example', 'se', 'example.com']))}")
    return "; ".join([OURS] + parts) if parts else f"{OURS}; none"


@st.composite
def hostile_mail(draw, *, our_field: bool, key_for: str | None):
    """Raw bytes of a mail whose Authentication-Results never authenticate the
    From domain at our server: ours says fail/none/unaligned (or is absent),
    anything else is foreign or below ours."""
    fields = []
    if draw(st.booleans()):
        fields += draw(st.lists(ar_field(foreign_ids), max_size=2))
    if our_field:
        fields.append(draw(our_untrusting_field()))
        fields += draw(st.lists(ar_field(st.just(OURS)), max_size=2))  # forged below ours
        fields += draw(st.lists(ar_field(foreign_ids), max_size=2))
    froms = draw(st.lists(st.sampled_from(ADDRS + ["", "Anna Värd", f'"{HOST}" <{STRANGER}>']), max_size=3))
    lines = [f"Authentication-Results: {f}" for f in fields]
    lines += [f"From: {f}" for f in froms]
    for h in ("Sender", "Reply-To", "Return-Path"):
        if draw(st.booleans()):
            lines.append(f"{h}: {draw(st.sampled_from(ADDRS))}")
    lines.append(f"Subject: {draw(st.sampled_from(['Protokoll [KCG-2023-02]', 'SV: mötet', 'Accepterat: [KCG-2023-02]', '']))}")
    lines.append(f"Date: {draw(st.sampled_from(['Tue, 7 Feb 2023 10:00:00 +0100', 'Mon, 6 Mar 2023 10:00:00 +0100', 'junk']))}")
    if key_for is not None:
        lines.append(f"In-Reply-To: {key_for}")
    lines += ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "", "--b",
              "Content-Type: text/plain", "", "Protokollet.", "--b",
              "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document",
              'Content-Disposition: attachment; filename="p.docx"', "Content-Transfer-Encoding: base64", "",
              "UEsDBBQAAAAIAA==", "--b--", ""]
    return "\r\n".join(lines).encode("utf-8")


def _acts(raw: bytes, c: inbound.MatchContext) -> bool:
    mail = inbound.parse(raw)
    v = inbound.classify(mail, c)
    docs = any(inbound.is_document_candidate(a) for a in mail.attachments)
    d = rules.decide(mail, v, c, has_documents=docs)
    return v.kind in ("minutes", "not_allowed", "no_minutes", "calendar_response") and d.action == "accept" and \
        v.meeting_id is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_mail(our_field=True, key_for=None))
def test_no_trusted_authentication_never_files_or_distributes(raw):
    assert not _acts(raw, ctx())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_mail(our_field=False, key_for=None))
def test_without_our_field_nothing_is_trusted(raw):
    assert not _acts(raw, ctx())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_require_reply_key_without_a_valid_key_never_files(data):
    """Even authenticated by our server, with require_reply_key a mail files
    only with a valid key of our mail about that meeting for that sender."""
    sender = data.draw(st.sampled_from([HOST, COORD, MEMBER]))
    other = data.draw(st.sampled_from([MEMBER, STRANGER, "members-not"]))
    key = data.draw(st.sampled_from([
        None,
        replykey.message_id(SECRET, f"2023-02:send_template:{other}", "kcg.example.se"),  # another recipient
        replykey.message_id(b"guess", f"2023-02:send_template:{sender}", "kcg.example.se"),  # another secret
        "<kcg.2023-02.send_template.aaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbb@kcg.example.se>",
        f"<{data.draw(st.text(alphabet='abcdefghijklmnopqrstuvwxyz234567.-', min_size=1, max_size=60))}@kcg.example.se>",
    ]))
    domain = sender.rpartition("@")[2]
    subject = data.draw(st.sampled_from(["Protokoll [KCG-2023-02]", "Protokoll [KCG-2023-03]", "Protokoll"]))
    raw = (f"Authentication-Results: {OURS}; dmarc=pass header.from={domain}\r\nFrom: {sender}\r\n"
           f"Subject: {subject}\r\nDate: Tue, 7 Feb 2023 10:00:00 +0100\r\n"
           + (f"In-Reply-To: {key}\r\n" if key else "") +
           "MIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=p.pdf\r\n"
           "\r\nJVBERi0xLjQK\r\n").encode()
    mail = inbound.parse(raw)
    c = ctx(require=True)
    v = inbound.classify(mail, c)
    d = rules.decide(mail, v, c, has_documents=True)
    assert not (v.kind == "minutes" and d.action == "accept"), (v, d)
    # the control: the same mail with the right key is accepted
    good = replykey.message_id(SECRET, f"{v.meeting_id or '2023-02'}:send_template:{sender}", "kcg.example.se")
    ok = inbound.parse(raw.replace(b"From:", f"In-Reply-To: {good}\r\nFrom:".encode(), 1)) if not key else None
    if ok is not None and sender in (HOST, COORD):
        v2 = inbound.classify(ok, c)
        if v2.meeting_id == "2023-02":
            assert rules.decide(ok, v2, c, has_documents=True).action == "accept"
