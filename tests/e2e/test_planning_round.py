"""The planning round on the embedded adapters (Maildir, local folder, SQLite),
driven through the real intake with real MIME replies: Word forms and ballots
filled in with python-docx, plain-text answers. No Prefect here (fast); the
flows are exercised end to end in tests/e2e/test_planning_flows.py."""

from __future__ import annotations

import io
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import docx
import pytest
from support.helpers import CONFIG_DIR, at, authenticated, copy_config

from kcg_mail.bootstrap import bootstrap
from kcg_mail.config_loader import ConfigError, load_planning
from kcg_mail.entrypoints import demo_hosts as hosts
from kcg_mail.entrypoints import demo_round as play
from kcg_mail.services import round as round_
from kcg_mail.services import round_status
from kcg_mail.services.intake import run_intake

YEAR = 2024
PIA = {"Omvärldsbevakning": ["Studieresa", "Framtidens stadskärna"],
       "Erfarenhetsutbyte & kompetensutveckling": ["Trygghet"]}


@pytest.fixture
def app(tmp_path):
    app = bootstrap(tmp_path / "work", CONFIG_DIR)
    # the round's own steps on the days they are called; the member caps (the needs mail of
    # Monday 6 November waits past the meeting) are tested in test_member_caps*.py
    app.outbox.pacer = None
    return app


def sent_keys(app) -> set[str]:
    return {r.key for r in app.state.actions() if r.status == "done"}


def sent_count(app) -> int:
    return len(list((Path(app.mail.root) / "sent" / "cur").iterdir()))


def person(app, pid):
    return app.cfg.network.person(pid)


def deliver(app, raw: bytes, name: str) -> None:
    app.mail.deliver(authenticated(raw), name)  # a member, authenticated by our receiving server


def needs_reply(app, pid, d, word: bool, topics=None):
    p = person(app, pid)
    original = hosts.sent_message(app, f"plan-{YEAR}:needs:{p.email}")
    topics = topics or play.suggestions_of(3)
    if word:
        name, data = hosts.docx_attachment(original)
        return hosts.reply_to(original, p, "Se bifogat.", at(d, 10), (name, hosts.fill_needs_form(data, topics)))
    return hosts.reply_to(original, p, play.needs_text(topics), at(d, 10))


def ballot_reply(app, pid, d, votes=None, text=None, word=False, hour=9):
    p = person(app, pid)
    original = hosts.sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
    name, data = hosts.docx_attachment(original)
    if word:
        return hosts.reply_to(original, p, "Min röstsedel.", at(d, hour), (name, hosts.fill_ballot(data, votes)))
    return hosts.reply_to(original, p, text, at(d, hour))


def to_ballot(app, when=date(2023, 11, 22)):
    """Start, two needs answers, the candidate list, publish."""
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    deliver(app, needs_reply(app, "pia", date(2023, 11, 8), word=True, topics=PIA), "n1.eml")
    deliver(app, needs_reply(app, "lisa", date(2023, 11, 8), word=False, topics={"Kollegialt stöd": ["Fadder"]}),
            "n2.eml")
    rep = run_intake(app, at(date(2023, 11, 8), 12))
    assert [h.outcome for h in rep.handled] == ["planning_needs", "planning_needs"]
    round_.tick(app, YEAR, at(date(2023, 11, 20)))
    round_.publish_ballot(app, YEAR, at(when))
    return {t.text: t.number for t in round_.topics(app, YEAR)}


def test_start_sends_needs_mail_with_form_once(app):
    lines = round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    members = app.cfg.network.active_members
    assert len(lines) == len(members) == 14
    assert sent_count(app) == 14
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))  # again: nothing twice
    assert sent_count(app) == 14
    msg = hosts.sent_message(app, f"plan-{YEAR}:needs:{members[0].email}")
    assert "[KCG-PLAN-2024]" in msg["Subject"]
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "Vilka omvärldsfaktorer är intressanta att fördjupa sig i?" in body
    assert "Info Tidö/BID" in body  # last year's topic not chosen
    name, data = hosts.docx_attachment(msg)
    tables = docx.Document(io.BytesIO(data)).tables
    assert [t.rows[0].cells[0].text for t in tables] == [a.name for a in round_.settings(app).areas]


def test_needs_from_word_and_text_become_the_candidate_list(app):
    numbers = to_ballot(app)
    cands = app.archive.read(round_.candidates_path(app, YEAR)).decode()
    assert "Fadder" in cands and "Lisa Thörn" in cands
    assert {"Studieresa", "Framtidens stadskärna", "Trygghet"} <= set(numbers)
    assert "Finansiering" in numbers  # carried over from 2023
    coord = app.cfg.network.coordinator
    assert f"plan-{YEAR}:candidates:{coord.email}" in sent_keys(app)
    # the numbered list is sent to every member with a ballot
    assert sum(1 for k in sent_keys(app) if k.startswith(f"plan-{YEAR}:ballot:")) == 14


def test_needs_after_the_list_was_written_go_to_the_coordinator(app):
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    round_.tick(app, YEAR, at(date(2023, 11, 20)))  # the list is written
    deliver(app, needs_reply(app, "monica", date(2023, 11, 21), word=False,
                             topics={"Kollegialt stöd": ["Sent förslag"]}), "late.eml")
    rep = run_intake(app, at(date(2023, 11, 21), 12))
    assert rep.handled[0].outcome == "planning_needs" and "för hand" in rep.handled[0].reason
    assert any("Sent förslag" in x and "Monica Bruvik" in x for x in round_status.needs_a_person(app))


def test_needs_reminder_only_to_those_who_have_not_answered(app):
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    deliver(app, needs_reply(app, "pia", date(2023, 11, 8), word=False), "n1.eml")
    run_intake(app, at(date(2023, 11, 8), 12))
    round_.tick(app, YEAR, at(date(2023, 11, 13)))
    reminded = {k.rsplit(":", 1)[1] for k in sent_keys(app) if ":needs_reminder:" in k}
    assert person(app, "pia").email not in reminded and len(reminded) == 13
    before = sent_count(app)
    round_.tick(app, YEAR, at(date(2023, 11, 14)))
    assert sent_count(app) == before  # one reminder only


def test_ballots_in_every_form_counted_and_confirmed(app):
    numbers = to_ballot(app)
    s, f, o = numbers["Studieresa"], numbers["Finansiering"], numbers["Fadder"]
    d = date(2023, 11, 24)
    deliver(app, ballot_reply(app, "maria", d, {s: 6, f: 4}, word=True), "b1.eml")
    deliver(app, ballot_reply(app, "pia", d, text=f"{s}: 4, {f}: 3, {o}: 3"), "b2.eml")
    deliver(app, ballot_reply(app, "lisa", d, text=f"{s} 5\n{o} 5"), "b3.eml")
    deliver(app, ballot_reply(app, "david", d, text=f"#{s} x10"), "b4.eml")
    rep = run_intake(app, at(d, 12))
    assert [h.outcome for h in rep.handled] == ["planning_ballot"] * 4
    t = round_.current_tally(app, YEAR)
    by_no = {r.number: r.votes for r in t.rows}
    assert by_no[s] == 6 + 4 + 5 + 10 and by_no[f] == 4 + 3 and by_no[o] == 3 + 5
    receipt = hosts.sent_message(app, next(k for k in sent_keys(app) if k.startswith(
        f"plan-{YEAR}:ballot_ok:{person(app, 'maria').email}")))
    text = receipt.get_body(preferencelist=("plain",)).get_content()
    assert f"{s}. Studieresa – sex röster" in text and f"{f}. Finansiering – fyra röster" in text
    assert "10 av 10 röster" in text and "ersätter den här fram till sammanräkningen" in text
    assert receipt["In-Reply-To"]


def test_invalid_ballot_answered_then_corrected(app):
    numbers = to_ballot(app)
    s = numbers["Studieresa"]
    deliver(app, ballot_reply(app, "daniel", date(2023, 11, 24), text=f"{s}: 6, 99: 6"), "bad.eml")
    rep = run_intake(app, at(date(2023, 11, 24), 12))
    assert rep.handled[0].outcome == "planning_ballot_invalid"
    problem = hosts.sent_message(app, next(k for k in sent_keys(app) if ":ballot_problem:" in k))
    text = problem.get_body(preferencelist=("plain",)).get_content()
    assert "Nummer 99 finns inte" in text and f"{s}. Studieresa – sex röster" in text  # what was understood
    assert round_.current_tally(app, YEAR).ballots == 0
    deliver(app, ballot_reply(app, "daniel", date(2023, 11, 27), text=f"{s}: 6"), "fixed.eml")
    run_intake(app, at(date(2023, 11, 27), 12))
    t = round_.current_tally(app, YEAR)
    assert t.ballots == 1 and {r.number: r.votes for r in t.rows}[s] == 6


def test_last_ballot_counts_once_and_a_ballot_counts_until_the_tally_is_out(app):
    numbers = to_ballot(app)
    s, f = numbers["Studieresa"], numbers["Finansiering"]
    first = ballot_reply(app, "pia", date(2023, 11, 24), text=f"{s}: 10", hour=9)
    second = ballot_reply(app, "pia", date(2023, 11, 25), text=f"{f}: 10", hour=9)
    deliver(app, second, "b2.eml")  # arrives first, but was written later
    deliver(app, first, "b1.eml")
    run_intake(app, at(date(2023, 11, 25), 12))
    t = round_.current_tally(app, YEAR)
    assert t.ballots == 1 and {r.number: r.votes for r in t.rows}[f] == 10
    assert {r.number: r.votes for r in t.rows}[s] == 0
    # the same message again (a crash before the move, a rerun): nothing counted or sent twice
    before = sent_count(app)
    deliver(app, second, "b2-again.eml")
    run_intake(app, at(date(2023, 11, 25), 13))
    assert sent_count(app) == before and round_.current_tally(app, YEAR).ballots == 1
    # reminders only to those who have not voted
    round_.tick(app, YEAR, at(date(2023, 12, 4)))
    reminded = {k.rsplit(":", 1)[1] for k in sent_keys(app) if ":ballot_reminder:" in k}
    assert person(app, "pia").email not in reminded and len(reminded) == 13
    # Saturday, after the last day (Friday 8 December) but before Monday's tally: it counts
    deliver(app, ballot_reply(app, "lena", date(2023, 12, 9), text=f"{s}: 10"), "saturday.eml")
    rep = run_intake(app, at(date(2023, 12, 9), 12))
    assert rep.handled[0].outcome == "planning_ballot"
    receipt = hosts.sent_message(app, next(k for k in sent_keys(app) if ":ballot_ok:lena@" in k))
    assert "din röst kommer med" in receipt.get_body(preferencelist=("plain",)).get_content()
    round_.tick(app, YEAR, at(date(2023, 12, 11)))
    result = round_.round_value(app, YEAR, "result", None)
    assert result["ballots"] == 2 and not result["late"]
    assert {r["number"]: r["votes"] for r in result["rows"]}[s] == 10
    # after the result is out: answered, kept for the coordinator, counted nowhere and named to nobody
    deliver(app, ballot_reply(app, "david", date(2023, 12, 12), text=f"{s}: 10"), "late.eml")
    rep = run_intake(app, at(date(2023, 12, 12), 12))
    assert rep.handled[0].outcome == "planning_ballot_late"
    assert round_.current_tally(app, YEAR).ballots == 2
    assert round_.current_tally(app, YEAR).late == ("1 röst kom efter sammanräkningen och räknades inte.",)
    late_receipt = hosts.sent_message(app, next(k for k in sent_keys(app) if ":ballot_late:david@" in k))
    assert "så den kunde inte räknas" in late_receipt.get_body(preferencelist=("plain",)).get_content()
    to_all = hosts.sent_message(app, f"plan-{YEAR}:result:members")
    doc = "\n".join(p.text for p in docx.Document(io.BytesIO(app.archive.read(result["path"]))).paragraphs)
    body = to_all.get_body(preferencelist=("plain",)).get_content()
    for shared in (body, doc):  # (both name every member elsewhere: the participants, the workshop groups)
        assert "sen röst" not in shared.lower() and "räknades inte" not in shared and "Lena Dalerup (" not in shared


def test_close_files_handlingsplan_and_draft(app):
    numbers = to_ballot(app)
    s, o = numbers["Studieresa"], numbers["Fadder"]
    deliver(app, ballot_reply(app, "maria", date(2023, 11, 24), {s: 7, o: 3}, word=True), "b.eml")
    run_intake(app, at(date(2023, 11, 24), 12))
    round_.tick(app, YEAR, at(date(2023, 12, 11)))
    result = round_.round_value(app, YEAR, "result", None)
    assert result["path"].startswith("/KCG/Handlingsplan/2024/") and "Handlingsplan 2024" in result["path"]
    doc = docx.Document(io.BytesIO(app.archive.read(result["path"])))
    text = "\n".join(p.text for p in doc.paragraphs)
    for heading in ("Handlingsplan 2024 – utkast", "Syftet med KCG", "Spelregler", "Deltagare", "1. Nuläge & behov",
                    "2. Målbild & prioriteringar", "Målbild för 2024", "3. Handlingsplan", "Årets teman & träffar 2024",
                    "Vem gör vad och när", "Projektgrupper", "Stående dagordning för månadsmöten",
                    "Gruppindelning vid det fysiska mötet"):
        assert heading in text
    # A4 like the protocol, "Utkast" on every page until adopted
    sec = doc.sections[0]
    assert (round(sec.page_width.mm), round(sec.page_height.mm)) == (210, 297)
    assert "UTKAST" in sec.header.paragraphs[0].text and "antas vid det fysiska mötet" in text
    votes = {r.cells[1].text: (r.cells[2].text, r.cells[3].text) for t in doc.tables
             if t.rows[0].cells[0].text == "Nr" for r in t.rows[1:]}
    assert votes["Studieresa"] == ("7", "fokus")
    plan_table = next(t for t in doc.tables if t.rows[0].cells[0].text == "Månad")
    months = [r.cells[0].text for r in plan_table.rows[1:]]
    assert months[0] == "Januari 2024" and months[-1] == "Januari 2025" and "Juli 2024" not in months
    themes = [r.cells[3].text for r in plan_table.rows[1:]]
    assert not any(t.startswith("Fysiskt möte: ") for t in themes)  # no label in front of the theme
    trip = next(r for r in plan_table.rows[1:] if r.cells[2].text == "Studieresa")
    assert trip.cells[1].text == "bestäms av samordnaren" and "v 39" not in "".join(c.text for c in trip.cells)
    tasks = next(t for t in doc.tables if t.rows[0].cells[0].text == "Vad")
    assert any("Beslutsprotokoll" in r.cells[0].text and "två arbetsdagar" in r.cells[2].text for r in tasks.rows)
    assert all(r.cells[1].text and r.cells[2].text for r in tasks.rows[1:])  # every task has an owner and a date
    draft = app.archive.read(result["draft"]).decode()
    assert '"Fadder"' in draft or "Fadder" in draft
    assert f"plan-{YEAR}:result:members" in sent_keys(app)
    before = sent_count(app)
    round_.tick(app, YEAR, at(date(2023, 12, 12)))
    assert sent_count(app) == before  # closed once
    # the workshop groups are in the invitation of the physical meeting of January 2024
    jan = app.meeting("2024-01")
    inv = app.composer.invitation(jan, app.meetings, app.attendees(jan), 0, cancel=False, now=at(date(2023, 12, 25)))
    groups = result["groups"]
    assert "Gruppindelning för workshopen" in inv.message.text
    first = ", ".join(app.cfg.network.person(x).name for x in groups[0])
    assert f"Grupp 1: {first}" in inv.message.text and "Grupp 3:" in inv.message.html
    feb = app.meeting("2024-02") or app.meeting("2023-12")
    other = app.composer.invitation(feb, app.meetings, app.attendees(feb), 0, cancel=False, now=at(date(2023, 11, 20)))
    assert "Gruppindelning" not in other.message.text


def test_only_members_and_no_auto_replies(app):
    to_ballot(app)
    original = hosts.sent_message(app, f"plan-{YEAR}:ballot:{person(app, 'pia').email}")
    raw = hosts.reply_to(original, person(app, "pia"), "3: 4", at(date(2023, 11, 24)))
    forged = raw.replace(b"pia@malmo.example.se", b"pia@evil.example.com")
    deliver(app, forged, "stranger.eml")
    auto = message_from_bytes(raw, policy=policy.SMTP)
    auto["Auto-Submitted"] = "auto-replied"
    deliver(app, auto.as_bytes(), "auto.eml")
    rep = run_intake(app, at(date(2023, 11, 24), 12))
    outcomes = sorted(h.outcome for h in rep.handled)
    assert "planning_ballot" not in outcomes
    assert "held" in outcomes and "automatic" in outcomes  # a non-member waits for the coordinator
    assert round_.current_tally(app, YEAR).ballots == 0


def test_subject_token_routes_a_new_mail(app):
    numbers = to_ballot(app)
    from email.message import EmailMessage
    from email.utils import format_datetime

    m = EmailMessage(policy=policy.SMTP)
    p = person(app, "hanna")
    m["From"], m["To"] = f"{p.name} <{p.email}>", app.cfg.network.mailbox.email
    m["Subject"], m["Date"] = "Min röst [KCG-PLAN-2024]", format_datetime(at(date(2023, 11, 26)))
    m["Message-ID"] = "<x1@helsingborg.example.se>"
    m.set_content(f"{numbers['Studieresa']}: 3")
    deliver(app, m.as_bytes(), "token.eml")
    rep = run_intake(app, at(date(2023, 11, 26), 12))
    assert rep.handled[0].outcome == "planning_ballot"


def test_planning_yaml_errors_name_file_field_fix(tmp_path):
    conf = copy_config(tmp_path)
    text = (conf / "planning.yaml").read_text().replace("votes_deadline: 2023-12-08", "votes_deadline: 2023-12-01")
    text = text.replace("- [pia, david, isabel]", "- [pia, nobody, isabel]")
    (conf / "planning.yaml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_planning(conf)
    msg = str(exc.value)
    assert "planning.yaml" in msg and "votes_deadline" in msg
    text = text.replace("votes_deadline: 2023-12-01", "votes_deadline: 2023-12-08")
    (conf / "planning.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"previous_groups\[0\]: 'nobody' is not a member id.*fix"):
        load_planning(conf)


def test_edited_candidate_list_errors(app):
    with pytest.raises(round_.PlanningProblem, match="unknown area"):
        round_.read_candidates(app, YEAR, "year: 2024\nareas:\n  Okänt: [a]\n".encode(), "x.yaml")
    topics = round_.read_candidates(app, YEAR, "areas:\n  Kollegialt stöd: [Fadder]\n  Omvärldsbevakning: [Resa]\n"
                                    .encode(), "x.yaml")
    assert [(t.number, t.area, t.text) for t in topics] == [(1, "Omvärldsbevakning", "Resa"),
                                                            (2, "Kollegialt stöd", "Fadder")]
