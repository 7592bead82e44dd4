"""One answer to "what is this mail?" (``inbound.classify``), one table of rule
chains per kind (``rules.GATES``), and one ``Outcome`` that carries its folder and
its Swedish word. Pure."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from kcg_mail.core.inbound import rules
from kcg_mail.core.inbound.message import CalendarReply, ParsedMail
from kcg_mail.core.inbound.outcome import KINDS, NEEDS_A_LOOK, Outcome, folder_of, label_of, why_of
from kcg_mail.core.inbound.verdict import MatchContext, MeetingRef, RoundReply, StatusRequestRef, classify
from kcg_mail.ports import Attachment

NETWORK = "kcg@svenskastadskarnor.example.se"
MEMBER = "daniel@gavle.example.se"
STRANGER = "someone@elsewhere.example.com"
NEEDS_ID = "<plan-2024-needs-daniel@svenskastadskarnor.example.se>"
BALLOT_ID = "<plan-2024-ballot-daniel@svenskastadskarnor.example.se>"
STATUS_ID = "<status-trygghet-2023-05@svenskastadskarnor.example.se>"
INVITE_ID = "<kcg-2023-05-invitation@svenskastadskarnor.example.se>"

CTX = MatchContext(
    meetings=(MeetingRef("2023-05", "KCG-2023-05", date(2023, 5, 8), frozenset({MEMBER}), "uid-2023-05"),),
    sent_ids={INVITE_ID: "2023-05", STATUS_ID: "2023-05"},
    members=frozenset({MEMBER}),
    own_addresses=frozenset({NETWORK}),
    today=date(2023, 5, 2),
    trusted_authserv_ids=frozenset({"mx.svenskastadskarnor.example.se"}),
    round_ids={NEEDS_ID: RoundReply(2024, "needs"), BALLOT_ID: RoundReply(2024, "ballot")},
    status_request_ids={STATUS_ID: StatusRequestRef("2023-05:project_status_request:trygghet:x", "2023-05")},
)


def _passed(domain: str) -> tuple[str, ...]:
    """What our own receiving server writes for a mail whose From domain passed DMARC."""
    return (f"mx.svenskastadskarnor.example.se (OpenDMARC); dmarc=pass header.from={domain}",)


def _mail(**kw: object) -> ParsedMail:
    base: dict[str, object] = dict(
        message_id="<m@gavle.example.se>", in_reply_to=None, references=(), subject="SV: Hej", sender=MEMBER,
        sender_name="Daniel", date=datetime(2023, 5, 2, tzinfo=UTC), auto_reason=None, text="", attachments=(),
        calendar_reply=None, from_addresses=(MEMBER,), auth_results=_passed("gavle.example.se"),
    )
    base.update(kw)
    return ParsedMail(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the outcome


#: the tables the enum replaced (intake's folders, the flow's labels), kept here word for word
OLD_PROCESSED = {"minutes", "duplicate", "calendar_response", "automatic", "own", "late_copy", "planning_needs",
                 "planning_ballot", "planning_ballot_late", "planning_needs_invalid", "planning_ballot_invalid",
                 "project_status"}
OLD_LABELS = {"minutes": "protokoll", "calendar_response": "kalendersvar", "automatic": "autosvar",
              "bad_minutes": "felaktiga", "no_minutes": "utan protokoll", "not_allowed": "ej behöriga",
              "unmatched": "okända", "duplicate": "dubbletter", "held": "väntar på godkännande",
              "discarded": "ej godtagna", "late_copy": "sena kopior", "too_large": "för stora",
              "planning_needs": "förslag", "planning_ballot": "röster", "planning_ballot_late": "sena röster",
              "planning_needs_invalid": "oläsliga förslag", "planning_ballot_invalid": "ogiltiga röster",
              "approved": "godkända"}


def test_outcome_keeps_the_folders_and_words_of_the_tables_it_replaced():
    # (the coordinator's answers came after the tables: they are handled and leave the inbox)
    assert {o.value for o in Outcome if o.folder == "processed"} == OLD_PROCESSED | {
        "coordinator_answer", "coordinator_answer_unclear", "coordinator_request"}
    for value, label in OLD_LABELS.items():
        assert Outcome(value).label == label
    # every outcome has its own word, so a run's name never says the same word for two outcomes
    labels = [o.label for o in Outcome]
    assert len(set(labels)) == len(labels) and all(labels)


def test_outcome_is_the_string_kept_in_the_state_record():
    assert Outcome.HELD == "held" and f"{Outcome.PLANNING_BALLOT}" == "planning_ballot"
    assert Outcome.of("late_copy") is Outcome.LATE_COPY and Outcome.of("no_such_outcome") is None


def test_unknown_recorded_outcome_is_quarantined_and_shown_as_it_is():
    assert folder_of("something_from_an_older_version") == "quarantine"
    assert label_of("something_from_an_older_version") == "something_from_an_older_version"
    assert why_of("something_from_an_older_version") == "det behöver granskas"
    assert folder_of("minutes") == "processed" and label_of("minutes") == "protokoll"


#: the overview's quarantine list before the enum (services/status.py and core/overview.py), word for word
OLD_QUARANTINE_REASONS = {
    "unmatched": "det gick inte att koppla till något möte",
    "not_allowed": "avsändaren är inte värd för mötet och får inte lämna protokoll",
    "bad_minutes": "bilagan gick inte att läsa som ett protokoll",
    "no_minutes": "svaret hade inget protokoll bifogat",
}


def test_the_overview_lists_the_same_quarantined_outcomes_with_the_same_reasons():
    assert {o.value: why for o, why in NEEDS_A_LOOK.items()} == OLD_QUARANTINE_REASONS
    assert all(o.folder == "quarantine" for o in NEEDS_A_LOOK)


# ------------------------------------------------------------------ what is this mail?


def test_reply_to_a_planning_mail_is_the_round_and_names_its_step():
    v = classify(_mail(in_reply_to=BALLOT_ID, references=(NEEDS_ID, BALLOT_ID)), CTX)
    assert (v.kind, v.round_reply) == (Outcome.PLANNING, RoundReply(2024, "ballot"))
    # Message-IDs compare as the RFC says they are written, whatever the client did to case and brackets
    v = classify(_mail(in_reply_to=NEEDS_ID.strip("<>").upper()), CTX)
    assert v.round_reply == RoundReply(2024, "needs")


def test_planning_token_in_subject_only_for_our_network():
    v = classify(_mail(subject="SV: [KCG-PLAN-2024] Förslag"), CTX)
    assert (v.kind, v.round_reply) == (Outcome.PLANNING, RoundReply(2024, ""))
    assert classify(_mail(subject="SV: [ABC-PLAN-2024] Förslag"), CTX).kind == Outcome.UNMATCHED


def test_automatic_reply_to_a_planning_mail_is_automatic():
    v = classify(_mail(in_reply_to=NEEDS_ID, subject="Frånvaro: [KCG-PLAN-2024]", auto_reason="out-of-office"), CTX)
    assert v.kind == Outcome.AUTOMATIC and v.round_reply is None


def test_reply_to_a_status_request_is_the_project_group_not_a_meeting():
    v = classify(_mail(in_reply_to=STATUS_ID, text="Vi har haft två möten."), CTX)
    assert v.kind == Outcome.PROJECT_STATUS and v.meeting_id == "2023-05"
    assert v.status_request == StatusRequestRef("2023-05:project_status_request:trygghet:x", "2023-05")
    # a reply to the meeting's invitation stays a mail about the meeting
    assert classify(_mail(in_reply_to=INVITE_ID), CTX).kind == Outcome.NO_MINUTES


def test_classify_alone_gives_only_its_kinds():
    docx = Attachment("p.docx", "application/octet-stream", b"PK\x03\x04word/")
    mails = [_mail(sender=NETWORK, from_addresses=(NETWORK,)), _mail(auto_reason="x"), _mail(),
             _mail(in_reply_to=INVITE_ID), _mail(in_reply_to=INVITE_ID, attachments=(docx,)),
             _mail(in_reply_to=INVITE_ID, sender=STRANGER, from_addresses=(STRANGER,)),
             _mail(calendar_reply=CalendarReply("uid-2023-05", MEMBER, "ACCEPTED"))]
    assert {classify(m, CTX).kind for m in mails} == set(KINDS)


# ------------------------------------------------------------------ which chain


@pytest.mark.parametrize(("kind", "chain"), [
    (Outcome.MINUTES, rules.FILING_CHAIN), (Outcome.NOT_ALLOWED, rules.FILING_CHAIN),
    (Outcome.NO_MINUTES, rules.FILING_CHAIN), (Outcome.CALENDAR_RESPONSE, rules.CALENDAR_CHAIN),
    (Outcome.PLANNING, rules.MEMBER_ANSWER_CHAIN), (Outcome.PROJECT_STATUS, rules.MEMBER_ANSWER_CHAIN),
])
def test_each_kind_we_act_on_has_its_chain(kind, chain):
    assert rules.GATES[kind].chain is chain


def test_kinds_only_recorded_pass_no_chain():
    mails = {Outcome.AUTOMATIC: _mail(auto_reason="x"), Outcome.OWN: _mail(sender=NETWORK, from_addresses=(NETWORK,)),
             Outcome.UNMATCHED: _mail(sender=STRANGER, from_addresses=(STRANGER,))}
    for kind, mail in mails.items():
        v = classify(mail, CTX)
        assert v.kind == kind and kind not in rules.GATES
        assert rules.decide(mail, v, CTX, has_documents=False) == rules.Decision("accept", "", "nothing to act on")


def test_round_reply_from_a_stranger_is_held_for_the_coordinator():
    mail = _mail(in_reply_to=NEEDS_ID, sender=STRANGER, from_addresses=(STRANGER,),
                 auth_results=_passed("elsewhere.example.com"))
    d = rules.decide(mail, classify(mail, CTX), CTX, has_documents=False)
    assert (d.action, d.rule) == ("hold", "member-sender")
    # the member's own answer, authenticated by our server, is accepted
    mail = _mail(in_reply_to=NEEDS_ID)
    assert rules.decide(mail, classify(mail, CTX), CTX, has_documents=False).action == "accept"
    # and one our server did not authenticate is held, whoever it claims to be from
    mail = _mail(in_reply_to=NEEDS_ID, auth_results=())
    assert rules.decide(mail, classify(mail, CTX), CTX, has_documents=False).rule == "authenticated"
