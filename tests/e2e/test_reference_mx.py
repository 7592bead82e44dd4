"""The whole trust chain against a real authenticating receiver (the reference MX).

No test writes ``Authentication-Results`` here: the host's reply is DKIM-signed
with the host domain's key and handed, like any mail from the internet, to the
unauthenticated MX port of a real Postfix whose OpenDKIM and OpenDMARC check
it against the DNS records of a loopback DNS server (``tests/support/reference_mx.py``).
What they stamp is what the real intake (SMTP/IMAP transport) decides on:

* signed by the host's domain: ``dmarc=pass`` -> filed and distributed;
* unsigned, signed by another domain, signed and altered on the way, or with
  ``Authentication-Results`` fields forged by the sender (our id, in several
  spellings, and a foreign id saying pass): ``dmarc=fail`` -> held;
* SPF alone (sent from the address the domain's SPF record names) passes DMARC
  too: the receiver really evaluates SPF.
"""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy

import pytest
from support.attacks.cases import mail
from support.attacks.world import CFG, _copy, _ctx
from support.basics import server_users
from support.helpers import at, close, make_app

from kcg_mail.core.inbound import parse
from kcg_mail.core.inbound.authres import mail_authenticated, parse_authentication_results, trusted_results
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.intake import msg_key, run_intake

pytestmark = pytest.mark.server

KCG_TEST = "kcg@kcg.test"
CASE = "X-Case"
EVIL = "evil.example"
#: a domain with SPF and DKIM records but no DMARC record
NO_DMARC = "utan-dmarc.example.se"
#: a host on the road (a phone, a hotel): not in the domain's SPF record, so only DKIM can pass
ROAMING_IP = "203.0.113.25"


@pytest.fixture(scope="module")
def mx():
    """The reference MX (tests/support/reference_mx.py) for every domain of the network and a stranger's."""
    from support.corpus_cycle import accept_domains
    from support.reference_mx import reference_mx

    users = server_users(CFG)
    users[KCG_TEST] = "kcg-secret"
    domains = {e.partition("@")[2] for e in users} - {"kcg.test"}
    ours = CFG.transport.inbound.trusted_authserv_ids[0]
    with reference_mx(users, domains | {EVIL}, ours, without_dmarc={NO_DMARC}) as server:
        accept_domains(server.server, domains | {"kcg.test"})
        yield server


def _ours(raw: bytes, ours: str) -> list[str]:
    """The Authentication-Results fields of ``raw`` that carry our authserv-id, top first."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    out = []
    for v in msg.get_all("Authentication-Results") or []:
        ar = parse_authentication_results(str(v))
        if ar is not None and ar.authserv_id == ours:
            out.append(" ".join(str(v).split()))
    return out


def _topmost_dmarc(raw: bytes, ours: str) -> tuple[str, str]:
    ar = trusted_results(list(parse(raw).auth_results), [ours])
    assert ar is not None, raw[:1500]
    (d,) = ar.of("dmarc")
    return d.result, d.props.get("header.from", "")


def _stored_by_case(mx, n: int) -> dict[str, bytes]:
    stored = mx.server.wait_for(KCG_TEST, "INBOX", count=n, timeout=60)
    assert len(stored) == n
    return {str(email.message_from_bytes(r, policy=policy.compat32)[CASE]): r for r in stored}


def test_the_receiver_authenticates_and_the_intake_files_only_the_hosts_signed_reply(prepared, mx, tmp_path):
    from kcg_mail.adapters.smtp_imap import SmtpImapTransport
    from kcg_mail.services.approval import pending

    mx.server.reset(KCG_TEST)
    wd = _copy(prepared, tmp_path / "wd")
    app = make_app(wd, CFG, mail=SmtpImapTransport(**mx.server.transport_kwargs(KCG_TEST)))
    c = _ctx(app, wd)
    dom = c.host_domain

    def reply(name: str, **kw) -> bytes:
        base = dict(from_=f"Daniel Värd <{c.host}>", in_reply_to=c.tpl_msgid, to=c.tpl_reply_to,
                    subject="SV: " + c.tpl_subject, body=f"Hej! Här kommer protokollet ({name}).\n")
        base.update(kw)
        return mail(c, **base)

    def tag(name: str, raw: bytes) -> bytes:
        return f"{CASE}: {name}\r\n".encode() + raw  # above the signature: not signed, changes nothing

    signed = mx.sign(reply("genuine"), dom)
    head, sep, body = mx.sign(reply("altered"), dom).partition(b"\r\n\r\n")
    forged = [  # what a sender can write on top of an unsigned mail
        f"{c.ours}; spf=pass smtp.mailfrom={dom}; dkim=pass header.d={dom}; dmarc=pass header.from={dom}",
        f"(checked) {c.ours.upper()}; dkim=pass header.d={dom}",
        f"{c.ours};\r\n\tdkim=pass header.d={dom};\r\n\tdmarc=pass header.from={dom}",
        f"mx.google.com; dkim=pass header.i=@{dom}; dmarc=pass header.from={dom}",
    ]
    sends = {
        "genuine": (signed, c.host, ROAMING_IP),
        "unsigned": (reply("unsigned"), c.host, ROAMING_IP),
        "other_domain": (mx.sign(reply("other_domain"), EVIL), f"bounce@{EVIL}", ROAMING_IP),
        "altered": (head + sep + body.replace(b"protokollet", b"PROTOKOLLET", 1), c.host, ROAMING_IP),
        "forged_results": (
            "".join(f"{'authentication-results' if i == 1 else 'Authentication-Results'}: {f}\r\n"
                    for i, f in enumerate(forged)).encode() + reply("forged_results"), c.host, ROAMING_IP),
    }
    assert b"PROTOKOLLET" in sends["altered"][0]
    for name, (raw, mail_from, ip) in sends.items():
        mx.send(tag(name, raw), KCG_TEST, mail_from=mail_from, client_ip=ip)
    stored = _stored_by_case(mx, len(sends))

    # what the receiver stamped: its own three fields on top, DMARC's verdict topmost
    verdicts = {name: _topmost_dmarc(raw, c.ours) for name, raw in stored.items()}
    assert verdicts == {"genuine": ("pass", dom), "unsigned": ("fail", dom), "other_domain": ("fail", dom),
                        "altered": ("fail", dom), "forged_results": ("fail", dom)}, verdicts
    for name, raw in stored.items():
        fields = _ours(raw, c.ours)
        assert len(fields) == 3 and [f.split(";")[1].split("=")[0].strip() for f in fields] == \
            ["dmarc", "spf", "dkim"], (name, fields)  # the sender's fields with our id are gone
    assert "dkim=pass" in _ours(stored["genuine"], c.ours)[2] and f"header.d={dom}" in _ours(stored["genuine"],
                                                                                            c.ours)[2]
    assert f"dkim=pass (2048-bit key; unprotected) header.d={EVIL}" in _ours(stored["other_domain"], c.ours)[2]
    assert "dkim=fail" in _ours(stored["altered"], c.ours)[2]
    assert "dkim=none" in _ours(stored["unsigned"], c.ours)[2]
    assert all("spf=fail" in _ours(r, c.ours)[1] for r in stored.values())  # ROAMING_IP is in no SPF record
    foreign = [str(v) for v in email.message_from_bytes(stored["forged_results"], policy=policy.compat32)
               .get_all("Authentication-Results") if "mx.google.com" in str(v)]
    assert len(foreign) == 1  # a foreign id stays, below ours, and counts for nothing

    # the real intake on IMAP decides on that
    report = run_intake(app, at(app.meeting("2023-02").date + timedelta(days=1), 12))
    assert report.errors == []
    records = {r.msg_key: r for r in app.state.messages()}
    outcome = {name: records[msg_key(raw)].outcome for name, raw in stored.items()}
    assert outcome == {"genuine": "minutes", "unsigned": "held", "other_domain": "held", "altered": "held",
                       "forged_results": "held"}, outcome
    for name in ("unsigned", "other_domain", "altered", "forged_results"):
        assert f"dmarc=fail for {dom}" in records[msg_key(stored[name])].reason, (name, records[msg_key(stored[name])])
    held = {p.msg_key for p in pending(app)}
    assert held == {msg_key(stored[n]) for n in ("unsigned", "other_domain", "altered", "forged_results")}
    # filed once, distributed once: to the members' mailboxes over the real Postfix
    assert [f.meeting_id for f in app.state.filings()] == ["2023-02"]
    sent = [email.message_from_bytes(r, policy=policy.default) for r in mx.server.messages(KCG_TEST, "Sent")]
    assert [str(m[MARKER_HEADER]) for m in sent] == ["2023-02:distribute:members:v1"]
    mx.server.wait_queue()
    got = mx.server.wait_for(c.member, "INBOX", count=1, timeout=30)
    assert any(b"2023-02:distribute:members:v1" in r for r in got)
    close(app)


def test_spf_alone_passes_dmarc_at_the_receiver(mx):
    """Unsigned, but from the address the host domain's SPF record names: SPF is
    really evaluated (libspf2 against the loopback DNS), and aligned SPF passes DMARC."""
    from support.reference_mx import MEMBER_MTA_IP, STRANGER_IP

    mx.server.reset(KCG_TEST)
    ours = CFG.transport.inbound.trusted_authserv_ids[0]
    host = CFG.network.coordinator.email
    dom = host.rpartition("@")[2]
    raw = (f"From: Björn <{host}>\r\nTo: {KCG_TEST}\r\nSubject: SPF\r\nMessage-ID: <spf@{dom}>\r\n"
           "Date: Tue, 7 Feb 2023 10:00:00 +0100\r\n\r\nHej\r\n").encode()
    mx.send(f"{CASE}: member_mta\r\n".encode() + raw, KCG_TEST, mail_from=host, client_ip=MEMBER_MTA_IP)
    mx.send(f"{CASE}: stranger\r\n".encode() + raw, KCG_TEST, mail_from=host, client_ip=STRANGER_IP)
    stored = _stored_by_case(mx, 2)
    assert [f.split(";")[1].strip() for f in _ours(stored["member_mta"], ours)][:2] == \
        [f"dmarc=pass (p=reject dis=none) header.from={dom}", f"spf=pass smtp.mailfrom={dom}"]
    assert "spf=fail" in _ours(stored["stranger"], ours)[1]
    ok, why = mail_authenticated(parse(stored["member_mta"]).auth_results, [ours], host)
    assert ok and why.startswith(f"dmarc=pass header.from={dom}")
    assert not mail_authenticated(parse(stored["stranger"]).auth_results, [ours], host)[0]
    # the records the receiver asked for came from our DNS server
    assert (f"_dmarc.{dom}", "TXT") in mx.zone.queries and (dom, "TXT") in mx.zone.queries


def test_without_a_dmarc_record_a_valid_signature_still_waits(mx):
    """A domain that publishes no DMARC record: OpenDKIM says dkim=pass in its own
    field, but the topmost field (OpenDMARC's) says dmarc=none and carries no DKIM
    result, and only the topmost field counts: the reply waits for approval
    (SECURITY.md, "The reference MX": every member domain needs a DMARC record)."""
    mx.server.reset(KCG_TEST)
    ours = CFG.transport.inbound.trusted_authserv_ids[0]
    sender = f"anna@{NO_DMARC}"
    raw = (f"From: Anna <{sender}>\r\nTo: {KCG_TEST}\r\nSubject: Protokoll\r\nMessage-ID: <nodmarc@{NO_DMARC}>\r\n"
           "Date: Tue, 7 Feb 2023 10:00:00 +0100\r\n\r\nHej\r\n").encode()
    mx.send(f"{CASE}: no_dmarc\r\n".encode() + mx.sign(raw, NO_DMARC), KCG_TEST, mail_from=sender,
            client_ip=ROAMING_IP)
    (stored,) = _stored_by_case(mx, 1).values()
    fields = _ours(stored, ours)
    assert fields[0].startswith(f"{ours}; dmarc=none") and f"header.from={NO_DMARC}" in fields[0], fields
    assert f"dkim=pass (2048-bit key; unprotected) header.d={NO_DMARC}" in fields[2], fields
    ok, why = mail_authenticated(parse(stored).auth_results, [ours], sender)
    assert not ok and "dmarc=none" in why, why


def test_header_checks_drop_fields_that_claim_our_id_without_the_milters(mx):
    """The documented header_checks line on its own (the submission port runs no
    milter): every spelling of a field claiming our id is dropped, a field of
    another id and one that only has our id as a part of a longer name stay."""
    import smtplib

    mx.server.reset(KCG_TEST)
    ours = CFG.transport.inbound.trusted_authserv_ids[0]
    claims = [f"{ours}; dmarc=pass header.from=x.se", f"{ours.upper()} ; dkim=pass header.d=x.se",
              f"(kommentar) {ours}; dkim=pass header.d=x.se", f"{ours};\r\n\tspf=pass smtp.mailfrom=x.se",
              f"{ours}(x); dmarc=pass header.from=x.se"]
    kept = ["mx.google.com; dmarc=pass header.from=x.se", f"not-{ours}; dmarc=pass header.from=x.se",
            f"{ours}.evil.example; dmarc=pass header.from=x.se"]
    head = "".join(f"Authentication-Results: {f}\r\n" for f in claims + kept)
    raw = (head + f"From: {KCG_TEST}\r\nTo: {KCG_TEST}\r\nSubject: rubriker\r\nMessage-ID: <hc@kcg.test>\r\n\r\n"
           "Hej\r\n").encode()
    with smtplib.SMTP(mx.server.host, mx.server.smtp_port, timeout=30) as smtp:
        smtp.starttls(context=mx.server.ssl_context())
        smtp.login(KCG_TEST, mx.server.users[KCG_TEST])
        smtp.sendmail(KCG_TEST, [KCG_TEST], raw)
    (stored,) = mx.server.wait_for(KCG_TEST, "INBOX", count=1, timeout=30)
    got = [" ".join(str(v).split()) for v in
           email.message_from_bytes(stored, policy=policy.compat32).get_all("Authentication-Results") or []]
    assert got == kept, got
