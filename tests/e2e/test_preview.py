"""``kcg preview``: the mails of a month, per reader, before they are sent.

The preview is a dry run of the daily runs on a copy of the state record; the
test holds it to what the real daily runs then send, mail for mail, and checks
that the install it previewed is left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import date, timedelta
from pathlib import Path

from support.basics import at
from typer.testing import CliRunner

from kcg_mail.bootstrap import bootstrap, dry_run_app
from kcg_mail.entrypoints.cli import app as cli
from kcg_mail.services.daily import run_daily
from kcg_mail.services.preview import Preview, dry_run, month_bounds, read_maildir, render_html


def _days(first: date, last: date):
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def _tree(root: Path) -> dict[str, str]:
    """Every file's hash; the state record by its content (SQLite's own -wal/-shm
    files appear when anyone opens a WAL database, even read-only)."""
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm", ".sqlite"))}
    with sqlite3.connect(root / "state.sqlite") as con:
        files["state.sqlite (content)"] = hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    return files


def _seen(mails) -> list[tuple]:
    return [(m.key, m.sent_at, m.subject, m.text, m.calendar, m.attachments, m.readers) for m in mails]


def test_the_preview_is_what_the_daily_runs_then_send_and_changes_nothing(tmp_path):
    work = tmp_path / "install"
    with bootstrap(work) as app:
        for d in _days(date(2023, 1, 16), date(2023, 1, 31)):
            run_daily(app, at(d))
    before = _tree(work)

    first, last = month_bounds("2023-02")
    with dry_run_app(work) as (scratch, sent):
        preview = dry_run(scratch, first, last, sent)
    assert _tree(work) == before, "the preview wrote into the install it previewed"

    with bootstrap(work) as app:
        for d in _days(first, last):
            run_daily(app, at(d))
        real = [m for m in read_maildir(app.cfg, app.meetings, work / "mail" / "sent") if m.month == "2023-02"]
        mar = app.meeting("2023-03")
    assert len(preview) >= 4
    assert _seen(preview) == _seen(real)

    invitation = next(m for m in preview if m.key == "2023-03:invite:members:s0")
    roles = {r.email: r.role for r in invitation.readers}
    assert roles[mar.host.email] == "värd"
    assert roles[app.cfg.network.coordinator.email] == "samordnare"
    assert sum(1 for r in roles.values() if r == "medlem") == len(app.cfg.network.active_members) - 2
    template = next(m for m in preview if m.key.startswith("2023-02:send_template:"))
    assert [r.role for r in template.readers] == ["värd"] and template.attachments


def test_the_page_lists_each_mail_once_with_its_readers_and_escapes_the_texts(tmp_path):
    work = tmp_path / "install"
    with dry_run_app(work) as (scratch, sent):
        mails = dry_run(scratch, *month_bounds("2023-02"), sent)
    mails[0].text += "\n<script>alert(1)</script> A & B"
    page = render_html(Preview("Förhandsvisning 2023-02", "note", mails))
    for m in mails:
        assert page.count(f"<h3>{m.subject}</h3>".replace("&", "&amp;")) == 1
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; A &amp; B" in page
    assert "Värden:" in page and "Medlemmar:" in page and "Samordnaren:" in page


def test_kcg_preview_writes_the_page_and_refuses_a_bad_month(tmp_path):
    runner = CliRunner()
    work = tmp_path / "w"
    r = runner.invoke(cli, ["preview", "--month", "2023-03", "--workdir", str(work)])
    assert r.exit_code == 0, r.output
    page = (work / "preview-2023-03.html").read_text(encoding="utf-8")
    assert "Inbjudan: KCG-mötet måndag 6 mars" in page and "Protokollet från mötet måndag 6 mars" in page
    assert "utskick" in r.output
    bad = runner.invoke(cli, ["preview", "--month", "mars", "--workdir", str(work)])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
