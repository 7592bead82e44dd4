"""The ledger: one module owns the key/value part of the state record.

Every small fact a run keeps between runs (the intake cursor, a version held for
approval, a late copy, the day a version was dated, the go-live day, …) is read and
written here through a named, typed method. The stored keys are the strings the
services used before (``late:<meeting>:v<n>``, ``held-distribution:…``, …), so an
existing ``state.sqlite`` keeps working; no other module formats a key.

The ledger sits on the ``StateStore`` port's ``get``/``put``; the structured
records of the port (actions, messages, filings, decisions, attendance) stay
where they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

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


@dataclass(frozen=True)
class _Record(Generic[T]):
    """One kind of JSON record in the state: its key (a pattern filled with the record's ids)
    and, by its type parameter, what it holds; the named getter and setter share both."""

    pattern: str

    def key(self, *ids: object) -> str:
        return self.pattern.format(*ids)


_INVITATION = _Record[dict[str, Any]]("invitation:{}")
_ORIGINAL = _Record[dict[str, Any]]("original:{}:{}")
_MEMBER_REQUEST = _Record[dict[str, str]]("member_request:{}")
_WORKSHOP_GROUPS = _Record[list[list[str]]]("planning:groups:{}")
_DECISION = _Record[dict[str, str]]("decision:{}")
_WAITING = _Record[dict[str, Any]]("waiting:{}")
_CALENDAR_FEED = _Record[dict[str, Any]]("calendar_feed")
_HEALTH = _Record[dict[str, str]]("health:{}")


class Ledger:
    """Named, typed access to the key/value state (see the module docstring)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    # ------------------------------------------------------------ helpers
    def _json(self, key: str) -> Any:
        raw = self.state.get(key)
        return json.loads(raw) if raw else None

    def _put_json(self, key: str, value: Any, *, sort_keys: bool = False) -> None:
        self.state.put(key, json.dumps(value, ensure_ascii=False, sort_keys=sort_keys))

    def _get(self, record: _Record[T], *ids: object) -> T | None:
        value: T | None = self._json(record.key(*ids))
        return value

    def _set(self, record: _Record[T], value: T, *ids: object) -> None:
        self._put_json(record.key(*ids), value)

    def _day(self, key: str) -> date | None:
        raw = self.state.get(key)
        return date.fromisoformat(raw) if raw else None

    def _moment(self, key: str) -> datetime | None:
        raw = self.state.get(key)
        return datetime.fromisoformat(raw) if raw else None

    def _put_iso(self, key: str, value: date) -> None:
        """A day or a moment (``datetime`` is a ``date``), in ISO 8601."""
        self.state.put(key, value.isoformat())

    # ------------------------------------------------------------ intake
    def intake_cursor(self) -> str | None:
        return self.state.get("mail:cursor")

    def set_intake_cursor(self, cursor: str) -> None:
        self.state.put("mail:cursor", cursor)

    # ------------------------------------------------------------ approvals of held messages
    def approved_for(self, msg_key: str) -> str | None:
        """The meeting (or ``planning:<year>``) a held message was approved for."""
        return self.state.get(f"approved:{msg_key}") or None

    def approve_message(self, msg_key: str, meeting_id: str) -> None:
        self.state.put(f"approved:{msg_key}", meeting_id)

    def held_note(self, msg_key: str) -> HeldNote | None:
        raw = self.state.get(f"held:{msg_key}")
        return HeldNote.from_json(raw) if raw else None

    def put_held_note(self, msg_key: str, note: HeldNote) -> None:
        self.state.put(f"held:{msg_key}", json.dumps(asdict(note), ensure_ascii=False))

    # ------------------------------------------------------------ held versions (the held area)
    def held_version(self, meeting_id: str, content_hash: str) -> HeldVersion | None:
        raw = self.state.get(f"held-version:{meeting_id}:{content_hash}")
        return HeldVersion.from_json(raw) if raw else None

    def put_held_version(self, held: HeldVersion) -> None:
        self.state.put(f"held-version:{held.meeting_id}:{held.content_hash}", held.to_json())
        index = self._held_index()
        ref = f"{held.meeting_id}:{held.content_hash}"
        if ref not in index:
            self._put_json("held-version:index", index + [ref])

    def held_versions(self) -> list[HeldVersion]:
        """Every version ever held, oldest first (any state)."""
        out = []
        for ref in self._held_index():
            mid, _, h = ref.rpartition(":")
            hv = self.held_version(mid, h)
            if hv is not None:
                out.append(hv)
        return out

    def _held_index(self) -> list[str]:
        return list(self._json("held-version:index") or [])

    # ------------------------------------------------------------ filed versions
    def distribution_hold(self, meeting_id: str, version: int) -> str | None:
        """A filed version's distribution decision, from records written before the
        held area: ``held``, ``approved`` or ``rejected``."""
        return self.state.get(f"held-distribution:{meeting_id}:v{version}") or None

    def set_distribution_hold(self, meeting_id: str, version: int, state: Literal["held", "approved", "rejected"]) -> None:
        self.state.put(f"held-distribution:{meeting_id}:v{version}", state)

    def late_copy(self, meeting_id: str, version: int) -> datetime | None:
        """When a filed version is a late copy (never distributed by itself): its date."""
        return self._moment(f"late:{meeting_id}:v{version}")

    def mark_late_copy(self, meeting_id: str, version: int, dated: datetime) -> None:
        self._put_iso(f"late:{meeting_id}:v{version}", dated)

    def filed_date(self, meeting_id: str, version: int) -> datetime | None:
        """The date of a filed version (earlier of its Date header and our receipt)."""
        return self._moment(f"filed-date:{meeting_id}:v{version}")

    def set_filed_date(self, meeting_id: str, version: int, dated: datetime) -> None:
        self._put_iso(f"filed-date:{meeting_id}:v{version}", dated)

    def distributed_on(self, meeting_id: str, day: date) -> list[int]:
        """The versions of a meeting distributed on ``day``."""
        return [int(v) for v in self._json(f"distributed:{meeting_id}:{day.isoformat()}") or []]

    def mark_distributed(self, meeting_id: str, day: date, version: int) -> None:
        done = self.distributed_on(meeting_id, day)
        if version not in done:
            self._put_json(f"distributed:{meeting_id}:{day.isoformat()}", done + [version])

    # ------------------------------------------------------------ the cycle
    def go_live(self) -> date | None:
        return self._day("go_live")

    def set_go_live(self, day: date) -> None:
        self._put_iso("go_live", day)

    def invitation(self, meeting_id: str) -> dict[str, Any] | None:
        """The snapshot of the last invitation sent (``InvitationSnapshot.to_dict``)."""
        return self._get(_INVITATION, meeting_id)

    def set_invitation(self, meeting_id: str, snapshot: dict[str, Any]) -> None:
        self._set(_INVITATION, snapshot, meeting_id)

    # ------------------------------------------------------------ dates the coordinator decides
    def meeting_dates(self) -> dict[str, dict[str, Any]]:
        """The coordinator's decisions about meetings' dates, times and places
        (meeting id -> ``DateDecision.to_dict``)."""
        return dict(self._json("meeting_dates") or {})

    def set_meeting_date(self, meeting_id: str, decision: dict[str, Any]) -> None:
        all_ = self.meeting_dates()
        all_[meeting_id] = decision
        self._put_json("meeting_dates", all_, sort_keys=True)

    def date_questions(self, meeting_id: str) -> list[dict[str, str]]:
        """The questions about a meeting's date sent to the coordinator: ``{"on": day, "what": question}``."""
        return list(self._json(f"date_questions:{meeting_id}") or [])

    def add_date_question(self, meeting_id: str, what: str, day: date) -> None:
        asked = self.date_questions(meeting_id)
        entry = {"on": day.isoformat(), "what": what}
        if entry not in asked:
            self._put_json(f"date_questions:{meeting_id}", asked + [entry])

    def date_alerted(self, meeting_id: str, what: str) -> bool:
        """Was the alert channel told that the question ``what`` about the meeting went unanswered?"""
        return bool(self.state.get(f"date_alert:{meeting_id}:{what}"))

    def mark_date_alerted(self, meeting_id: str, what: str, day: date) -> None:
        self.state.put(f"date_alert:{meeting_id}:{what}", day.isoformat())

    # ------------------------------------------------------------ originals of rebuilt files
    def original(self, meeting_id: str, rebuilt_sha256: str) -> dict[str, Any] | None:
        """Where the host's original of a rebuilt file is kept, and what the rebuild left out."""
        return self._get(_ORIGINAL, meeting_id, rebuilt_sha256)

    def set_original(self, meeting_id: str, rebuilt_sha256: str, record: dict[str, Any]) -> None:
        self._set(_ORIGINAL, record, meeting_id, rebuilt_sha256)

    # ------------------------------------------------------------ guests
    def guest_invitations(self, meeting_id: str) -> dict[str, dict[str, Any]]:
        """The guests' own invitations of a meeting as last sent (address -> ``GuestCopy`` fields)."""
        return dict(self._json(f"guest_invitations:{meeting_id}") or {})

    def set_guest_invitations(self, meeting_id: str, copies: dict[str, dict[str, Any]]) -> None:
        self._put_json(f"guest_invitations:{meeting_id}", copies)

    def guest_approval(self, meeting_id: str, email: str) -> str | None:
        """The coordinator's answer about inviting a guest: ``approved``, ``rejected`` or None."""
        return self.state.get(f"guest_approval:{meeting_id}:{email.lower()}") or None

    def set_guest_approval(self, meeting_id: str, email: str, answer: Literal["approved", "rejected"]) -> None:
        self.state.put(f"guest_approval:{meeting_id}:{email.lower()}", answer)

    def demo_day(self) -> date | None:
        """The last simulated day ``kcg demo`` ran (a rerun resumes there)."""
        return self._day("demo:day")

    def set_demo_day(self, day: date) -> None:
        self._put_iso("demo:day", day)

    # ------------------------------------------------------------ members added or removed by the coordinator
    def member_request(self, ref: str) -> dict[str, str] | None:
        """The coordinator's request to add or remove a member (asked, done, rejected)."""
        return self._get(_MEMBER_REQUEST, ref)

    def put_member_request(self, ref: str, request: dict[str, str]) -> None:
        self._set(_MEMBER_REQUEST, request, ref)

    # ------------------------------------------------------------ the planning round
    def planning_value(self, year: int, what: str) -> Any:
        """A value of the year's planning round (needs, ballot, groups, …); None when unset."""
        return self._json(f"planning:{year}:{what}")

    def set_planning_value(self, year: int, what: str, value: Any) -> None:
        self._put_json(f"planning:{year}:{what}", value, sort_keys=True)

    def workshop_groups(self, meeting_id: str) -> list[list[str]] | None:
        """The workshop groups (names) of a physical meeting, from the planning round."""
        return self._get(_WORKSHOP_GROUPS, meeting_id)

    def set_workshop_groups(self, meeting_id: str, groups: list[list[str]]) -> None:
        self._set(_WORKSHOP_GROUPS, groups, meeting_id)

    # ------------------------------------------------------------ next year's plan
    def plan_adoption(self, year: int) -> dict[str, Any]:
        """How next year's plan is being adopted: the candidates read (from the
        January protocol or the coordinator's table) and the one adopted."""
        return dict(self._json(f"plan_adoption:{year}") or {})

    def set_plan_adoption(self, year: int, value: dict[str, Any]) -> None:
        self._put_json(f"plan_adoption:{year}", value, sort_keys=True)

    # ------------------------------------------------------------ between meetings
    def decision_state(self, ref: str) -> dict[str, str] | None:
        """The follow-up state of decision ``ref`` (``<meeting>/<n>``)."""
        return self._get(_DECISION, ref)

    def set_decision_state(self, ref: str, state: str, settled_in: str, text: str) -> None:
        self._set(_DECISION, {"state": state, "settled_in": settled_in, "text": text}, ref)

    def approved_groups(self) -> list[dict[str, Any]]:
        return list(self._json("projects:approved") or [])

    def set_approved_groups(self, groups: list[dict[str, Any]]) -> None:
        self._put_json("projects:approved", groups)

    def declined_proposals(self) -> set[str]:
        return set(self._json("projects:declined") or [])

    def set_declined_proposals(self, refs: set[str]) -> None:
        self._put_json("projects:declined", sorted(refs))

    def project_statuses(self, slug: str) -> list[dict[str, str]]:
        return list(self._json(f"project_status:{slug}") or [])

    def set_project_statuses(self, slug: str, entries: list[dict[str, str]]) -> None:
        self._put_json(f"project_status:{slug}", entries)

    # ------------------------------------------------------------ mails that wait (member caps)
    def waiting_mail(self, msg_key: str) -> dict[str, Any] | None:
        """A mail held back by the member caps (``kcg_mail.services.pacing``): the
        message itself, until when it waits, why, and whether it went out since."""
        return self._get(_WAITING, msg_key)

    def put_waiting_mail(self, msg_key: str, record: dict[str, Any]) -> None:
        # the index first: a record the index does not know would never be sent (a crash
        # between the two leaves an index entry without a record, which is skipped)
        index = list(self._json("waiting:index") or [])
        if msg_key not in index:
            self._put_json("waiting:index", index + [msg_key])
        self._set(_WAITING, record, msg_key)

    def waiting_mails(self) -> list[dict[str, Any]]:
        """Every mail that waited, in the order they were held back (any state)."""
        out = []
        for key in self._json("waiting:index") or []:
            rec = self.waiting_mail(key)
            if rec is not None:
                out.append(rec)
        return out

    # ------------------------------------------------------------ published things
    def calendar_feed(self) -> dict[str, Any] | None:
        """The calendar feed as last published (event id -> event dict)."""
        return self._get(_CALENDAR_FEED)

    def set_calendar_feed(self, events: dict[str, Any]) -> None:
        self._set(_CALENDAR_FEED, events)

    def artifact_digest(self, key: str) -> str | None:
        return self.state.get(f"artifact:{key}") or None

    def set_artifact_digest(self, key: str, digest: str) -> None:
        self.state.put(f"artifact:{key}", digest)

    # ------------------------------------------------------------ health
    def health_problem(self, what: str) -> dict[str, str] | None:
        """A connection or alert channel that failed and has not worked since."""
        return self._get(_HEALTH, what)

    def set_health_problem(self, what: str, detail: str, since: str) -> None:
        self._set(_HEALTH, {"what": what, "detail": detail, "since": since}, what)

    def clear_health_problem(self, what: str) -> None:
        if self.state.get(_HEALTH.key(what)):
            self.state.put(_HEALTH.key(what), "")
