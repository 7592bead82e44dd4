"""The shipped configuration loads, and every kind of mistake a coordinator can
make in config/ is reported naming the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.basics import CONFIG_DIR, copy_config, shipped_config

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core.plan import resolve_plan

# ------------------------------------------------------------ the shipped config


def test_shipped_config_people():
    cfg = shipped_config()
    assert len(cfg.network.members) == 14
    assert cfg.network.coordinator.id == "bjorn"
    assert cfg.network.coordinator.role == "coordinator"
    assert len(cfg.network.active_members) == 14
    assert {g.id for g in cfg.network.guests} == {"sh_innovation", "centre_for_cities"}
    emails = [p.email for p in cfg.network.members]
    assert len(set(emails)) == 14 and all(e == e.lower() for e in emails)


def test_shipped_config_plan():
    cfg = shipped_config()
    planned = cfg.all_meetings()
    assert len(planned) == 12
    months = [pm.month for pm in planned]
    assert "2023-07" not in months
    assert cfg.plans[0].months_without_meeting == ["2023-07"]
    assert months == sorted(months)
    by_month = {pm.month: pm for pm in planned}
    assert by_month["2023-08"].guests == ["sh_innovation"]
    assert by_month["2023-12"].guests == ["centre_for_cities"]
    assert [m for m, pm in by_month.items() if pm.guests] == ["2023-08", "2023-12"]
    trip = by_month["2023-10"]
    assert trip.kind == "study_trip" and trip.tentative
    assert trip.proposed == "Förslag v 39 (sept)"
    assert trip.comment == "Förslag v 39 (sept)"


def test_shipped_config_resolves_to_meetings():
    ms = resolve_plan(shipped_config())
    assert len(ms) == 12
    # the physical meetings and the open meeting wait for the coordinator's date; the study
    # trip's proposed date waits for his yes
    assert [(m.id, m.awaiting) for m in ms if m.tentative] == [
        ("2023-01", "set_meeting"), ("2023-08", "set_meeting"), ("2023-10", "confirm_date"), ("2024-01", "set_meeting")]
    aug = next(m for m in ms if m.id == "2023-08")
    assert [g.email for g in aug.guests] == ["innovation@svenskhandel.example.se"]
    dec = next(m for m in ms if m.id == "2023-12")
    assert dec.backup_host is not None and dec.backup_host.id == "bjorn"
    assert shipped_config().transport.mail.kind == "maildir"
    assert shipped_config().transport.archive.kind == "local"


def test_config_dir_from_environment(tmp_path):
    d = copy_config(tmp_path)
    cfg = load_config(None, environ={"KCG_CONFIG_DIR": str(d)})
    assert cfg.directory == str(d)


def test_missing_config_dir_names_the_fix(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope", environ={})
    assert "nope" in str(exc.value) and "--config" in str(exc.value)


# ------------------------------------------------------------ broken configs


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}: the shipped config changed, update the test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _problems(d: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ=environ or {})
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


def _one(problems: list[str], needle: str) -> str:
    hits = [p for p in problems if needle in p]
    assert hits, f"no problem mentions {needle!r}: {problems}"
    return hits[0]


def test_unknown_host_id(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "host: daniel", "host: danne")
    problems = _problems(d)
    p = _one(problems, "danne")
    assert str(d / "plan-2023.yaml") in p  # the file
    assert "meetings[1]" in p and ".host" in p and "2023-02" in p  # the field
    assert "fix:" in p and "daniel" in p and "network.yaml" in p  # the fix lists the valid ids
    assert len(problems) == 1


def test_unknown_guest_id(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "guests: [sh_innovation]", "guests: [svensk_handel]")
    p = _one(_problems(d), "svensk_handel")
    assert "plan-2023.yaml" in p and ".guests" in p and "fix:" in p and "sh_innovation" in p


def test_bad_yaml_names_the_line(tmp_path):
    d = copy_config(tmp_path)
    f = d / "network.yaml"
    lines = f.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if "id: daniel" in line)
    lines[n] = lines[n].replace("{id: daniel,", "{id: daniel, name: [oops,")
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = _problems(d)
    p = _one(problems, "not valid YAML")
    assert str(f) in p
    assert f"line {n + 1}," in p
    assert "fix:" in p


def test_bad_yaml_is_reported_once(tmp_path):
    """A file that is not YAML gives one problem, not also a confusing
    'Input should be a valid dictionary' for the same file."""
    d = copy_config(tmp_path)
    _edit(d / "meetings.yaml", "timezone: Europe/Stockholm", "timezone: [Europe/Stockholm")
    problems = _problems(d)
    about_file = [p for p in problems if "meetings.yaml" in p]
    assert len(about_file) == 1, about_file
    assert "not valid YAML" in about_file[0] and "line " in about_file[0]


def test_missing_field(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "    theme: Affärsplanering\n", "")
    p = _one(_problems(d), "theme")
    assert str(d / "plan-2023.yaml") in p
    assert "meetings[2].theme" in p
    assert "Field required" in p and "fix: add the field" in p


def test_missing_file(tmp_path):
    d = copy_config(tmp_path)
    (d / "meetings.yaml").unlink()
    p = _one(_problems(d), "meetings.yaml")
    assert "missing" in p and "fix:" in p


def test_bad_time_format(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "meetings.yaml", 'digital:     {start: "09:00"', 'digital:     {start: "9.00h"')
    p = _one(_problems(d), "times.digital.start")
    assert str(d / "meetings.yaml") in p
    assert "HH:MM" in p and "09:00" in p


def test_bad_time_in_plan(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "    host: david\n", "    host: david\n    start: kvart över nio\n")
    p = _one(_problems(d), "meetings[2].start")
    assert "plan-2023.yaml" in p and "HH:MM" in p


def test_unknown_field(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "    host: david\n", "    host: david\n    hots: david\n")
    p = _one(_problems(d), "hots")
    assert str(d / "plan-2023.yaml") in p and "meetings[2].hots" in p
    assert "fix:" in p and "spelling" in p


def test_unknown_top_level_field(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "meetings.yaml", "agenda:", "agendas:")
    problems = _problems(d)
    assert "Field required" in _one(problems, "meetings.yaml: agenda:")
    assert "spelling" in _one(problems, "agendas")


@pytest.mark.parametrize("key", ["password", "client_secret", "refresh_token"])
def test_secret_in_transport_yaml_is_refused(tmp_path, key):
    d = copy_config(tmp_path)
    _edit(d / "transport.yaml", "  kind: maildir ", f"  kind: maildir\n  {key}: hunter2 ")
    problems = _problems(d)
    p = _one(problems, f"mail.{key}")
    assert str(d / "transport.yaml") in p
    assert "secret" in p and "fix:" in p and "environment variable" in p
    assert "hunter2" not in "\n".join(problems)  # the secret itself is never echoed


def test_secret_fix_names_the_variable_that_is_read(tmp_path):
    """The fix must name the environment variable the adapter really reads:
    smtp_imap reads KCG_SMTP_PASSWORD (kcg_mail.bootstrap: require("smtp_password"))."""
    d = copy_config(tmp_path)
    _edit(d / "transport.yaml", "  kind: maildir ", "  kind: smtp_imap\n  smtp_host: mail.example.se\n  password: hunter2 ")
    p = _one(_problems(d), "mail.password")
    assert "KCG_SMTP_PASSWORD" in p, p


def test_secret_in_archive_section(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "transport.yaml", "  kind: local ", "  kind: local\n  app_secret: s3cr3t ")
    p = _one(_problems(d), "archive.app_secret")
    assert "transport.yaml" in p and "fix:" in p


def test_duplicate_meeting_id(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", '  - month: "2023-03"\n', '  - month: "2023-03"\n    id: "2023-02"\n')
    p = _one(_problems(d), "already used")
    assert str(d / "plan-2023.yaml") in p and "meetings[2]" in p and ".id" in p
    assert "'2023-02'" in p and "fix: set a unique id" in p


def test_duplicate_meeting_id_across_plan_files(tmp_path):
    d = copy_config(tmp_path)
    (d / "plan-2024.yaml").write_text(
        'year: 2024\nmeetings:\n  - month: "2024-01"\n    kind: digital\n    theme: Dubblett\n    host: lisa\n',
        encoding="utf-8")
    p = _one(_problems(d), "in both files")  # the January meeting may be in either file, once
    assert "plan-2024.yaml" in p and "2024-01" in p and "plan-2023.yaml" in p and "fix:" in p


def test_wrong_email(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "network.yaml", "email: daniel@gavle.example.se", "email: daniel.gavle.example.se")
    p = _one(_problems(d), "daniel.gavle.example.se")
    assert str(d / "network.yaml") in p
    assert "members[3].email" in p
    assert "name@example.se" in p  # how it should look


def test_wrong_mailbox_email(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "network.yaml", "email: kcg@svenskastadskarnor.example.se", "email: kcg at svenskastadskarnor")
    p = _one(_problems(d), "mailbox.email")
    assert "network.yaml" in p and "name@example.se" in p


def test_operator_contact_and_names_on_one_line(tmp_path):
    """The operator's address and every name are checked by the same rules as a member's."""
    d = copy_config(tmp_path)
    _edit(d / "transport.yaml", "operator_contacts: []",
          'operator_contacts: [{name: "Kim\\nDrift", email: drift.example.se}]')
    _edit(d / "network.yaml", "organisation: Gävle City,", 'organisation: "Gävle\\rCity",')
    problems = _problems(d)
    address = _one(problems, "operator_contacts[0].email")
    assert "transport.yaml" in address and "drift.example.se" in address and "name@example.se" in address
    name = _one(problems, "operator_contacts[0].name")
    assert "one line" in name and "fix: remove the line breaks" in name
    organisation = _one(problems, "members[3].organisation")
    assert "network.yaml" in organisation and "one line" in organisation


def test_date_outside_month(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "plan-2023.yaml", "    host: david\n", "    host: david\n    date: 2023-04-03\n")
    p = _one(_problems(d), "meetings[2] (2023-03).date")
    assert "fix:" in p


def test_all_problems_reported_together(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "meetings.yaml", 'digital:     {start: "09:00"', 'digital:     {start: "nio"')
    _edit(d / "network.yaml", "email: daniel@gavle.example.se", "email: nope")
    _edit(d / "transport.yaml", "  kind: local ", "  kind: lokal ")
    problems = _problems(d)
    assert any("times.digital.start" in p for p in problems)
    assert any("'nope'" in p for p in problems)
    assert any("archive.kind" in p for p in problems)


def test_two_coordinators(tmp_path):
    d = copy_config(tmp_path)
    _edit(d / "network.yaml", "email: pia@malmo.example.se}", "email: pia@malmo.example.se, role: coordinator}")
    p = _one(_problems(d), "coordinator")
    assert "network.yaml" in p and "exactly one" in p


# ------------------------------------------------------------ environment overrides


def test_env_override_mail_kind():
    cfg = load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "smtp_imap", "KCG_MAIL__SMTP_HOST": "mail.example.se"})
    assert cfg.transport.mail.kind == "smtp_imap"
    assert cfg.transport.mail.smtp_host == "mail.example.se"
    assert shipped_config().transport.mail.kind == "maildir"  # the file is unchanged


def test_env_override_archive():
    cfg = load_config(CONFIG_DIR, environ={"KCG_ARCHIVE__ROOT": "/Team/KCG"})
    assert cfg.transport.archive.root == "/Team/KCG"


def test_env_override_is_validated():
    with pytest.raises(ConfigError) as exc:
        load_config(CONFIG_DIR, environ={"KCG_MAIL__KIND": "pigeon"})
    p = exc.value.problems[0]
    assert "transport.yaml" in p and "mail.kind" in p and "maildir" in p and "fix:" in p


def test_env_override_from_process_environment(monkeypatch):
    monkeypatch.setenv("KCG_MAIL__KIND", "graph")
    monkeypatch.setenv("KCG_MAIL__TENANT_ID", "t")  # a graph mailbox needs both (typed settings)
    monkeypatch.setenv("KCG_MAIL__CLIENT_ID", "c")
    assert load_config(CONFIG_DIR).transport.mail.kind == "graph"
