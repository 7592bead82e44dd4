"""Typed transport settings: config/transport.yaml's mail and archive sections
are unions on ``kind``, overridden by KCG_<SECTION>__<FIELD> environment
variables (pydantic-settings), checked once when the config loads, and
bootstrap builds the configured adapter from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.basics import CONFIG_DIR, copy_config

from kcg_mail.bootstrap import make_archive, make_mail
from kcg_mail.config_loader import ConfigError, env_overrides, load_config
from kcg_mail.core.config_model import (
    DropboxSettings,
    ExchangeSettings,
    GraphSettings,
    LocalArchiveSettings,
    MaildirSettings,
    SmtpImapSettings,
)

pytestmark = pytest.mark.core


def _problems(environ: dict[str, str], d: Path = CONFIG_DIR) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ=environ)
    return exc.value.problems


def _write_transport(tmp_path: Path, mail: str, archive: str = "  kind: local") -> Path:
    d = copy_config(tmp_path)
    (d / "transport.yaml").write_text(f"mail:\n{mail}\narchive:\n{archive}\n", encoding="utf-8")
    return d


def test_each_kind_gets_its_own_typed_settings(tmp_path):
    assert isinstance(load_config(CONFIG_DIR, environ={}).transport.mail, MaildirSettings)
    assert isinstance(load_config(CONFIG_DIR, environ={}).transport.archive, LocalArchiveSettings)
    smtp = load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": "mail.example.se",
                                            "KCG_MAIL__SMTP_PORT": "465", "KCG_MAIL__SMTP_SECURITY": "TLS"}).transport.mail
    assert isinstance(smtp, SmtpImapSettings)
    assert (smtp.smtp_port, smtp.smtp_security, smtp.imap_port, smtp.imap_security) == (465, "tls", 993, "tls")
    d = _write_transport(tmp_path, "  kind: exchange\n  auth: ntlm\n  service_endpoint: https://ex.example.se/EWS/Exchange.asmx\n"
                                   "  username: kcg\n  autodiscover: false\n  max_wait: 60",
                         "  kind: dropbox\n  app_key: k\n  root: /Team/KCG/")
    cfg = load_config(d, environ={})
    assert isinstance(cfg.transport.mail, ExchangeSettings) and cfg.transport.mail.max_wait == 60.0
    assert isinstance(cfg.transport.archive, DropboxSettings) and cfg.transport.archive.root == "/Team/KCG"
    graph = load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "graph", "KCG_MAIL__TENANT_ID": "t",
                                             "KCG_MAIL__CLIENT_ID": "c"}).transport.mail
    assert isinstance(graph, GraphSettings) and (graph.tenant_id, graph.client_id, graph.mailbox) == ("t", "c", None)


def test_environment_overrides_the_file_field_by_field(tmp_path):
    d = _write_transport(tmp_path, "  kind: smtp_imap\n  smtp_host: file.example.se\n  sent_folder: Skickat")
    mail = load_config(d, environ={"KCG_MAIL__SMTP_HOST": "env.example.se", "KCG_MAIL__IMAP_PORT": "143"}).transport.mail
    assert isinstance(mail, SmtpImapSettings)
    assert (mail.smtp_host, mail.sent_folder, mail.imap_port) == ("env.example.se", "Skickat", 143)
    # variable names are case-insensitive, other KCG_ variables are not settings
    assert env_overrides({"kcg_mail__kind": "graph", "KCG_SMTP_PASSWORD": "x", "KCG_CONFIG_DIR": "/c"}) == {
        "mail": {"kind": "graph"}}


def test_a_blank_variable_means_not_set():
    mail = load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": "mail.example.se",
                                            "KCG_MAIL__IMAP_HOST": "", "KCG_MAIL__SMTP_PORT": ""}).transport.mail
    assert isinstance(mail, SmtpImapSettings) and mail.imap_host is None and mail.smtp_port == 587
    problems = _problems({"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": ""})
    assert any("mail.smtp_host: missing, needed for mail kind 'smtp_imap'" in p and "KCG_MAIL__SMTP_HOST" in p
               for p in problems), problems


def test_field_of_another_kind_is_a_misspelling_with_file_field_and_fix():
    (p,) = _problems({"KCG_MAIL__KIND": "graph", "KCG_MAIL__TENANT_ID": "t", "KCG_MAIL__CLIENT_ID": "c",
                      "KCG_MAIL__SMTP_HOST": "x"})
    assert "transport.yaml: mail.smtp_host:" in p and "fix:" in p and "mail kind 'graph'" in p


def test_exchange_auth_decides_what_is_needed():
    base = {"KCG_MAIL__KIND": "exchange", "KCG_MAIL__SERVICE_ENDPOINT": "https://ex.example.se/EWS/Exchange.asmx"}
    problems = _problems(base)
    assert any("mail.client_id: missing, needed for mail kind 'exchange' with auth 'oauth'" in p
               and "KCG_MAIL__CLIENT_ID" in p for p in problems), problems
    (p,) = _problems({**base, "KCG_MAIL__AUTH": "basic"})
    assert "mail.username: missing" in p and "auth 'basic'" in p and "fix:" in p
    (p,) = _problems({**base, "KCG_MAIL__AUTH": "kerberos", "KCG_MAIL__USERNAME": "u"})
    assert "mail.auth" in p and "'oauth'" in p and "fix:" in p
    (p,) = _problems({"KCG_MAIL__KIND": "exchange"})
    assert "mail.service_endpoint: missing" in p


def test_wrong_kind_lists_the_kinds():
    (p,) = _problems({"KCG_ARCHIVE__KIND": "gdrive"})
    assert "transport.yaml: archive.kind: 'gdrive' is not a known archive kind" in p and "local, dropbox" in p
    (p,) = _problems({"KCG_ARCHIVE__KIND": "dropbox"})
    assert "archive.app_key: missing, needed for archive kind 'dropbox'" in p and "KCG_ARCHIVE__APP_KEY" in p


def test_a_secret_in_the_file_is_reported_once_and_never_echoed(tmp_path):
    d = _write_transport(tmp_path, "  kind: graph\n  tenant_id: t\n  client_id: c\n  client_secret: hunter2")
    (p,) = _problems({}, d)
    assert "mail.client_secret: secrets must not be stored in config files" in p and "KCG_GRAPH_CLIENT_SECRET" in p
    assert "hunter2" not in p


def test_bootstrap_builds_the_configured_adapters(tmp_path, monkeypatch):
    monkeypatch.setenv("KCG_GRAPH_CLIENT_SECRET", "s")
    monkeypatch.setenv("KCG_DROPBOX_APP_SECRET", "a")
    monkeypatch.setenv("KCG_DROPBOX_REFRESH_TOKEN", "r")
    cfg = load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "graph", "KCG_MAIL__TENANT_ID": "tenant",
                                           "KCG_MAIL__CLIENT_ID": "client", "KCG_ARCHIVE__KIND": "dropbox",
                                           "KCG_ARCHIVE__APP_KEY": "key", "KCG_ARCHIVE__ROOT": "/Team",
                                           "KCG_ARCHIVE__TEAM_MEMBER_ID": ""})
    mail = make_mail(cfg, tmp_path, create=False)
    try:
        assert type(mail).__name__ == "GraphTransport"
        client = mail.client  # type: ignore[attr-defined]
        assert (mail.mailbox, client.tenant_id, client.client_id) == (cfg.network.mailbox.email, "tenant", "client")
    finally:
        mail.close()
    archive = make_archive(cfg, tmp_path)
    assert type(archive).__name__ == "DropboxArchive"
    assert (archive.root, archive.team_member_id) == ("/Team", None)  # type: ignore[attr-defined]


def test_kcg_check_finds_a_missing_field_without_connecting(tmp_path):
    from typer.testing import CliRunner

    from kcg_mail.entrypoints.cli import app

    r = CliRunner().invoke(app, ["check", "--workdir", str(tmp_path / "w")], env={"KCG_MAIL__KIND": "graph"})
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "transport.yaml: mail.tenant_id: missing" in text and "KCG_MAIL__TENANT_ID" in text
