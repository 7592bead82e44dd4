"""Between meetings, end to end on the embedded defaults (Maildir,
local folder archive, SQLite) with real MIME replies: open decisions in the
next template and closed by the returned minutes, reminders, project groups
started from the minutes and reporting back, the year's calendar feed (read
with two independent parsers) and its link in the welcome mail."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import vobject
from icalendar import Calendar
from support.helpers import (  # noqa: E402
    TZ,
    at,
    body_text,
    close,
    config_with,
    make_app,
    meeting,
    sent_by_key,
    sent_mails,
    sent_with_action,
    shipped_config,
)

from kcg_mail.core.decisions import DONE, OPEN, STRUCK  # noqa: E402
from kcg_mail.documents.minutes import read_minutes  # noqa: E402
from kcg_mail.entrypoints.demo_hosts import host_reply, mark_followups, reply_to_sent  # noqa: E402
from kcg_mail.ports import MARKER_HEADER  # noqa: E402
from kcg_mail.services.calendar_feed import feed_path, publish  # noqa: E402
from kcg_mail.services.compose import meeting_uid  # noqa: E402
from kcg_mail.services.daily import run_daily  # noqa: E402
from kcg_mail.services.followup import all_decisions, groups, proposals, start_group, statuses  # noqa: E402
from kcg_mail.services.followup_status import followup_attention, open_by_owner, project_rows  # noqa: E402
from kcg_mail.services.intake import run_intake  # noqa: E402

CFG = config_with(shipped_config(), ["2023-02", "2023-03", "2023-04", "2023-05"])
FEB, MAR, APR, MAY = (meeting(i) for i in ("2023-02", "2023-03", "2023-04", "2023-05"))
LISA = next(p for p in CFG.network.members if p.id == "lisa")
PIA = next(p for p in CFG.network.members if p.id == "pia")
DAVID = next(p for p in CFG.network.members if p.id == "david")

FEB_EXTRA = [("Sammanställ medlemsenkäten", "Lisa Thörn", "2023-02-27"),
             ("Projektgrupp: Trygghet i stadskärnan – gemensam kartläggning", "Lisa Thörn, Pia Sandin", "löpande")]


def template_of(workdir: Path, m) -> bytes:
    (msg,) = [x for x in sent_with_action(workdir, "send_template") if f"[KCG-{m.id}]" in str(x["Subject"])]
    att = next(p for p in msg.iter_attachments() if p.get_filename().endswith(".docx"))
    return att.get_content()


def followup_refs(docx: bytes) -> list[str]:
    return [ref for ref, _ in read_minutes("t.docx", docx).followups]


def reply_day(m) -> datetime:
    return datetime.combine(m.date + timedelta(days=1), datetime.min.time(), TZ).replace(hour=11)


def test_decisions_and_project_groups_between_meetings(tmp_path):
    app = make_app(tmp_path, CFG)
    # February: template, meeting, the host returns the minutes with four decisions
    run_daily(app, at(FEB.date - timedelta(days=3)))  # the Friday before: a working day
    assert followup_refs(template_of(tmp_path, FEB)) == []
    app.mail.deliver(host_reply(app, FEB, reply_day(FEB), FEB_EXTRA), "feb.eml")
    run_intake(app, reply_day(FEB) + timedelta(hours=1))
    assert [(d.ref, d.state) for d in all_decisions(app)] == [(f"2023-02/{i}", OPEN) for i in (1, 2, 3, 4)]

    # the group proposal waits for the coordinator; approving it twice starts it once
    assert [d.ref for d, _ in proposals(app)] == ["2023-02/4"]
    assert "Svara ja på frågan i mejlet" in followup_attention(app)[0] and "beslut 2023-02/4" in followup_attention(app)[0]
    started = start_group(app, "2023-02/4")
    assert started.created and started.group.lead == "lisa" and started.group.members == ["lisa", "pia"]
    assert not start_group(app, "2023-02/4").created
    assert [g.name for g in groups(app)] == ["Trygghet i stadskärnan"] and proposals(app) == []

    # Lisa's decision falls due before March's meeting: one reminder, three working days before
    run_daily(app, at(date(2023, 2, 21)))
    assert sent_with_action(tmp_path, "decision_reminder") == []
    for _ in range(2):
        run_daily(app, at(date(2023, 2, 22)))
        run_daily(app, at(date(2023, 2, 24)))
    (rem,) = sent_with_action(tmp_path, "decision_reminder")
    assert rem["To"].addresses[0].addr_spec == LISA.email
    # the due date in words, without the year of the run
    assert "Sammanställ medlemsenkäten" in body_text(rem) and "klart måndag 27 februari." in body_text(rem)
    # Daniel's (due after March's meeting) and "Alla" get none
    assert set(sent_by_key(tmp_path)) >= {f"2023-02:decision_reminder:2023-02/3:{LISA.email}"}

    # Lisa is asked for a status before March; she replies, Pia (a member) too; an outsider is quarantined
    run_daily(app, at(MAR.date - timedelta(days=10)))
    (req,) = sent_with_action(tmp_path, "project_status_request")
    assert req["To"].addresses[0].addr_spec == LISA.email
    key = f"{MAR.id}:project_status_request:trygghet-i-stadskarnan:{LISA.email}"
    when = at(MAR.date - timedelta(days=8), 9)
    app.mail.deliver(reply_to_sent(app, key, LISA, when, "Hej!\n\nEnkäten är ute till alla städer.\n\nHälsningar\nLisa\n"),
                     "lisa.eml")
    app.mail.deliver(reply_to_sent(app, key, DAVID, when, "Jag är inte med i gruppen men svarar ändå.\n"), "david.eml")
    report = run_intake(app, when + timedelta(hours=1))
    outcomes = sorted((h.sender, h.outcome) for h in report.handled)
    assert outcomes == [(DAVID.email, "not_allowed"), (LISA.email, "project_status")]
    (g,) = groups(app)
    assert [s["text"] for s in statuses(app, g)] == ["Enkäten är ute till alla städer."]

    # March's template: February's open decisions under the report-back point, and the status
    run_daily(app, at(MAR.date - timedelta(days=3)))  # the Friday before: a working day
    mar_tpl = template_of(tmp_path, MAR)
    assert followup_refs(mar_tpl) == ["2023-02/1", "2023-02/2", "2023-02/3"]
    text = read_minutes("t.docx", mar_tpl).text
    point = text[text.index("4. Återrapportering"):text.index("5. Info")]
    assert "Sammanställ medlemsenkäten" in point and "Lisa Thörn" in point and "2023-02-27" in point
    assert "Projektgrupp Trygghet i stadskärnan (Lisa Thörn): Enkäten är ute till alla städer." in point

    # coordinator's view
    by_owner = open_by_owner(app, today=date(2023, 3, 5))
    assert set(by_owner) == {"Alla", "Daniel Swärd", "Lisa Thörn"}
    assert by_owner["Lisa Thörn"][0]["försenat"] == "ja"
    assert project_rows(app)[0]["senaste status"] == "Enkäten är ute till alla städer."

    # March's host marks them: done, carried on (blank), struck
    marks = {"2023-02/1": "Klar", "2023-02/2": "", "2023-02/3": "stryks"}
    app.mail.deliver(host_reply(app, MAR, reply_day(MAR), marks=lambda ref, owner: marks[ref]), "mar.eml")
    run_intake(app, reply_day(MAR) + timedelta(hours=1))
    states = {d.ref: (d.state, d.settled_in) for d in all_decisions(app)}
    assert states["2023-02/1"] == (DONE, "2023-03") and states["2023-02/3"] == (STRUCK, "2023-03")
    assert states["2023-02/2"] == (OPEN, "")

    # April's template carries the open ones on: February's "Alla" decision and March's two
    run_daily(app, at(APR.date - timedelta(days=3)))  # the Friday before: a working day
    assert followup_refs(template_of(tmp_path, APR)) == ["2023-02/2", "2023-03/1", "2023-03/2"]
    assert all(n == 1 for n in sent_by_key(tmp_path).values())
    close(app)


def ics_events_icalendar(data: bytes) -> dict[str, dict]:
    cal = Calendar.from_ical(data)
    return {str(e["UID"]): {"seq": int(e["SEQUENCE"]), "status": str(e["STATUS"]), "summary": str(e["SUMMARY"]),
                            "start": e.decoded("DTSTART"), "description": str(e["DESCRIPTION"])}
            for e in cal.walk("VEVENT")}


def ics_events_vobject(data: bytes) -> dict[str, dict]:
    cal = vobject.readOne(data.decode("utf-8"))
    return {e.uid.value: {"seq": int(e.sequence.value), "status": e.status.value, "summary": e.summary.value,
                          "start": e.dtstart.value, "description": e.description.value}
            for e in cal.vevent_list}


def test_year_calendar_feed_follows_plan_changes(tmp_path):
    base = shipped_config()
    app = make_app(tmp_path, base)
    feb = meeting("2023-02")
    run_daily(app, at(feb.date - timedelta(days=14)))  # the invitation goes out, and the feed is written
    path = tmp_path / "dropbox" / feed_path(app).lstrip("/")
    first = path.read_bytes()
    for parse in (ics_events_icalendar, ics_events_vobject):
        evs = parse(first)
        assert set(evs) == {meeting_uid(base, pm.meeting_id) for pm in base.all_meetings()}
        e = evs[meeting_uid(base, "2023-02")]
        assert e["seq"] == 0 and e["status"] == "CONFIRMED" and "Daniel Swärd" in e["summary"]
        assert "Policy & Branschpraxis" in e["description"] and e["start"] == feb.start
        tent = evs[meeting_uid(base, "2023-10")]
        assert tent["status"] == "TENTATIVE" and tent["summary"].startswith("Preliminärt:")
    inv = app.invitation("2023-02")
    assert inv.uid == meeting_uid(base, "2023-02")
    run_daily(app, at(feb.date - timedelta(days=13)))
    assert path.read_bytes() == first  # nothing changed: the same bytes
    close(app)

    # the plan moves February a week and cancels March
    moved = base.model_copy(update={"plans": [p.model_copy(update={"meetings": [
        pm.model_copy(update={"date": feb.date + timedelta(days=7)} if pm.meeting_id == "2023-02"
                      else {"cancelled": True} if pm.meeting_id == "2023-03" else {})
        for pm in p.meetings]}) for p in base.plans]})
    app = make_app(tmp_path, moved)
    report = run_daily(app, at(feb.date - timedelta(days=12)))
    assert ("2023-02", "update_invitation", "sent") in [(r.meeting_id, r.action, r.outcome) for r in report.results]
    second = path.read_bytes()
    for parse in (ics_events_icalendar, ics_events_vobject):
        evs = parse(second)
        e = evs[meeting_uid(base, "2023-02")]
        assert e["seq"] == app.invitation("2023-02").sequence == 1
        assert e["start"] == feb.start + timedelta(days=7)
        mar = evs[meeting_uid(base, "2023-03")]
        assert mar["status"] == "CANCELLED" and mar["seq"] == 1 and mar["summary"].startswith("Inställt:")
        assert evs[meeting_uid(base, "2023-04")]["seq"] == 0

    # a new member's welcome links to the feed
    from kcg_mail.services.onboarding import onboard

    result = onboard(app, "Åsa Öberg", "Umeå City", "Umeå", "asa@umea.example.se", at(feb.date))
    (welcome,) = [m for m in sent_mails(tmp_path) if str(m[MARKER_HEADER]).strip() == "welcome:asa@umea.example.se"]
    assert publish(app, at(feb.date), link=True).link in body_text(welcome)
    assert result.mail == "sent"
    close(app)


soffice_missing = pytest.mark.skipif(
    __import__("shutil").which("soffice") is None and not os.environ.get("CI"), reason="LibreOffice not installed")


@pytest.mark.server
@soffice_missing
def test_followup_marks_read_back_from_odt_and_pdf(tmp_path):
    """The host may return the minutes as .odt or .pdf (LibreOffice): the follow-up
    table's marks are read from them as from the .docx."""
    from support import hostile_files as h

    from kcg_mail.documents.context import SAMPLE_CONTEXT

    marks = {"2023-01/1": "klar", "2023-01/2": "struken"}
    docx = mark_followups(h.rendered_protocol(SAMPLE_CONTEXT), lambda ref, owner: marks[ref])
    want = [("2023-01/1", "klar"), ("2023-01/2", "struken")]
    assert read_minutes("p.docx", docx).followups == want
    src = tmp_path / "in" / "protokoll.docx"
    src.parent.mkdir()
    src.write_bytes(docx)
    for fmt in ("odt", "pdf"):
        out = h.soffice_convert(src, fmt, tmp_path / fmt)
        got = read_minutes(out.name, out.read_bytes())
        assert got.followups == want, fmt
        assert got.decisions == []  # the follow-up table is not mistaken for the decisions table


def test_pdf_followups_survive_wrapped_references_and_dates():
    """Layout text as pypdf gives it for LibreOffice's PDF with narrow columns."""
    from kcg_mail.documents.minutes import pdf_followups

    page = (
        "Ref          Öppet beslut                                       Ansvarig             Datum        Läge\n"
        "2023-        Ta fram ett gemensamt underlag om trygghet         Maria Martinsson     2023-02-     klar\n"
        "01/1                                                                                 28\n"
        "2023-01/2    Dela goda exempel i Dropbox-mappen                 Alla                 2023-03-06\n"
        "             och på mötet\n"
        "   Projektgrupp Trygghet i stadskärnan (Lisa Thörn): Enkäten är ute.\n"
        "\n"
        "Beslut                                                           Ansvarig                      Klart till\n"
        "x/1 must not be read\n"
    )
    assert pdf_followups([page]) == [("2023-01/1", "klar"), ("2023-01/2", "")]


def test_kcg_status_and_project_start(tmp_path):
    from typer.testing import CliRunner

    from kcg_mail.entrypoints.cli import app as cli

    app = make_app(tmp_path)  # the shipped config, same layout as `kcg --workdir`
    run_daily(app, at(FEB.date - timedelta(days=3)))  # the Friday before: a working day
    app.mail.deliver(host_reply(app, FEB, reply_day(FEB), FEB_EXTRA), "feb.eml")
    run_intake(app, reply_day(FEB) + timedelta(hours=1))
    close(app)
    runner = CliRunner()
    r = runner.invoke(cli, ["status", "--workdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "Öppna beslut per ansvarig" in text and "Sammanställ medlemsenkäten" in text
    assert "beslut 2023-02/4" in text and "Inga projektgrupper." in text
    r = runner.invoke(cli, ["project-start", "2023-02/1", "--workdir", str(tmp_path)])
    assert r.exit_code == 1 and "börjar inte med 'Projektgrupp:'" in " ".join(r.output.split())
    r = runner.invoke(cli, ["project-start", "2023-02/1", "--decline", "--workdir", str(tmp_path)])
    assert r.exit_code == 1 and "inget förslag om projektgrupp" in " ".join(r.output.split())
    r = runner.invoke(cli, ["project-start", "2023-02/4", "--workdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "Projektgrupp Trygghet i stadskärnan: startad" in r.output and '"lead": "lisa"' in r.output
    r = runner.invoke(cli, ["status", "--workdir", str(tmp_path)])
    text = " ".join(r.output.split())
    assert "Trygghet i stadskärnan" in text and "beslut 2023-02/4" not in text
