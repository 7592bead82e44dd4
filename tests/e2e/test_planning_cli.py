"""The coordinator's commands for the planning round and the draft plan."""

import shutil

import yaml
from support.helpers import TEMPLATES_DIR, copy_config, shipped_config
from typer.testing import CliRunner

from kcg_mail.entrypoints.cli import app
from kcg_mail.services.compose import Composer
from kcg_mail.services.round_status import template_problems

runner = CliRunner()


def test_plan_draft_writes_a_plan_that_check_accepts(tmp_path):
    out = tmp_path / "plan-2024.yaml"
    r = runner.invoke(app, ["plan", "--year", "2024", "--draft", "--out", str(out), "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert data["year"] == 2024 and data["months_without_meeting"] == ["2024-07"]
    conf = copy_config(tmp_path)
    shutil.copy(out, conf / "plan-2024.yaml")
    r = runner.invoke(app, ["check", "--config", str(conf), "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert "23 meetings" in " ".join(r.output.split())  # 12 of 2023 + 11 drafted (Feb-Dec without July, Jan 2025)
    r = runner.invoke(app, ["plan", "--year", "2024", "--config", str(conf)])
    assert r.exit_code == 0 and "2024-04-02" in r.output  # Easter Monday moved to Tuesday


def test_plan_draft_needs_a_year(tmp_path):
    r = runner.invoke(app, ["plan", "--draft", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "--year" in r.output


def test_check_reports_broken_planning_yaml(tmp_path):
    conf = copy_config(tmp_path)
    f = conf / "planning.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("votes_per_member: 10", "votes_per_member: ten"),
                 encoding="utf-8")
    r = runner.invoke(app, ["check", "--config", str(conf), "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 1
    text = " ".join(r.output.split())
    assert "planning.yaml: votes_per_member" in text and "fix: write a whole number" in text


def test_planning_start_without_a_round_says_what_to_do(tmp_path):
    r = runner.invoke(app, ["planning", "start", "--year", "2031", "--workdir", str(tmp_path)])
    assert r.exit_code == 1
    assert "rounds.2031: missing" in " ".join(r.output.split())


def test_broken_planning_template_is_named(tmp_path):
    assert template_problems(Composer(shipped_config())) == []
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, tdir)
    f = tdir / "mail" / "planning_ballot.txt.j2"
    f.write_text(f.read_text(encoding="utf-8").replace("{{ t.text }}", "{{ t.txet.upper() }}"), encoding="utf-8")
    problems = template_problems(Composer(shipped_config(), tdir))
    assert len(problems) == 1 and "templates/mail/planning_ballot" in problems[0]


def test_serve_has_the_planning_deployments(tmp_path):
    from flows.serve import deployments

    deps = {d.flow_name: d for d in deployments(str(tmp_path), None, "KCG")}
    assert {d.name for d in deps.values()} == {"KCG"}  # named after the network
    tick = deps["kcg-planning-tick"]
    (sched,) = tick.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("15 7 * * *", "Europe/Stockholm")
    assert not deps["kcg-planning-start"].schedules and not deps["kcg-planning-publish"].schedules
    assert deps["kcg-planning-start"].parameters["workdir"] == str(tmp_path)
