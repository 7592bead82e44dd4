"""The coordinator's commands: clear answers for good and bad setups."""

from typer.testing import CliRunner

from helpers import copy_config
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
    assert r.exit_code == 1
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
