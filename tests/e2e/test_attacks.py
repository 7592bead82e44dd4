"""Trust only the host. The attack cases of ``tests/support/attacks/cases.py``
through the real intake, on Maildir and on IMAP (real Dovecot + Postfix), and
the scenarios around them: genuine hosts, reply keys, the daily limit, late
copies, oversized mail, approval.

"Our receiving server" is played by the test: it puts its
``Authentication-Results`` on top of each mail as Postfix + OpenDMARC would
(``helpers.authenticated``). The private Postfix of tests/support/mailserver.py runs no
milter, so the test writes that field itself before delivery; everything
below our field is what the sender wrote (see SECURITY.md).
"""

from __future__ import annotations

import email
from dataclasses import replace as dc_replace
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from support.attacks.cases import CASES, Ctx, ar, mail
from support.attacks.world import CFG, _copy, _ctx, _genuine, _intake, _tpl_path
from support.helpers import (
    TEST_REPLY_SECRET,
    at,
    changed_minutes,
    close,
    make_app,
    read_mail,
    sent_by_key,
)

from kcg_mail.core import replykey
from kcg_mail.ports import MARKER_HEADER, message_id_for
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import msg_key, run_intake

CASE_HEADER = "X-Attack-Case"










def _case_raws(c: Ctx) -> dict[str, bytes]:
    return {case.name: f"{CASE_HEADER}: {case.name}\r\n".encode() + case.build(c) for case in CASES}


def _nothing_acted(app, before: dict[str, int]) -> None:
    assert app.state.filings() == []
    assert app.state.decisions() == []
    assert app.state.attendance("2023-02") == {}
    acted = [r.key for r in app.state.actions() if r.action in ("distribute", "reply_problem")]
    assert acted == []


def _check_outcomes(app, key_of: dict[str, str], report) -> None:
    assert report.errors == []
    records = {r.msg_key: r for r in app.state.messages()}
    got = {name: (records[k].outcome, records[k].reason) for name, k in key_of.items()}
    wrong = {case.name: got[case.name] for case in CASES
             if got[case.name][0] != case.outcome or case.why.lower() not in got[case.name][1].lower()}
    assert wrong == {}, "\n".join(f"{n}: {o} ({r})" for n, (o, r) in wrong.items())
    # every held case is listed for the coordinator with sender, subject and why
    from kcg_mail.services.approval import pending

    listed = {p.msg_key: p for p in pending(app)}
    for case in CASES:
        if case.outcome == "held":
            p = listed[key_of[case.name]]
            assert p.why and p.subject and p.files == ["Protokoll.docx"], p


def test_at_least_thirty_attack_cases():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


def test_attacks_maildir(prepared, tmp_path):
    wd = _copy(prepared, tmp_path / "wd")
    app = make_app(wd, CFG)
    raws = _case_raws(_ctx(app, wd))
    sent_before = sent_by_key(wd)
    for name, raw in raws.items():
        app.mail.deliver(raw, f"{name}.eml")
    report = run_intake(app, at(app.meeting("2023-02").date + timedelta(days=1), 12))
    _check_outcomes(app, {n: msg_key(r) for n, r in raws.items()}, report)
    _nothing_acted(app, {})
    assert sent_by_key(wd) == sent_before  # nobody was mailed anything
    assert len(list((wd / "mail" / "quarantine" / "cur").iterdir())) == sum(c.outcome != "own" for c in CASES)
    _check_connect_lists_authserv_ids(app)
    close(app)


def _check_connect_lists_authserv_ids(app) -> None:
    """``kcg check --connect``: the authserv-ids seen on recent mail, ours among them."""
    from kcg_mail.services.trust_check import authserv_checks

    ours = app.cfg.transport.inbound.trusted_authserv_ids
    (ok,) = authserv_checks(app.mail, ours, limit=100)
    assert ok.ok and f"{ours[0]} (topmost on" in ok.detail and "mx.evil.example" in ok.detail, ok.detail
    (bad,) = authserv_checks(app.mail, ["mx.elsewhere.example"], limit=100)
    assert not bad.ok and "none is a trusted id" in bad.detail


@pytest.mark.server
def test_attacks_imap(prepared, tmp_path, monkeypatch):
    from support.basics import server_users
    from support.corpus_cycle import KCG_TEST, accept_domains
    from support.mailserver import mail_server

    from kcg_mail.adapters.smtp_imap import SmtpImapTransport

    wd = _copy(prepared, tmp_path / "wd")
    users = server_users(CFG)
    users[KCG_TEST] = "kcg-secret"
    with mail_server(users=users) as server:
        accept_domains(server, {e.partition("@")[2] for e in users})
        app = make_app(wd, CFG, mail=SmtpImapTransport(**server.transport_kwargs(KCG_TEST)))
        raws = _case_raws(_ctx(app, wd))
        for name, raw in raws.items():
            server.deliver(raw, KCG_TEST, mail_from=f"bounce@{name.replace('_', '-')}.attack.test")
        stored = server.messages(KCG_TEST, "INBOX")
        assert len(stored) == len(raws)
        key_of = {}
        for raw in stored:
            name = str(email.message_from_bytes(raw, policy=policy.default)[CASE_HEADER])
            key_of[name] = msg_key(raw)
        report = run_intake(app, at(app.meeting("2023-02").date + timedelta(days=1), 12))
        _check_outcomes(app, key_of, report)
        _nothing_acted(app, {})
        assert server.messages(KCG_TEST, "Sent") == []
        assert len(server.messages(KCG_TEST, "quarantine")) == sum(c.outcome != "own" for c in CASES)
        _check_connect_lists_authserv_ids(app)
        # the genuine host's reply still goes through on IMAP: filed and distributed once
        c = _ctx(app, wd)
        genuine = mail(c, from_=f"Daniel Värd <{c.host}>", in_reply_to=c.tpl_msgid, to=c.tpl_reply_to,
                       subject="SV: " + c.tpl_subject, ar_fields=[ar(c.ours, "pass", c.host_domain)])
        server.deliver(genuine, KCG_TEST)
        r2 = run_intake(app, at(app.meeting("2023-02").date + timedelta(days=1), 13))
        assert [h.outcome for h in r2.handled] == ["minutes"], r2.handled
        sent = [email.message_from_bytes(r, policy=policy.default) for r in server.messages(KCG_TEST, "Sent")]
        assert [str(m[MARKER_HEADER]) for m in sent] == ["2023-02:distribute:members:v1"]
        # oversized mail: the headers are read (RFC822.SIZE, BODY.PEEK[HEADER]); the host is answered
        import kcg_mail.adapters.maildir as md

        monkeypatch.setattr(md, "MAX_INCOMING", 10_000)
        server.deliver(mail(c, from_=c.host, subject="SV: stort", ar_fields=[ar(c.ours, "pass", c.host_domain)]),
                       KCG_TEST)
        server.deliver(mail(c, from_=c.host, subject="SV: stort, förfalskat"), KCG_TEST)
        r3 = run_intake(app, at(app.meeting("2023-02").date + timedelta(days=1), 14))
        assert sorted(h.outcome for h in r3.handled) == ["discarded", "too_large"], r3.handled
        sent = [email.message_from_bytes(r, policy=policy.default) for r in server.messages(KCG_TEST, "Sent")]
        assert sorted(str(m[MARKER_HEADER]).split(":")[1] for m in sent) == ["distribute", "reply_problem"]
        close(app)


# ------------------------------------------------------------------ genuine hosts








def _distributed(wd: Path) -> list[str]:
    return sorted(k for k in sent_by_key(wd) if ":distribute:" in k)


@pytest.mark.parametrize("how", ["reply", "fresh_with_token", "fresh_by_date"])
def test_genuine_host_is_filed_and_distributed(feb, how):
    app, wd, c = feb
    raw = {
        "reply": lambda: _genuine(c, in_reply_to=c.tpl_msgid, to=c.tpl_reply_to, subject="SV: " + c.tpl_subject),
        "fresh_with_token": lambda: _genuine(c),
        "fresh_by_date": lambda: _genuine(c, subject="Protokollet från mötet"),
    }[how]()
    app.mail.deliver(raw, "genuine.eml")
    report = _intake(app)
    assert [h.outcome for h in report.handled] == ["minutes"], report.handled
    assert _distributed(wd) == ["2023-02:distribute:members:v1"]
    assert app.state.decisions("2023-02")


def test_our_mail_carries_an_unguessable_reply_key(feb):
    app, wd, c = feb
    m = app.meeting("2023-02")
    key = f"{m.id}:send_template:{m.host.email}"
    # not computable from public data: neither the old derivation nor one without our secret
    assert c.tpl_msgid != message_id_for(key, "svenskastadskarnor.example.se")
    assert c.tpl_msgid != replykey.message_id(b"another secret", key, "svenskastadskarnor.example.se")
    assert c.tpl_msgid == replykey.message_id(TEST_REPLY_SECRET, key, "svenskastadskarnor.example.se")
    (k,) = replykey.keys_in([c.tpl_msgid], [c.tpl_reply_to])
    assert replykey.verify(TEST_REPLY_SECRET, k, m.host.email, ["2023-02"]).meeting_id == "2023-02"
    assert replykey.verify(TEST_REPLY_SECRET, k, "lisa@uppsala.example.se", ["2023-02"]) is None
    assert replykey.verify(b"another secret", k, m.host.email, ["2023-02"]) is None
    assert c.tpl_reply_to.endswith(f"<kcg+{k}@svenskastadskarnor.example.se>")
    # the crash recovery still finds it: by the marker, not the Message-ID
    assert app.mail.was_sent(key)


def test_plus_address_reply_to_can_be_switched_off(tmp_path):
    inbound = CFG.transport.inbound.model_copy(update={"plus_address_reply_to": False})
    cfg = CFG.model_copy(update={"transport": CFG.transport.model_copy(update={"inbound": inbound})})
    app = make_app(tmp_path, cfg)
    feb = app.meeting("2023-02")
    run_daily(app, at(feb.date - timedelta(days=3)))  # the Friday before: a working day
    tpl = read_mail(_tpl_path(tmp_path, feb))
    assert "+" not in str(tpl["Reply-To"]) and str(tpl["Message-ID"]).startswith("<kcg.2023-02.send_template.")
    close(app)


# ------------------------------------------------------------------ require_reply_key


def _require_key(app):
    inbound = app.cfg.transport.inbound.model_copy(update={"require_reply_key": True})
    app.cfg = app.cfg.model_copy(update={"transport": app.cfg.transport.model_copy(update={"inbound": inbound})})


def test_require_reply_key_makes_the_key_a_second_factor(feb):
    app, wd, c = feb
    _require_key(app)
    bad_key = c.tpl_reply_to.replace("<kcg+2023-02.send_template.", "<kcg+2023-02.send_template.a")[:-2] + ">"
    cases = {
        "no_key": (_genuine(c), "held"),
        "wrong_key": (_genuine(c, to=bad_key, in_reply_to="<kcg.2023-02.send_template.aaaaaaaaaaaaaaaaaaaa.bbbb@x>"),
                      "held"),
        # the March brief's key: made for another meeting and another recipient
        "replayed_key_other_meeting_recipient": (_genuine(c, in_reply_to=c.other_msgid), "held"),
    }
    for name, (raw, _) in cases.items():
        app.mail.deliver(raw, f"{name}.eml")
    report = _intake(app)
    assert sorted(h.outcome for h in report.handled) == ["held", "held", "held"], report.handled
    # a replayed key ties the mail to the key's own meeting (March), where Daniel is no filer: held either way
    assert all("reply key" in h.reason or "not a filer" in h.reason for h in report.handled), report.handled
    assert app.state.filings() == [] and _distributed(wd) == []
    # the real reply to our mail is accepted
    app.mail.deliver(_genuine(c, in_reply_to=c.tpl_msgid, to=c.tpl_reply_to, subject="SV: x"), "ok.eml")
    assert [h.outcome for h in _intake(app, 13).handled] == ["minutes"]
    assert _distributed(wd) == ["2023-02:distribute:members:v1"]


# ------------------------------------------------------------------ bounded mail-outs


def test_a_flood_of_versions_sends_at_most_the_daily_limit(feb):
    """Five forged mails once gave 70 mails in one run. Now: even 30 genuine
    versions in one run give at most distribution.max_per_meeting_per_day."""
    app, wd, c = feb
    doc = c.docx
    for i in range(30):
        doc_i = changed_minutes(doc, f"Beslut nummer {i}")
        app.mail.deliver(mail(dc_replace(c, docx=doc_i), from_=c.host, body=f"v{i}\n",
                              ar_fields=[ar(c.ours, "pass", c.host_domain)]), f"v{i:02d}.eml")
    report = _intake(app)
    limit = app.cfg.transport.distribution.max_per_meeting_per_day
    assert report.errors == []
    assert report.count("minutes") == limit == 2
    assert report.count("held") == 28
    assert len(_distributed(wd)) == limit
    assert len(app.state.filings("2023-02")) == limit  # filed: only what went out
    held = [h for h in app.ledger.held_versions() if h.meeting_id == "2023-02"]
    assert len({h.content_hash for h in held}) == 28 and all(h.state == "held" for h in held)  # nothing lost
    assert len(list((wd / "held" / "2023-02").iterdir())) == 28  # kept under the work directory
    assert len([p for p in (wd / "dropbox").rglob("*.docx")]) == limit  # not in the shared archive
    # the next day the allowance is new, but held versions still wait for a person
    assert _intake(app, day_offset=2).handled == []
    assert len(_distributed(wd)) == limit


def test_held_distribution_is_released_or_rejected_by_the_coordinator(feb):
    from kcg_mail.services.approval import approve, pending, reject

    app, wd, c = feb
    for i in range(4):
        app.mail.deliver(mail(dc_replace(c, docx=changed_minutes(c.docx, f"B{i}")), from_=c.host, body=f"{i}\n",
                              ar_fields=[ar(c.ours, "pass", c.host_domain)]), f"v{i}.eml")
    _intake(app)
    held = pending(app)
    assert [p.kind for p in held] == ["version", "version"]
    assert all(p.why.startswith("tredje versionen i dag") for p in held), held
    out = approve(app, held[0].msg_key)
    assert out.action == "approved"
    assert "2023-02:distribute:members:v3" in _distributed(wd)
    reject(app, held[1].msg_key)
    assert pending(app) == []
    assert len(_distributed(wd)) == 3
    assert len(app.state.filings("2023-02")) == 3  # the rejected one was never filed


def test_held_message_is_released_by_approve_filed_and_sent_at_once(feb):
    from kcg_mail.services.approval import approve, pending, reject
    from kcg_mail.services.manual import ManualProblem

    app, wd, c = feb
    app.mail.deliver(mail(c, from_=c.host), "unauth.eml")  # no Authentication-Results at all
    app.mail.deliver(mail(c, from_="boss@evil.example", body="x\n"), "stranger.eml")
    _intake(app)
    (p1, p2) = sorted(pending(app), key=lambda p: p.sender)
    assert p1.sender == "boss@evil.example" and p2.sender == c.host
    reject(app, p1.msg_key)
    approve(app, p2.ref)  # by the transport's reference
    with pytest.raises(ManualProblem):
        approve(app, p1.msg_key)  # rejected: no longer waiting
    # the version that waited in the held area is filed and sent by the approval itself
    assert _distributed(wd) == ["2023-02:distribute:members:v1"]
    assert app.state.message(p2.msg_key).outcome == "minutes"
    assert _intake(app, 13).handled == []
    assert _distributed(wd) == ["2023-02:distribute:members:v1"]
    assert pending(app) == []


def test_an_older_version_is_held_as_a_late_copy(feb):
    app, wd, c = feb
    app.mail.deliver(_genuine(c), "v1.eml")
    _intake(app)
    decisions = app.state.decisions("2023-02")
    older = dc_replace(c, docx=changed_minutes(c.docx, "Ett gammalt beslut"), when=c.when - timedelta(hours=20))
    app.mail.deliver(_genuine(older, body="gammal\n"), "old.eml")
    report = _intake(app, 13)
    assert [h.outcome for h in report.handled] == ["held"], report.handled
    assert "kom in efter att protokollet redan skickats ut" in report.handled[0].reason
    assert len(app.state.filings("2023-02")) == 1  # held, not filed
    assert app.state.decisions("2023-02") == decisions  # not replaced
    assert _distributed(wd) == ["2023-02:distribute:members:v1"]
    # a future Date does not make a copy newer than our receipt: it is dated by receipt
    assert (wd / "mail" / "processed" / "cur").is_dir()


# ------------------------------------------------------------------ calendar responses


def test_genuine_calendar_response_counts(feb):
    from support.attacks.cases import ics_reply

    app, wd, c = feb
    app.mail.deliver(mail(c, from_=c.member, subject="Accepterat: " + c.token, attach=False,
                          ics=ics_reply(c, c.member), ar_fields=[ar(c.ours, "pass", "uppsala.example.se")]), "cal.eml")
    assert [h.outcome for h in _intake(app).handled] == ["calendar_response"]
    assert app.state.attendance("2023-02") == {c.member: "ACCEPTED"}


# ------------------------------------------------------------------ oversized mail


def test_oversized_mail_from_the_host_is_answered(feb, monkeypatch):
    import kcg_mail.adapters.maildir as md

    app, wd, c = feb
    monkeypatch.setattr(md, "MAX_INCOMING", 10_000)  # the real limit is 50 MB; the rule is the same
    big = _genuine(c, in_reply_to=c.tpl_msgid, subject="SV: " + c.tpl_subject)
    assert len(big) > 10_000
    app.mail.deliver(big, "big.eml")
    app.mail.deliver(mail(c, from_=c.host, body="y\n"), "big-forged.eml")  # also big, not authenticated
    report = _intake(app)
    outcomes = sorted(h.outcome for h in report.handled)
    assert outcomes == ["discarded", "too_large"], report.handled
    replies = [k for k in sent_by_key(wd) if ":reply_problem:" in k]
    assert replies == [f"2023-02:reply_problem:{c.host}:{(c.when).date().isoformat()}"]
    answer = next(m for m in (read_mail(p) for p in (wd / "mail" / "sent" / "cur").iterdir())
                  if ":reply_problem:" in str(m[MARKER_HEADER]))
    assert "för stort" in answer.get_body(("plain",)).get_content()


# ------------------------------------------------------------------ Microsoft 365 (Graph)


def test_graph_intake_reads_the_servers_authentication_results(feb):
    """Graph: the Authentication-Results come from internetMessageHeaders, the
    server's own list, even when the MIME content lacks them."""
    from support.fake_graph import FakeGraph

    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient

    app, wd, c = feb
    fake = FakeGraph()
    with fake.running():
        fake.mime_without_auth_results = True
        app.mail = GraphTransport(GraphClient(fake.settings(), fake.client_secret,
                                              sleep=lambda s: None))
        app.outbox.mail = app.mail
        fake.deliver(_genuine(c, in_reply_to=c.tpl_msgid, subject="SV: " + c.tpl_subject))
        fake.deliver(mail(c, from_=c.host, subject="SV: förfalskat",
                          ar_fields=[ar(c.ours, "fail", c.host_domain)]))
        report = _intake(app)
        assert sorted(h.outcome for h in report.handled) == ["held", "minutes"], report.handled
        held = next(h for h in report.handled if h.outcome == "held")
        assert "dmarc=fail" in held.reason
        app.mail.close()


def test_ews_intake_reads_the_servers_authentication_results(feb):
    """EWS (Exchange Server): the same, from the item's InternetMessageHeaders."""
    import requests_mock
    from exchangelib.protocol import close_connections
    from support.fake_ews import FakeEWS

    from kcg_mail.adapters.exchange import ExchangeTransport
    from kcg_mail.adapters.exchange_ews import EwsSession

    app, wd, c = feb
    fake = FakeEWS()
    fake.mime_without_auth_results = True
    close_connections()
    with requests_mock.Mocker() as mocker:
        fake.install(mocker)
        app.mail = ExchangeTransport(EwsSession(fake.mailbox, "basic", fake.url, sleep=lambda s: None,
                                                username=fake.username, password=fake.password))
        app.outbox.mail = app.mail
        fake.deliver(_genuine(c, in_reply_to=c.tpl_msgid, subject="SV: " + c.tpl_subject))
        fake.deliver(mail(c, from_=c.host, subject="SV: förfalskat", ar_fields=[ar(c.ours, "fail", c.host_domain)]))
        report = _intake(app)
        assert sorted(h.outcome for h in report.handled) == ["held", "minutes"], report.handled
        assert "dmarc=fail" in next(h for h in report.handled if h.outcome == "held").reason
        app.mail.close()
    close_connections()


# ------------------------------------------------------------------ the reply secret


def test_reply_secret_from_env_or_generated_once_with_mode_0600(tmp_path, caplog):
    import logging
    import stat

    from kcg_mail.secrets import REPLY_SECRET_FILE, install_log_filter, reply_secret

    install_log_filter()  # as bootstrap does
    assert reply_secret(tmp_path, environ={"KCG_REPLY_SECRET": "from-env"}) == b"from-env"
    assert not (tmp_path / REPLY_SECRET_FILE).exists()
    first = reply_secret(tmp_path, environ={})
    path = tmp_path / REPLY_SECRET_FILE
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reply_secret(tmp_path, environ={}) == first  # generated once, read afterwards
    with caplog.at_level(logging.INFO):
        logging.getLogger("kcg_mail.test").info("secret is %s", first.decode())
    assert first.decode() not in caplog.text  # masked like every secret


def test_bootstrap_uses_the_work_directory_secret(tmp_path, monkeypatch):
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.secrets import REPLY_SECRET_FILE

    monkeypatch.delenv("KCG_REPLY_SECRET", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    a = bootstrap(tmp_path, Path(__file__).resolve().parents[2] / "config")
    b = bootstrap(tmp_path, Path(__file__).resolve().parents[2] / "config")
    assert a.reply_secret == b.reply_secret == (tmp_path / REPLY_SECRET_FILE).read_text().strip().encode()
    a.state.close()
    b.state.close()


def test_check_connect_lists_authserv_ids_on_graph(feb):
    from support.fake_graph import FakeGraph

    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient
    from kcg_mail.services.trust_check import authserv_checks

    app, wd, c = feb
    fake = FakeGraph()
    with fake.running():
        t = GraphTransport(GraphClient(fake.settings(), fake.client_secret, sleep=lambda s: None))
        exo = ("spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=gavle.example.se; dkim=pass header.d=gavle.example.se;"
               "dmarc=pass action=none header.from=gavle.example.se;compauth=pass reason=100")
        fake.deliver(mail(c, from_=c.host, ar_fields=[exo]))
        (chk,) = authserv_checks(t, ["exchange-online"])
        assert chk.ok and "(none: exchange-online?) (topmost on 1" in chk.detail, chk.detail
        (chk,) = authserv_checks(t, [c.ours])
        assert not chk.ok
        t.close()


# ------------------------------------------------------------------ configuration


def test_trusted_ids_from_transport_yaml_and_env(tmp_path):
    from support.helpers import copy_config

    from kcg_mail.config_loader import ConfigError, load_config

    cfg = load_config(copy_config(tmp_path), environ={
        "KCG_INBOUND__TRUSTED_AUTHSERV_IDS": "MX1.Example.se, exchange-online",
        "KCG_INBOUND__REQUIRE_REPLY_KEY": "true", "KCG_DISTRIBUTION__MAX_PER_MEETING_PER_DAY": "1"})
    assert cfg.transport.inbound.trusted_authserv_ids == ["mx1.example.se", "exchange-online"]
    assert cfg.transport.inbound.require_reply_key is True
    assert cfg.transport.distribution.max_per_meeting_per_day == 1
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config", environ={"KCG_INBOUND__TRUSTED_AUTHSERV_IDS": "mx.example.se; dmarc=pass"})
    assert "transport.yaml" in str(exc.value) and "trusted_authserv_ids" in str(exc.value)


# ------------------------------------------------------------------ property, through the real intake


def test_property_no_trusted_authentication_no_distribution_real_intake(prepared, tmp_path_factory):
    """Hypothesis over whole mails through the real intake on Maildir: without
    our server's passing, aligned Authentication-Results nothing is filed,
    distributed, recorded or answered."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    results = st.sampled_from(["fail", "none", "softfail", "neutral", "temperror", "permerror"])
    ids = st.sampled_from(["mx.evil.example", "mx.google.com", "exchange-online-x", ""])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        wd = _copy(prepared, tmp_path_factory.mktemp("prop") / "wd")
        app = make_app(wd, CFG)
        c = _ctx(app, wd)
        fields = []
        for _ in range(data.draw(st.integers(0, 3))):
            aid = data.draw(ids)
            if data.draw(st.booleans()):  # a foreign server (or none) that says pass
                fields.append(ar(aid, "pass", c.host_domain) if aid else
                              f"dmarc=pass header.from={c.host_domain}")
            else:  # our own server, not passing for the From domain
                r = data.draw(results)
                fields.append(ar(c.ours, r, c.host_domain) if data.draw(st.booleans())
                              else ar(c.ours, "pass", "evil.example"))
        if fields and not fields[0].startswith(c.ours) and data.draw(st.booleans()):
            fields.insert(0, ar(c.ours, data.draw(results), c.host_domain))  # ours on top, failing
        sender = data.draw(st.sampled_from([c.host, f"Daniel <{c.host}>", c.coordinator, c.member]))
        extra = [(h, c.host) for h in data.draw(st.lists(st.sampled_from(["Reply-To", "Sender"]), unique=True))]
        raw = mail(c, from_=sender, ar_fields=fields, extra=extra,
                   in_reply_to=data.draw(st.sampled_from([None, c.tpl_msgid])),
                   subject=data.draw(st.sampled_from([None, "SV: " + c.tpl_subject, "Protokollet"])),
                   attach=data.draw(st.booleans()))
        app.mail.deliver(raw, "p.eml")
        report = _intake(app)
        assert report.errors == []
        assert app.state.filings() == [] and app.state.attendance("2023-02") == {}
        assert [r.key for r in app.state.actions() if r.action in ("distribute", "reply_problem")] == []
        assert [h.outcome for h in report.handled] in (["held"], ["discarded"], ["unmatched"]), (report.handled, fields)
        close(app)

    run()


def test_check_connect_lists_authserv_ids_on_ews(feb):
    import requests_mock
    from exchangelib.protocol import close_connections
    from support.fake_ews import FakeEWS

    from kcg_mail.adapters.exchange import ExchangeTransport
    from kcg_mail.adapters.exchange_ews import EwsSession
    from kcg_mail.services.trust_check import authserv_checks

    app, wd, c = feb
    fake = FakeEWS()
    close_connections()
    with requests_mock.Mocker() as mocker:
        fake.install(mocker)
        t = ExchangeTransport(EwsSession(fake.mailbox, "basic", fake.url, sleep=lambda s: None,
                                         username=fake.username, password=fake.password))
        fake.deliver(mail(c, from_=c.host, ar_fields=[ar("gw.kommun.example.se", "pass", c.host_domain),
                                                      ar("mx.evil.example", "pass", c.host_domain)]))
        (chk,) = authserv_checks(t, ["gw.kommun.example.se"])
        assert chk.ok and "gw.kommun.example.se (topmost on 1" in chk.detail and "mx.evil.example" in chk.detail
        t.close()
    close_connections()
