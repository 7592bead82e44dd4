"""The planning round end to end through the real flows (kcg-planning-*,
kcg-intake) on the embedded defaults: Maildir, local folder, SQLite, a
temporary Prefect API. The members answer with real MIME replies: Word forms
and ballots filled in with python-docx, and plain-text answers.

Slow: the Prefect test harness starts a local server once per session."""

from __future__ import annotations

import io
import json
import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from pathlib import Path  # noqa: E402

import docx  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from support.helpers import CONFIG_DIR  # noqa: E402

pytestmark = pytest.mark.slow




def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(arts, key=lambda a: a.created) if arts else None  # the latest version of the key


def test_planning_round_for_2024_end_to_end(prefect_api, tmp_path):
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.demo_round import (
        AFTER_REMINDER,
        CORRECTED_BY_COORDINATOR,
        INVALID_THEN_FIXED,
        POPULAR,
        WEEKEND_VOTER,
        play_round,
    )
    from kcg_mail.services import round as round_

    result = play_round(tmp_path, CONFIG_DIR, echo=lambda s: None)
    app = bootstrap(tmp_path, CONFIG_DIR)
    members = app.cfg.network.active_members

    outcomes = [m.outcome for m in app.state.messages()]
    assert outcomes.count("planning_needs") == 14
    # 12 on time (one of them corrected by its sender), one after the last day before the tally;
    # one unclear, counted from the coordinator's answer to our question about it
    corrections = [m for m in app.state.messages() if m.outcome == "coordinator_answer" and "röst rättad" in m.reason]
    assert outcomes.count("planning_ballot") == 13 and len(corrections) == 1
    assert outcomes.count("planning_ballot_invalid") == 2 and outcomes.count("planning_ballot_late") == 0
    assert not list((Path(app.mail.root) / "inbox" / "cur").iterdir())

    # each kind of reply came in: Word needs forms, Word ballots, plain text
    needs = round_.round_value(app, 2024, "needs", {})
    assert len(needs) == 14
    ballots = round_.round_value(app, 2024, "ballots", {})
    voters = {p.id for p in members}  # the weekend voter's ballot came before the tally: it counts
    assert set(ballots) == voters
    assert all(sum(b["votes"].values()) == 10 for b in ballots.values())
    assert ballots[CORRECTED_BY_COORDINATOR]["by"] == "coordinator"
    number = {t.text: t.number for t in round_.topics(app, 2024)}
    assert ballots[CORRECTED_BY_COORDINATOR]["votes"] == {str(number[POPULAR[0]]): 6, str(number[POPULAR[1]]): 4}
    hanna = app.cfg.network.person(CORRECTED_BY_COORDINATOR).email
    assert any(k.startswith(f"plan-2024:ballot_corrected:{hanna}:") for k in
               (r.key for r in app.state.actions() if r.status == "done"))  # her receipt
    assert round_.round_value(app, 2024, "late", {}) == {}

    # one reminder per step, only to those who had not answered
    keys = {r.key for r in app.state.actions() if r.status == "done"}
    assert {k.rsplit(":", 1)[1] for k in keys if ":needs_reminder:" in k} == {
        app.cfg.network.person(x).email for x in ("jessica", "linda")}
    assert {k.rsplit(":", 1)[1] for k in keys if ":ballot_reminder:" in k} == {
        app.cfg.network.person(x).email for x in (AFTER_REMINDER, WEEKEND_VOTER)}
    assert sum(1 for k in keys if f":ballot_problem:{app.cfg.network.person(INVALID_THEN_FIXED).email}" in k) == 1

    # the tally: every counted vote is in it, nobody is reported late
    res = round_.round_value(app, 2024, "result", None)
    assert sum(r["votes"] for r in res["rows"]) == 10 * len(voters)
    assert not res["late"] and res["ballots"] == len(voters)
    by_area: dict[str, list[int]] = {}
    for r in res["rows"]:
        by_area.setdefault(r["area"], []).append(r["votes"])
    assert all(v == sorted(v, reverse=True) for v in by_area.values())

    # archive: Handlingsplan 2024 and the draft plan that loads as a plan
    root = tmp_path / "dropbox"
    hp = root / res["path"].lstrip("/")
    assert hp.name.endswith("KCG Handlingsplan 2024.docx") and hp.exists()
    text = "\n".join(p.text for p in docx.Document(io.BytesIO(hp.read_bytes())).paragraphs)
    focus = [r["text"] for r in res["rows"] if r["focus"]]
    assert "Målbild för 2024" in text and all(t in text for t in focus)  # (the focus topics, by area)
    draft = yaml.safe_load((root / res["draft"].lstrip("/")).read_text())
    from kcg_mail.core.config_model import Plan

    plan = Plan.model_validate(draft)
    themed = [m.theme for m in plan.meetings if m.kind in ("digital", "all_members")]
    assert themed[0] == max((r for r in res["rows"] if r["focus"] and "studieresa" not in r["text"].lower()),
                            key=lambda r: r["votes"])["text"]

    # the coordinator's view: table artifacts of the round
    art = _artifact("kcg-planning-tally-2024")
    rows = art.data if isinstance(art.data, list) else json.loads(art.data)
    assert sum(r["röster"] for r in rows) == 10 * len(voters)
    members_art = _artifact("kcg-planning-2024")
    mrows = members_art.data if isinstance(members_art.data, list) else json.loads(members_art.data)
    assert {r["röst"] for r in mrows if r["medlem"] == app.cfg.network.person(WEEKEND_VOTER).name} == {"10 röster"}

    # the scheduled daily step finds no open round any more
    from flows.round import planning_tick

    idle = planning_tick(date="2023-12-20", workdir=str(tmp_path), config_dir=str(CONFIG_DIR))
    assert idle["sent"] == 0 and idle["lines"] == ["ingen planeringsrunda pågår"]

    # played again: nothing new is sent
    before = len(list((Path(app.mail.root) / "sent" / "cur").iterdir()))
    again = play_round(tmp_path, CONFIG_DIR, echo=lambda s: None)
    assert again.handlingsplan == result.handlingsplan
    assert len(list((Path(app.mail.root) / "sent" / "cur").iterdir())) == before
