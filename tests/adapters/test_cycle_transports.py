"""The meeting cycle end to end on every mail transport and archive, without Prefect.

* the cycle of the whole 2023 plan (tests/support/cycle_driver.py) on Maildir + local
  folder, on SMTP/IMAP against a real Dovecot + Postfix, on Exchange (fake EWS
  at the SOAP level) and Graph (fake Graph at the HTTP level) with a local
  archive, and on Maildir + Dropbox (loopback fake Dropbox API);
* the mail corpus (tests/corpus) through the REAL intake, from a Maildir inbox
  and from an IMAP INBOX;
* secrets configured through ``bootstrap`` never reach logs or the state file.

Only the network protocol level is faked; our own code is never mocked.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from email.utils import getaddresses
from pathlib import Path

import pytest
from support.basics import kcg_test_config, server_users
from support.corpus_cycle import (
    CORPUS_NOW,
    KCG_TEST,
    _parse,
    accept_domains,
    check_corpus_outcomes,
)
from support.cycle_driver import (
    assert_cycle,
    assert_second_pass_sends_nothing,
    ews_harness,
    graph_harness,
    imap_harness,
    maildir_harness,
    out_from_mime,
    run_cycle,
)
from support.helpers import CONFIG_DIR, config_with, make_app, shipped_config
from support.mailserver import mail_server

from kcg_mail.config_loader import load_config
from kcg_mail.core.plan import archive_folder, protocol_filename
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.intake import msg_key, run_intake

CORPUS = Path(__file__).parents[1] / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))


def close_app(app) -> None:
    getattr(app.state, "close", lambda: None)()
    app.mail.close()


# =============================================================================== the cycle


def test_cycle_maildir_local_whole_year(tmp_path):
    app = make_app(tmp_path)
    h = maildir_harness(app)
    res = run_cycle(h)
    outs = assert_cycle(h, res)
    # the tentative study trip: briefed, never invited
    assert any(o.key == "2023-10:brief_host:lena@goteborg.example.se" for o in outs)
    assert not any(o.meeting_id == "2023-10" and o.action != "brief_host" for o in outs)
    # a guest is never on the members' invitation; the coordinator is asked about each guest
    guests = {o.uid: o.to for o in outs if o.kind == "invitation"}
    assert "innovation@svenskhandel.example.se" not in guests["kcg-2023-08@svenskastadskarnor.example.se"]
    coord = app.cfg.network.coordinator.email
    asked = {o.key.strip() for o in outs if o.action == "guest_approval"}
    assert asked == {f"2023-08:guest_approval:{coord}:sh_innovation", f"2023-12:guest_approval:{coord}:centre_for_cities"}
    # the inbox is empty, every reply processed
    assert list((tmp_path / "mail" / "inbox" / "cur").iterdir()) == []
    assert len(list((tmp_path / "mail" / "processed" / "cur").iterdir())) == len(res.replies)
    assert_second_pass_sends_nothing(h, outs)
    close_app(app)


def test_cycle_maildir_dropbox(tmp_path):
    from support.fake_dropbox import FakeDropbox

    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    fake = FakeDropbox().start()
    try:
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(),
                                 sleep=lambda s: None)
        app = make_app(tmp_path, shipped_config(), archive=archive)
        h = maildir_harness(app, "maildir+dropbox")
        res = run_cycle(h)
        outs = assert_cycle(h, res)
        for m in (m for m in app.meetings if not m.tentative):  # in the (fake) Dropbox, nothing on local disk
            f = fake.file(f"{archive_folder(app.cfg, m)}/{protocol_filename(app.cfg, m)}")
            assert f is not None and f.data == app.archive.read(app.state.filings(m.id)[0].path)
        assert not (tmp_path / "dropbox").exists()
        uploads = len(fake.calls_to("files/upload"))
        assert_second_pass_sends_nothing(h, outs)
        assert len(fake.calls_to("files/upload")) == uploads, "the second pass uploads nothing"
        close_app(app)
    finally:
        fake.stop()


def test_cycle_exchange_fake_local(tmp_path):
    import requests_mock
    from exchangelib.protocol import close_connections
    from support.fake_ews import FakeEWS

    from kcg_mail.adapters.exchange import ExchangeTransport
    from kcg_mail.adapters.exchange_ews import EwsSession

    cfg = shipped_config()  # the whole 2023 year
    close_connections()
    try:
        with requests_mock.Mocker() as mocker:
            fake = FakeEWS(mailbox=cfg.network.mailbox.email).install(mocker)
            mail = ExchangeTransport(EwsSession(fake.mailbox, "basic", fake.url, username=fake.username,
                                                password=fake.password, sleep=lambda s: None))
            app = make_app(tmp_path, cfg, mail=mail)
            h = ews_harness(app, fake)
            res = run_cycle(h)
            outs = assert_cycle(h, res)
            assert_second_pass_sends_nothing(h, outs)
            close_app(app)
    finally:
        close_connections()


def test_cycle_graph_fake_local(tmp_path):
    from support.fake_graph import FakeGraph

    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient

    cfg = shipped_config()  # the whole 2023 year
    fake = FakeGraph(mailbox=cfg.network.mailbox.email)
    with fake.running():
        mail = GraphTransport(GraphClient(fake.settings(), fake.client_secret, sleep=lambda s: None))
        app = make_app(tmp_path, cfg, mail=mail)
        h = graph_harness(app, fake)
        res = run_cycle(h)
        outs = assert_cycle(h, res)
        assert_second_pass_sends_nothing(h, outs)
        close_app(app)


# ------------------------------------------------------------------------- SMTP / IMAP




@pytest.mark.server
def test_cycle_smtp_imap_real_servers(tmp_path):
    from kcg_mail.adapters.smtp_imap import SmtpImapTransport

    cfg = kcg_test_config(tmp_path)  # the whole 2023 year
    assert cfg.network.mailbox.email == KCG_TEST and cfg.network.coordinator.email == "bjorn@kcg.test"
    with mail_server(users=server_users(cfg)) as server:
        mail = SmtpImapTransport(**server.transport_kwargs(KCG_TEST))
        app = make_app(tmp_path / "work", cfg, mail=mail)

        h = imap_harness(app, server, KCG_TEST)
        res = run_cycle(h)
        outs = assert_cycle(h, res)
        assert_second_pass_sends_nothing(h, outs)
        close_app(app)


# =============================================================================== the corpus











def _envelope_sender(raw: bytes) -> str:
    msg = _parse(raw)
    rp = msg.get("Return-Path")
    if rp is not None:
        return str(rp).strip().strip("<>").strip()
    frm = getaddresses([str(msg.get("From") or "")])
    return frm[0][1] if frm and frm[0][1] else "unknown@outside.test"


@pytest.mark.server
def test_corpus_through_real_intake_imap(tmp_path, shipped_year):
    """The corpus on top of a real run of the shipped plan (tests/support/real_run.py:
    replies refer to the Message-IDs really sent), read from a real IMAP INBOX."""
    from support.real_run import corpus_id_map, readdress

    from kcg_mail.adapters.smtp_imap import SmtpImapTransport

    cfg = shipped_config()  # as it is: the corpus addresses (example.se) are delivered by the test Postfix
    users = server_users(cfg)
    users[KCG_TEST] = "kcg-secret"
    src, index = shipped_year
    shutil.copy(src / "state.sqlite", tmp_path / "state.sqlite")  # the real run's state record
    ids, shift = corpus_id_map(index)
    with mail_server(users=users) as server:
        accept_domains(server, {e.partition("@")[2] for e in users})
        mail = SmtpImapTransport(**server.transport_kwargs(KCG_TEST))
        app = make_app(tmp_path, cfg, mail=mail)
        raws = {e["file"]: readdress((CORPUS / e["file"]).read_bytes(), e["meeting_id"], ids, shift)
                for e in MANIFEST}
        for _name, raw in raws.items():
            server.deliver(raw, KCG_TEST, mail_from=_envelope_sender(raw))
        delivered = server.messages(KCG_TEST, "INBOX")  # as stored (Return-Path, Delivered-To added)
        assert len(delivered) == len(raws)
        keys = {name: msg_key(r) for name, r in zip(raws, delivered)}
        report = run_intake(app, CORPUS_NOW)
        moved = {f: server.messages(KCG_TEST, f) for f in ("processed", "quarantine")}
        inbox_left = len(server.messages(KCG_TEST, "INBOX"))
        sent = server.messages(KCG_TEST, "Sent")
        check_corpus_outcomes(app, keys, sent, moved, inbox_left, report)
        outs = [out_from_mime(r) for r in sent]
        assert {o.action for o in outs} == {"reply_problem", "distribute"}
        # what Sent says went out really reached each recipient, once (Postfix queue: allow a moment)
        for person in sorted(set().union(*(o.to for o in outs))):
            mine = [o.key for o in outs if person in o.to]
            got = Counter(str(_parse(r)[MARKER_HEADER]) for r in server.wait_for(person, count=len(mine)))
            assert all(got[k] == 1 for k in mine), (person, mine, got)
        again = run_intake(app, CORPUS_NOW)
        assert again.handled == [] and len(server.messages(KCG_TEST, "Sent")) == len(sent)
        close_app(app)


# =============================================================================== secrets


def _state_bytes(workdir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(workdir.glob("state.sqlite*")))


def _assert_secret_nowhere(secret: str, workdir: Path, caplog, capsys, late_records) -> None:
    assert caplog.records, "logging was captured"
    for rec in list(caplog.records) + late_records:
        text = rec.getMessage() + " " + repr(rec.args) + " " + str(rec.exc_text or "")
        assert secret not in text, f"secret in log record {rec.name}: {text[:200]}"
    assert secret not in caplog.text
    out = capsys.readouterr()
    assert secret not in out.out and secret not in out.err
    assert secret.encode() not in _state_bytes(workdir)
    for p in workdir.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p


class _Late(logging.Handler):
    """A handler added after bootstrap (as Prefect or a service manager would)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_secret_graph_via_bootstrap_never_logged_or_stored(tmp_path, monkeypatch, caplog, capsys):
    from support.fake_graph import FakeGraph

    from kcg_mail.bootstrap import bootstrap

    secret = "Zq8~graph-CLIENT-secret-5f0c1e7d9a"
    monkeypatch.setenv("KCG_GRAPH_CLIENT_SECRET", secret)
    env = {"KCG_MAIL__KIND": "graph", "KCG_MAIL__TENANT_ID": "11111111-2222-3333-4444-555555555555",
           "KCG_MAIL__CLIENT_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}
    cfg = config_with(load_config(CONFIG_DIR, environ=env), ("2023-01", "2023-02"))
    caplog.set_level(logging.DEBUG)
    late = _Late()
    fake = FakeGraph(mailbox=cfg.network.mailbox.email, client_secret=secret)
    with fake.running():
        app = bootstrap(tmp_path, cfg=cfg)
        assert type(app.mail).__name__ == "GraphTransport"
        logging.getLogger().addHandler(late)
        try:
            h = graph_harness(app, fake)
            res = run_cycle(h)
            assert_cycle(h, res)
        finally:
            logging.getLogger().removeHandler(late)
        close_app(app)
    assert fake.token_requests >= 1, "the secret was used"
    _assert_secret_nowhere(secret, tmp_path, caplog, capsys, late.records)


@pytest.mark.server
def test_secret_smtp_imap_via_bootstrap_never_logged_or_stored(tmp_path, monkeypatch, caplog, capsys):
    from kcg_mail.bootstrap import bootstrap

    secret = "Sm7p-PASS-word-c41b9e2f"
    cfg0 = kcg_test_config(tmp_path)
    users = server_users(cfg0)
    users[KCG_TEST] = secret
    with mail_server(users=users) as server:
        monkeypatch.setenv("KCG_SMTP_PASSWORD", secret)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_file))  # trust the test CA the default way
        env = {"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": server.host,
               "KCG_MAIL__SMTP_PORT": str(server.smtp_port), "KCG_MAIL__IMAP_PORT": str(server.imaps_port),
               "KCG_MAIL__USERNAME": KCG_TEST}
        cfg = config_with(kcg_test_config(tmp_path / "c2", env), ("2023-01", "2023-02"))
        caplog.set_level(logging.DEBUG)
        late = _Late()
        app = bootstrap(tmp_path / "work", cfg=cfg)
        assert type(app.mail).__name__ == "SmtpImapTransport"
        logging.getLogger().addHandler(late)
        try:
            h = imap_harness(app, server, KCG_TEST)
            res = run_cycle(h)
            assert_cycle(h, res)
            assert all(c.ok for c in app.mail.check())
        finally:
            logging.getLogger().removeHandler(late)
        close_app(app)
    _assert_secret_nowhere(secret, tmp_path / "work", caplog, capsys, late.records)
