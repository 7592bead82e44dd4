"""``kcg demo``'s Prefect session (kcg_mail/entrypoints/prefect_env.session):
one temporary Prefect server in ``<workdir>/prefect`` started before the runs,
every run recorded on it, a new Prefect home seeded from the empty database
the first one left, the server stopped at the end; and the timing line's
wrappers measure real calls and are removed afterwards."""

from __future__ import annotations

import pytest
from support.helpers import CONFIG_DIR

pytestmark = [pytest.mark.slow, pytest.mark.server]  # a real Prefect server (started by the session)


def _runs(url: str) -> list[dict]:
    import httpx

    r = httpx.post(f"{url}/flow_runs/filter", json={"limit": 50}, timeout=30)
    r.raise_for_status()
    return r.json()


def test_session_runs_flows_on_its_own_server_and_seeds_the_next_home(tmp_path, monkeypatch):
    import httpx

    from kcg_mail.entrypoints import prefect_env
    from kcg_mail.entrypoints.demo_timing import Phases

    monkeypatch.setenv("KCG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PREFECT_HOME", raising=False)  # the demo's own place: <workdir>/prefect
    imported = []
    first = tmp_path / "one"
    phases = Phases()
    with prefect_env.session(first, while_starting=lambda: imported.append(1)) as server:
        from flows.daily import daily_flow

        assert server is not None and imported == [1]
        assert server.home == (first / "prefect").resolve() and (server.home / "prefect.db").exists()
        assert server.new_home and not server.seeded  # nothing to seed from yet: Prefect migrated it
        original = daily_flow.fn
        with phases.instrument():
            r = daily_flow(date="2023-01-16", workdir=str(first / "work"), config_dir=str(CONFIG_DIR))
        assert daily_flow.fn is original  # the wrappers are gone
        assert r["sent"] == 1
        names = [x["name"] for x in _runs(server.url)]
        assert "daglig 2023-01-16: 1 skickade" in names
        url, proc = server.url, server.process
    assert phases.calls["flow call"] == 1 and phases.seconds["flow call"] >= phases.seconds["flow body"] > 0
    assert phases.calls["mail"] >= 1 and phases.calls["prefect api"] >= 2  # the artifacts and the run's name
    assert proc.poll() is not None  # stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)

    template = tmp_path / "cache"
    assert [p.name for p in template.iterdir()] == [prefect_env._template_path().name]
    second = tmp_path / "two"
    monkeypatch.delenv("PREFECT_HOME", raising=False)  # a new process would not have the first one's
    with prefect_env.session(second) as server:
        assert server.new_home and server.seeded  # a copy of the empty database, checked by the server
        from flows.daily import daily_flow

        daily_flow(date="2023-01-16", workdir=str(second / "work"), config_dir=str(CONFIG_DIR))
        runs = _runs(server.url)
        assert [x["name"] for x in runs] == ["daglig 2023-01-16: 1 skickade"]  # empty before: only this run
