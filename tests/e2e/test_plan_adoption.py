"""The workshop adopts next year's plan, and the product runs it.

On the embedded adapters (Maildir, local folder, SQLite), through the real
intake with real MIME replies: the planning round's tally sends each workshop
group its task and the coordinator the plan as a Word table; the January
protocol carries the plan section, the host fills it in and mails it back;
the coordinator is asked and says yes by reply; ``plans/plan-2024.yaml`` is
stored and a fresh app (as the next flow run makes it) plans the 2024 meetings.
The Word-table path likewise, and a bad table gets a Swedish answer naming
its rows.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path

import docx
import pytest
import yaml
from support.helpers import CONFIG_DIR, at, authenticated, decided_by_reply

from kcg_mail.bootstrap import bootstrap
from kcg_mail.core.plan import resolve_plan
from kcg_mail.entrypoints import demo_hosts as hosts
from kcg_mail.entrypoints import demo_round as play
from kcg_mail.services import daily
from kcg_mail.services import round as round_
from kcg_mail.services.intake import run_intake

YEAR = 2024


def uncapped(app):
    # the steps on the days they are called; the member caps are tested in test_member_caps*.py
    app.outbox.pacer = None
    return app


@pytest.fixture
def app(tmp_path):
    return uncapped(bootstrap(tmp_path / "work", CONFIG_DIR))


def keys(app) -> set[str]:
    return {r.key for r in app.state.actions() if r.status == "done"}


def body(msg: EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def attachments(msg: EmailMessage) -> dict[str, bytes]:
    return {p.get_filename(): p.get_content() for p in msg.iter_attachments()}


def person(app, pid):
    return app.cfg.network.person(pid)


def deliver(app, raw: bytes, name: str) -> None:
    app.mail.deliver(authenticated(raw), name)


def closed_round(app) -> dict:
    """Start, needs, the list, ballots (Word and text), the tally on Monday 11 December 2023."""
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    for pid, word in (("pia", True), ("lisa", False), ("maria", False)):
        p = person(app, pid)
        original = hosts.sent_message(app, f"plan-{YEAR}:needs:{p.email}")
        topics = play.suggestions_of(len(pid))
        if word:
            name, data = hosts.docx_attachment(original)
            raw = hosts.reply_to(original, p, "Se bifogat.", at(date(2023, 11, 8), 10),
                                 (name, hosts.fill_needs_form(data, topics)))
        else:
            raw = hosts.reply_to(original, p, play.needs_text(topics), at(date(2023, 11, 8), 10))
        deliver(app, raw, f"needs-{pid}.eml")
    run_intake(app, at(date(2023, 11, 8), 12))
    round_.tick(app, YEAR, at(date(2023, 11, 20)))
    round_.publish_ballot(app, YEAR, at(date(2023, 11, 22)))
    numbers = {t.text: t.number for t in round_.topics(app, YEAR)}
    for i, pid in enumerate(("armina", "david", "hanna", "lena")):
        p = person(app, pid)
        original = hosts.sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
        votes = play.votes_of(i, numbers)
        deliver(app, hosts.reply_to(original, p, play.ballot_text(i, votes), at(date(2023, 11, 24), 9)), f"b-{pid}.eml")
    run_intake(app, at(date(2023, 11, 24), 12))
    round_.tick(app, YEAR, at(date(2023, 12, 11)))
    result = round_.round_value(app, YEAR, "result", None)
    assert result is not None
    return result


def plan_table(document: docx.document.Document):
    return next(t for t in document.tables if [c.text for c in t.rows[0].cells][:2] == ["Månad", "Datum"])


def edit_row(table, month: str, **cells: str) -> None:
    cols = {"date": 1, "theme": 2, "host": 3, "backup_host": 4, "kind": 5}
    row = next(r for r in table.rows if r.cells[0].text == month)
    for what, text in cells.items():
        cell = row.cells[cols[what]]
        for p in cell.paragraphs[1:]:
            p._p.getparent().remove(p._p)
        para = cell.paragraphs[0]
        for r in para.runs[1:]:
            r._r.getparent().remove(r._r)
        if para.runs:
            para.runs[0].text = text
        else:
            para.add_run(text)


def saved(document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def january_protocol(app, now: datetime) -> tuple[EmailMessage, bytes]:
    """The template mail of the January meeting (sent the day before) and its .docx."""
    jan = app.meeting(f"{YEAR}-01")
    daily.send_template(app, jan, now)
    msg = hosts.sent_message(app, f"{jan.id}:send_template:{jan.host.email}")
    name, data = hosts.docx_attachment(msg)
    return msg, data


def host_returns(app, template_msg: EmailMessage, filled: bytes, when: datetime, name: str) -> None:
    jan = app.meeting(f"{YEAR}-01")
    raw = hosts.reply_to_template(jan, when, to=app.cfg.network.mailbox.email, subject=template_msg["Subject"],
                                  message_id=template_msg["Message-ID"], filename=hosts.docx_attachment(template_msg)[0],
                                  docx=b"", filled=filled)
    deliver(app, raw, name)


def coordinator_replies(app, key: str, text: str, when: datetime, attachment=None, name="answer.eml") -> None:
    original = hosts.sent_message(app, key)
    deliver(app, hosts.reply_to(original, app.cfg.network.coordinator, text, when, attachment), name)


def latest_to_coordinator(app, state: str) -> tuple[str, EmailMessage]:
    hits = sorted((r for r in app.state.actions() if r.action == "plan_adoption" and r.key.endswith(f":{state}")),
                  key=lambda r: r.key)
    assert hits, f"no plan_adoption mail in state {state}"
    return hits[-1].key, hosts.sent_message(app, hits[-1].key)


def test_group_tasks_and_the_table_follow_the_tally(app):
    result = closed_round(app)
    coord = app.cfg.network.coordinator
    names = {p.id: p.name for p in app.cfg.network.members}
    for n, group in enumerate(result["groups"], start=1):
        msg = hosts.sent_message(app, f"plan-{YEAR}:workshop_task:{n}")
        to = msg["To"]
        assert all(app.cfg.network.person(pid).email in to for pid in group)
        text = body(msg)
        assert f"grupp {n}" in text and "40 minuter" in text and "30 minuter" in text
        assert "Vilka dimensioner ska vi fokusera på?" in text  # the Målbild question
        lead = next(pid for pid in group if pid != coord.id)
        assert f"{names[lead]} leder gruppen" in text
        assert text.rstrip().endswith("Björn Bergman, Svenska Stadskärnor")
        files = attachments(msg)
        assert any(f"Handlingsplan {YEAR}" in f and f.endswith(".docx") for f in files), files
    # the areas are shared out: every area in exactly one group's mail
    subjects = [hosts.sent_message(app, f"plan-{YEAR}:workshop_task:{n}")["Subject"] for n in (1, 2, 3)]
    for area in ("Omvärldsbevakning", "Erfarenhetsutbyte & kompetensutveckling", "Gemensamma frågor & projekt",
                 "Kollegialt stöd"):
        assert sum(area in s for s in subjects) == 1
    # votes of the area are in its group's mail
    top = max((r for r in result["rows"] if r["area"] == "Omvärldsbevakning"), key=lambda r: r["votes"])
    assert f"{top['text']}: {top['votes']} röster" in body(hosts.sent_message(app, f"plan-{YEAR}:workshop_task:1"))
    table_mail = hosts.sent_message(app, f"plan-{YEAR}:adopt:draft:{coord.email}")
    assert "Årsplan 2024 – utkast.docx" in attachments(table_mail)
    table = plan_table(docx.Document(io.BytesIO(attachments(table_mail)["Årsplan 2024 – utkast.docx"])))
    assert [c.text for c in table.rows[0].cells] == ["Månad", "Datum", "Tema", "Värd", "Reservvärd", "Typ"]
    assert table.rows[1].cells[0].text == "Februari 2024" and table.rows[-1].cells[0].text == "Januari 2025"
    # the January invitation and the host's brief carry the workshop programme
    jan = app.meeting(f"{YEAR}-01")
    inv = app.composer.invitation(jan, app.meetings, app.attendees(jan), 0, cancel=False, now=at(date(2023, 12, 15)))
    assert "Gruppövning i tre grupper, 40 minuter" in inv.message.text and "\nDagordning:" not in inv.message.text
    brief = app.composer.render("brief_host", {"meeting": app.composer.meeting_ctx(jan, app.meetings)})
    assert "Program för dagen" in brief.text and "Protokollmallen har ett avsnitt för handlingsplanen" in brief.text


def test_january_protocol_adopts_the_plan_by_the_coordinators_yes(app, tmp_path):
    closed_round(app)
    coord = app.cfg.network.coordinator
    template_msg, template = january_protocol(app, at(date(2024, 1, 1)))
    document = docx.Document(io.BytesIO(template))
    table = plan_table(document)
    assert [c.text for c in table.rows[0].cells] == ["Månad", "Datum", "Tema", "Värd", "Reservvärd", "Typ"]
    assert any("Vem gör vad och när" == p.text for p in document.paragraphs)
    # at the workshop: February gets the project group's theme and another backup host
    edit_row(table, "Februari 2024", theme="Tema 1: Trygghet i stadskärnan", backup_host="Pia Sandin")
    host_returns(app, template_msg, saved(document), at(date(2024, 1, 3), 9), "protocol.eml")
    rep = run_intake(app, at(date(2024, 1, 3), 12))
    assert [h.outcome for h in rep.handled] == ["minutes"], rep
    assert "samordnaren tillfrågad" in rep.handled[0].reason
    ask_key, ask = latest_to_coordinator(app, "ask")
    text = body(ask)
    assert "Februari 2024 (måndag 5 februari 2024): Tema 1: Trygghet i stadskärnan" in text
    assert "reserv Pia Sandin" in text and "Januari 2025" in text
    assert "Svara ja" in text and text.rstrip().endswith("Björn Bergman, Svenska Stadskärnor")
    assert not (Path(app.cfg.plans_directory) / "plan-2024.yaml").exists()  # nothing until he says yes
    # an unclear answer: asked again, nothing stored
    coordinator_replies(app, ask_key, "Vi tar det på nästa möte.", at(date(2024, 1, 3), 14), name="unclear.eml")
    rep = run_intake(app, at(date(2024, 1, 3), 15))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer_unclear"]
    assert not (Path(app.cfg.plans_directory) / "plan-2024.yaml").exists()
    coordinator_replies(app, ask_key, "Ja, det stämmer.", at(date(2024, 1, 4), 8), name="yes.eml")
    rep = run_intake(app, at(date(2024, 1, 4), 9))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"] and "antagen" in rep.handled[0].reason
    stored = Path(app.cfg.plans_directory) / "plan-2024.yaml"
    plan = yaml.safe_load(stored.read_text(encoding="utf-8"))
    feb = next(m for m in plan["meetings"] if m["month"] == "2024-02")
    assert feb["theme"] == "Trygghet i stadskärnan" and feb["backup_host"] == "pia"
    _, receipt = latest_to_coordinator(app, "adopted")
    assert "årsplanen för 2024 gäller nu" in body(receipt)
    # the next run (a fresh app, as every flow run makes one) reads it and runs the 2024 meetings
    fresh = uncapped(bootstrap(Path(app.cfg.plans_directory).parent, CONFIG_DIR))
    assert fresh.meeting("2024-02") is not None and fresh.meeting("2024-02").theme == "Trygghet i stadskärnan"
    assert [m.id for m in resolve_plan(fresh.cfg, YEAR)][:2] == ["2024-02", "2024-03"]
    due = daily.plan_day(fresh, at(date(2024, 1, 15), 7)).due
    assert any(d.meeting_id == "2024-02" and d.action == "brief_host" for d in due), due
    # his table after the plan is adopted: answered politely, nothing changes
    before = stored.read_bytes()
    table_mail = hosts.sent_message(fresh, f"plan-{YEAR}:adopt:draft:{coord.email}")
    name, data = next(iter(attachments(table_mail).items()))
    coordinator_replies(fresh, f"plan-{YEAR}:adopt:draft:{coord.email}", "Här är min version.",
                        at(date(2024, 1, 5), 8), (name, data), name="late-table.eml")
    rep = run_intake(fresh, at(date(2024, 1, 5), 9))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"] and "redan antagen" in rep.handled[0].reason
    _, note = latest_to_coordinator(fresh, "already")
    assert "redan antagen" in body(note) and "ändrade ingenting" in body(note)
    assert stored.read_bytes() == before


def test_a_january_protocol_that_waited_for_his_yes_puts_the_plan_to_him_once_released(app):
    """The protocol comes from an address our server could not confirm: it waits for the
    coordinator's yes. Released, it is filed and sent out, and its plan section is put
    to him as if it had come in by itself."""
    from kcg_mail.services import approval

    closed_round(app)
    template_msg, template = january_protocol(app, at(date(2024, 1, 1)))
    jan = app.meeting(f"{YEAR}-01")
    raw = hosts.reply_to_template(jan, at(date(2024, 1, 3), 9), to=app.cfg.network.mailbox.email,
                                  subject=template_msg["Subject"], message_id=template_msg["Message-ID"],
                                  filename=hosts.docx_attachment(template_msg)[0], docx=b"", filled=template)
    app.mail.deliver(raw, "unconfirmed.eml")  # no Authentication-Results of our server
    rep = run_intake(app, at(date(2024, 1, 3), 12))
    assert [h.outcome for h in rep.handled] == ["held"], rep
    assert not any(r.action == "plan_adoption" for r in app.state.actions())  # nothing asked while it waits
    approval.approve(app, rep.handled[0].ref, at(date(2024, 1, 3), 14))
    assert app.state.filings(jan.id), "filed on his yes"
    _, ask = latest_to_coordinator(app, "ask")
    text = body(ask)
    assert "Februari 2024" in text and "Januari 2025" in text and "Svara ja" in text
    run_intake(app, at(date(2024, 1, 3), 16))  # the next run asks nothing again
    assert len([r for r in app.state.actions() if r.action == "plan_adoption" and r.key.endswith(":ask")]) == 1


def test_a_january_protocol_in_pdf_gets_him_the_word_table_and_his_reply_adopts_it(app):
    """No plan can be read from a PDF: the protocol is filed and sent out as usual, and the
    coordinator gets the Word table again, saying why; his edited table adopts the plan."""
    from support import hostile_files as h

    from kcg_mail.services.compose import date_words

    closed_round(app)
    template_msg, _ = january_protocol(app, at(date(2024, 1, 1)))
    pdf = h.make_pdf(["Beslutsprotokoll", "Fysiskt möte 2024", "Årsplan 2024 antogs enligt tabellen."])
    jan = app.meeting(f"{YEAR}-01")
    raw = hosts.reply_to_template(jan, at(date(2024, 1, 3), 9), to=app.cfg.network.mailbox.email,
                                  subject=template_msg["Subject"], message_id=template_msg["Message-ID"],
                                  filename="Protokoll januari.pdf", docx=b"", filled=pdf, content_type="application/pdf")
    deliver(app, raw, "protocol.eml")
    rep = run_intake(app, at(date(2024, 1, 3), 12))
    assert [h.outcome for h in rep.handled] == ["minutes"], rep
    assert "protokollet är en PDF" in rep.handled[0].reason
    coord = app.cfg.network.coordinator
    again = hosts.sent_message(app, f"plan-{YEAR}:adopt:pdf:{coord.email}")
    text = body(again)
    assert "kom som PDF" in again["Subject"] and "Ur en PDF går det inte att läsa årsplanen" in text
    assert f"Protokollet från mötet {date_words(jan.date, date(2024, 1, 3))} kom som PDF" in text
    table_name = f"Årsplan {YEAR} – utkast.docx"
    document = docx.Document(io.BytesIO(attachments(again)[table_name]))
    edit_row(plan_table(document), "Februari 2024", theme="Tema 1: Trygghet i stadskärnan")
    coordinator_replies(app, f"plan-{YEAR}:adopt:pdf:{coord.email}", "Här är tabellen som mötet beslutade.",
                        at(date(2024, 1, 3), 14), (table_name, saved(document)), name="table.eml")
    run_intake(app, at(date(2024, 1, 3), 15))
    ask_key, ask = latest_to_coordinator(app, "ask")
    assert "Tema 1: Trygghet i stadskärnan" in body(ask)
    coordinator_replies(app, ask_key, "Ja.", at(date(2024, 1, 4), 8), name="yes.eml")
    run_intake(app, at(date(2024, 1, 4), 9))
    stored = yaml.safe_load((Path(app.cfg.plans_directory) / "plan-2024.yaml").read_text(encoding="utf-8"))
    assert stored["meetings"][0]["theme"] == "Trygghet i stadskärnan"


def test_the_coordinators_word_table_adopts_the_plan_and_the_protocol_then_changes_nothing(app):
    closed_round(app)
    coord = app.cfg.network.coordinator
    template_msg, template = january_protocol(app, at(date(2024, 1, 1)))  # rendered before he decides
    table_key = f"plan-{YEAR}:adopt:draft:{coord.email}"
    name, data = next(iter(attachments(hosts.sent_message(app, table_key)).items()))
    document = docx.Document(io.BytesIO(data))
    edit_row(plan_table(document), "Mars 2024", host="Lena Dalerup", date="11 mars")
    coordinator_replies(app, table_key, "Hej! Jag har ändrat mars.", at(date(2023, 12, 12), 8),
                        (name, saved(document)), name="table.eml")
    rep = run_intake(app, at(date(2023, 12, 12), 9))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"], rep
    ask_key, ask = latest_to_coordinator(app, "ask")
    assert "Mars 2024 (måndag 11 mars 2024)" in body(ask) and "värd Lena Dalerup" in body(ask)
    coordinator_replies(app, ask_key, "Ja", at(date(2023, 12, 12), 10), name="yes.eml")
    run_intake(app, at(date(2023, 12, 12), 11))
    stored = Path(app.cfg.plans_directory) / "plan-2024.yaml"
    march = next(m for m in yaml.safe_load(stored.read_text())["meetings"] if m["month"] == "2024-03")
    assert march["host"] == "lena" and march["date"] == "2024-03-11"
    assert app.meeting("2024-03").host.name == "Lena Dalerup"  # this run already runs it
    # the January protocol still holds the workshop's plan: filed as usual, the coordinator told politely
    before = stored.read_bytes()
    host_returns(app, template_msg, template, at(date(2024, 1, 3), 9), "protocol.eml")
    rep = run_intake(app, at(date(2024, 1, 3), 12))
    assert [h.outcome for h in rep.handled] == ["minutes"] and "redan antagen" in rep.handled[0].reason
    _, note = latest_to_coordinator(app, "already")
    assert "protokollet från mötet" in body(note) and "ändrade ingenting" in body(note)
    assert stored.read_bytes() == before and app.meeting("2024-03").host.name == "Lena Dalerup"


def test_a_bad_table_gets_a_swedish_answer_naming_the_rows(app):
    closed_round(app)
    coord = app.cfg.network.coordinator
    table_key = f"plan-{YEAR}:adopt:draft:{coord.email}"
    name, data = next(iter(attachments(hosts.sent_message(app, table_key)).items()))
    document = docx.Document(io.BytesIO(data))
    table = plan_table(document)
    edit_row(table, "Mars 2024", host="Kalle Anka")
    row4 = table.rows[4]
    may = row4.cells[0].text
    row4.cells[0].paragraphs[0].runs[0].text = "Smarch 2024"
    coordinator_replies(app, table_key, "Se bifogat.", at(date(2023, 12, 12), 8), (name, saved(document)),
                        name="bad.eml")
    rep = run_intake(app, at(date(2023, 12, 12), 9))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"] and "fel i tabellen" in rep.handled[0].reason
    problem_key, answer = latest_to_coordinator(app, "problems")
    text = body(answer)
    assert "Rad 2 (Mars 2024): värden ”Kalle Anka” är ingen av nätverkets medlemmar" in text
    assert "Rad 4: månaden ”Smarch 2024” känns inte igen" in text
    assert "Ingenting har ändrats" in text and answer["In-Reply-To"]
    assert not (Path(app.cfg.plans_directory) / "plan-2024.yaml").exists()
    # he corrects the rows and answers that mail: read, asked, adopted
    edit_row(table, "Mars 2024", host="Hanna Candell")
    row4.cells[0].paragraphs[0].runs[0].text = may
    coordinator_replies(app, problem_key, "Rättat.", at(date(2023, 12, 13), 8), (name, saved(document)),
                        name="fixed.eml")
    run_intake(app, at(date(2023, 12, 13), 9))
    ask_key, _ = latest_to_coordinator(app, "ask")
    coordinator_replies(app, ask_key, "ja tack", at(date(2023, 12, 13), 10), name="yes.eml")
    run_intake(app, at(date(2023, 12, 13), 11))
    assert (Path(app.cfg.plans_directory) / "plan-2024.yaml").exists()
    assert app.meeting("2024-03").host.name == "Hanna Candell"


def test_only_the_coordinator_answers(app):
    closed_round(app)
    coord = app.cfg.network.coordinator
    table_key = f"plan-{YEAR}:adopt:draft:{coord.email}"
    original = hosts.sent_message(app, table_key)
    deliver(app, hosts.reply_to(original, person(app, "lisa"), "Ja", at(date(2023, 12, 12), 8)), "lisa.eml")
    rep = run_intake(app, at(date(2023, 12, 12), 9))
    assert rep.handled[0].outcome == "discarded"
    assert not (Path(app.cfg.plans_directory) / "plan-2024.yaml").exists()


def test_an_adopted_plan_may_name_a_member_the_coordinator_added(tmp_path):
    """Both live in the work directory: the plan's hosts are checked against network.yaml
    with the coordinator's added members; a host nobody knows stops the start with file,
    field and fix."""
    from kcg_mail.config_loader import ConfigError

    work = tmp_path / "work"
    decided_by_reply(work)
    app = uncapped(bootstrap(work, CONFIG_DIR))
    assert app.meeting("2024-02").host.name == "Maria Lund"
    decided_by_reply(work, host="kalle")
    with pytest.raises(ConfigError) as err:
        bootstrap(work, CONFIG_DIR)
    assert "plans/plan-2024.yaml: meetings[0] (2024-02).host: 'kalle'" in str(err.value) and "fix:" in str(err.value)
