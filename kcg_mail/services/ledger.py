"""The ledger: one module owns the key/value part of the state record.

Every small fact a run keeps between runs (the intake cursor, a version held for
approval, a late copy, the day a version was dated, the go-live day, …) is read and
written here. Each kind of record is declared once on the ``Ledger``: its key pattern
and how its typed value is stored (``ledger.late_copies.get(meeting_id, version)``,
``ledger.go_live.put(day)``); what is more than reading and writing one record (an
index kept beside the records, a list added to) is a named method. The stored keys are
the strings the services used before (``late:<meeting>:v<n>``,
``held-distribution:…``, …), so an existing ``state.sqlite`` keeps working; no other
module formats a key.

The ledger sits on the ``StateStore`` port's ``get``/``put``; the structured
records of the port (actions, messages, filings, decisions, attendance) stay
where they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar, TypeVarTuple, cast, overload

from kcg_mail.ports import StateStore

#: The state of a version held for approval.
HoldState = Literal["held", "approved", "released", "rejected"]
#: Why a version or message is held (the reason texts are in ``kcg_mail.services.held``).
HoldCause = Literal["sender", "filer", "member", "cap", "late", "safety"]
#: What a held note is about: a whole message (nothing read or filed yet), a version
#: kept in the held area (``kcg_mail.services.held``), a filed version whose
#: distribution waits (state records written before the held area existed), or a
#: guest's invitation waiting for the coordinator's yes (``kcg_mail.services.guests``).
NoteKind = Literal["message", "version", "distribution", "guest_invitation"]
#: A filed version's distribution decision, in records written before the held area.
DistributionHold = Literal["held", "approved", "rejected"]


@dataclass(frozen=True)
class HeldNote:
    """What the coordinator sees for a held message (``kcg pending``, the overview)."""

    kind: NoteKind
    meeting_id: str | None
    sender: str
    subject: str
    files: list[str]
    why: str
    version: int | None = None
    cause: HoldCause | None = None
    content_hash: str | None = None
    guest: str | None = None  # the guest's address (kind guest_invitation)

    @classmethod
    def from_json(cls, raw: str) -> HeldNote:
        d = json.loads(raw)
        return cls(kind=d.get("kind", "message"), meeting_id=d.get("meeting_id"), sender=d.get("sender", ""),
                   subject=d.get("subject", ""), files=list(d.get("files", [])), why=d.get("why", ""),
                   version=d.get("version"), cause=d.get("cause"), content_hash=d.get("content_hash"),
                   guest=d.get("guest"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class HeldVersion:
    """A version of a meeting's minutes kept out of the archive until approved.

    ``filename`` is the name of the file in the held area (by content hash);
    ``data_hash`` is the archive's content hash of the bytes that would be filed."""

    meeting_id: str
    content_hash: str
    kind: str
    filename: str
    source_msg_key: str
    cause: HoldCause
    why: str
    dated: str
    state: HoldState = "held"
    decisions: list[dict[str, str]] = field(default_factory=list)
    followups: list[list[str]] = field(default_factory=list)
    version: int | None = None  # the version number once filed

    @classmethod
    def from_json(cls, raw: str) -> HeldVersion:
        return cls(**json.loads(raw))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


T = TypeVar("T")
Ids = TypeVarTuple("Ids")


@dataclass(frozen=True)
class _Codec(Generic[T]):
    """How a value of type ``T`` is kept as the string of a state record: ``load`` reads
    a stored string, ``dump`` writes one, ``empty`` is what a record never written (or
    cleared to the empty string) reads as."""

    load: Callable[[str], T]
    dump: Callable[[T], str]
    empty: Callable[[], T]


def _none() -> None:
    return None


def _optional(load: Callable[[str], T], dump: Callable[[T], str]) -> _Codec[T | None]:
    """A plain value that reads as None when there is none (None is written as the empty string)."""
    return _Codec(load, lambda value: "" if value is None else dump(value), _none)


def _json(empty: Callable[[], T], *, sort_keys: bool = False) -> _Codec[T]:
    return _Codec(json.loads, lambda value: json.dumps(value, ensure_ascii=False, sort_keys=sort_keys), empty)


def _distribution_hold(raw: str) -> DistributionHold:
    return cast(DistributionHold, raw)


_TEXT = _optional(str, str)
_DAY = _optional(date.fromisoformat, date.isoformat)
_MOMENT = _optional(datetime.fromisoformat, datetime.isoformat)
_REFS = _Codec[set[str]](lambda raw: set(json.loads(raw)),
                         lambda refs: json.dumps(sorted(refs), ensure_ascii=False), set)


@dataclass(frozen=True)
class Record(Generic[*Ids, T]):
    """One kind of record in the state, on one ledger: read and written by its ids (the
    values that fill its key pattern; none for a single value like the go-live day)."""

    state: StateStore
    pattern: str
    codec: _Codec[T]

    def get(self, *ids: *Ids) -> T:
        raw = self.state.get(self.pattern.format(*ids))
        return self.codec.load(raw) if raw else self.codec.empty()

    def put(self, *ids_and_value: *tuple[*Ids, T]) -> None:
        *ids, value = ids_and_value
        self.state.put(self.pattern.format(*ids), self.codec.dump(value))

    def clear(self, *ids: *Ids) -> None:
        """Empty the record, so that it reads as never written (an empty one is left alone)."""
        key = self.pattern.format(*ids)
        if self.state.get(key):
            self.state.put(key, "")


class _Kind(Generic[*Ids, T]):
    """A kind of record declared once on the ``Ledger``: its key pattern and how its
    value is stored; read on a ledger, it is that ledger's ``Record``."""

    def __init__(self, pattern: str, codec: _Codec[T]) -> None:
        self.pattern = pattern
        self.codec = codec

    @overload
    def __get__(self, ledger: None, owner: type[Ledger]) -> _Kind[*Ids, T]: ...

    @overload
    def __get__(self, ledger: Ledger, owner: type[Ledger]) -> Record[*Ids, T]: ...

    def __get__(self, ledger: Ledger | None, owner: type[Ledger]) -> _Kind[*Ids, T] | Record[*Ids, T]:
        return self if ledger is None else Record(ledger.state, self.pattern, self.codec)


class Ledger:
    """Named, typed access to the key/value state (see the module docstring)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    # ------------------------------------------------------------ intake
    #: Where the last intake run left off in the mailbox (the mail adapter's cursor).
    intake_cursor = _Kind[str | None]("mail:cursor", _TEXT)

    # ------------------------------------------------------------ approvals of held messages
    #: The meeting (or ``planning:<year>``) a held message was approved for.
    approved_for = _Kind[str, str | None]("approved:{}", _TEXT)
    held_notes = _Kind[str, HeldNote | None]("held:{}", _optional(HeldNote.from_json, HeldNote.to_json))

    # ------------------------------------------------------------ held versions (the held area)
    _held = _Kind[str, str, HeldVersion | None]("held-version:{}:{}",
                                                 _optional(HeldVersion.from_json, HeldVersion.to_json))
    _held_index = _Kind[list[str]]("held-version:index", _json(list))

    def held_version(self, meeting_id: str, content_hash: str) -> HeldVersion | None:
        return self._held.get(meeting_id, content_hash)

    def put_held_version(self, held: HeldVersion) -> None:
        self._held.put(held.meeting_id, held.content_hash, held)
        index = self._held_index.get()
        ref = f"{held.meeting_id}:{held.content_hash}"
        if ref not in index:
            self._held_index.put(index + [ref])

    def held_versions(self) -> list[HeldVersion]:
        """Every version ever held, oldest first (any state)."""
        out = []
        for ref in self._held_index.get():
            mid, _, h = ref.rpartition(":")
            hv = self.held_version(mid, h)
            if hv is not None:
                out.append(hv)
        return out

    # ------------------------------------------------------------ filed versions
    #: A filed version's distribution decision (``DistributionHold``), from records written before the held area.
    distribution_holds = _Kind[str, int, DistributionHold | None]("held-distribution:{}:v{}",
                                                                   _optional(_distribution_hold, str))
    #: When a filed version is a late copy (never distributed by itself): its date.
    late_copies = _Kind[str, int, datetime | None]("late:{}:v{}", _MOMENT)
    #: The date of a filed version (earlier of its Date header and our receipt).
    filed_dates = _Kind[str, int, datetime | None]("filed-date:{}:v{}", _MOMENT)
    _distributed = _Kind[str, str, list[int]]("distributed:{}:{}", _json(list))

    def distributed_on(self, meeting_id: str, day: date) -> list[int]:
        """The versions of a meeting distributed on ``day``."""
        return [int(v) for v in self._distributed.get(meeting_id, day.isoformat())]

    def mark_distributed(self, meeting_id: str, day: date, version: int) -> None:
        done = self.distributed_on(meeting_id, day)
        if version not in done:
            self._distributed.put(meeting_id, day.isoformat(), done + [version])

    # ------------------------------------------------------------ the cycle
    #: The day recorded by the first run (``App.go_live``).
    go_live = _Kind[date | None]("go_live", _DAY)
    #: The snapshot of the last invitation sent (``InvitationSnapshot.to_dict``).
    invitations = _Kind[str, dict[str, Any] | None]("invitation:{}", _json(_none))

    # ------------------------------------------------------------ dates the coordinator decides
    _meeting_dates = _Kind[dict[str, dict[str, Any]]]("meeting_dates", _json(dict, sort_keys=True))
    _date_questions = _Kind[str, list[dict[str, str]]]("date_questions:{}", _json(list))
    _date_alerts = _Kind[str, str, date | None]("date_alert:{}:{}", _DAY)

    def meeting_dates(self) -> dict[str, dict[str, Any]]:
        """The coordinator's decisions about meetings' dates, times and places
        (meeting id -> ``DateDecision.to_dict``)."""
        return self._meeting_dates.get()

    def set_meeting_date(self, meeting_id: str, decision: dict[str, Any]) -> None:
        self._meeting_dates.put({**self.meeting_dates(), meeting_id: decision})

    def date_questions(self, meeting_id: str) -> list[dict[str, str]]:
        """The questions about a meeting's date sent to the coordinator: ``{"on": day, "what": question}``."""
        return self._date_questions.get(meeting_id)

    def add_date_question(self, meeting_id: str, what: str, day: date) -> None:
        asked = self.date_questions(meeting_id)
        entry = {"on": day.isoformat(), "what": what}
        if entry not in asked:
            self._date_questions.put(meeting_id, asked + [entry])

    def date_alerted(self, meeting_id: str, what: str) -> bool:
        """Was the alert channel told that the question ``what`` about the meeting went unanswered?"""
        return self._date_alerts.get(meeting_id, what) is not None

    def mark_date_alerted(self, meeting_id: str, what: str, day: date) -> None:
        self._date_alerts.put(meeting_id, what, day)

    # ------------------------------------------------------------ originals of rebuilt files
    #: Where the host's original of a rebuilt file is kept, and what the rebuild left out
    #: (by meeting and the rebuilt file's SHA-256).
    originals = _Kind[str, str, dict[str, Any] | None]("original:{}:{}", _json(_none))

    # ------------------------------------------------------------ guests
    #: The guests' own invitations of a meeting as last sent (address -> ``GuestCopy`` fields).
    guest_invitations = _Kind[str, dict[str, dict[str, Any]]]("guest_invitations:{}", _json(dict))
    _guest_approvals = _Kind[str, str, str | None]("guest_approval:{}:{}", _TEXT)

    def guest_approval(self, meeting_id: str, email: str) -> str | None:
        """The coordinator's answer about inviting a guest: ``approved``, ``rejected`` or None."""
        return self._guest_approvals.get(meeting_id, email.lower())

    def set_guest_approval(self, meeting_id: str, email: str, answer: Literal["approved", "rejected"]) -> None:
        self._guest_approvals.put(meeting_id, email.lower(), answer)

    #: The last simulated day ``kcg demo`` ran (a rerun resumes there).
    demo_day = _Kind[date | None]("demo:day", _DAY)

    # ------------------------------------------------------------ members added or removed by the coordinator
    #: The coordinator's request to add or remove a member (asked, done, rejected).
    member_requests = _Kind[str, dict[str, str] | None]("member_request:{}", _json(_none))

    # ------------------------------------------------------------ the planning round
    #: A value of the year's planning round (needs, ballot, groups, …); None when unset.
    planning_values = _Kind[int, str, Any]("planning:{}:{}", _json(_none, sort_keys=True))
    #: The workshop groups (names) of a physical meeting, from the planning round.
    workshop_groups = _Kind[str, list[list[str]] | None]("planning:groups:{}", _json(_none))

    # ------------------------------------------------------------ next year's plan
    #: How next year's plan is being adopted: the candidates read (from the January
    #: protocol or the coordinator's table) and the one adopted.
    plan_adoptions = _Kind[int, dict[str, Any]]("plan_adoption:{}", _json(dict, sort_keys=True))

    # ------------------------------------------------------------ between meetings
    #: The follow-up state of decision ``<meeting>/<n>``: ``state``, ``settled_in``, ``text``.
    decision_states = _Kind[str, dict[str, str] | None]("decision:{}", _json(_none))
    approved_groups = _Kind[list[dict[str, Any]]]("projects:approved", _json(list))
    declined_proposals = _Kind[set[str]]("projects:declined", _REFS)
    project_statuses = _Kind[str, list[dict[str, str]]]("project_status:{}", _json(list))

    # ------------------------------------------------------------ mails that wait (member caps)
    _waiting = _Kind[str, dict[str, Any] | None]("waiting:{}", _json(_none))
    _waiting_index = _Kind[list[str]]("waiting:index", _json(list))

    def waiting_mail(self, msg_key: str) -> dict[str, Any] | None:
        """A mail held back by the member caps (``kcg_mail.services.pacing``): the
        message itself, until when it waits, why, and whether it went out since."""
        return self._waiting.get(msg_key)

    def put_waiting_mail(self, msg_key: str, record: dict[str, Any]) -> None:
        # the index first: a record the index does not know would never be sent (a crash
        # between the two leaves an index entry without a record, which is skipped)
        index = self._waiting_index.get()
        if msg_key not in index:
            self._waiting_index.put(index + [msg_key])
        self._waiting.put(msg_key, record)

    def waiting_mails(self) -> list[dict[str, Any]]:
        """Every mail that waited, in the order they were held back (any state)."""
        out = []
        for key in self._waiting_index.get():
            rec = self.waiting_mail(key)
            if rec is not None:
                out.append(rec)
        return out

    # ------------------------------------------------------------ published things
    #: The calendar feed as last published (event id -> event dict).
    calendar_feed = _Kind[dict[str, Any] | None]("calendar_feed", _json(_none))
    #: The digest of an artifact as last published to the Prefect UI (by its key).
    artifact_digests = _Kind[str, str | None]("artifact:{}", _TEXT)

    # ------------------------------------------------------------ health
    #: A connection or alert channel that failed and has not worked since: ``what``, ``detail``, ``since``.
    health_problems = _Kind[str, dict[str, str] | None]("health:{}", _json(_none))
