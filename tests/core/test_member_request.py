"""The coordinator's mail asking for a member to be added or removed, read in the pure core."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from kcg_mail.core import inbound
from kcg_mail.core.config_model import Person
from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.member_request import city_of, find_member, read_request
from kcg_mail.core.inbound.outcome import Outcome

pytestmark = pytest.mark.core

QUOTED = "\n\nDen 1 december 2023 skrev KCG <kcg@example.se>:\n> Ny medlem: Fel Person, fel@example.se, Fel City\n"


def test_a_new_member_on_one_line_in_the_body():
    r = read_request("Medlem", "Hej!\nNy medlem: Anna Andersson, anna@x.se, Västerås City\n\nMvh\nBjörn")
    assert r is not None and r.clear and r.op == "add"
    assert (r.name, r.email, r.organisation, r.city) == ("Anna Andersson", "anna@x.se", "Västerås City", "Västerås")


def test_a_new_member_in_the_subject_with_the_city_written_out():
    r = read_request("Ny medlem: Per Persson, Per.Persson@Umea.se, Umeå Centrum AB, Umeå", "")
    assert r is not None and r.clear
    assert (r.name, r.email, r.organisation, r.city) == ("Per Persson", "per.persson@umea.se", "Umeå Centrum AB", "Umeå")


def test_the_subject_says_new_member_and_the_body_has_the_details():
    r = read_request("Ny medlem", "Lisa Berg <lisa@gavle.se>, Gävle City\n\n-- \nBjörn")
    assert r is not None and r.clear
    assert (r.name, r.email, r.organisation, r.city) == ("Lisa Berg", "lisa@gavle.se", "Gävle City", "Gävle")


def test_the_quoted_text_and_signature_are_not_read():
    assert read_request("SV: något", "Tack!" + QUOTED) is None
    assert read_request("Hej", "Vi ses på mötet.\nMvh\nNy medlem: X, x@y.se") is None


@pytest.mark.parametrize("body,missing", [
    ("Ny medlem: Anna Andersson, Västerås City", "ingen e-postadress"),
    ("Ny medlem: anna@x.se", "inget namn"),
    ("Ny medlem: Anna Andersson, anna@x.se, bertil@x.se", "mer än en e-postadress"),
])
def test_an_unclear_new_member_says_what_is_missing(body, missing):
    r = read_request("Medlem", body)
    assert r is not None and not r.clear and missing in r.problem and "Ny medlem:" in r.problem


def test_a_removal_by_name_or_address():
    r = read_request("Ta bort medlem: Anna Andersson", "")
    assert r is not None and r.clear and (r.op, r.who) == ("remove", "Anna Andersson")
    r = read_request("Hej", "Ta bort medlem: <anna@x.se>.")
    assert r is not None and (r.op, r.who) == ("remove", "anna@x.se")
    r = read_request("Ta bort medlem", "")
    assert r is not None and not r.clear


def test_ordinary_mail_is_no_request():
    assert read_request("SV: Protokoll [KCG-2023-02]", "Här kommer protokollet.") is None
    assert read_request("Medlemmar", "Hur många nya medlemmar har vi?") is None


def test_city_of_an_organisation():
    assert city_of("Västerås City") == "Västerås"
    assert city_of("Citysamverkan Örebro") == ""
    assert city_of("Norrköping Citysamverkan") == "Norrköping"


def test_find_member_by_address_name_or_organisation():
    people = [Person(id="a", name="Anna Andersson", organisation="Västerås City", email="anna@x.se"),
              Person(id="b", name="Anna Berg", organisation="Umeå City", email="berg@x.se"),
              Person(id="c", name="Carl Ek", organisation="Ek AB", email="c@x.se", active=False)]
    assert [p.id for p in find_member("ANNA@x.se", people)] == ["a"]
    assert [p.id for p in find_member("anna berg", people)] == ["b"]
    assert [p.id for p in find_member("Umeå City", people)] == ["b"]
    assert [p.id for p in find_member("Anna", people)] == ["a", "b"]
    assert find_member("Carl Ek", people) == []  # already removed


def test_a_greeting_before_the_details_is_skipped():
    r = read_request("Ny medlem", "Hej Björn!\n\nMaria Lund, maria@kalmar.se, Kalmar City\n")
    assert r is not None and r.clear and (r.name, r.email, r.city) == ("Maria Lund", "maria@kalmar.se", "Kalmar")


# ------------------------------------------------------------------ classify and the rule chain

OURS = "mx.kcg.example.se"
COORD = "bjorn@kcg.example.se"
MAILBOX = "kcg@kcg.example.se"


def _ctx() -> inbound.MatchContext:
    return inbound.MatchContext(meetings=(), sent_ids={}, members=frozenset({COORD, "lisa@x.se"}),
                                own_addresses=frozenset({MAILBOX}), today=date(2023, 2, 7),
                                trusted_authserv_ids=frozenset({OURS}), coordinator=COORD)


def _mail(sender: str, subject: str, body: str, *, authenticated: bool) -> inbound.ParsedMail:
    m = EmailMessage(policy=SMTP)
    m["From"], m["To"], m["Subject"], m["Message-ID"] = sender, MAILBOX, subject, "<r1@kcg.example.se>"
    m.set_content(body)
    raw = m.as_bytes()
    if authenticated:
        raw = f"Authentication-Results: {OURS}; dmarc=pass header.from=kcg.example.se\r\n".encode() + raw
    return inbound.parse(raw)


def test_the_coordinators_own_request_is_classified_and_passes_his_chain():
    mail = _mail(f"Björn <{COORD}>", "Ny medlem: Anna A, anna@x.se, Västerås City", "", authenticated=True)
    v = inbound.classify(mail, _ctx())
    assert v.kind == Outcome.COORDINATOR_REQUEST
    assert rules.decide(mail, v, _ctx(), has_documents=False).action == "accept"


def test_a_request_forged_in_his_name_or_from_a_member_is_never_acted_on():
    forged = _mail(f"Björn <{COORD}>", "Ny medlem: Eva E, eva@x.se", "", authenticated=False)
    v = inbound.classify(forged, _ctx())
    assert v.kind == Outcome.COORDINATOR_REQUEST
    assert rules.decide(forged, v, _ctx(), has_documents=False).action == "discard"
    member = _mail("Lisa <lisa@x.se>", "Ny medlem: Eva E, eva@x.se", "", authenticated=True)
    assert inbound.classify(member, _ctx()).kind != Outcome.COORDINATOR_REQUEST
