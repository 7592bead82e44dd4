"""Every incoming message ends with one :class:`Outcome`: what it was, or what the
intake did with it. Each outcome carries the mailbox folder the message is moved to
and the Swedish word the coordinator reads in the run's name and report ("intag: 2
protokoll, 1 kalendersvar"). Pure.

The kinds ``classify`` gives (``minutes``, ``calendar_response``, ``planning`` ...)
are outcomes too: a message whose kind needs no handling (``automatic``, ``own``)
ends with its kind. The values are the strings kept in the state record, so they
never change.
"""

from __future__ import annotations

from enum import StrEnum


class Folder(StrEnum):
    """Where a handled message goes: out of the inbox, to be read again by nobody
    (``processed``) or by the coordinator (``quarantine``)."""

    PROCESSED = "processed"
    QUARANTINE = "quarantine"


_P, _Q = Folder.PROCESSED, Folder.QUARANTINE


class Outcome(StrEnum):
    folder: Folder
    label: str

    def __new__(cls, value: str, folder: Folder, label: str) -> Outcome:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.folder = folder
        obj.label = label
        return obj

    # kinds of mail (``classify``, the routing of ``kcg_mail.core.inbound.route``)
    MINUTES = "minutes", _P, "protokoll"
    NO_MINUTES = "no_minutes", _Q, "utan protokoll"
    CALENDAR_RESPONSE = "calendar_response", _P, "kalendersvar"
    AUTOMATIC = "automatic", _P, "autosvar"
    NOT_ALLOWED = "not_allowed", _Q, "ej behöriga"
    UNMATCHED = "unmatched", _Q, "okända"
    OWN = "own", _P, "egna utskick"
    #: a reply to the planning round's mails; handled it becomes one of the PLANNING_* below
    PLANNING = "planning", _Q, "svar i planeringsrundan"
    PROJECT_STATUS = "project_status", _P, "projektstatus"

    # what the handling of minutes ends in
    DUPLICATE = "duplicate", _P, "dubbletter"
    LATE_COPY = "late_copy", _P, "sena kopior"
    BAD_MINUTES = "bad_minutes", _Q, "felaktiga"
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
    return known.folder if known is not None else Folder.QUARANTINE


def label_of(value: str) -> str:
    """The Swedish word for a recorded outcome; an unknown one is shown as it is."""
    known = Outcome.of(value)
    return known.label if known is not None else value


#: the kinds ``classify`` gives when it reads a mail on its own (no reply to the round or a group)
KINDS: tuple[Outcome, ...] = (
    Outcome.MINUTES, Outcome.NO_MINUTES, Outcome.CALENDAR_RESPONSE, Outcome.AUTOMATIC,
    Outcome.NOT_ALLOWED, Outcome.UNMATCHED, Outcome.OWN,
)
