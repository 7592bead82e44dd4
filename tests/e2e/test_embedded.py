"""The embedded adapters (Maildir, SQLite) and a whole meeting cycle on them,
without Prefect: kcg_mail.services.daily.run_daily + kcg_mail.services.intake.run_intake, with
kcg_mail.entrypoints.demo_hosts.host_reply playing the host."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from support.helpers import (
    archive_files,
    at,
    attachment_names,
    attachment_of,
    body_text,
    calendar_parts,
    changed_minutes,
    close,
    config_with,
    mailbox_files,
    make_app,
    meeting,
    plain_mail,
    read_mail,
    recipients,
    replace_attachment,
    sent_by_key,
    sent_files,
    sent_with_action,
    shipped_config,
)

from kcg_mail.adapters.maildir import MaildirTransport, sent_name
from kcg_mail.adapters.sqlite_state import SqliteState
from kcg_mail.entrypoints.demo_hosts import host_reply
from kcg_mail.ports import MARKER_HEADER, Address, FilingRecord, MessageRecord, OutgoingMessage
from kcg_mail.services.daily import run_daily
from kcg_mail.services.intake import run_intake

CFG = shipped_config()
MAILBOX = CFG.network.mailbox.email
MEMBERS = {p.email for p in CFG.network.active_members}


# ------------------------------------------------------------ Maildir


def _msg(key="2023-02:brief_host:daniel@gavle.example.se") -> OutgoingMessage:
    return OutgoingMessage(key=key, action="brief_host", meeting_id="2023-02", sender=Address("KCG", MAILBOX),
                           to=(Address("Daniel Swärd", "daniel@gavle.example.se"),), subject="Hej Daniel",
                           text="Text\n")


def test_maildir_send_writes_sent_cur(tmp_path):
    t = MaildirTransport(tmp_path / "mail")
    for box in ("sent", "inbox", "processed", "quarantine"):
        assert all((tmp_path / "mail" / box / sub).is_dir() for sub in ("tmp", "new", "cur"))
    msg = _msg()
    assert not t.was_sent(msg.key)
    t.send(msg)
    files = sent_files(tmp_path)
    assert [f.name for f in files] == [sent_name(msg.key)]
    assert t.sent_messages() == files
    assert t.was_sent(msg.key)
    assert not t.was_sent(msg.key + ":other")
    assert list((tmp_path / "mail" / "sent" / "tmp").iterdir()) == []  # atomic: nothing left behind
    on_disk = read_mail(files[0])
    assert on_disk[MARKER_HEADER] == msg.key and on_disk["Message-ID"].strip() == msg.message_id
    assert on_disk["Subject"] == "Hej Daniel"
    t.send(msg)  # same key: same file, replaced, not a second one
    assert len(sent_files(tmp_path)) == 1


def test_maildir_send_invitation(tmp_path):
    from support.helpers import meetings

    from kcg_mail.services.compose import Composer

    feb = meeting("2023-02")
    inv = Composer(CFG).invitation(feb, meetings(), list(CFG.network.active_members), 0, cancel=False, now=at(feb.date))
    t = MaildirTransport(tmp_path / "mail")
    t.send_invitation(inv)
    assert t.was_sent(inv.message.key)
    parts = calendar_parts(read_mail(sent_files(tmp_path)[0]))
    assert len(parts) == 1 and parts[0].get_param("method") == "REQUEST"


def test_maildir_fetch_moves_and_is_idempotent(tmp_path):
    t = MaildirTransport(tmp_path / "mail")
    inbox = tmp_path / "mail" / "inbox"
    a = plain_mail("daniel@gavle.example.se", MAILBOX, "A", msgid="<a@gavle.example.se>")
    b = plain_mail("david@norrkoping.example.se", MAILBOX, "B", msgid="<b@norrkoping.example.se>")
    c = plain_mail("lisa@uppsala.example.se", MAILBOX, "C", msgid="<c@uppsala.example.se>")
    (inbox / "dropped.eml").write_bytes(a)
    (inbox / "new" / "1700000000.M1P1.host").write_bytes(b)
    t.deliver(c, "delivered.eml")  # into inbox/cur
    (inbox / ".hidden").write_bytes(b"ignored")
    got = t.fetch_new(None)
    assert got.cursor is None
    by_ref = {m.ref: m.raw for m in got.messages}
    assert by_ref == {"dropped.eml": a, "new/1700000000.M1P1.host": b, "cur/delivered.eml": c}
    assert all(m.received_at is not None and m.received_at.tzinfo is not None for m in got.messages)

    t.move("dropped.eml", "processed")
    t.move("new/1700000000.M1P1.host", "quarantine")
    assert (tmp_path / "mail" / "processed" / "cur" / "dropped.eml:2,S").read_bytes() == a
    assert (tmp_path / "mail" / "quarantine" / "cur" / "1700000000.M1P1.host:2,S").read_bytes() == b
    t.move("dropped.eml", "processed")  # already gone: not an error
    t.move("new/1700000000.M1P1.host", "processed")
    assert [m.ref for m in t.fetch_new(None).messages] == ["cur/delivered.eml"]
    assert not (tmp_path / "mail" / "processed" / "cur" / "1700000000.M1P1.host:2,S").exists()


@pytest.mark.parametrize("ref", ["../sent/cur/x", "../../outside", "/etc/passwd", "cur/../../sent/cur/x", ""])
def test_maildir_move_rejects_traversal(tmp_path, ref):
    t = MaildirTransport(tmp_path / "mail")
    t.send(_msg())
    outside = tmp_path / "outside"
    outside.write_text("keep")
    with pytest.raises(ValueError):
        t.move(ref, "processed")
    assert outside.read_text() == "keep"
    assert len(sent_files(tmp_path)) == 1
    assert list((tmp_path / "mail" / "processed" / "cur").iterdir()) == []


def test_maildir_check(tmp_path):
    checks = MaildirTransport(tmp_path / "mail").check()
    assert checks and all(c.ok for c in checks)


# ------------------------------------------------------------ SQLite state


def test_sqlite_actions_round_trip(tmp_path):
    s = SqliteState(tmp_path / "state.sqlite")
    assert s.action("k") is None
    s.record_action("k", "2023-02", "invite", "intent", {"to": ["a@b.se"], "å": "ö"})
    rec = s.action("k")
    assert (rec.key, rec.meeting_id, rec.action, rec.status, rec.detail) == \
        ("k", "2023-02", "invite", "intent", {"to": ["a@b.se"], "å": "ö"})
    assert rec.at
    s.record_action("k", "2023-02", "invite", "done", {"x": 1})
    assert s.action("k").status == "done" and s.action("k").detail == {"x": 1}
    s.record_action("k2", None, "alert", "done")
    s.record_action("k3", "2023-03", "brief_host", "skipped", {"reason": "r"})
    assert {r.key for r in s.actions()} == {"k", "k2", "k3"}
    assert [r.key for r in s.actions("2023-02")] == ["k"]
    assert s.action("k2").detail == {} and s.action("k2").meeting_id is None
    s.close()
    s2 = SqliteState(tmp_path / "state.sqlite")  # durable across processes
    assert s2.action("k").status == "done"
    assert len(s2.actions()) == 3
    s2.close()


def test_sqlite_messages_round_trip(tmp_path):
    s = SqliteState(tmp_path / "state.sqlite")
    seen = MessageRecord("m1", "cur/x.eml", "2023-02", "minutes", "why", "daniel@gavle.example.se", "SV: Protokoll", "seen")
    s.record_message(seen)
    got = s.message("m1")
    assert (got.msg_key, got.ref, got.meeting_id, got.outcome, got.status) == ("m1", "cur/x.eml", "2023-02", "minutes", "seen")
    s.record_message(MessageRecord("m1", "cur/x.eml", "2023-02", "duplicate", "same", "daniel@gavle.example.se",
                                   "SV: Protokoll", "done"))
    assert s.message("m1").status == "done" and s.message("m1").outcome == "duplicate"
    s.record_message(MessageRecord("m2", "y", None, "unmatched", "?", "x@y.se", "Hej", "done"))
    assert [m.msg_key for m in s.messages("unmatched")] == ["m2"]
    assert len(s.messages()) == 2
    assert s.message("nope") is None


def test_sqlite_filings_decisions_attendance_kv(tmp_path):
    s = SqliteState(tmp_path / "state.sqlite")
    f1 = FilingRecord("2023-02", 1, "/KCG/Protokoll/2023/a.docx", "r1", "h1", "file:///a", "m1")
    s.record_filing(f1)
    s.record_filing(FilingRecord("2023-02", 9, "/other", "r9", "h1", None, "m9"))  # same hash: ignored
    s.record_filing(FilingRecord("2023-02", 2, "/KCG/Protokoll/2023/a (v2).docx", "r2", "h2", None, "m2"))
    got = s.filings("2023-02")
    assert [(f.version, f.path, f.content_hash, f.link) for f in got] == [
        (1, "/KCG/Protokoll/2023/a.docx", "h1", "file:///a"), (2, "/KCG/Protokoll/2023/a (v2).docx", "h2", None)]
    assert s.filings("2023-03") == [] and len(s.filings()) == 2

    s.replace_decisions("2023-02", [{"decision": "A", "owner": "Alla", "due": "2023-03-01"}, {"decision": "B"}])
    s.replace_decisions("2023-03", [{"decision": "C", "owner": "", "due": ""}])
    assert s.decisions("2023-02") == [
        {"meeting_id": "2023-02", "decision": "A", "owner": "Alla", "due": "2023-03-01"},
        {"meeting_id": "2023-02", "decision": "B", "owner": "", "due": ""}]
    s.replace_decisions("2023-02", [{"decision": "A2", "owner": "X", "due": ""}])
    assert [d["decision"] for d in s.decisions()] == ["A2", "C"]

    s.record_attendance("2023-02", "Daniel@Gavle.example.se", "ACCEPTED")
    s.record_attendance("2023-02", "daniel@gavle.example.se", "DECLINED")
    assert s.attendance("2023-02") == {"daniel@gavle.example.se": "DECLINED"}
    assert s.attendance("2023-03") == {}

    assert s.get("mail:cursor") is None
    s.put("mail:cursor", "1:2")
    s.put("mail:cursor", "1:3")
    assert s.get("mail:cursor") == "1:3"


# ------------------------------------------------------------ a whole cycle


FEB, MAR = meeting("2023-02"), meeting("2023-03")


def _daily(app, day, hour=7):
    return run_daily(app, at(day, hour))


def _intake(app, day, hour=12):
    return run_intake(app, at(day, hour))


def _deliver(app, raw: bytes, name: str) -> None:
    app.mail.deliver(raw, name)


@pytest.fixture
def cycle(tmp_path):
    app = make_app(tmp_path, config_with(CFG, ["2023-02", "2023-03"]))
    yield app, tmp_path
    close(app)


def test_full_cycle_on_the_embedded_adapters(cycle):
    app, wd = cycle
    # ---- before the February meeting: brief, invite, the reminder with the template
    # working days before Monday 6 February (the template two working days before, on Thursday)
    for day, expected in ((date(2023, 1, 16), "brief_host"), (date(2023, 1, 23), "invite"),
                          (date(2023, 2, 2), "send_template")):
        report = _daily(app, day)
        assert [(r.meeting_id, r.action, r.outcome) for r in report.results] == [("2023-02", expected, "sent")]
    # the March brief became due on 13 February; nothing has been run for it yet
    invites = sent_with_action(wd, "invite")
    assert len(invites) == 1
    assert recipients(invites[0]) == MEMBERS and len(MEMBERS) == 14
    assert calendar_parts(invites[0])[0].get_param("method") == "REQUEST"
    templates = sent_with_action(wd, "send_template")
    assert len(templates) == 1 and recipients(templates[0]) == {FEB.host.email}
    expected_name = "2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1.docx"
    assert attachment_names(templates[0]) == [expected_name]

    # ---- the host answers with the filled template
    reply_day = FEB.date + timedelta(days=1)
    raw = host_reply(app, FEB, at(reply_day, 11))
    _deliver(app, raw, "feb-reply.eml")
    report = _intake(app, reply_day)
    assert [(h.outcome, h.meeting_id) for h in report.handled] == [("minutes", "2023-02")]
    assert report.errors == []
    files = archive_files(wd)
    assert [f.relative_to(wd / "dropbox").as_posix() for f in files] == [f"KCG/Protokoll/2023/{expected_name}"]
    from kcg_mail.documents.rebuild import rebuild

    name, original = attachment_of(raw)
    assert files[0].read_bytes() == rebuild(name, original).data  # the rebuilt file is filed, not the host's
    assert [p.read_bytes() for p in (wd / "quarantine" / "originals").rglob("*") if p.is_file()] == [original]
    assert (wd / "dropbox" / "KCG" / "Protokoll" / "2023" / "2023 KCG Beslutslogg.csv").read_text(encoding="utf-8-sig") \
        .count("Ta fram ett gemensamt underlag") == 1
    dist = sent_with_action(wd, "distribute")
    assert len(dist) == 1
    assert recipients(dist[0]) == MEMBERS
    assert attachment_names(dist[0]) == [expected_name]
    text = body_text(dist[0])
    assert "Ta fram ett gemensamt underlag om policy & branschpraxis – del 1" in text
    assert "Dela goda exempel i Dropbox-mappen" in text
    assert str(dist[0]["Subject"]).startswith("Protokoll:")
    assert len(mailbox_files(wd, "processed")) == 1 and mailbox_files(wd, "inbox") == []
    assert [f.version for f in app.state.filings("2023-02")] == [1]

    # ---- no chase: the minutes are in
    report = _daily(app, FEB.date + timedelta(days=3))
    assert all(r.meeting_id != "2023-02" for r in report.results)
    assert ("2023-02", "chase_host") in {(s.meeting_id, s.action) for s in report.skipped}

    # ---- the same minutes again, in a new mail: duplicate, nothing new
    before = sent_by_key(wd)
    again = replace_attachment(raw, attachment_of(raw)[1], "<again@gavle.example.se>")
    _deliver(app, again, "feb-again.eml")
    report = _intake(app, reply_day + timedelta(days=1))
    assert [h.outcome for h in report.handled] == ["duplicate"]
    assert sent_by_key(wd) == before
    assert len(archive_files(wd)) == 1

    # ---- the very same message delivered twice: handled once
    _deliver(app, raw, "feb-reply-copy.eml")
    report = _intake(app, reply_day + timedelta(days=1))
    assert [h.outcome for h in report.handled] == ["already_handled"]
    assert sent_by_key(wd) == before

    # ---- changed minutes: version 2, "Uppdaterat protokoll"
    v2 = changed_minutes(attachment_of(raw)[1], "Ändrat beslut: bjud in Svensk Handel")
    _deliver(app, replace_attachment(raw, v2, "<v2@gavle.example.se>"), "feb-v2.eml")
    report = _intake(app, reply_day + timedelta(days=2))
    assert [h.outcome for h in report.handled] == ["minutes"]
    names = {f.name for f in archive_files(wd)}
    assert names == {expected_name, expected_name.removesuffix(".docx") + " (v2).docx"}
    assert [f.version for f in app.state.filings("2023-02")] == [1, 2]
    dist = sorted(sent_with_action(wd, "distribute"), key=lambda m: str(m[MARKER_HEADER]))
    assert [str(m[MARKER_HEADER]) for m in dist] == ["2023-02:distribute:members:v1", "2023-02:distribute:members:v2"]
    assert str(dist[1]["Subject"]).startswith("Uppdaterat protokoll:")
    assert recipients(dist[1]) == MEMBERS
    assert "Ändrat beslut: bjud in Svensk Handel" in body_text(dist[1])
    assert attachment_names(dist[1]) == [expected_name.removesuffix(".docx") + " (v2).docx"]
    assert [d["decision"] for d in app.state.decisions("2023-02")][0] == "Ändrat beslut: bjud in Svensk Handel"

    # ---- the old version 1 sent once more: a duplicate, and version 2's decisions stay
    before = sent_by_key(wd)
    log = wd / "dropbox" / "KCG" / "Protokoll" / "2023" / "2023 KCG Beslutslogg.csv"
    log_before = log.read_bytes()
    _deliver(app, replace_attachment(raw, attachment_of(raw)[1], "<v1-again@gavle.example.se>"), "feb-v1-again.eml")
    report = _intake(app, reply_day + timedelta(days=3))
    assert [h.outcome for h in report.handled] == ["duplicate"]
    assert sent_by_key(wd) == before
    assert [d["decision"] for d in app.state.decisions("2023-02")][0] == "Ändrat beslut: bjud in Svensk Handel"
    assert log.read_bytes() == log_before
    assert len(archive_files(wd)) == 2

    # every mail went out exactly once
    assert set(sent_by_key(wd).values()) == {1}


def test_reply_without_attachment_gets_one_polite_answer_per_day(cycle):
    app, wd = cycle
    # go-live Friday 3 March: the March invitation, and the template (it replaces the late brief and
    # reminder: one mail a day per host); February was held before go-live
    _daily(app, date(2023, 3, 3))
    tpl = next(m for m in sent_with_action(wd, "send_template") if "2023-03" in str(m[MARKER_HEADER]))
    day = MAR.date + timedelta(days=1)
    for i in (1, 2):
        _deliver(app, plain_mail(f"{MAR.host.name} <{MAR.host.email}>", MAILBOX, "SV: " + str(tpl["Subject"]),
                                 f"Hej! Här kommer protokollet (försök {i}).\n", when=at(day, 10 + i),
                                 msgid=f"<noatt{i}@norrkoping.example.se>", in_reply_to=tpl["Message-ID"]),
                 f"noatt{i}.eml")
    report = _intake(app, day)
    assert [(h.outcome, h.meeting_id) for h in report.handled] == [("no_minutes", "2023-03")] * 2
    replies = sent_with_action(wd, "reply_problem")
    assert len(replies) == 1
    r = replies[0]
    assert recipients(r) == {MAR.host.email}
    assert str(r["Subject"]).startswith("SV: ")
    assert r["In-Reply-To"] in ("<noatt1@norrkoping.example.se>", "<noatt2@norrkoping.example.se>")
    text = body_text(r)
    assert text.startswith("Hej David!")
    assert "Vi hittade inget bifogat protokoll" in text and "Tack för ditt mejl" in text
    assert r["Auto-Submitted"] == "auto-generated"
    assert len(mailbox_files(wd, "quarantine")) == 2 and mailbox_files(wd, "inbox") == []
    assert archive_files(wd) == []
    # a rerun changes nothing; the next day a new attempt gets a new answer
    _intake(app, day)
    assert len(sent_with_action(wd, "reply_problem")) == 1
    _deliver(app, plain_mail(MAR.host.email, MAILBOX, "SV: " + str(tpl["Subject"]), "Igen.\n",
                             when=at(day + timedelta(days=1), 9), msgid="<noatt3@norrkoping.example.se>",
                             in_reply_to=tpl["Message-ID"]), "noatt3.eml")
    _intake(app, day + timedelta(days=1))
    assert len(sent_with_action(wd, "reply_problem")) == 2


def test_strangers_mail_is_quarantined_without_reply(cycle):
    app, wd = cycle
    _daily(app, date(2023, 2, 3))  # the Friday before the meeting (no mail on Sunday)
    before = sent_by_key(wd)
    raw = host_reply(app, FEB, at(FEB.date + timedelta(days=1), 11))
    _, docx = attachment_of(raw)
    strangers = [
        plain_mail("Okänd <spam@elsewhere.example.com>", MAILBOX, "Protokoll [KCG-2023-02]", "Här!\n",
                   msgid="<s1@elsewhere.example.com>", attachments=[("protokoll.docx",
                   "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx)]),
        plain_mail("spam@elsewhere.example.com", MAILBOX, "Erbjudande", "Köp nu!\n", msgid="<s2@elsewhere.example.com>"),
    ]
    for i, s in enumerate(strangers):
        _deliver(app, s, f"stranger{i}.eml")
    report = _intake(app, FEB.date + timedelta(days=1))
    assert sorted(h.outcome for h in report.handled) == ["held", "unmatched"]  # held: the file, for approval
    assert sent_by_key(wd) == before  # no reply to strangers
    assert archive_files(wd) == []
    assert len(mailbox_files(wd, "quarantine")) == 2
    assert mailbox_files(wd, "processed") == [] and mailbox_files(wd, "inbox") == []
    assert {m.outcome for m in app.state.messages()} == {"held", "unmatched"}
