"""Addresses are addresses, and ``dmarc=pass`` is for a named domain (the pure core).

* A From address comes only from an addr-spec of the field: never from an
  RFC 2047 encoded word (even one that decodes to an address), a display name
  or a comment.
* ``dmarc=pass`` counts only with ``header.from`` equal to the From domain; a
  pass without ``header.from`` only for a receiver named in
  ``inbound.dmarc_pass_without_header_from`` (validated against
  ``inbound.trusted_authserv_ids``).
"""

from __future__ import annotations

from datetime import date

import pytest
from support.basics import copy_config

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core import inbound
from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.authres import mail_authenticated
from kcg_mail.core.inbound.parse_mail import addr_spec

pytestmark = pytest.mark.core

OURS = "mx.kcg.example.se"
HOST = "anna@host.example.se"
EVIL = "x@evil.example"
PASS = f"{OURS}; spf=pass smtp.mailfrom=host.example.se; dmarc=pass header.from=host.example.se"


def ctx(bare: frozenset[str] = frozenset()) -> inbound.MatchContext:
    meetings = (inbound.MeetingRef("2023-02", "[KCG-2023-02]", date(2023, 2, 6), frozenset({HOST}), "u@x"),)
    return inbound.MatchContext(meetings=meetings, sent_ids={}, members=frozenset({HOST}),
                                own_addresses=frozenset({"kcg@kcg.example.se"}), today=date(2023, 2, 7),
                                trusted_authserv_ids=frozenset({OURS, "exchange-online"}),
                                dmarc_pass_without_header_from=bare)


def minutes(from_: str, *ar: str) -> bytes:
    lines = [f"Authentication-Results: {f}" for f in ar] + [
        f"From: {from_}", "To: kcg@kcg.example.se", "Subject: Protokoll [KCG-2023-02]",
        "Date: Tue, 7 Feb 2023 10:00:00 +0100", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"',
        "", "--b", "Content-Type: text/plain", "", "Protokollet bifogas.", "--b",
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        'Content-Disposition: attachment; filename="p.docx"', "Content-Transfer-Encoding: base64", "",
        "UEsDBBQAAAAIAA==", "--b--", ""]
    return "\r\n".join(lines).encode("utf-8")


def decision(raw: bytes, c: inbound.MatchContext | None = None) -> tuple[inbound.ParsedMail, rules.Decision]:
    c = c or ctx()
    mail = inbound.parse(raw)
    v = inbound.classify(mail, c)
    return mail, rules.decide(mail, v, c, has_documents=True)


def test_the_genuine_reply_is_accepted():
    """The control: the same mail with a plain From files."""
    for from_ in (HOST, f"Anna Värd <{HOST}>", f"=?utf-8?q?Anna_V=C3=A4rd?= <{HOST}>", f"{HOST} (Anna)"):
        mail, d = decision(minutes(from_, PASS))
        assert mail.sender == HOST and d.action == "accept", (from_, d)


# ------------------------------------------------------------------ encoded words


@pytest.mark.parametrize("from_", [
    "=?utf-8?q?anna=40host.example.se?=",             # Q: "=40" is "@"
    "=?UTF-8?B?YW5uYUBob3N0LmV4YW1wbGUuc2U=?=",       # B: base64 of the address
    "=?utf-8?q?anna@host.example.se?=",               # a literal "@" inside the encoded word
    "<=?utf-8?q?anna=40host.example.se?=>",           # an encoded word in angle brackets
    "=?iso-8859-1?q?Anna?= =?utf-8?q?anna=40host.example.se?=",
])
def test_an_encoded_word_is_never_an_address(from_):
    mail, d = decision(minutes(from_, PASS))
    assert mail.from_addresses == () and mail.sender == ""
    assert (d.action, d.rule) == ("hold", "one-from-mailbox")


def test_an_encoded_display_name_beside_another_address_gives_that_address():
    mail, d = decision(minutes(f"=?utf-8?q?anna=40host.example.se?= <{EVIL}>",
                               f"{OURS}; dmarc=pass header.from=evil.example"))
    assert mail.from_addresses == (EVIL,) and mail.sender == EVIL
    assert d.action == "hold" and d.rule == "allowed-filer"


# ------------------------------------------------------------------ display names


@pytest.mark.parametrize("from_", [
    f"Anna Värd {HOST}",                  # no angle brackets: a phrase, not a mailbox
    f'Anna "{HOST}"',                     # the address only in a quoted string
    f"Anna ({HOST})",                     # the address only in a comment
])
def test_an_address_in_a_display_name_is_not_the_address(from_):
    mail, d = decision(minutes(from_, PASS))
    assert mail.from_addresses == () and mail.sender == ""
    assert (d.action, d.rule) == ("hold", "one-from-mailbox")


def test_an_unclosed_angle_address_is_still_its_addr_spec():
    mail, d = decision(minutes(f"Anna Värd <{HOST}", PASS))
    assert mail.sender == HOST and mail.sender_name == "Anna Värd" and d.action == "accept"


def test_a_quoted_display_name_that_looks_like_the_host():
    mail, d = decision(minutes(f'"{HOST}" <{EVIL}>', f"{OURS}; dmarc=pass header.from=evil.example"))
    assert mail.sender == EVIL and mail.sender_name == HOST
    assert (d.action, d.rule) == ("hold", "allowed-filer")
    # two mailboxes, the first one looking like a display name: never one sender
    mail, d = decision(minutes(f"{HOST} <{EVIL}>", PASS))
    assert mail.sender == "" and set(mail.from_addresses) == {HOST, EVIL}
    assert (d.action, d.rule) == ("hold", "one-from-mailbox")


def test_addr_spec():
    assert addr_spec("Anna@Host.Example.se") == HOST
    assert addr_spec('"a b"@host.example.se') == '"a b"@host.example.se'
    assert addr_spec("björn@malmö.example") == "björn@malmö.example"
    for bad in ("", "anna", "anna@localhost", "anna@host.se?=", "=?utf-8?q?a=40b.se?=", "=?utf-8?q?a@b.se?=",
                "a b@host.se", "a@ho st.se", "a@-host.se", "a@host..se", "a..b@host.se", "a@[1.2.3.4]"):
        assert addr_spec(bad) == "", bad


# ------------------------------------------------------------------ dmarc=pass and header.from


def test_dmarc_pass_without_header_from_does_not_count():
    fields = [f"{OURS}; dmarc=pass"]
    ok, why = mail_authenticated(fields, {OURS}, HOST)
    assert not ok and "header.from" in why
    mail, d = decision(minutes(HOST, *fields))
    assert (d.action, d.rule) == ("hold", "authenticated")
    # also not with a comment that names the domain: only the property counts
    assert not mail_authenticated([f"{OURS}; dmarc=pass (header.from=host.example.se)"], {OURS}, HOST)[0]
    # ... nor for Exchange Online's field without an authserv-id
    assert not mail_authenticated(["spf=pass smtp.mailfrom=evil.example; dmarc=pass action=none"],
                                  {"exchange-online"}, HOST)[0]


def test_dmarc_pass_for_another_domain_does_not_count():
    for hf in ("evil.example", "example.se", "sub.host.example.se", "host.example.se.evil.example"):
        fields = [f"{OURS}; dmarc=pass header.from={hf}"]
        ok, why = mail_authenticated(fields, {OURS}, HOST)
        assert not ok and hf in why, hf
        assert decision(minutes(HOST, *fields))[1].rule == "authenticated"
    # and an aligned dkim=pass does not rescue a dmarc=pass for another domain
    assert not mail_authenticated(
        [f"{OURS}; dkim=pass header.d=host.example.se; dmarc=pass header.from=evil.example"], {OURS}, HOST)[0]


def test_dmarc_pass_header_from_is_compared_as_a_domain():
    for hf in ("host.example.se", "HOST.Example.SE", "host.example.se.", '"host.example.se"'):
        assert mail_authenticated([f"{OURS}; dmarc=pass header.from={hf}"], {OURS}, HOST)[0], hf


def test_the_explicit_setting_accepts_a_bare_dmarc_pass_of_that_receiver_only():
    bare = "spf=pass (sender IP is 40.107.1.1) smtp.mailfrom=host.example.se; dmarc=pass action=none"
    ok, why = mail_authenticated([bare], {"exchange-online"}, HOST, {"exchange-online"})
    assert ok and "dmarc_pass_without_header_from" in why
    mail, d = decision(minutes(HOST, bare), ctx(frozenset({"exchange-online"})))
    assert d.action == "accept"
    # the setting names another receiver: no
    assert decision(minutes(HOST, bare), ctx(frozenset({OURS})))[1].rule == "authenticated"
    assert decision(minutes(HOST, f"{OURS}; dmarc=pass"), ctx(frozenset({"exchange-online"})))[1].rule \
        == "authenticated"
    # the setting never makes a pass for another domain count, nor a fail pass
    c = ctx(frozenset({OURS}))
    assert decision(minutes(HOST, f"{OURS}; dmarc=pass header.from=evil.example"), c)[1].rule == "authenticated"
    assert decision(minutes(HOST, f"{OURS}; dmarc=fail"), c)[1].rule == "authenticated"
    # and never an untrusted field: a sender's id-less field below ours
    assert decision(minutes(HOST, f"{OURS}; dmarc=none", bare), ctx(frozenset({"exchange-online"})))[1].rule \
        == "authenticated"


def test_the_setting_is_read_and_validated(tmp_path):
    d = copy_config(tmp_path)
    cfg = load_config(d, environ={"KCG_INBOUND__TRUSTED_AUTHSERV_IDS": "mx1.example.se,Exchange-Online",
                                  "KCG_INBOUND__DMARC_PASS_WITHOUT_HEADER_FROM": "exchange-online"})
    assert cfg.transport.inbound.dmarc_pass_without_header_from == ["exchange-online"]
    assert load_config(d, environ={}).transport.inbound.dmarc_pass_without_header_from == []
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ={"KCG_INBOUND__TRUSTED_AUTHSERV_IDS": "mx1.example.se",
                                "KCG_INBOUND__DMARC_PASS_WITHOUT_HEADER_FROM": "exchange-online"})
    msg = str(exc.value)
    assert "transport.yaml" in msg and "dmarc_pass_without_header_from" in msg and "exchange-online" in msg
    assert "fix" in msg
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ={"KCG_INBOUND__TRUSTED_AUTHSERV_IDS": "mx1.example.se",
                                "KCG_INBOUND__DMARC_PASS_WITHOUT_HEADER_FROM": "mx1.example.se; dmarc=pass"})
    assert "dmarc_pass_without_header_from" in str(exc.value)
