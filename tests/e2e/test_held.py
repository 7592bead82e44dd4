"""Held is not published: a version held for any reason (a sender we could not
confirm, the day's allowance of mail-outs, a late copy, an embedded object in the
file) stays out of the shared archive (the local archive folder, the fake
Dropbox under the real SDK) until the coordinator approves it; ``kcg pending``,
the overview and the approval say why in Swedish, one text per cause; an
approval files and distributes it exactly once, also when the approval is
killed at any side effect and run again."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import hostile_files as h
from support.attacks.cases import Ctx, ar, mail
from support.basics import CONFIG_DIR
from support.helpers import (
    Crash,
    CrashPlan,
    at,
    changed_minutes,
    close,
    crash_configs,
    crashing_app,
    make_app,
    read_mail,
    sent_by_key,
)
from typer.testing import CliRunner

from kcg_mail.adapters.maildir import sent_name
from kcg_mail.services.approval import approve, pending, reject
from kcg_mail.services.daily import render_protocol, run_daily
from kcg_mail.services.intake import run_intake
from kcg_mail.services.manual import ManualProblem
from kcg_mail.services.status import overview_markdown

CFG = crash_configs()[0]  # February and March 2023, four people; Daniel hosts February
MID = "2023-02"
DOC_SUFFIXES = (".docx", ".odt", ".pdf")

SENDER = "avsändaren kunde inte bekräftas"
CAP = "tredje versionen i dag"
LATE = "kom in efter att protokollet redan skickats ut"
SAFETY = "filen innehöll ett inbäddat objekt som togs bort"
ALL_REASONS = (SENDER, CAP, LATE, SAFETY)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A work directory where the February template went out."""
    wd = tmp_path_factory.mktemp("prepared")
    app = make_app(wd, CFG)
    feb = app.meeting(MID)
    for off in (-21, -14, -3, -1):
        run_daily(app, at(feb.date + timedelta(days=off)))
    close(app)
    return wd


def _ctx(app, wd: Path) -> Ctx:
    from kcg_mail.entrypoints.demo_hosts import fill_protocol
    from kcg_mail.services.compose import meeting_uid

    feb = app.meeting(MID)
    tpl = read_mail(wd / "mail" / "sent" / "cur" / sent_name(f"{MID}:send_template:{feb.host.email}"))
    return Ctx(
        ours=app.cfg.transport.inbound.trusted_authserv_ids[0], mailbox=app.cfg.network.mailbox.email,
        host=feb.host.email, member="lisa@uppsala.example.se", coordinator=app.cfg.network.coordinator.email,
        token=feb.token, tpl_msgid=str(tpl["Message-ID"]).strip(), tpl_reply_to=str(tpl["Reply-To"]),
        tpl_subject=str(tpl["Subject"]), other_msgid=str(tpl["Message-ID"]).strip(),
        docx=fill_protocol(render_protocol(app, feb).data, feb), when=at(feb.date + timedelta(days=1), 11),
        uid=meeting_uid(app.cfg, feb.id),
    )


def with_embedded_object(docx: bytes) -> bytes:
    """The minutes with an OLE object embedded (word/embeddings/oleObject1.bin)."""
    types = h.read_part(docx, "[Content_Types].xml").replace(
        b"</Types>", b'<Default Extension="bin" ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>'
                     b"</Types>")
    return h.rezip(docx, replace={"[Content_Types].xml": types},
                   add={"word/embeddings/oleObject1.bin": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504})


@dataclass
class World:
    app: Any
    wd: Path
    c: Ctx
    fake: Any = None
    originals: dict[str, bytes] | None = None  # what the hosts sent, by reason

    def archived(self) -> list[bytes]:
        """Every protocol file in the shared archive (what the network sees)."""
        if self.fake is not None:
            return [f.data for ns in self.fake.namespaces.values() for f in ns.files.values()
                    if f.path_display.lower().endswith(DOC_SUFFIXES)]
        root = self.wd / "dropbox"
        return [p.read_bytes() for p in root.rglob("*") if p.suffix in DOC_SUFFIXES] if root.is_dir() else []

    def deliver(self, raw: bytes, name: str) -> None:
        self.app.mail.deliver(raw, name)

    def intake(self, hour: int = 12, day_offset: int = 1):
        report = run_intake(self.app, at(self.app.meeting(MID).date + timedelta(days=day_offset), hour))
        assert report.errors == [], report.errors
        return report

    def genuine(self, docx: bytes, *, body: str = "v\n", when=None) -> bytes:
        c = dc_replace(self.c, docx=docx, when=when or self.c.when)
        return mail(c, from_=f"Daniel Värd <{c.host}>", ar_fields=[ar(c.ours, "pass", c.host_domain)], body=body)

    def distributed(self) -> dict[str, int]:
        return {k: n for k, n in sent_by_key(self.wd).items() if ":distribute:" in k}


@pytest.fixture(params=["local", "dropbox"])
def world(prepared, tmp_path, request):
    wd = Path(shutil.copytree(prepared, tmp_path / "wd"))
    fake = archive = None
    if request.param == "dropbox":
        from support.fake_dropbox import FakeDropbox

        from kcg_mail.adapters.dropbox_archive import DropboxArchive

        fake = FakeDropbox().start()
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=fake.session(),
                                 sleep=lambda s: None)
    app = make_app(wd, CFG, archive=archive)
    yield World(app, wd, _ctx(app, wd), fake)
    close(app)
    if fake is not None:
        fake.stop()


def _hold_every_cause(w: World) -> dict[str, bytes]:
    """One held message per cause; returns the bytes each would file (the rebuilt
    file kept in the held area, as ``kcg pending`` names it), by reason."""
    v1, v2, v3 = (changed_minutes(w.c.docx, f"Beslut {i}") for i in (1, 2, 3))
    for i, doc in enumerate((v1, v2, v3)):
        w.deliver(w.genuine(doc, body=f"{i}\n"), f"v{i}.eml")
    r1 = w.intake()
    assert sorted(h.outcome for h in r1.handled) == ["held", "minutes", "minutes"], r1.handled
    older = changed_minutes(w.c.docx, "Ett gammalt beslut")
    unsafe = with_embedded_object(changed_minutes(w.c.docx, "Beslut med objekt"))
    unconfirmed = changed_minutes(w.c.docx, "Beslut utan bekräftad avsändare")
    w.deliver(w.genuine(older, body="gammal\n", when=w.c.when - timedelta(hours=20)), "old.eml")
    w.deliver(w.genuine(unsafe, body="objekt\n"), "unsafe.eml")
    w.deliver(mail(dc_replace(w.c, docx=unconfirmed), from_=w.c.host, body="ingen AR\n"), "unconfirmed.eml")
    r2 = w.intake(day_offset=2)  # a new day: the allowance is not what holds these
    assert [h.outcome for h in r2.handled] == ["held", "held", "held"], r2.handled
    out = {}
    for reason in ALL_REASONS:
        (p,) = [p for p in pending(w.app) if p.why.startswith(reason)]
        assert p.sends.startswith("filen held/2023-02/"), p
        out[reason] = (w.wd / p.sends.removeprefix("filen ")).read_bytes()
    w.originals = {CAP: v3, LATE: older, SAFETY: unsafe, SENDER: unconfirmed}
    assert out[CAP] != v3 and out[SAFETY] != unsafe and out[SENDER] != unconfirmed and out[LATE] != older  # rebuilt
    return out


def test_held_versions_of_every_cause_stay_out_of_the_archive_and_say_why(world):
    w = world
    held = _hold_every_cause(w)
    archived = w.archived()
    assert len(archived) == 2  # v1 and v2, distributed on the first day
    for reason, data in held.items():
        assert data not in archived, reason
    # every held version is kept under the work directory, as it would be filed
    kept = sorted(p.read_bytes() for p in (w.wd / "held" / MID).iterdir())
    assert kept == sorted(held.values())
    assert not any((w.wd / "held").rglob("*.tmp"))
    assert len(w.distributed()) == 2

    items = pending(w.app)
    assert len(items) == 4
    by_reason = {r: [p for p in items if p.why.startswith(r)] for r in ALL_REASONS}
    assert all(len(v) == 1 for v in by_reason.values()), [p.why for p in items]
    for p in items:  # exactly one cause's text each: an unsafe file is not listed as the day's allowance
        assert sum(r in p.why for r in ALL_REASONS) == 1, p.why
    assert by_reason[SAFETY][0].cause == "safety" and by_reason[CAP][0].cause == "cap"
    assert by_reason[LATE][0].cause == "late" and by_reason[SENDER][0].cause == "sender"
    assert b"word/embeddings/" not in held[SAFETY]  # what an approval would send: the rebuilt file

    md = overview_markdown(w.app, at(w.app.meeting(MID).date + timedelta(days=2), 13))
    for r in ALL_REASONS:
        assert r in md, r
    assert md.count("högst 2 utskick per möte och dag") == 1  # the cap text for the one capped version only

    if w.fake is None:  # the coordinator's command on the same work directory
        from kcg_mail.entrypoints.cli import app as cli

        res = CliRunner().invoke(cli, ["pending", "--workdir", str(w.wd), "--config", str(CONFIG_DIR)])
        assert res.exit_code == 0, res.output
        text = " ".join(res.output.split())
        for r in ALL_REASONS:
            assert r in text, (r, text)


def test_approval_files_and_distributes_each_held_version_exactly_once(world):
    w = world
    held = _hold_every_cause(w)
    by_reason = {r: next(p for p in pending(w.app) if p.why.startswith(r)) for r in ALL_REASONS}
    approved_at = at(w.app.meeting(MID).date + timedelta(days=2), 14)
    for reason in (CAP, LATE, SAFETY, SENDER):
        decisions = w.app.state.decisions(MID)
        out = approve(w.app, by_reason[reason].msg_key, approved_at)
        assert out.action == "approved" and reason in out.markdown(), out
        if reason == LATE:  # an older copy goes out; the decisions stay those of the newer version
            assert w.app.state.decisions(MID) == decisions
        else:
            assert w.app.state.decisions(MID) != decisions
        with pytest.raises(ManualProblem):
            approve(w.app, by_reason[reason].msg_key, approved_at)  # no longer waiting
    archived = w.archived()
    for reason in ALL_REASONS:
        assert archived.count(held[reason]) == 1, reason  # filed exactly once
    assert len(w.app.state.filings(MID)) == 6
    assert w.distributed() == {f"{MID}:distribute:members:v{n}": 1 for n in range(1, 7)}
    assert pending(w.app) == []
    assert w.intake(15, day_offset=2).handled == []  # nothing left for the next intake
    # the same files sent again: nothing new is filed or sent
    w.deliver(w.genuine(w.originals[CAP], body="igen\n"), "again.eml")
    assert [h.outcome for h in w.intake(16, day_offset=2).handled] == ["duplicate"]
    assert len(w.archived()) == 6 and len(w.distributed()) == 6


def test_a_rejected_version_is_never_filed_nor_sent(world):
    w = world
    held = _hold_every_cause(w)
    safety = next(p for p in pending(w.app) if p.why.startswith(SAFETY))
    assert reject(w.app, safety.msg_key).action == "rejected"
    w.deliver(w.genuine(w.originals[SAFETY], body="en gång till\n"), "again.eml")
    report = w.intake(13, day_offset=2)
    assert [h.outcome for h in report.handled] == ["duplicate"] and "avvisats" in report.handled[0].reason
    assert held[SAFETY] not in w.archived() and len(w.distributed()) == 2
    assert [p.why for p in pending(w.app) if p.why.startswith(SAFETY)] == []


# ------------------------------------------------------------------ crash


def _capped(tmp_path: Path, prepared: Path) -> tuple[Path, bytes]:
    """A work directory with a third version of the day held."""
    wd = Path(shutil.copytree(prepared, tmp_path / "base"))
    app = make_app(wd, CFG)
    w = World(app, wd, _ctx(app, wd))
    docs = [changed_minutes(w.c.docx, f"Beslut {i}") for i in range(3)]
    for i, doc in enumerate(docs):
        w.deliver(w.genuine(doc, body=f"{i}\n"), f"v{i}.eml")
    w.intake()
    (p,) = pending(app)
    assert p.cause == "cap"
    held = (wd / p.sends.removeprefix("filen ")).read_bytes()
    close(app)
    return wd, held


def _approve(wd: Path, plan: CrashPlan):
    app = crashing_app(wd, CFG, plan)
    try:
        (p,) = pending(app)
        return approve(app, p.msg_key, at(app.meeting(MID).date + timedelta(days=1), 14))
    finally:
        close(app)


def _crash_points(plan: CrashPlan) -> list[tuple[str, int, str]]:
    return [(m, n, when) for m, count in plan.calls.items() for n in range(1, count + 1) for when in ("before", "after")]


def test_an_approval_killed_anywhere_files_and_sends_exactly_once(tmp_path, prepared):
    base, third = _capped(tmp_path, prepared)
    ref = CrashPlan()  # a run without crash: every side effect it makes is a crash point
    ref_wd = Path(shutil.copytree(base, tmp_path / "ref"))
    _approve(ref_wd, ref)
    points = _crash_points(ref)
    assert {"store", "record_filing", "send", "record_action", "put", "record_message"} <= {m for m, _, _ in points}
    expected_sent = {k: 1 for k in sent_by_key(ref_wd) if ":distribute:" in k}
    assert f"{MID}:distribute:members:v3" in expected_sent
    failures = []
    for method, n, when in points:
        wd = Path(shutil.copytree(base, tmp_path / f"{method}-{n}-{when}"))
        plan = CrashPlan(method, n, when)
        try:
            _approve(wd, plan)
        except Crash:
            pass
        assert plan.fired, (method, n, when)
        # afterwards: the next intake finishes an interrupted approval; what still waits is approved again
        rerun = CrashPlan()
        app = crashing_app(wd, CFG, rerun)
        try:
            run_intake(app, at(app.meeting(MID).date + timedelta(days=1), 15))
            for p in pending(app):
                approve(app, p.msg_key, at(app.meeting(MID).date + timedelta(days=1), 16))
            docs = [p.read_bytes() for p in (wd / "dropbox").rglob("*") if p.suffix == ".docx"]
            got = {k: c for k, c in sent_by_key(wd).items() if ":distribute:" in k}
            writes = plan.writes + rerun.writes
            problems = []
            if got != expected_sent:
                problems.append(f"sent {got}")
            if any(c > 1 for k, c in writes.items() if ":distribute:" in k):
                problems.append(f"written twice {writes}")
            if docs.count(third) != 1 or len(docs) != 3:
                problems.append(f"{docs.count(third)} copies of the approved version, {len(docs)} files")
            if [f.version for f in app.state.filings(MID)] != [1, 2, 3] or pending(app):
                problems.append("filings or pending")
            if problems:
                failures.append(f"{method}:{n}:{when}: {problems}")
        finally:
            close(app)
    assert failures == [], "\n".join(failures)


# ------------------------------------------------------------------ state files from before the held area


def test_a_distribution_held_by_an_older_version_is_still_listed_and_released(prepared, tmp_path):
    """An existing state file: version 2 was filed and its distribution held
    (``held-distribution:…``, a ``held:`` note of kind distribution)."""
    import json

    from kcg_mail.core.plan import archive_folder, protocol_filename
    from kcg_mail.ports import FilingRecord, MessageRecord

    wd = Path(shutil.copytree(prepared, tmp_path / "wd"))
    app = make_app(wd, CFG)
    try:
        w = World(app, wd, _ctx(app, wd))
        w.deliver(w.genuine(changed_minutes(w.c.docx, "Beslut 1")), "v1.eml")
        w.intake()
        m = app.meeting(MID)
        v2 = changed_minutes(w.c.docx, "Beslut 2")
        stored = app.archive.store(f"{archive_folder(app.cfg, m)}/{protocol_filename(app.cfg, m)}", v2)
        app.state.record_filing(FilingRecord(MID, 2, stored.path, stored.rev, stored.content_hash, None, "ab" * 20))
        app.state.put(f"held-distribution:{MID}:v2", "held")
        app.state.put("held:" + "ab" * 20, json.dumps({
            "kind": "distribution", "meeting_id": MID, "sender": w.c.host, "subject": "Protokoll", "files": ["p.docx"],
            "why": f"fler än 2 utskick för {MID} i dag: väntar på godkännande", "version": 2}))
        app.state.record_message(MessageRecord("ab" * 20, "cur/v2.eml", MID, "held", "väntar", w.c.host, "Protokoll",
                                               "done"))
        (p,) = pending(app)
        assert (p.kind, p.version) == ("distribution", 2) and "fler än 2 utskick" in p.why
        # the same file again is a duplicate that never goes out by itself
        w.deliver(w.genuine(v2, body="igen\n"), "again.eml")
        assert [h.outcome for h in w.intake(13).handled] == ["duplicate"]
        assert w.distributed() == {f"{MID}:distribute:members:v1": 1}
        approve(app, p.msg_key, at(m.date + timedelta(days=1), 14))
        assert w.distributed() == {f"{MID}:distribute:members:v1": 1, f"{MID}:distribute:members:v2": 1}
        assert app.ledger.distribution_holds.get(MID, 2) == "approved" and pending(app) == []
    finally:
        close(app)
