"""Small leaks closed: one problem is one alert a day even when its
text holds a random temp-file name, a path or an id; a distribution never carries a
``file://`` link (the local archive attaches, Dropbox gives a real shared link)."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from html import escape
from pathlib import Path

import pytest
from support.helpers import (  # noqa: E402
    at,
    attachment_names,
    body_text,
    close,
    config_with,
    copy_config,
    make_app,
    meeting,
    sent_by_key,
    sent_with_action,
    shipped_config,
)

from kcg_mail.core.outreach import distribution_content, normalise_problem, shareable_link  # noqa: E402
from kcg_mail.entrypoints.demo_hosts import host_reply  # noqa: E402
from kcg_mail.services.alerts import problem_id, send_failure_alert  # noqa: E402
from kcg_mail.services.daily import run_daily  # noqa: E402
from kcg_mail.services.intake import run_intake  # noqa: E402

FEB = meeting("2023-02")


def _real_temp_error() -> str:
    """The text of a real error about a real, randomly named temp file."""
    d = tempfile.mkdtemp(prefix="tmp")
    try:
        with tempfile.NamedTemporaryFile(dir=d, suffix=".docx", delete=False) as f:
            name = f.name
        os.chmod(d, 0o500)
        try:
            open(os.path.join(d, os.path.basename(tempfile.mktemp(suffix=".docx"))), "rb")
        except OSError as exc:
            return f"{exc} (while converting {name})"
        raise AssertionError("expected an error")
    finally:
        os.chmod(d, 0o700)
        for p in Path(d).iterdir():
            p.unlink()
        os.rmdir(d)


@pytest.mark.core
def test_same_problem_with_other_temp_names_paths_and_ids_gets_one_key():
    a, b = _real_temp_error(), _real_temp_error()
    assert a != b  # really different texts
    assert problem_id("kcg-intake", "FileNotFoundError", a) == problem_id("kcg-intake", "FileNotFoundError", b)
    same = [
        ("LibreOffice wrote no /tmp/kcg-lo-3f2a9c1e4b/out/protokoll.pdf (exit 0)",
         "LibreOffice wrote no /tmp/kcg-lo-77aa01bc9d/out/protokoll.pdf (exit 0)"),
        (r"cannot open C:\Users\kcg\AppData\Local\Temp\tmpq8x_2k1d.docx",
         r"cannot open C:\Users\kcg\AppData\Local\Temp\tmpzz9_aa0b.docx"),
        ("Graph 404 for message AAMkAGI2TG93AAA1xYz= in folder AQMkADAwATM0MDAAMS1hZDk",
         "Graph 404 for message AAMkAGI2TG93BBB2qRs= in folder AQMkADAwATM0MDAAMS1hZDk"),
        ("message <20231025071500.7f3a@kcg.example.se> has no body",
         "message <20231025121000.0b1c@kcg.example.se> has no body"),
        ("upload of /KCG/Protokoll/2023/tmp_ab12cd.part failed: 409 conflict rev 5f1e2d3c4b",
         "upload of /KCG/Protokoll/2023/tmp_zz99yy.part failed: 409 conflict rev 0a9b8c7d6e"),
        ("see https://api.dropboxapi.com/2/files/upload?id=0a1b2c at 12:01:07",
         "see https://api.dropboxapi.com/2/files/upload?id=9f8e7d at 17:45:59"),
        ("run 6e1c2f9a-0d41-4b8e-9a8f-3c2b1a0d9e8f failed", "run 0b6a8e52-7c1d-4f3e-8a9b-1c2d3e4f5a6b failed"),
    ]
    for x, y in same:
        assert normalise_problem(x) == normalise_problem(y), (x, normalise_problem(x), normalise_problem(y))
    # different problems stay different
    different = [
        ("Permission denied: '/srv/kcg/var/state.sqlite'", "No space left on device: '/srv/kcg/var/state.sqlite'"),
        ("login failed for kcg@kcg.example.se", "mailbox quota exceeded for kcg@kcg.example.se"),
        ("config/network.yaml: members[3].email: invalid", "config/meetings.yaml: lead_times.invite: invalid"),
    ]
    for x, y in different:
        assert normalise_problem(x) != normalise_problem(y)


@pytest.mark.core
def test_alert_about_a_temp_file_problem_is_mailed_once_a_day(tmp_path):
    from kcg_mail.bootstrap import bootstrap

    class Run:
        id, name, parameters = "00000000-0000-0000-0000-000000000007", "intake", {}

    class State:
        def __init__(self, exc):
            self.exc, self.message = exc, f"Flow run encountered an exception: {type(exc).__name__}: {exc}"

        def result(self, raise_on_failure=True):
            return self.exc

    app = bootstrap(tmp_path / "work", copy_config(tmp_path))
    try:
        now = at(FEB.date, 7)
        outcomes = [send_failure_alert(app, "kcg-intake", Run(), State(OSError(_real_temp_error())),
                                       now=now + timedelta(minutes=5 * i)) for i in range(6)]
        assert outcomes == ["mail: sent"] + ["already"] * 5  # per channel (no webhook configured)
        assert send_failure_alert(app, "kcg-intake", Run(), State(OSError(_real_temp_error())),
                                  now=now + timedelta(days=1)) == "mail: sent"
        assert len([k for k in sent_by_key(tmp_path / "work") if k.startswith("alert:")]) == 2
    finally:
        app.state.close()


@pytest.mark.core
def test_link_rules():
    assert shareable_link("file:///srv/kcg/var/dropbox/KCG/a.docx") is None
    assert shareable_link("FILE:///C:/x.docx") is None
    assert shareable_link("/KCG/Protokoll/2023/a.docx") is None
    assert shareable_link("https://www.dropbox.com/scl/fi/abc/a.docx?rlkey=x") == "https://www.dropbox.com/scl/fi/abc/a.docx?rlkey=x"
    assert distribution_content("link", "file:///srv/a.docx") == (True, None)
    assert distribution_content("link", "https://www.dropbox.com/s/a") == (False, "https://www.dropbox.com/s/a")
    assert distribution_content("attach", "https://www.dropbox.com/s/a") == (True, "https://www.dropbox.com/s/a")


def _distribute(tmp_path, distribution: str, archive=None):
    cfg = config_with(shipped_config(), ["2023-02"])
    cfg = cfg.model_copy(update={"meetings": cfg.meetings.model_copy(update={"distribution": distribution})})
    app = make_app(tmp_path, cfg, archive=archive)
    try:
        run_daily(app, at(FEB.date - timedelta(days=3)))  # the Friday before: the template goes out on a working day
        day = FEB.date + timedelta(days=1)
        app.mail.deliver(host_reply(app, FEB, at(day, 10)), "feb.eml")
        assert [h.outcome for h in run_intake(app, at(day, 12)).handled] == ["minutes"]
        (dist,) = sent_with_action(tmp_path, "distribute")
        return app.state.filings("2023-02")[0].link, dist
    finally:
        close(app)


@pytest.mark.core
@pytest.mark.parametrize("distribution", ["link", "attach"])
def test_local_archive_distribution_attaches_and_carries_no_file_link(tmp_path, distribution):
    filed_link, dist = _distribute(tmp_path, distribution)
    raw = dist.as_bytes()
    assert b"file:" not in raw.lower()
    assert str(tmp_path).encode() not in raw  # no server path either
    names = attachment_names(dist)
    assert len(names) == 1 and names[0].endswith(".docx")
    text = body_text(dist)
    assert "Protokollet är bifogat" in text and "https://" not in text
    # where it is kept: the archive's folder, as a reader names it (never a path)
    assert "sparas i nätverkets Dropbox, i mappen KCG / Protokoll / 2023." in text
    assert filed_link.startswith("file://")  # the coordinator's record keeps it; the mail does not


@pytest.mark.core
def test_dropbox_distribution_in_link_mode_carries_the_shared_link(tmp_path):
    from support.fake_dropbox import FakeDropbox

    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    fake = FakeDropbox().start()
    try:
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(),
                                 sleep=lambda s: None)
        link, dist = _distribute(tmp_path, "link", archive=archive)
        assert link.startswith("https://")
        assert attachment_names(dist) == []
        assert f"sparas i nätverkets Dropbox, i mappen KCG / Protokoll / 2023: {link}" in body_text(dist)
        html = dist.get_body(("html",)).get_content()
        assert f'href="{escape(link)}"' in html
        assert b"file:" not in dist.as_bytes().lower()
    finally:
        fake.stop()
