"""Transient faults: a service that is down or throttling makes the run wait
and retry within bounds, then fail loudly; the next run resumes; no fault
leaves half-done state. Faults are injected at the protocol level of the
fakes, so the real adapters and client libraries handle them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from support.helpers import config_with, make_app, shipped_config

from kcg_mail.core.cycle import due_dates
from kcg_mail.entrypoints.demo_hosts import host_reply
from kcg_mail.ports import TransientError
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake


def _at(app, d, hour=7):
    return datetime.combine(d, datetime.min.time(), app.meetings[0].start.tzinfo).replace(hour=hour)


def _until_template(app, m):
    """Daily runs from the first brief to the day the template goes out."""
    days = due_dates(m, app.cfg.meetings.lead_days)  # working days
    d = days["brief_host"]
    while d <= days["send_template"]:
        run_daily(app, _at(app, d))
        d += timedelta(days=1)


def test_dropbox_down_during_intake_fails_loudly_then_resumes(tmp_path):
    from support.fake_dropbox import FakeDropbox

    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    fake = FakeDropbox().start()
    waits: list[float] = []
    try:
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(), sleep=waits.append, max_retries=3)
        app = make_app(tmp_path, config_with(shipped_config(), ("2023-02",)), archive=archive)
        m = app.meetings[0]
        _until_template(app, m)
        app.mail.deliver(host_reply(app, m, _at(app, m.date + timedelta(days=1), 11)), "reply.eml")

        fake.fail("files/upload", 503, times=10)  # Dropbox is down for longer than our retry bound
        report = run_intake(app, _at(app, m.date + timedelta(days=1), 12))
        assert len(report.errors) == 1 and "TransientError" in report.errors[0], report.errors
        assert len(waits) == 3, "bounded retries with backoff, then give up"
        # nothing half-done: no filing, no distribution, the reply is still in the inbox
        assert app.state.filings(m.id) == []
        assert app.state.action(f"{m.id}:distribute:members:v1") is None
        assert len(list((tmp_path / "mail" / "inbox" / "cur").iterdir())) == 1

        fake.faults.clear()  # Dropbox is back
        report = run_intake(app, _at(app, m.date + timedelta(days=1), 12))
        assert report.errors == []
        assert [h.outcome for h in report.handled] == ["minutes"]
        assert len(app.state.filings(m.id)) == 1
        assert app.state.action(f"{m.id}:distribute:members:v1").status == "done"
        assert list((tmp_path / "mail" / "inbox" / "cur").iterdir()) == []
        assert len(fake.calls_to("files/upload")) >= 1
    finally:
        fake.stop()


def test_dropbox_throttling_waits_retry_after_and_succeeds(tmp_path):
    from support.fake_dropbox import FakeDropbox

    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    fake = FakeDropbox().start()
    waits: list[float] = []
    try:
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(), sleep=waits.append)
        app = make_app(tmp_path, config_with(shipped_config(), ("2023-03",)), archive=archive)
        m = app.meetings[0]
        _until_template(app, m)
        app.mail.deliver(host_reply(app, m, _at(app, m.date + timedelta(days=1), 11)), "reply.eml")
        fake.fail("files/upload", 429, times=2, retry_after=7)
        report = run_intake(app, _at(app, m.date + timedelta(days=1), 12))
        assert report.errors == [] and [h.outcome for h in report.handled] == ["minutes"]
        assert waits[:2] == [7, 7], waits
        assert len(app.state.filings(m.id)) == 1
    finally:
        fake.stop()


def test_graph_down_during_daily_run_then_resumes_without_duplicates(tmp_path):
    from support.fake_graph import FakeGraph

    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient

    cfg = config_with(shipped_config(), ("2023-02",))
    fake = FakeGraph(mailbox=cfg.network.mailbox.email)
    waits: list[float] = []
    with fake.running():
        mail = GraphTransport(GraphClient(fake.settings(), fake.client_secret,
                                          sleep=waits.append, max_retries=2))
        app = make_app(tmp_path, cfg, mail=mail)
        m = app.meetings[0]
        brief_day = due_dates(m, app.cfg.meetings.lead_days)["brief_host"]
        fake.inject(503, times=10, path="sendMail")
        with pytest.raises(TransientError):
            run_daily(app, _at(app, brief_day))
        assert len(waits) == 2, "bounded retries, then a loud failure"
        rec = app.state.action(f"{m.id}:brief_host:{m.host.email}")
        assert rec is not None and rec.status == "intent", "the intent is recorded, not a false 'done'"
        assert app.state.action(f"{m.id}:step:brief_host") is None, "the step is not settled"

        fake._faults.clear()  # Graph is back: the next run resumes
        report = run_daily(app, _at(app, brief_day + timedelta(days=1)))
        assert [(r.action, r.outcome) for r in report.results] == [("brief_host", "sent")]
        briefs = [o for o in fake.outbox if o["kind"] == "mail" and "brief_host" in o["mime"].decode("utf-8", "replace")]
        assert len(briefs) == 1, "sent exactly once"
        assert app.state.action(f"{m.id}:brief_host:{m.host.email}").status == "done"
