"""The two older forms take the new paths: "Bekräfta datum" (``kcg-confirm-date``)
stores the coordinator's decision in the state like ``kcg-set-meeting`` (no plan
file is edited), "Välkomna en ny medlem" (``kcg-onboard-member``) adds the member
like ``kcg-member-add`` (no line for anyone to add to a YAML file).

Slow: the flows run against a real (temporary) Prefect API."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import shutil  # noqa: E402
from datetime import date  # noqa: E402
from email import message_from_bytes, policy  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from support.helpers import CONFIG_DIR  # noqa: E402

from kcg_mail.bootstrap import bootstrap  # noqa: E402
from kcg_mail.config_loader import read_members_overlay  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.server]  # a real Prefect server (prefect_test_harness)


def _setup(tmp_path: Path, monkeypatch) -> tuple[Path, Path, dict[str, bytes]]:
    cfgdir = Path(shutil.copytree(CONFIG_DIR, tmp_path / "config"))
    work = tmp_path / "work"
    monkeypatch.setenv("KCG_WORKDIR", str(work))
    monkeypatch.setenv("KCG_CONFIG_DIR", str(cfgdir))
    monkeypatch.setenv("KCG_TODAY", "2023-08-21")
    return cfgdir, work, {f.name: f.read_bytes() for f in cfgdir.iterdir()}


def test_confirm_date_form_stores_the_decision_and_edits_no_file(prefect_api, tmp_path, monkeypatch):
    from flows import manual

    cfgdir, work, files = _setup(tmp_path, monkeypatch)
    state = manual.confirm_date(meeting_id="2023-10", datum=date(2023, 10, 9), return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["meeting_id"] == "2023-10" and result["date"] == "2023-10-09"
    assert {f.name: f.read_bytes() for f in cfgdir.iterdir()} == files
    trip = bootstrap(work, cfgdir).meeting("2023-10")
    assert trip.date == date(2023, 10, 9) and not trip.tentative


def test_onboard_member_form_adds_the_member_and_edits_no_file(prefect_api, tmp_path, monkeypatch):
    from flows import manual

    cfgdir, work, files = _setup(tmp_path, monkeypatch)
    state = manual.onboard_member(name="Åsa Öberg", organisation="Umeå City", city="Umeå",
                                  email="asa@umea.example.se", return_state=True)
    assert state.is_completed(), state
    assert state.result()["email"] == "asa@umea.example.se"
    assert {f.name: f.read_bytes() for f in cfgdir.iterdir()} == files
    assert [p["email"] for p in read_members_overlay(work)["added"]] == ["asa@umea.example.se"]
    app = bootstrap(work, cfgdir)
    assert any(p.email == "asa@umea.example.se" for p in app.cfg.network.active_members)
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default)
             for p in sorted((work / "mail" / "sent" / "cur").iterdir())]
    welcome = [m for m in mails if "asa@umea.example.se" in str(m["To"])]
    assert welcome and "network.yaml" not in welcome[0].get_body(("plain",)).get_content()
