"""``kcg adopt``: protocols already in the archive are recognised by the
naming convention and close variants, recorded as filed (nothing is asked for
or sent again) and their decisions build the decision log. Real local archive,
real SQLite, real Maildir, real Word documents."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from support.helpers import CONFIG_DIR, at, meetings
from typer.testing import CliRunner

from kcg_mail.core.adopt import PlannedRef, file_date, place

REFS = [PlannedRef(m.id, m.date) for m in meetings()]


# ------------------------------------------------------------------ the recogniser (pure)


@pytest.mark.parametrize("name,meeting_id,version,how", [
    ("2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1.docx", "2023-02", 1, "exact"),
    ("2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1 (v2).docx", "2023-02", 2, "exact"),
    ("20230306_kcg_beslutsprotokoll_affarsplanering.docx", "2023-03", 1, "exact"),
    ("2023_04_03 protokoll omsättningsstatistik_v3.pdf", "2023-04", 3, "exact"),
    ("KCG Minnesanteckningar 5 juni 2023.docx", "2023-06", 1, "exact"),
    ("2023-05-04 KCG Beslutsprotokoll Medlemserbjudande.odt", "2023-05", 1, "near"),  # held 2 May
    ("KCG Beslutsprotokoll 2023-11.docx", "2023-11", 1, "month"),
    ("2023.12.04 KCG BESLUTSPROTOKOLL.DOCX", "2023-12", 1, "exact"),
])
def test_convention_and_close_variants_are_placed(name, meeting_id, version, how):
    p = place(name, REFS)
    assert p is not None and (p.meeting_id, p.version, p.how) == (meeting_id, version, how), p


@pytest.mark.parametrize("name,reason", [
    ("Protokoll utan datum.docx", "inget datum"),
    ("2023-07-03 KCG Beslutsprotokoll.docx", "inget planerat möte nära 2023-07-03"),
    ("2021-03-01 KCG Beslutsprotokoll.docx", "ingen årsplan för 2021"),
    ("2023-02-06 bild.jpg", "inte ett dokument"),
    ("KCG Beslutsprotokoll 2023-07.docx", "inget möte den månaden"),
])
def test_what_cannot_be_placed_says_why(name, reason):
    p = place(name, REFS)
    assert p is not None and p.meeting_id is None and reason in p.reason, p


def test_own_decision_log_is_not_reported():
    assert place("2023 KCG Beslutslogg.csv", REFS) is None


def test_file_date_spellings():
    assert file_date("x 2023-02-06 y.docx") == (date(2023, 2, 6), None)
    assert file_date("x 6 feb. 2023.docx") == (date(2023, 2, 6), None)
    assert file_date("x 2023-13-40 y.docx") == (None, None)


# ------------------------------------------------------------------ kcg adopt on a real archive


def _archive_with_protocols(archive_root: Path) -> dict[str, bytes]:
    """Earlier protocols as a network keeps them: made from the real template,
    filled in like a host does, named by the convention or close to it."""
    from support.helpers import make_app

    from kcg_mail.entrypoints.demo_hosts import fill_protocol
    from kcg_mail.services.daily import render_protocol

    tmp_app = make_app(archive_root.parent / "scratch")
    by_id = {m.id: m for m in tmp_app.meetings}
    files = {
        "KCG/Protokoll/2023/" + render_protocol(tmp_app, by_id["2023-02"]).filename: ("2023-02", True),
        "KCG/Protokoll/2023/20230306_kcg_beslutsprotokoll_affarsplanering.docx": ("2023-03", True),
        "KCG/Protokoll/2023/2023-05-04 KCG Beslutsprotokoll Medlemserbjudande.docx": ("2023-05", True),
        "KCG/Protokoll/2023/Protokoll utan datum.docx": ("2023-06", False),
        "KCG/Protokoll/2021/2021-03-01 KCG Beslutsprotokoll.docx": ("2023-06", False),
    }
    out = {}
    for rel, (mid, filled) in files.items():
        data = render_protocol(tmp_app, by_id[mid]).data
        if filled:
            data = fill_protocol(data, by_id[mid])
        path = archive_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[rel] = data
    return out


def test_kcg_adopt_on_a_new_work_directory(tmp_path):
    from kcg_mail.entrypoints.cli import app as cli

    archive = tmp_path / "dropbox"
    _archive_with_protocols(archive)
    work = tmp_path / "new" / "work"  # does not exist yet
    env = {"KCG_ARCHIVE__PATH": str(archive)}
    result = CliRunner().invoke(cli, ["adopt", "--workdir", str(work), "--config", str(CONFIG_DIR)], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Protokoll utan datum.docx: inget datum" in out
    assert "2021-03-01 KCG Beslutsprotokoll.docx: det finns ingen årsplan för 2021" in out

    from kcg_mail.adapters.sqlite_state import SqliteState

    st = SqliteState(work / "state.sqlite")
    filed = sorted((f.meeting_id, f.version, f.source_msg_key.startswith("adopt:")) for f in st.filings())
    assert filed == [("2023-02", 1, True), ("2023-03", 1, True), ("2023-05", 1, True)]
    assert {d["meeting_id"] for d in st.decisions()} == {"2023-02", "2023-03", "2023-05"}
    feb_decisions = [d["decision"] for d in st.decisions("2023-02")]
    assert len(feb_decisions) == 2 and feb_decisions[0].startswith("Ta fram ett gemensamt underlag")
    log = (archive / "KCG" / "Protokoll" / "2023" / "2023 KCG Beslutslogg.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(log), delimiter=";"))
    assert rows[0][:2] == ["Möte", "Datum"] and sorted({r[0] for r in rows[1:]}) == ["2023-02", "2023-03", "2023-05"]
    st.close()

    # again: nothing new
    again = CliRunner().invoke(cli, ["adopt", "--workdir", str(work), "--config", str(CONFIG_DIR)], env=env)
    assert again.exit_code == 0 and "3 fil(er) var redan registrerade" in again.output


def test_adopted_protocols_are_not_asked_for_or_sent_again(tmp_path, monkeypatch):
    """Go-live just after the February meeting: without adopt the host would
    get the template (held 2 working days before go-live); with the protocol
    adopted nothing goes out for it, and the host mailing the same file again
    is a duplicate, not a new distribution."""
    from support.helpers import make_app

    from kcg_mail.services.adopt import adopt
    from kcg_mail.services.daily import run_daily
    from kcg_mail.services.intake import run_intake

    work = tmp_path / "w"
    files = _archive_with_protocols(work / "dropbox")
    app = make_app(work)
    report = adopt(app)
    assert {a.meeting_id for a in report.adopted} == {"2023-02", "2023-03", "2023-05"}
    daily = run_daily(app, at(date(2023, 2, 8)))
    assert [r for r in daily.results if r.meeting_id == "2023-02"] == []
    assert {(s.action, s.detail) for s in daily.skipped if s.meeting_id == "2023-02" and s.action == "send_template"} \
        == {("send_template", "protokollet har redan kommit in")}
    sent = sorted(p.name for p in (work / "mail" / "sent" / "cur").iterdir())
    # the same protocol mailed in again by the host
    from support.helpers import plain_mail

    feb = app.meeting("2023-02")
    rel = next(r for r in files if "Policy" in r)
    raw = plain_mail(feb.host.email, app.cfg.network.mailbox.email, f"Protokoll {feb.token}", msgid="<again@gavle.example.se>",
                     attachments=[(rel.rpartition("/")[2], "application/vnd.openxmlformats-officedocument."
                                   "wordprocessingml.document", files[rel])])
    app.mail.deliver(raw, "again.eml")
    intake = run_intake(app, at(date(2023, 2, 9), 12))
    assert [h.outcome for h in intake.handled] == ["duplicate"]
    assert sorted(p.name for p in (work / "mail" / "sent" / "cur").iterdir()) == sent  # nothing sent


def test_adopt_reads_dropbox_through_the_archive_port(tmp_path):
    """The same adoption from Dropbox (the real SDK against the HTTP-level fake),
    with the archive root in a team folder."""
    from support.fake_dropbox import FakeDropbox
    from support.helpers import make_app

    from kcg_mail.adapters.dropbox_archive import DropboxArchive
    from kcg_mail.services.adopt import adopt

    local = tmp_path / "local"
    files = _archive_with_protocols(local)
    fake = FakeDropbox().start()
    try:
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", root="/Stadskärnor",
                                 session=fake.session())
        for rel, data in files.items():
            archive.store("/" + rel, data)
        app = make_app(tmp_path / "w", archive=archive)
        report = adopt(app)
        assert sorted((a.meeting_id, a.how) for a in report.adopted) == [("2023-02", "exact"), ("2023-03", "exact"),
                                                                        ("2023-05", "near")]
        assert [p for p, _ in report.unplaced] == ["/KCG/Protokoll/2021/2021-03-01 KCG Beslutsprotokoll.docx",
                                                  "/KCG/Protokoll/2023/Protokoll utan datum.docx"]
        assert {f.path for f in app.state.filings()} == {"/" + r for r in files if "2021" not in r and "utan" not in r}
        log = archive.read("/KCG/Protokoll/2023/2023 KCG Beslutslogg.csv").decode("utf-8-sig")
        assert "Ta fram ett gemensamt underlag" in log
        assert adopt(app).adopted == []  # again: nothing new
    finally:
        fake.stop()
