"""The cockpit against a real Prefect server: runs started from the terminal
carry the network's and the kind's tags, the automations for Late and stuck
runs are created from automations/*.yaml, a crashed run alerts by webhook,
the manual flows name their runs after what they did and rewrite the
overview, and ``prefect deploy --all`` takes prefect.yaml without a
deprecation warning."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.cockpit_seed import seed  # noqa: E402
from support.hook import Hook  # noqa: E402

from kcg_mail.config_loader import DEFAULT_CONFIG_DIR

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
KCG = Path(sys.executable).with_name("kcg")


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    from support.prefect_server import prefect_server

    try:
        with prefect_server(tmp_path_factory.mktemp("prefect-home"), timeout=90) as s:
            yield s
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:  # pragma: no cover - no server possible
        pytest.skip(f"cannot start a Prefect server: {exc}")


@pytest.fixture(scope="module")
def api(prefect):
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect.api_url, PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield prefect


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _runs(flow_name: str):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client() as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def config_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))


def test_terminal_runs_are_tagged_with_network_and_kind(api, tmp_path):
    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    env = api.env() | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for args in (["daily", "--date", "2023-10-25"], ["intake", "--now", "2023-10-25T12:00"]):
        out = subprocess.run([str(KCG), *args, "--workdir", str(work), "--config", str(cfgdir)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
    (daily,) = _runs("kcg-daily")
    (intake,) = _runs("kcg-intake")
    assert {"kcg", "KCG", "daily"} <= set(daily.tags) and "intake" not in daily.tags
    assert {"kcg", "KCG", "intake"} <= set(intake.tags)
    assert daily.name.startswith("daglig 2023-10-25: ") and daily.name.endswith(" skickade")
    assert intake.name == "intag: inget nytt"


def test_serve_creates_the_automations_and_the_webhook_block(api, tmp_path, hook):
    """``kcg serve`` with a webhook: the Late and stuck-run automations from
    automations/*.yaml, named after the network, notifying through a block
    that keeps the URL among its secrets."""
    from support.prefect_server import stop

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    env = api.env() | {"KCG_ALERTS__WEBHOOK_URL": hook.url, "PREFECT_LOGGING_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(KCG), "serve", "--workdir", str(work), "--config", str(cfgdir)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        names = {"KCG: körningar blir inte av", "KCG: körning har fastnat"}
        t0 = time.monotonic()
        with _client() as client:
            while True:
                found = {a.name: a for a in client.read_automations()}
                deps = {d.name for d in client.read_deployments()}
                if names <= set(found) and "KCG" in deps:
                    break
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() - t0 < 120, log.read_text()[-3000:]
                time.sleep(0.5)
            late = found["KCG: körningar blir inte av"]
            stuck = found["KCG: körning har fastnat"]
            assert late.enabled and stuck.enabled
            assert late.trigger.posture == "Proactive" and late.trigger.after == {"prefect.flow-run.Late"}
            assert late.trigger.within.total_seconds() == 900
            assert stuck.trigger.after == {"prefect.flow-run.Running"} and stuck.trigger.within.total_seconds() == 7200
            related = late.trigger.match_related
            related = related[0] if isinstance(related, list) else related
            assert related.root == {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.KCG"}
            (action,) = late.actions
            assert action.type == "send-notification" and "kcg serve" in action.body
            block = client.read_block_document(action.block_document_id, include_secrets=False)
            assert block.name == "kcg-larm-kcg"
            assert hook.url not in str(block.data)  # the URL (a token) is a secret of the block
        # a second start updates, it does not duplicate
        from kcg_mail.config_loader import load_config
        from kcg_mail.entrypoints.automations import ensure_automations

        os.environ["KCG_ALERTS__WEBHOOK_URL"] = hook.url
        try:
            assert set(ensure_automations(load_config(cfgdir))) == names
        finally:
            del os.environ["KCG_ALERTS__WEBHOOK_URL"]
        with _client() as client:
            assert sorted(a.name for a in client.read_automations()).count("KCG: körning har fastnat") == 1
    finally:
        stop(proc)


class _SilentSmtp:
    """A real socket that accepts connections and never says a word: a mail
    server that hangs. A run sending through it stays Running until killed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_run_killed_mid_way_alerts_by_webhook(api, tmp_path, hook):
    """``kcg daily`` hangs on a silent mail server; Ctrl-C (SIGINT) kills it:
    the run is Crashed, and the on_crashed hook alerts by webhook (the mail
    server is what hangs, so the mail channel stays owed)."""
    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    smtp = _SilentSmtp()
    tr = cfgdir / "transport.yaml"
    tr.write_text(tr.read_text().replace(
        "  kind: maildir", f"  kind: smtp_imap\n  smtp_host: 127.0.0.1\n  smtp_port: {smtp.port}\n"
        f"  imap_port: {smtp.port}\n  smtp_security: none\n  imap_security: none\n  timeout: 2"))
    env = api.env() | {"KCG_ALERTS__WEBHOOK_URL": hook.url, "KCG_SMTP_PASSWORD": "unused-password-silent-server"}
    proc = subprocess.Popen([str(KCG), "daily", "--date", "2023-10-25", "--workdir", str(work), "--config", str(cfgdir)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not smtp.conns:  # the run is sending: it hangs in the SMTP greeting
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() - t0 < 120
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=240)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        smtp.close()
    runs = [r for r in _runs("kcg-daily") if r.parameters.get("workdir") == str(work)]
    assert len(runs) == 1 and runs[0].state.is_crashed(), (runs, output[-3000:])
    assert len(hook.posts) == 1, output[-3000:]
    card = hook.posts[0]["json"]
    assert card["summary"].startswith("kcg-daily misslyckades") and str(runs[0].id) in card["text"]
    # the mail channel (the hanging server) failed: an ERROR in the run's own log, in the UI
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with _client() as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
    errors = [log.message for log in logs if log.level >= 40]
    assert any("could not be sent by mail" in m and "next run tries again" in m for m in errors), errors


def test_manual_flows_name_their_runs_and_rewrite_the_overview(api, tmp_path, monkeypatch):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.manual import confirm_date, resend_minutes
    from kcg_mail.entrypoints import prefect_env

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = seed(work, cfgdir)
    member = next(p for p in app.cfg.network.active_members if p.email != app.meeting("2023-02").host.email)
    monkeypatch.setenv("KCG_WORKDIR", str(work))
    monkeypatch.setenv("KCG_CONFIG_DIR", str(cfgdir))
    monkeypatch.setenv("KCG_TODAY", "2023-08-20")
    with prefect_env.without_heartbeats():
        s1 = confirm_date(meeting_id="2023-10", datum="2023-10-09", return_state=True)
        s2 = resend_minutes(meeting_id="2023-02", email=member.email, return_state=True)
    assert s1.is_completed(), s1
    assert s2.is_completed(), s2
    with _client() as client:
        r1 = client.read_flow_run(s1.state_details.flow_run_id)
        r2 = client.read_flow_run(s2.state_details.flow_run_id)
        arts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[r1.id])))}
    assert r1.name == "satte 2023-10: måndag 9 oktober 2023"  # kcg-confirm-date stores his decision as kcg-set-meeting does
    assert r2.name == f"protokollet från 2023-02 (version 1) skickat igen till {member.email}"
    assert arts["kcg-manuellt"].data.startswith("# Studieresa 2023-10: måndag 9 oktober 2023")
    view = arts["kcg-oversikt"].data
    assert "| 2023-10 Studieresa | 2023-10-09 |" in view and "preliminärt datum" not in view
    assert s2.result()["outcome"] == "sent"


def test_prefect_deploy_takes_prefect_yaml_without_warnings(api, tmp_path):
    env = api.env() | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = Path(sys.executable).with_name("prefect")
    out = subprocess.run([str(prefect), "work-pool", "create", "kcg", "--type", "process"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([str(prefect), "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "deprecated" not in text.lower(), text
    with _client() as client:
        daily = client.read_deployment_by_name("kcg-daily/KCG-worker")
        onboard = client.read_deployment_by_name("kcg-onboard-member/KCG-worker")
    assert {"kcg", "KCG", "daily"} <= set(daily.tags) and len(daily.schedules) == 1
    assert onboard.schedules == [] and onboard.parameters == {}
    assert onboard.job_variables["env"]["KCG_WORKDIR"] == "/srv/kcg/var"
    assert not {"workdir", "config_dir"} & set(onboard.parameter_openapi_schema["properties"])


def test_kcg_listen_starts_the_workers_intake_deployment(api, tmp_path):
    """After ``prefect deploy`` (the test above): ``kcg listen`` starts the work
    pool's intake, kcg-intake/KCG-worker (at start-up, as the listener does, and
    on new mail), leaving the run for a worker."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from support.helpers import plain_mail
    from support.prefect_server import stop

    from kcg_mail.bootstrap import bootstrap

    with _client() as client:
        dep = client.read_deployment_by_name("kcg-intake/KCG-worker")
    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)  # creates the Maildir
    log = tmp_path / "listen.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(KCG), "listen", "--workdir", str(work), "--config", str(cfgdir)],
                                env=api.env(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while b"listening for new mail" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - t0 < 60, log.read_text()[-3000:]
            time.sleep(0.3)
        app.mail.deliver(plain_mail("okand@example.com", app.cfg.network.mailbox.email, "Hej",
                                    msgid="<listen-1@example.com>"), "listen.eml")
        while True:
            with _client() as client:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
            if runs:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - t0 < 90, log.read_text()[-3000:]
            time.sleep(0.5)
        assert runs[0].deployment_id == dep.id
    finally:
        stop(proc)
