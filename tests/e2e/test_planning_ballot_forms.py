"""The ballot as members answer it and as the coordinator corrects it, over the
Maildir transport through the real intake (real MIME replies, authenticated
like our receiving server hands them over): every answer form, a receipt by
name for each counted ballot, a polite answer and a question to the
coordinator for what cannot be read, his correction by reply ("Monica: 3: 5,
…") and through the form flow ``kcg-planning-correct-ballot``."""

from __future__ import annotations

import re
from datetime import date

import pytest
from support.helpers import CONFIG_DIR, at, authenticated

from kcg_mail.bootstrap import bootstrap
from kcg_mail.entrypoints import demo_hosts as hosts
from kcg_mail.services import round as round_
from kcg_mail.services.intake import run_intake

YEAR = 2024
DAY = date(2023, 11, 24)


@pytest.fixture
def app(tmp_path):
    app = bootstrap(tmp_path / "work", CONFIG_DIR)
    # the round's own steps on the days they are called; the member caps are tested in test_member_caps*.py
    # (receipts and the coordinator's questions are answers and never wait)
    app.outbox.pacer = None
    return app


def keys(app) -> list[str]:
    return [r.key for r in app.state.actions() if r.status == "done"]


def text_of(app, key_start: str) -> tuple[str, str]:
    """(subject, plain text) of the one mail we sent whose key starts with ``key_start``."""
    found = [k for k in keys(app) if k.startswith(key_start)]
    assert len(found) == 1, (key_start, found)
    msg = hosts.sent_message(app, found[0])
    return str(msg["Subject"]), msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def person(app, pid):
    return app.cfg.network.person(pid)


def deliver(app, raw: bytes, name: str) -> None:
    app.mail.deliver(authenticated(raw), name)


def ballot(app, pid, text, hour=9, attachment=None, d=DAY):
    p = person(app, pid)
    original = hosts.sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
    return hosts.reply_to(original, p, text, at(d, hour), attachment)


def word_ballot(app, pid, cells: dict[int, str]) -> tuple[str, bytes]:
    """The member's Word ballot with the Röster column filled in as typed ("fyra", "4 röster")."""
    original = hosts.sent_message(app, f"plan-{YEAR}:ballot:{person(app, pid).email}")
    name, data = hosts.docx_attachment(original)
    return name, hosts.fill_ballot(data, cells)


def to_ballot(app) -> dict[str, int]:
    round_.start_round(app, YEAR, at(date(2023, 11, 6)))
    for pid, topics in (("pia", "Omvärldsbevakning\n- Studieresa\n- Framtidens stadskärna"),
                        ("lisa", "Kollegialt stöd\n- Fadder")):
        p = person(app, pid)
        original = hosts.sent_message(app, f"plan-{YEAR}:needs:{p.email}")
        deliver(app, hosts.reply_to(original, p, topics, at(date(2023, 11, 8), 10)), f"needs-{pid}.eml")
    run_intake(app, at(date(2023, 11, 8), 12))
    round_.tick(app, YEAR, at(date(2023, 11, 20)))
    round_.publish_ballot(app, YEAR, at(date(2023, 11, 22)))
    return {t.text: t.number for t in round_.topics(app, YEAR)}


def counted(app) -> dict[str, dict[int, int]]:
    return {pid: {int(k): v for k, v in b["votes"].items()} for pid, b in round_.round_value(app, YEAR, "ballots", {}).items()}


def test_the_ballot_mail_is_a_numbered_list_with_the_ways_to_answer(app):
    numbers = to_ballot(app)
    subject, text = text_of(app, f"plan-{YEAR}:ballot:{person(app, 'pia').email}")
    assert subject == "Din röst inför handlingsplan 2024 [KCG-PLAN-2024]"
    lines = text.splitlines()
    for topic, n in numbers.items():  # one line each, readable on a phone
        assert f"{n}. {topic}" in lines
    assert "3: 4, 10: 3" in lines and "”3 fyra röster”" in text and "Word" in text  # numbers on the list
    assert "tio röster" in text and text.rstrip().endswith("Björn Bergman, Svenska Stadskärnor")
    assert "den senaste gäller fram till sammanräkningen" in text


def test_members_answer_in_different_forms_and_get_receipts_by_name(app):
    numbers = to_ballot(app)
    s, f, o, fr = numbers["Studieresa"], numbers["Finansiering"], numbers["Fadder"], numbers["Framtidens stadskärna"]
    deliver(app, ballot(app, "pia", f"{s}:4, {f}:3, {o}:3"), "pia.eml")
    deliver(app, ballot(app, "lisa", f"Hej!\n\n{s} fyra röster\n{o} sex röster\n\nHälsningar\nLisa"), "lisa.eml")
    deliver(app, ballot(app, "david", f"{s}: fyra\n{f}: tre\n{fr}: tre"), "david.eml")
    deliver(app, ballot(app, "isabel", f"4 röster på {s}\n6 röster på {fr}"), "isabel.eml")
    deliver(app, ballot(app, "maria", "Här är min röstsedel.",
                        attachment=word_ballot(app, "maria", {s: "fyra", f: "4 röster", o: "2"})), "maria.eml")
    rep = run_intake(app, at(DAY, 12))
    assert sorted(h.outcome for h in rep.handled) == ["planning_ballot"] * 5
    assert counted(app) == {"pia": {s: 4, f: 3, o: 3}, "lisa": {s: 4, o: 6}, "david": {s: 4, f: 3, fr: 3},
                            "isabel": {s: 4, fr: 6}, "maria": {s: 4, f: 4, o: 2}}
    subject, text = text_of(app, f"plan-{YEAR}:ballot_ok:{person(app, 'maria').email}:")
    assert subject.startswith("SV: Din röst inför handlingsplan 2024")
    assert f"- {s}. Studieresa – fyra röster" in text and f"- {f}. Finansiering – fyra röster" in text
    assert f"- {o}. Fadder – två röster" in text and "10 av 10 röster" in text
    assert "Den ersätter den här fram till sammanräkningen efter fredag 8 december 2023.\n\nVänliga hälsningar" in text
    _, lisa = text_of(app, f"plan-{YEAR}:ballot_ok:{person(app, 'lisa').email}:")
    assert f"- {o}. Fadder – sex röster" in lisa
    # the Word ballot and the mail's text with different votes: unclear, nothing counted or guessed
    deliver(app, ballot(app, "armina", f"{s}: 10", attachment=word_ballot(app, "armina", {f: "10"})), "armina.eml")
    rep = run_intake(app, at(DAY, 13))
    assert [h.outcome for h in rep.handled] == ["planning_ballot_invalid"] and "armina" not in counted(app)
    _, armina = text_of(app, f"plan-{YEAR}:ballot_problem:{person(app, 'armina').email}:")
    assert "Röstsedeln och mejlets text ger olika fördelningar." in armina
    # a later ballot replaces the earlier one until the tally
    deliver(app, ballot(app, "pia", f"{f} tio röster", d=date(2023, 11, 27)), "pia-2.eml")
    run_intake(app, at(date(2023, 11, 27), 12))
    assert counted(app)["pia"] == {f: 10}


def test_over_ten_and_unclear_ballots_are_answered_and_the_coordinator_corrects_them(app, monkeypatch, tmp_path):
    numbers = to_ballot(app)
    s, f = numbers["Studieresa"], numbers["Finansiering"]
    coord = app.cfg.network.coordinator
    deliver(app, ballot(app, "daniel", f"{s}: 6, {f}: 6"), "daniel.eml")
    deliver(app, ballot(app, "monica", f"Jag röstar på {s} och {f}."), "monica.eml")
    rep = run_intake(app, at(DAY, 12))
    assert sorted(h.outcome for h in rep.handled) == ["planning_ballot_invalid"] * 2
    assert counted(app) == {}
    # the member: a short polite answer that says what was understood and what to fix
    _, daniel = text_of(app, f"plan-{YEAR}:ballot_problem:{person(app, 'daniel').email}:")
    assert "Vi fick 12 röster från dig, men var och en har tio." in daniel
    assert f"{s}. Studieresa – sex röster" in daniel and "Skicka gärna din fördelning igen" in daniel
    assert "Du har delat ut" not in daniel
    _, monica = text_of(app, f"plan-{YEAR}:ballot_problem:{person(app, 'monica').email}:")
    assert f"Raden ”Jag röstar på {s} och {f}.” kunde vi inte läsa säkert." in monica
    # the coordinator: a question he answers from his phone; nobody is asked to edit anything
    subject, question = text_of(app, f"plan-{YEAR}:correction_question:{coord.email}:monica:")
    assert subject == "Monica Bruviks röst behöver rättas" and "[KCG-PLAN" not in subject
    assert "svara på det här mejlet" in question and "Monica: 3: 4, 10: 3" in question
    for developer in ("yaml", "flöde", ".docx", "/KCG/"):
        assert developer not in question.lower()
    assert not re.search(r"\bkcg[ -](planning|check|state|status|serve|pending)\b", question.lower())  # no command

    _, about_daniel = text_of(app, f"plan-{YEAR}:correction_question:{coord.email}:daniel:")
    assert "Vi fick 12 röster från Daniel, men var och en har tio." in about_daniel and "från dig" not in about_daniel

    qkey = next(k for k in keys(app) if k.startswith(f"plan-{YEAR}:correction_question:{coord.email}:monica:"))
    # an answer from someone else than the coordinator does not count
    stranger = hosts.reply_to_sent(app, qkey, person(app, "pia"), at(DAY, 13), f"Monica: {s}: 10")
    app.mail.deliver(stranger, "not-coordinator.eml")
    # an unclear answer gets one line back and changes nothing
    app.mail.deliver(hosts.reply_to_sent(app, qkey, coord, at(DAY, 14), "Ok, jag ringer henne."), "unclear.eml")
    rep = run_intake(app, at(DAY, 15))
    outcomes = sorted(h.outcome for h in rep.handled)
    assert "coordinator_answer" not in outcomes and "coordinator_answer_unclear" in outcomes
    assert counted(app) == {}
    _, again = text_of(app, f"plan-{YEAR}:correction_answer:{coord.email}:monica:")
    assert "Jag kunde inte räkna rättelsen av Monica Bruviks röst: Vi hittade inga röster i ditt svar." in again

    # the coordinator's correction by reply to the question about Monica's ballot
    answer = hosts.reply_to_sent(app, qkey, coord, at(date(2023, 11, 25), 8), f"Monica: {s}: 5, {f}: 5")
    app.mail.deliver(answer, "correction.eml")
    rep = run_intake(app, at(date(2023, 11, 25), 9))
    assert [h.outcome for h in rep.handled] == ["coordinator_answer"]
    assert counted(app) == {"monica": {s: 5, f: 5}}
    _, receipt = text_of(app, f"plan-{YEAR}:ballot_corrected:{person(app, 'monica').email}:")
    assert "Jag har rättat din röst" in receipt and f"{s}. Studieresa – fem röster" in receipt
    assert "ersätter den här fram till sammanräkningen" in receipt
    coordinator_receipts = [k for k in keys(app) if k.startswith(f"plan-{YEAR}:correction_answer:{coord.email}:monica:")]
    bodies = [hosts.sent_message(app, k).get_body(preferencelist=("plain",)).get_content() for k in coordinator_receipts]
    done = [b for b in bodies if "Tack, uppfattat. Monica Bruviks röst räknas nu så här:" in b]
    assert len(bodies) == 2 and len(done) == 1 and "Monica Bruvik har fått ett kvitto." in done[0]
    # the same answer again (a crash before the move): nothing counted or sent twice
    sent = len(keys(app))
    app.mail.deliver(answer, "correction-again.eml")
    run_intake(app, at(date(2023, 11, 25), 10))
    assert len(keys(app)) == sent

    # the coordinator corrects Daniel's ballot through the form flow
    from flows.round import planning_correct_ballot

    monkeypatch.setenv("KCG_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("KCG_CONFIG_DIR", str(CONFIG_DIR))
    monkeypatch.setenv("KCG_TODAY", "2023-11-26")
    out = planning_correct_ballot.fn(member="Daniel Swärd", votes=f"{s} sex röster, {f} fyra röster",
                                     year=None)  # empty in the form: the open round
    assert out["member"] == person(app, "daniel").email
    assert counted(app)["daniel"] == {s: 6, f: 4}
    _, receipt = text_of(app, f"plan-{YEAR}:ballot_corrected:{person(app, 'daniel').email}:")
    assert f"{f}. Finansiering – fyra röster" in receipt
    with pytest.raises(round_.PlanningProblem, match="Vi fick 11 röster från dig"):
        planning_correct_ballot.fn(member="daniel@gavle.example.se", votes=f"{s}: 6, {f}: 5", year=YEAR)
    with pytest.raises(round_.PlanningProblem, match="ingen medlem"):
        planning_correct_ballot.fn(member="Okänd Person", votes=f"{s}: 6", year=YEAR)
    # both count in the tally; nobody is named in the result to all
    round_.tick(app, YEAR, at(date(2023, 12, 11)))
    result = round_.round_value(app, YEAR, "result", None)
    assert result["ballots"] == 2 and {r["number"]: r["votes"] for r in result["rows"]}[s] == 11


@pytest.mark.slow
def test_the_correction_form_runs_in_prefect(prefect_api, app, monkeypatch, tmp_path):
    """The form as the coordinator submits it: a run on a real Prefect server, the
    year left empty, the run named after what it did."""
    from prefect.client.orchestration import get_client

    from flows.round import planning_correct_ballot
    from kcg_mail.entrypoints import prefect_env

    numbers = to_ballot(app)
    s = numbers["Studieresa"]
    monkeypatch.setenv("KCG_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("KCG_CONFIG_DIR", str(CONFIG_DIR))
    monkeypatch.setenv("KCG_TODAY", "2023-11-26")
    with prefect_env.without_heartbeats():
        state = planning_correct_ballot(member="Lena Dalerup", votes=f"{s}: tio", return_state=True)
        bad = planning_correct_ballot(member="Lena", votes="99: 3", return_state=True)
    assert state.is_completed(), state
    assert counted(app) == {"lena": {s: 10}}
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "rättade Lena Dalerups röst"
    assert bad.is_failed() and "Nummer 99 finns inte på listan" in str(bad.message or bad.result(raise_on_failure=False))
    assert counted(app) == {"lena": {s: 10}}
