"""The Prefect flows against a real (temporary) Prefect API: results, the
artifacts the coordinator reads in the UI, run names, and the whole-year demo.

Slow: the test harness starts a local Prefect server once per session."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from collections import Counter  # noqa: E402
from datetime import timedelta  # noqa: E402

import pytest  # noqa: E402
from support.helpers import (  # noqa: E402
    CONFIG_DIR,
    archive_files,
    at,
    attachment_names,
    calendar_parts,
    close,
    make_app,
    meeting,
    meetings,
    recipients,
    sent_by_key,
    sent_with_action,
    shipped_config,
)

from kcg_mail.core.plan import protocol_filename  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.server]  # a real Prefect server (prefect_test_harness)

CFG = shipped_config()
MEMBERS = {p.email for p in CFG.network.active_members}
FEB = meeting("2023-02")




def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _artifacts(flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client() as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def _run(flow, **params):
    state = flow(return_state=True, **params)
    assert state.is_completed(), state
    return state.result(), state.state_details.flow_run_id


def test_daily_flow_runs_and_publishes(prefect_api, tmp_path):
    from flows.daily import daily_flow

    wd = str(tmp_path)
    result, run_id = _run(daily_flow, date="2023-01-16", workdir=wd, config_dir=str(CONFIG_DIR))
    # 16 Jan, the first run (go-live): the January meeting (2 Jan) was held 10 working days before, it is
    # history (before, this sent its template, chase and escalation in one second); February's brief
    assert result == {"date": "2023-01-16", "sent": 1, "steps": 1, "skipped": 6}
    assert sorted(k.split(":")[0] + ":" + k.split(":")[1] for k in sent_by_key(tmp_path)) == ["2023-02:brief_host"]

    arts = _artifacts(run_id)
    assert {"kcg-oversikt", "kcg-korning"} <= set(arts)
    view = arts["kcg-oversikt"]
    assert view.type == "markdown"
    assert view.data.startswith("# KCG: läget just nu")
    assert "| Möte | Datum | Värd | Läge | Svar | Protokoll | Behöver |" in view.data
    table = [line for line in view.data.splitlines() if line.startswith("| 20")]
    assert [line.split()[1] for line in table] == [m.id for m in meetings()]
    jan = next(line for line in table if line.startswith("| 2023-01 "))
    assert "| före start |" in jan and "protokoll saknas" not in jan  # held before go-live: history
    assert "## Behöver en människa" in view.data and "Protokollet från mötet 2023-01" not in view.data
    summary = arts["kcg-korning"]
    assert summary.type == "markdown"
    assert summary.data.startswith("# Daglig körning 2023-01-16")
    assert "2023-02: information till värden – skickad" in summary.data
    assert "brief_host" not in summary.data and "Behöver en människa" in summary.data
    assert "Startdag 2023-01-16" in summary.data and "1 möte(n) hölls före start (2023-01)" in summary.data

    with _client() as client:
        assert client.read_flow_run(run_id).name == "daglig 2023-01-16: 1 skickade"

    # the same day again: nothing new
    result, _ = _run(daily_flow, date="2023-01-16", workdir=wd, config_dir=str(CONFIG_DIR))
    assert result["sent"] == 0 and result["steps"] == 0
    assert set(sent_by_key(tmp_path).values()) == {1} and len(sent_by_key(tmp_path)) == 1


def test_intake_flow_files_minutes_and_is_renamed(prefect_api, tmp_path):
    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.entrypoints.demo_hosts import host_reply

    wd = str(tmp_path)
    for d in ("2023-01-16", "2023-01-23", "2023-02-03", "2023-02-05"):
        _run(daily_flow, date=d, workdir=wd, config_dir=str(CONFIG_DIR))
    assert len(sent_with_action(tmp_path, "invite")) == 1

    result, run_id = _run(intake_flow, now="2023-02-06T12:00", workdir=wd, config_dir=str(CONFIG_DIR))
    assert result == {"handled": 0}
    with _client() as client:
        assert client.read_flow_run(run_id).name == "intag: inget nytt"

    app = make_app(tmp_path)
    app.mail.deliver(host_reply(app, FEB, at(FEB.date + timedelta(days=1), 11)), "reply.eml")
    close(app)
    result, run_id = _run(intake_flow, now="2023-02-07T12:00", workdir=wd, config_dir=str(CONFIG_DIR))
    assert result == {"handled": 1, "minutes": 1}
    with _client() as client:
        assert client.read_flow_run(run_id).name == "intag: 1 protokoll"
    arts = _artifacts(run_id)
    assert {"kcg-oversikt", "kcg-korning"} <= set(arts)
    assert arts["kcg-korning"].data.startswith("# intag: 1 protokoll")
    assert "arkiverat som /KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll" in arts["kcg-korning"].data
    assert "| 2023-02 Månadsmöte | 2023-02-06 | Daniel Swärd | klart |" in arts["kcg-oversikt"].data
    files = archive_files(tmp_path)
    assert [f.name for f in files] == ["2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1.docx"]
    dist = sent_with_action(tmp_path, "distribute")
    assert len(dist) == 1 and recipients(dist[0]) == MEMBERS

    # the latest artifact under each key is this run's
    from prefect.artifacts import Artifact

    latest = Artifact.get("kcg-korning")
    assert latest is not None and latest.data.startswith("# intag: 1 protokoll")


def test_demo_runs_the_whole_year(prefect_api, tmp_path, monkeypatch):
    from prefect.settings import get_current_settings

    from kcg_mail.entrypoints.demo import run_demo

    # run_demo points PREFECT_HOME at its workdir unless set: keep the harness's
    monkeypatch.setenv("PREFECT_HOME", str(get_current_settings().home))

    wd = tmp_path / "demo"
    first = run_demo(wd, CONFIG_DIR, echo=lambda *a: None)
    assert first.sent_before == 0 and first.sent_after > 0 and first.flow_runs > 12

    # the coordinator set the dates of the meetings he decides, by reply (DEMO_DATES): all twelve take place
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.demo import DEMO_DATES

    with bootstrap(wd, CONFIG_DIR) as played:
        confirmed = [m for m in played.meetings if not m.tentative]
    assert len(confirmed) == 12 and not [m for m in meetings() if m.tentative and m.id not in DEMO_DATES]
    keys = sent_by_key(wd)
    assert set(keys.values()) == {1}

    # a meeting whose date he set had its save-the-date first, and the invitation is the next update of that event
    saved = sent_with_action(wd, "save_the_date")
    saves = Counter(str(m["X-KCG-Mail"]).strip().split(":")[0] for m in saved)
    assert set(saves) == set(DEMO_DATES), saves
    assert sorted(str(m["X-KCG-Mail"]).strip() for m in saved) == sorted(
        f"{mid}:save_the_date:members:s{n}" for mid, count in saves.items() for n in range(count))
    assert all(recipients(m) == MEMBERS for m in saved)
    invites = sent_with_action(wd, "invite")
    by_meeting = Counter(str(m["X-KCG-Mail"]).split(":")[0] for m in invites)
    assert by_meeting == Counter({m.id: 1 for m in confirmed})
    for msg in invites:
        mid = str(msg["X-KCG-Mail"]).split(":")[0]
        m = next(x for x in confirmed if x.id == mid)
        assert recipients(msg) == MEMBERS  # guests get their own, once the coordinator approved (test_readers.py)
        cal = calendar_parts(msg)
        assert len(cal) == 1 and cal[0].get_param("method") == "REQUEST"
        seq = int(str(msg["X-KCG-Mail"]).strip().rpartition(":s")[2])
        assert seq == saves.get(mid.strip(), 0), msg["X-KCG-Mail"]
    # the coordinator was asked once per meeting he decides (and once more for January 2024's place)
    asked = Counter(str(m["X-KCG-Mail"]).strip().split(":")[0] for m in sent_with_action(wd, "date_question"))
    assert asked == Counter({"2023-01": 1, "2023-08": 1, "2023-10": 1, "2024-01": 2})
    # the open meeting reached its wider audience, each organisation on an invitation of its own
    audience = {p.email for p in CFG.network.audiences["stadskarnor_members"]}
    to_audience = [m for m in sent_with_action(wd, "guest_invite") if recipients(m) & audience]
    assert sorted(next(iter(recipients(m))) for m in to_audience) == sorted(audience)
    assert all(len(recipients(m)) == 1 for m in to_audience)

    templates = sent_with_action(wd, "send_template")
    assert Counter(str(m["X-KCG-Mail"]).split(":")[0] for m in templates) == Counter({m.id: 1 for m in confirmed})
    for msg in templates:
        m = next(x for x in confirmed if x.id == str(msg["X-KCG-Mail"]).split(":")[0])
        assert m.host.email in recipients(msg)
        assert [n for n in attachment_names(msg) if n.endswith(".docx")] == [protocol_filename(CFG, m)]

    docs = archive_files(wd)
    assert len(docs) == len(confirmed)
    assert {d.name[:10] for d in docs} == {m.date.isoformat() for m in confirmed}
    assert all("(v2)" not in d.name for d in docs)

    dist = sent_with_action(wd, "distribute")
    assert Counter(str(m["X-KCG-Mail"]).split(":")[0] for m in dist) == Counter({m.id: 1 for m in confirmed})
    assert all(recipients(m) == MEMBERS for m in dist)

    # the study trip: briefed while its date was tentative, moved by the coordinator's reply, then invited
    assert "2023-10:brief_host:lena@goteborg.example.se" in keys
    assert next(m.date for m in confirmed if m.id == "2023-10").isoformat() == "2023-09-26"

    # after the year the coordinator adds a member by mail, is asked, answers "Ja" by reply: welcomed once
    from kcg_mail.config_loader import read_members_overlay
    from kcg_mail.entrypoints.demo import DEMO_NEW_MEMBER, add_demo_member

    assert add_demo_member(wd, CONFIG_DIR) == 3  # two intake runs and the day's daily run
    new = DEMO_NEW_MEMBER[1]
    keys = sent_by_key(wd)
    assert keys[f"welcome:{new}"] == 1 and set(keys.values()) == {1}
    assert [x["email"] for x in read_members_overlay(wd)["added"]] == [new]
    asked = [k for k in keys if ":question:" in k and ":member_add:" in k]
    receipts = [m for m in sent_with_action(wd, "coordinator_receipt") if "medlem från och med nu" in
                m.get_body(("plain",)).get_content()]
    assert len(asked) == 1 and len(receipts) == 1

    second = run_demo(wd, CONFIG_DIR, echo=lambda *a: None)
    assert add_demo_member(wd, CONFIG_DIR) == 0
    assert second.sent_after == second.sent_before == sum(keys.values())
    assert sent_by_key(wd) == keys
    assert len(archive_files(wd)) == len(confirmed)


def test_scheduled_intake_skips_while_another_intake_works(prefect_api, tmp_path):
    """kcg serve's safety-net schedule (skip_if_busy) ends at once while the push
    listener's run holds the intake lock, instead of queueing behind it; the
    mail stays for that run (or the next)."""
    import threading

    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.entrypoints.demo_hosts import host_reply
    from kcg_mail.services.lock import intake_lock

    wd = str(tmp_path)
    for d in ("2023-01-16", "2023-01-23", "2023-02-03", "2023-02-05"):
        _run(daily_flow, date=d, workdir=wd, config_dir=str(CONFIG_DIR))
    app = make_app(tmp_path)
    app.mail.deliver(host_reply(app, FEB, at(FEB.date + timedelta(days=1), 11)), "reply.eml")
    close(app)
    held, release = threading.Event(), threading.Event()

    def other_run():
        with intake_lock(tmp_path):
            held.set()
            release.wait(60)

    t = threading.Thread(target=other_run)
    t.start()
    try:
        assert held.wait(10)
        result, run_id = _run(intake_flow, now="2023-02-07T12:00", workdir=wd, config_dir=str(CONFIG_DIR),
                              skip_if_busy=True)
        assert result == {"handled": 0, "skipped": 1}
        with _client() as client:
            assert client.read_flow_run(run_id).name == "intake: en annan körning läser redan brevlådan"
        assert archive_files(tmp_path) == []
    finally:
        release.set()
        t.join(10)
    result, _ = _run(intake_flow, now="2023-02-07T12:00", workdir=wd, config_dir=str(CONFIG_DIR), skip_if_busy=True)
    assert result == {"handled": 1, "minutes": 1}


def test_preview_flow_shows_the_month_as_an_artifact_and_sends_nothing(prefect_api, tmp_path, monkeypatch):
    from flows import manual

    monkeypatch.setenv("KCG_WORKDIR", str(tmp_path))
    monkeypatch.setenv("KCG_CONFIG_DIR", str(CONFIG_DIR))
    result, run_id = _run(manual.preview, month="2023-02")
    assert result["month"] == "2023-02" and result["mails"] >= 4
    assert not (tmp_path / "mail" / "sent").exists() or sent_by_key(tmp_path) == {}
    art = _artifacts(run_id)["kcg-forhandsvisning"]
    assert art.data.startswith("# Förhandsvisning 2023-02")
    assert "Inför mötet måndag 6 februari: påminnelse och protokollmall" in art.data and "| Daniel Swärd | medlem |" in art.data
    assert "*Till: Värden: Daniel Swärd*" in art.data
