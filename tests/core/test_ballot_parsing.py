"""Reading a member's votes (kcg_mail.core.ballot): every form the ballot mail
offers and a few people use anyway, what is never guessed, the polite
sentences that say what to fix, and the coordinator's correction."""

from __future__ import annotations

import pytest

from kcg_mail.core import ballot as bl

pytestmark = pytest.mark.core

TOPICS = [bl.Topic(i, "Omvärldsbevakning" if i <= 12 else "Kollegialt stöd", f"Ämne {i}") for i in range(1, 25)]
MEMBERS = [("lena", "Lena Dalerup"), ("lisa", "Lisa Thörn"), ("pia", "Pia Sandin"), ("lisa2", "Lisa Berg"),
           ("bjorn", "Björn Bergman")]


def check(text: str) -> bl.BallotCheck:
    return bl.validate_ballot(bl.parse_ballot_text(text), TOPICS, 10)


@pytest.mark.parametrize("text", [
    "3:4, 12:3",
    "3: 4, 12: 3",
    "3 fyra röster\n12 tre röster",
    "3: fyra\n12: tre",
    "3 fyra, 12 tre",
    "4 röster på 3\n3 röster på 12",
    "fyra röster på nummer 3, tre röster till nr 12",
    "3 4\n12 3",
    "#3 x4\n#12 x3",
    "nr 3: 4 röster\nnr 12: 3 röster",
    "Mina röster: 3: 4, 12: 3",
    "- 3: 4\n- 12: 3",
    "3: 4 och 12: 3",
    "Jag ger nr 3 fyra röster och 12 tre röster",
    "3=4; 12=3",
    "Hej!\n\n3: 4\n12: 3\n\nVänliga hälsningar\nPia Sandin\n070-123 45 67",
])
def test_each_form_people_write_is_read(text):
    c = check(text)
    assert c.ok, c.problems
    assert c.votes == {3: 4, 12: 3}


@pytest.mark.parametrize("word, n", [("noll", 0), ("en", 1), ("ett", 1), ("två", 2), ("tre", 3), ("fyra", 4),
                                      ("fem", 5), ("sex", 6), ("sju", 7), ("åtta", 8), ("nio", 9), ("tio", 10)])
def test_number_words_up_to_ten(word, n):
    parsed = bl.parse_ballot_text(f"7 {word} röster\n8: 0")
    assert [(x.number, bl.vote_count(x.votes)) for x in parsed.lines] == [(7, n), (8, 0)]


def test_the_quoted_ballot_mail_and_the_signature_are_not_read():
    text = ("5 två röster\n\nMed vänlig hälsning\nLisa\n3: 4\n\n"
            "Den 1 dec. 2023 skrev Key Cities Group:\n> 1. Studieresa\n> 3: 4, 12: 3\n")
    assert check(text).votes == {5: 2}
    assert check("12: 3\n-- \n3: 4").votes == {12: 3}


@pytest.mark.parametrize("text, unclear", [
    ("3 4 5", "3 4 5"),                                   # which is the number, which the votes?
    ("3, 12, 20", "3, 12, 20"),                           # numbers without votes
    ("Jag röstar på 3 och 12.", "Jag röstar på 3 och 12."),
    ("Studieresa: 4", "Studieresa: 4"),                   # a name, not a number
    ("3: 4\n12 - 3", "12 - 3"),                           # one line clear, one not: nothing is counted
])
def test_an_ambiguous_answer_is_not_guessed(text, unclear):
    parsed = bl.parse_ballot_text(text)
    assert unclear in parsed.unclear
    c = bl.validate_ballot(parsed, TOPICS, 10)
    assert not c.ok
    assert any(f"Raden ”{unclear}” kunde vi inte läsa säkert" in p and "t.ex. ”3: 4”" in p for p in c.problems)


def test_lines_that_are_plainly_not_votes_are_left_out_and_reported():
    parsed = bl.parse_ballot_text("Här är mina 10 röster:\n3: 6\n12: 4\nRing mig på 08-123 45 67 om något är oklart")
    assert parsed.unclear == () and parsed.ignored == ("Här är mina 10 röster:",
                                                       "Ring mig på 08-123 45 67 om något är oklart")
    assert bl.validate_ballot(parsed, TOPICS, 10).votes == {3: 6, 12: 4}


def test_more_than_ten_votes_is_answered_politely():
    c = check("3: 6, 12: 6")
    assert c.problems == ("Vi fick 12 röster från dig, men var och en har tio.",)
    assert c.votes == {3: 6, 12: 6}  # what we understood, for the answer
    assert check("3 sju röster, 12 fyra röster").problems == ("Vi fick 11 röster från dig, men var och en har tio.",)
    for machine in ("Du har delat ut", "högst"):
        assert not any(machine in p for p in c.problems)


@pytest.mark.parametrize("text, expected", [
    ("3: 4, 99: 3", "Nummer 99 finns inte på listan, som går från 1 till 24."),
    ("3: 2,5", "Vid nummer 3 står ”2,5”. Skriv antalet röster som ett helt tal, t.ex. ”3: 2”."),
    ("3: 4, 3: 2", "Nummer 3 står mer än en gång. Skriv varje nummer en gång."),
    ("Hej, jag röstar på studieresan!", "Vi hittade inga röster i ditt svar."),
    ("3: 0", "Alla nummer har noll röster; dela ut minst en röst."),
])
def test_each_problem_says_what_to_fix(text, expected):
    assert expected in check(text).problems


def test_vote_count_reads_a_word_form_cell():
    assert [bl.vote_count(x) for x in ("4", " 4 röster", "fyra", "Fyra st", "1 röst", "x", "2,5", "-1", "")] == [
        4, 4, 4, 4, 1, None, None, None, None]


def test_number_text_writes_small_counts_in_words():
    assert [bl.number_text(n) for n in (1, 4, 10, 12)] == ["en", "fyra", "tio", "12"]


# ------------------------------------------------------------------ the coordinator's correction


def test_correction_names_the_member_or_answers_the_question_asked():
    c = bl.read_correction("Lena: 3:4, 12:3", MEMBERS, "lena")
    assert c.person == "lena" and not c.problem
    assert bl.validate_ballot(c.ballot, TOPICS, 10).votes == {3: 4, 12: 3}
    only_votes = bl.read_correction("3 fyra röster\n12 tre röster\n\nHälsningar\nBjörn", MEMBERS, "lena")
    assert only_votes.person == "lena" and bl.validate_ballot(only_votes.ballot, TOPICS, 10).votes == {3: 4, 12: 3}
    full = bl.read_correction("Hej!\n\nLena Dalerup: 3: 10\n\nDen 1 dec. 2023 skrev KCG:\n> Pia: 5: 5", MEMBERS, None)
    assert full.person == "lena" and bl.validate_ballot(full.ballot, TOPICS, 10).votes == {3: 10}


def test_correction_never_guesses_whose_ballot():
    two = bl.read_correction("Lisa: 3: 4", MEMBERS, None)
    assert two.person is None and "Flera medlemmar heter Lisa" in two.problem
    other = bl.read_correction("Pia: 3: 4", MEMBERS, "lena")
    assert other.person is None and other.problem.startswith("Frågan gällde Lena Dalerups röst, men du skrev Pia")
    nobody = bl.read_correction("3: 4", MEMBERS, None)
    assert nobody.person is None and "vems röst" in nobody.problem


def test_an_unclear_correction_is_not_counted():
    c = bl.read_correction("Lena: 3 och 12", MEMBERS, "lena")
    check_ = bl.validate_ballot(c.ballot, TOPICS, 10)
    assert not check_.ok and check_.votes == {}


def test_examples_use_numbers_on_the_list():
    assert bl.examples(range(1, 15)) == ("3: 4, 10: 3", "3 fyra röster")
    assert bl.examples([1, 2]) == ("2: 4", "2 fyra röster")
    assert bl.examples([7]) == ("7: 4", "7 fyra röster")


def test_a_problem_reads_about_the_member_for_the_coordinator():
    assert bl.about_member("Vi fick 12 röster från dig, men var och en har tio.", "Lena") == \
        "Vi fick 12 röster från Lena, men var och en har tio."
    assert bl.about_member("Raden ”3 4 5” kunde vi inte läsa säkert. Skriv numret och antalet röster, t.ex. ”3: 4”.",
                           "Lena") == "Raden ”3 4 5” kunde vi inte läsa säkert."
    assert bl.about_member("Vi hittade inga röster i ditt svar.", "Lena") == "Vi hittade inga röster i Lenas svar."
