"""An adopted plan may name a member the coordinator added by reply (the members
overlay in the work directory): the config check reads the plans with them."""

from __future__ import annotations

import pytest
import yaml
from support.basics import copy_config

from kcg_mail.config_loader import ConfigError, load_config, write_members_overlay


def _world(tmp_path):
    cfgdir = copy_config(tmp_path)
    work = tmp_path / "work"
    (work / "plans").mkdir(parents=True)
    plan = {"year": 2024, "meetings": [{"month": "2024-02", "kind": "digital", "theme": "Etablering",
                                        "host": "maria_lund", "backup_host": "lisa"}]}
    (work / "plans" / "plan-2024.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    return cfgdir, work


def test_a_plan_naming_an_added_member_loads_with_the_overlay(tmp_path):
    cfgdir, work = _world(tmp_path)
    write_members_overlay(work, {"added": [{"id": "maria_lund", "name": "Maria Lund", "organisation": "Kalmar City",
                                            "city": "Kalmar", "email": "maria.lund@kalmar.example.se"}],
                                 "removed": []})
    cfg = load_config(cfgdir, environ={}, plans_dir=work / "plans", members_dir=work)
    assert any(pm.host == "maria_lund" for pm in cfg.all_meetings())


def test_without_the_overlay_the_unknown_host_is_named(tmp_path):
    cfgdir, work = _world(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(cfgdir, environ={}, plans_dir=work / "plans", members_dir=work)
    assert "'maria_lund' is not a member id" in str(exc.value)
