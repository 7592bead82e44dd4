"""Every incoming message ends with one :class:`Outcome`: what it was, or what the
intake did with it. Each outcome carries the mailbox folder the message is moved to
(``kcg_mail.ports.Folder``), the Swedish word the coordinator reads in the run's name
and report ("intag: 2 protokoll, 1 kalendersvar") and, for a message the coordinator
should look at in the quarantine, why it is there (the overview's list). Pure.

The kinds ``classify`` gives (``minutes``, ``calendar_response``, ``planning`` ...)
are outcomes too: a message whose kind needs no handling (``automatic``, ``own``)
ends with its kind. The values are the strings kept in the state record, so they
never change.
"""

from __future__ import annotations

from enum import StrEnum

from kcg_mail.ports import Folder

#: where a handled message goes: out of the inbox, read again by nobody, or by the coordinator
_P: Folder = "processed"
_Q: Folder = "quarantine"


class Outcome(StrEnum):
    folder: Folder
    label: str
    #: for the overview's quarantine list: why the message is there ("" when not listed)
    why: str

    def __new__(cls, value: str, folder: Folder, label: str, why: str = "") -> Outcome:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.folder = folder
        obj.label = label
        obj.why = why
        return obj

    # kinds of mail (``classify``, the routing of ``kcg_mail.core.inbound.route``)
    MINUTES = "minutes", _P, "protokoll"
    NO_MINUTES = "no_minutes", _Q, "utan protokoll", "svaret hade inget protokoll bifogat"
    CALENDAR_RESPONSE = "calendar_response", _P, "kalendersvar"
    AUTOMATIC = "automatic", _P, "autosvar"
    NOT_ALLOWED = "not_allowed", _Q, "ej behöriga", "avsändaren är inte värd för mötet och får inte lämna protokoll"
    UNMATCHED = "unmatched", _Q, "okända", "det gick inte att koppla till något möte"
    OWN = "own", _P, "egna utskick"
    #: a reply to the planning round's mails; handled it becomes one of the PLANNING_* below
    PLANNING = "planning", _Q, "svar i planeringsrundan"
    PROJECT_STATUS = "project_status", _P, "projektstatus"
    #: the coordinator's answer to one of our questions (a held reply, a guest's invitation)
    COORDINATOR_ANSWER = "coordinator_answer", _P, "samordnarens svar"
    COORDINATOR_ANSWER_UNCLEAR = "coordinator_answer_unclear", _P, "oklara svar från samordnaren"
    #: the coordinator asks, in a mail of his own, for a member to be added or removed
    COORDINATOR_REQUEST = "coordinator_request", _P, "besked från samordnaren"

    # what the handling of minutes ends in
    DUPLICATE = "duplicate", _P, "dubbletter"
    LATE_COPY = "late_copy", _P, "sena kopior"
    BAD_MINUTES = "bad_minutes", _Q, "felaktiga", "bilagan gick inte att läsa som ett protokoll"
    TOO_LARGE = "too_large", _Q, "för stora"

    # the rule chain and the coordinator
    HELD = "held", _Q, "väntar på godkännande"
    DISCARDED = "discarded", _Q, "ej godtagna"
    #: released by the coordinator; handled again by the next intake run
    APPROVED = "approved", _Q, "godkända"
    #: read again after it was handled (the record says ``done``); moves by its recorded outcome
    ALREADY_HANDLED = "already_handled", _Q, "redan hanterade"

    # the planning round: answered either way
    PLANNING_NEEDS = "planning_needs", _P, "förslag"
    PLANNING_BALLOT = "planning_ballot", _P, "röster"
    PLANNING_BALLOT_LATE = "planning_ballot_late", _P, "sena röster"
    PLANNING_NEEDS_INVALID = "planning_needs_invalid", _P, "oläsliga förslag"
    PLANNING_BALLOT_INVALID = "planning_ballot_invalid", _P, "ogiltiga röster"

    @classmethod
    def of(cls, value: str) -> Outcome | None:
        """The outcome named ``value`` (as kept in the state record), or None."""
        return next((o for o in cls if o.value == value), None)


def folder_of(value: str) -> Folder:
    """The folder of a recorded outcome; an unknown one is quarantined, never lost."""
    known = Outcome.of(value)
    return known.folder if known is not None else _Q


def label_of(value: str) -> str:
    """The Swedish word for a recorded outcome; an unknown one is shown as it is."""
    known = Outcome.of(value)
    return known.label if known is not None else value


def why_of(value: str) -> str:
    """Why a recorded outcome is in the quarantine, for the coordinator."""
    known = Outcome.of(value)
    return known.why if known is not None and known.why else "det behöver granskas"


#: quarantined outcomes the overview lists for the coordinator (held ones are listed on their own)
NEEDS_A_LOOK: tuple[Outcome, ...] = tuple(o for o in Outcome if o.why)

#: the kinds ``classify`` gives when it reads a mail on its own (no reply to the round or a group)
KINDS: tuple[Outcome, ...] = (
    Outcome.MINUTES, Outcome.NO_MINUTES, Outcome.CALENDAR_RESPONSE, Outcome.AUTOMATIC,
    Outcome.NOT_ALLOWED, Outcome.UNMATCHED, Outcome.OWN,
)
