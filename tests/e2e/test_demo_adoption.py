"""The demo's planning round ends with the January workshop adopting the 2024 plan,
through the real flows (kcg-planning-*, kcg-intake, kcg-daily) on the embedded
defaults: the groups get their tasks, the host's protocol carries the plan
section, the coordinator's "Ja" by reply stores plans/plan-2024.yaml, and the
daily run briefs February's host from it. Played again, nothing new is sent.

Slow: the Prefect test harness starts a local server once per session."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402
from support.helpers import CONFIG_DIR  # noqa: E402

pytestmark = pytest.mark.slow


def test_demo_round_adopts_the_2024_plan_and_runs_it(prefect_api, tmp_path):
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.demo_round import WORKSHOP_EDIT, play_round

    result = play_round(tmp_path, CONFIG_DIR, echo=lambda s: None)
    assert result.group_tasks == 3
    stored = yaml.safe_load((tmp_path / "plans" / "plan-2024.yaml").read_text(encoding="utf-8"))
    feb = next(m for m in stored["meetings"] if m["month"] == "2024-02")
    assert f"Tema {feb['theme_no']}: {feb['theme']}" == WORKSHOP_EDIT[2]  # what the workshop wrote
    app = bootstrap(tmp_path, CONFIG_DIR)
    assert app.ledger.plan_adoptions.get(2024)["adopted"]["source"] == "protocol"
    assert result.adopted and result.adopted[0].startswith("måndag 5 februari 2024: Tema 1")
    assert "Trygghet i stadskärnan – projektgruppen redovisar" in result.adopted[0]
    adopting = [m for m in app.state.messages() if m.outcome == "coordinator_answer" and "årsplan 2024" in m.reason]
    assert len(adopting) == 1 and "antagen ur protokollet" in adopting[0].reason  # his one "Ja" by reply
    keys = {r.key for r in app.state.actions() if r.status == "done"}
    assert "2024-02:brief_host:" + app.meeting("2024-02").host.email in keys  # the product runs the plan
    assert not list((Path(app.mail.root) / "inbox" / "cur").iterdir())
    before = len(list((Path(app.mail.root) / "sent" / "cur").iterdir()))
    again = play_round(tmp_path, CONFIG_DIR, echo=lambda s: None)
    assert again.adopted == result.adopted
    assert len(list((Path(app.mail.root) / "sent" / "cur").iterdir())) == before
