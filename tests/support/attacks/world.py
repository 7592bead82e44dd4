"""Moved shared parts."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from kcg_mail.adapters.maildir import sent_name
from kcg_mail.services.daily import render_protocol, run_daily
from kcg_mail.services.intake import run_intake
from support.attacks.cases import Ctx, ar, mail
from support.helpers import (
    at,
    close,
    crash_configs,
    make_app,
    read_mail,
)

CFG = crash_configs()[0]  # February and March 2023, four people: Björn (coordinator), Daniel, David, Lisa


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A work directory where the February template went out (and March's brief)."""
    wd = tmp_path_factory.mktemp("prepared")
    app = make_app(wd, CFG)
    feb, mar = app.meeting("2023-02"), app.meeting("2023-03")
    for off in (-21, -14, -3, -1):
        run_daily(app, at(feb.date + timedelta(days=off)))
    run_daily(app, at(mar.date - timedelta(days=21)))  # March's brief: 15 working days before
    close(app)
    return wd


def _ctx(app, workdir: Path) -> Ctx:
    from kcg_mail.entrypoints.demo_hosts import fill_protocol
    from kcg_mail.services.compose import meeting_uid

    feb = app.meeting("2023-02")
    tpl = read_mail(_tpl_path(workdir, feb))
    brief = read_mail(Path(workdir) / "mail" / "sent" / "cur" /
                      sent_name(f"2023-03:brief_host:{app.meeting('2023-03').host.email}"))
    return Ctx(
        ours=app.cfg.transport.inbound.trusted_authserv_ids[0], mailbox=app.cfg.network.mailbox.email,
        host=feb.host.email, member="lisa@uppsala.example.se", coordinator=app.cfg.network.coordinator.email,
        token=feb.token, tpl_msgid=str(tpl["Message-ID"]).strip(), tpl_reply_to=str(tpl["Reply-To"]),
        tpl_subject=str(tpl["Subject"]), other_msgid=str(brief["Message-ID"]).strip(),
        docx=fill_protocol(render_protocol(app, feb).data, feb), when=at(feb.date + timedelta(days=1), 11),
        uid=meeting_uid(app.cfg, feb.id),
    )


def _copy(prepared: Path, dst: Path) -> Path:
    shutil.copytree(prepared, dst)
    return dst


def _genuine(c: Ctx, **kw) -> bytes:
    base = dict(from_=f"Daniel Värd <{c.host}>", ar_fields=[ar(c.ours, "pass", c.host_domain)])
    base.update(kw)
    return mail(c, **base)


@pytest.fixture
def feb(prepared, tmp_path):
    wd = _copy(prepared, tmp_path / "wd")
    app = make_app(wd, CFG)
    yield app, wd, _ctx(app, wd)
    close(app)


def _intake(app, hour: int = 12, day_offset: int = 1):
    return run_intake(app, at(app.meeting("2023-02").date + timedelta(days=day_offset), hour))


def _tpl_path(workdir: Path, m) -> Path:
    return Path(workdir) / "mail" / "sent" / "cur" / sent_name(f"{m.id}:send_template:{m.host.email}")
