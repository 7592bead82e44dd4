"""The coordinator's yes/no, read from what he wrote above the quoted question."""

from __future__ import annotations

import pytest

from kcg_mail.core.inbound.answer import own_words, read_yes_no

QUESTION = "\n\nDen 1 december 2023 kl. 07:00 skrev KCG – Svenska Stadskärnor <kcg@example.se>:\n> Svara ja eller nej.\n"
OUTLOOK = "\n\nFrån: KCG – Svenska Stadskärnor <kcg@example.se>\nSkickat: den 1 december 2023 07:00\nÄmne: ...\n\nSvara ja."


@pytest.mark.parametrize("body,choice", [
    ("Ja", "yes"), ("ja tack!", "yes"), ("JA" + QUESTION, "yes"), ("Godkänt." + OUTLOOK, "yes"),
    ("Hej!\n\nJa, bjud in dem.\n\nHälsningar\nBjörn", "yes"), ("Ok, skicka ut", "yes"), ("Ja, varför inte", "yes"),
    ("Nej", "no"), ("nej tack" + QUESTION, "no"), ("Avvisa", "no"), ("Skicka inte, jag återkommer", "no"),
    ("Vänta lite med den", "no"), ("Hej\nNej.\n--\nBjörn Bergman", "no"),
])
def test_clear_answers(body, choice):
    a = read_yes_no(body)
    assert a.clear and a.choice == choice, a


@pytest.mark.parametrize("body", [
    "", "Hej!", "Ja eller nej, vet inte", "Kan du ringa mig?", "> Svara ja eller nej.", QUESTION, OUTLOOK,
    "Vi tar det på mötet.",
])
def test_unclear_answers_are_never_guessed(body):
    assert read_yes_no(body).choice is None


def test_only_the_repliers_own_words_are_read():
    assert own_words("Nej\n" + QUESTION) == "Nej"
    assert "Svara ja" not in own_words("Nej" + OUTLOOK)
