"""Every incoming message ends with one :class:`Outcome`: what it was, or what the
intake did with it. Each outcome carries the Swedish word the coordinator reads in the
run's name and report ("intag: 2 protokoll, 1 kalendersvar") and the mailbox folder the
message is moved to (``kcg_mail.ports.Folder``): ``processed`` for the outcomes whose
handling is over (``PROCESSED``), the quarantine for all others. The ones the
coordinator should look at are listed in the overview with why they are there
(``NEEDS_A_LOOK``). Pure.

The kinds ``classify`` gives (``minutes``, ``calendar_response``, ``planning`` ...)
are outcomes too: a message whose kind needs no handling (``automatic``, ``own``)
ends with its kind. The values are the strings kept in the state record, so they
never change.
"""

from __future__ import annotations

from enum import StrEnum

from kcg_mail.ports import Folder


class Outcome(StrEnum):
    label: str

    def __new__(cls, value: str, label: str) -> Outcome:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj

    # kinds of mail (``classify``, the routing of ``kcg_mail.core.inbound.route``)
    MINUTES = "minutes", "protokoll"
    NO_MINUTES = "no_minutes", "utan protokoll"
    CALENDAR_RESPONSE = "calendar_response", "kalendersvar"
    AUTOMATIC = "automatic", "autosvar"
    NOT_ALLOWED = "not_allowed", "ej behöriga"
    UNMATCHED = "unmatched", "okända"
    OWN = "own", "egna utskick"
    #: a reply to the planning round's mails; handled it becomes one of the PLANNING_* below
    PLANNING = "planning", "svar i planeringsrundan"
    PROJECT_STATUS = "project_status", "projektstatus"
    #: the coordinator's answer to one of our questions (a held reply, a guest's invitation)
    COORDINATOR_ANSWER = "coordinator_answer", "samordnarens svar"
    COORDINATOR_ANSWER_UNCLEAR = "coordinator_answer_unclear", "oklara svar från samordnaren"
    #: the coordinator asks, in a mail of his own, for a member to be added or removed
    COORDINATOR_REQUEST = "coordinator_request", "besked från samordnaren"

    # what the handling of minutes ends in
    DUPLICATE = "duplicate", "dubbletter"
    LATE_COPY = "late_copy", "sena kopior"
    BAD_MINUTES = "bad_minutes", "felaktiga"
    TOO_LARGE = "too_large", "för stora"

    # the rule chain and the coordinator
    HELD = "held", "väntar på godkännande"
    DISCARDED = "discarded", "ej godtagna"
    #: released by the coordinator; handled again by the next intake run
    APPROVED = "approved", "godkända"
    #: read again after it was handled (the record says ``done``); moves by its recorded outcome
    ALREADY_HANDLED = "already_handled", "redan hanterade"

    # the planning round: answered either way
    PLANNING_NEEDS = "planning_needs", "förslag"
    PLANNING_BALLOT = "planning_ballot", "röster"
    PLANNING_BALLOT_LATE = "planning_ballot_late", "sena röster"
    PLANNING_NEEDS_INVALID = "planning_needs_invalid", "oläsliga förslag"
    PLANNING_BALLOT_INVALID = "planning_ballot_invalid", "ogiltiga röster"

    @property
    def folder(self) -> Folder:
        """``processed`` when the handling is over (``PROCESSED``), else ``quarantine``."""
        return "processed" if self in PROCESSED else "quarantine"

    @classmethod
    def of(cls, value: str) -> Outcome | None:
        """The outcome named ``value`` (as kept in the state record), or None."""
        return next((o for o in cls if o.value == value), None)


#: the outcomes whose handling is over: the message leaves the inbox for ``processed`` and is
#: read again by nobody. Every other outcome, and one this version does not know, keeps the
#: message in the quarantine, where the coordinator looks: an outcome is never lost by default.
PROCESSED: frozenset[Outcome] = frozenset({
    Outcome.MINUTES, Outcome.CALENDAR_RESPONSE, Outcome.AUTOMATIC, Outcome.OWN, Outcome.PROJECT_STATUS,
    Outcome.COORDINATOR_ANSWER, Outcome.COORDINATOR_ANSWER_UNCLEAR, Outcome.COORDINATOR_REQUEST,
    Outcome.DUPLICATE, Outcome.LATE_COPY, Outcome.PLANNING_NEEDS, Outcome.PLANNING_BALLOT,
    Outcome.PLANNING_BALLOT_LATE, Outcome.PLANNING_NEEDS_INVALID, Outcome.PLANNING_BALLOT_INVALID,
})

#: quarantined outcomes the overview lists for the coordinator, each with why the message is
#: there (held ones are listed on their own)
NEEDS_A_LOOK: dict[Outcome, str] = {
    Outcome.NO_MINUTES: "svaret hade inget protokoll bifogat",
    Outcome.NOT_ALLOWED: "avsändaren är inte värd för mötet och får inte lämna protokoll",
    Outcome.UNMATCHED: "det gick inte att koppla till något möte",
    Outcome.BAD_MINUTES: "bilagan gick inte att läsa som ett protokoll",
}


def folder_of(value: str) -> Folder:
    """The folder of a recorded outcome; an unknown one is quarantined, never lost."""
    known = Outcome.of(value)
    return known.folder if known is not None else "quarantine"


def label_of(value: str) -> str:
    """The Swedish word for a recorded outcome; an unknown one is shown as it is."""
    known = Outcome.of(value)
    return known.label if known is not None else value


def why_of(value: str) -> str:
    """Why a recorded outcome is in the quarantine, for the coordinator."""
    known = Outcome.of(value)
    why = NEEDS_A_LOOK.get(known) if known is not None else None
    return why or "det behöver granskas"


#: the kinds ``classify`` gives when it reads a mail on its own (no reply to the round or a group)
KINDS: tuple[Outcome, ...] = (
    Outcome.MINUTES, Outcome.NO_MINUTES, Outcome.CALENDAR_RESPONSE, Outcome.AUTOMATIC,
    Outcome.NOT_ALLOWED, Outcome.UNMATCHED, Outcome.OWN,
)
