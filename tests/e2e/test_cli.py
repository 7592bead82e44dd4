"""The coordinator's commands: clear answers for good and bad setups."""

from support.helpers import copy_config, decided_by_reply
from typer.testing import CliRunner

from kcg_mail.entrypoints.cli import app

runner = CliRunner()


def test_check_passes_on_the_shipped_config(tmp_path):
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "14 people, 12 meetings" in text
    assert "maildir" in text and "will be created on first filing" in text


def test_check_connect_names_missing_transport_field_and_secret(tmp_path):
    env = {"KCG_MAIL__KIND": "graph"}
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(tmp_path)], env=env)
    assert r.exit_code == 2  # typed settings: a configuration problem, found when the config loads
    text = " ".join(r.output.split())
    assert "transport.yaml: mail.tenant_id: missing" in text and "KCG_MAIL__TENANT_ID" in text

    env.update({"KCG_MAIL__TENANT_ID": "t", "KCG_MAIL__CLIENT_ID": "c", "KCG_GRAPH_CLIENT_SECRET": ""})
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(tmp_path)], env=env)
    assert r.exit_code == 1
    assert "KCG_GRAPH_CLIENT_SECRET" in " ".join(r.output.split())


def test_broken_config_lists_every_problem_and_exits_2(tmp_path):
    d = copy_config(tmp_path)
    plan = d / "plan-2023.yaml"
    plan.write_text(plan.read_text(encoding="utf-8").replace("host: daniel", "host: danial"), encoding="utf-8")
    r = runner.invoke(app, ["plan", "--config", str(d)])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "plan-2023.yaml: meetings[1] (2023-02).host: 'danial' is not a member id" in text
    assert "fix:" in text


# ------------------------------------------------------------ setting up real accounts


def test_check_connect_creates_nothing_and_says_where_protocols_go(tmp_path):
    work = tmp_path / "w"
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(work)])
    assert r.exit_code == 0, r.output
    assert not work.exists(), "kcg check --connect changes nothing"
    text = " ".join(r.output.split())
    assert "does not exist yet; it will be created on the first run" in text
    assert "protocols are filed under /KCG/Protokoll/{year}" in text


def test_smtp_security_plain_is_a_config_error_with_file_field_fix(tmp_path):
    env = {"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": "mail.example.se", "KCG_MAIL__SMTP_SECURITY": "plain",
           "KCG_SMTP_PASSWORD": "x"}
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(tmp_path / "w")], env=env)
    assert r.exit_code == 2  # typed settings: a configuration problem, found when the config loads
    text = " ".join(r.output.split())
    assert "transport.yaml: mail.smtp_security: 'plain' is not a security setting" in text
    assert "fix:" in text and "'none' only for a server on this machine (loopback)" in text


def test_archive_root_puts_every_path_under_it(tmp_path):
    from support.helpers import CONFIG_DIR

    from kcg_mail.bootstrap import make_archive
    from kcg_mail.config_loader import load_config

    cfg = load_config(CONFIG_DIR, environ={"KCG_ARCHIVE__ROOT": "/Stadskärnor/Nätverk"})
    archive = make_archive(cfg, tmp_path)
    stored = archive.store("/KCG/Protokoll/2027/a.docx", b"data")
    assert stored.path == "/KCG/Protokoll/2027/a.docx"
    assert (tmp_path / "dropbox" / "Stadskärnor" / "Nätverk" / "KCG" / "Protokoll" / "2027" / "a.docx").read_bytes() == b"data"
    r = runner.invoke(app, ["check", "--connect", "--workdir", str(tmp_path)], env={"KCG_ARCHIVE__ROOT": "/Stadskärnor/Nätverk"})
    assert "protocols are filed under /Stadskärnor/Nätverk/KCG/Protokoll/{year}" in " ".join(r.output.split())


def test_archive_root_must_be_an_absolute_folder(tmp_path):
    import pytest
    from support.helpers import CONFIG_DIR

    from kcg_mail.config_loader import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR, environ={"KCG_ARCHIVE__ROOT": "../elsewhere"})
    assert "transport.yaml: archive.root" in str(info.value) and "fix:" in str(info.value)


def test_daily_schedule_follows_send_at(tmp_path):
    from flows.serve import daily_cron

    d = copy_config(tmp_path)
    assert daily_cron(str(d)) == ("0 7 * * *", "Europe/Stockholm")
    meetings = d / "meetings.yaml"
    meetings.write_text(meetings.read_text(encoding="utf-8").replace('send_at: "07:00"', 'send_at: "06:30"'),
                        encoding="utf-8")
    assert daily_cron(str(d)) == ("30 6 * * *", "Europe/Stockholm")


def test_check_sees_what_the_coordinator_decided_by_reply(tmp_path):
    """`kcg check --workdir` checks the configuration the runs use: config/ with the members
    the coordinator added and the plans he adopted in the work directory."""
    work = tmp_path / "w"
    decided_by_reply(work)
    r = runner.invoke(app, ["check", "--workdir", str(work)])
    assert r.exit_code == 0, r.output
    assert "15 people, 13 meetings" in " ".join(r.output.split())

    decided_by_reply(work, host="kalle")
    r = runner.invoke(app, ["check", "--workdir", str(work)])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "plans/plan-2024.yaml: meetings[0] (2024-02).host: 'kalle'" in text and "fix:" in text
