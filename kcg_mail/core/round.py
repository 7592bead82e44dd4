"""The yearly planning round ("Så upprättar vi årets handlingsplan"), pure.

Three steps, as in the network's own process:

1. *Nuläge & Behov*: members suggest collaboration topics in four areas
   (``parse_needs_text`` reads a plain-text answer; the Word form is read in
   ``kcg_mail.documents.round_forms``); ``merge_candidates`` builds the
   candidate list per area;
2. *Målbild & Prioriteringar*: each member distributes up to ten votes over
   the numbered list (``kcg_mail.core.ballot``: ``parse_ballot_text``,
   ``validate_ballot``);
   ``tally`` sorts each area and marks the year's focus topics;
3. the *Handlingsplan* (``kcg_mail.core.round_draft`` and the Word document).

``workshop_groups`` divides the attendees of the physical meeting into
balanced groups, mixing who sat together last time.

No I/O: the service (``kcg_mail.services.round``) stores and sends.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from itertools import combinations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kcg_mail.core.ballot import BallotCheck as BallotCheck
from kcg_mail.core.ballot import BallotLine as BallotLine
from kcg_mail.core.ballot import ParsedBallot as ParsedBallot
from kcg_mail.core.ballot import Topic as Topic
from kcg_mail.core.ballot import own_lines as own_lines
from kcg_mail.core.ballot import parse_ballot_text as parse_ballot_text
from kcg_mail.core.ballot import validate_ballot as validate_ballot

# ------------------------------------------------------------------ config


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(_Model):
    name: str
    description: str = ""
    questions: list[str] = []


class Round(_Model):
    """Dates of one year's round (``rounds: {2024: {...}}`` in planning.yaml)."""

    start: date
    needs_reminder: date
    needs_deadline: date
    votes_reminder: date
    votes_deadline: date
    #: the physical meeting where the plan is adopted and the workshop is held
    physical_meeting: str | None = None
    #: last year's topics that were not chosen, per area name (when no round ran by mail last year)
    carry_over: dict[str, list[str]] = {}
    #: the groups of last time (person ids), so this year's groups mix people
    previous_groups: list[list[str]] = []

    @model_validator(mode="after")
    def _order(self) -> Round:
        steps = [("start", self.start), ("needs_reminder", self.needs_reminder),
                 ("needs_deadline", self.needs_deadline), ("votes_reminder", self.votes_reminder),
                 ("votes_deadline", self.votes_deadline)]
        for (a, da), (b, db) in zip(steps, steps[1:]):
            if db <= da:
                raise ValueError(f"{b} ({db}) must come after {a} ({da}); put the dates in the order "
                                 f"start < needs_reminder < needs_deadline < votes_reminder < votes_deadline")
        return self


class PlanningSettings(_Model):
    areas: list[Area] = Field(min_length=1)
    votes_per_member: int = Field(10, ge=1, le=100)
    focus_per_area: int = Field(3, ge=1, le=20)
    #: a focus topic needs at least this share of all votes given (0.05: 7 of 140)
    focus_min_share: float = Field(0.05, ge=0, le=1)
    groups: int = Field(3, ge=1, le=10)
    folder: str = "/{short}/Handlingsplan/{year}"
    rounds: dict[int, Round] = {}

    @model_validator(mode="after")
    def _names(self) -> PlanningSettings:
        names = [a.name.casefold() for a in self.areas]
        if len(set(names)) != len(names):
            raise ValueError("two areas have the same name; give each area a unique name")
        for year, r in self.rounds.items():
            unknown = [k for k in r.carry_over if k.casefold() not in names]
            if unknown:
                raise ValueError(f"rounds.{year}.carry_over: unknown area(s) {unknown}; "
                                 f"use the area names {[a.name for a in self.areas]}")
        return self


# ------------------------------------------------------------------ text helpers

# own_lines (the lines the sender wrote, without the quoted original and the
# signature) lives in kcg_mail.core.ballot, re-exported here.


# ------------------------------------------------------------------ needs


@dataclass(frozen=True)
class Needs:
    """Suggestions of one member: area name -> topics (in the order written)."""

    topics: dict[str, tuple[str, ...]]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.topics.values())


_BULLET = re.compile(r"^\s*(?:[-*•–]|\d{1,2}[.)])\s*")
_HEADING_NUM = re.compile(r"^\s*(?:\d[.)]\s*|område\s*\d\s*[:.-]?\s*)", re.IGNORECASE)


def _fold(s: str) -> str:
    return re.sub(r"[^a-z0-9åäöéü]+", "", s.casefold())


def _area_of_heading(line: str, areas: list[Area]) -> Area | None:
    text = _HEADING_NUM.sub("", line).strip().rstrip(":").strip()
    if not text or len(text) > 80:
        return None
    key = _fold(text)
    for a in areas:
        name = _fold(a.name)
        if key == name or (len(key) >= 6 and name.startswith(key)):
            return a
    return None


def parse_needs_text(text: str, areas: list[Area]) -> Needs:
    """Plain-text answer: an area's name on a line of its own, its topics below
    (one per line, bullets optional). Lines before the first area are greeting."""
    current: Area | None = None
    out: dict[str, list[str]] = {}
    for line in own_lines(text):
        if not line.strip():
            continue
        if _is_closing(line):  # the signature follows
            break
        heading = _area_of_heading(line, areas)
        if heading is not None:
            current = heading
            continue
        if current is None:
            continue
        topic = clean_topic(_BULLET.sub("", line))
        if topic:
            out.setdefault(current.name, []).append(topic)
    return Needs({k: tuple(v) for k, v in out.items()})


_CLOSINGS = ("hälsningar", "mvh", "vänliga hälsningar", "med vänlig hälsning", "hälsning", "tack", "/")


def _is_closing(s: str) -> bool:
    low = s.casefold().strip(" ,.!")
    return low in _CLOSINGS or low.startswith(("hälsningar", "vänliga hälsningar", "mvh", "med vänlig"))


def clean_topic(s: str) -> str:
    s = " ".join(s.split()).strip(" ;,")
    return s[:200]


@dataclass(frozen=True)
class Candidate:
    area: str
    text: str
    proposers: tuple[str, ...] = ()  # person ids
    carried_over: bool = False


def merge_candidates(areas: list[Area], needs: dict[str, Needs], carry_over: dict[str, list[str]]) -> list[Candidate]:
    """One list per area: suggestions merged case- and punctuation-insensitively
    (first wording wins), then last year's topics not chosen. ``needs`` maps
    person id -> their suggestions (iterated in sorted order, so the result is
    the same whatever order replies arrived in)."""
    out: list[Candidate] = []
    folded_carry = {k.casefold(): v for k, v in carry_over.items()}
    for a in areas:
        seen: dict[str, tuple[str, list[str]]] = {}
        for pid in sorted(needs):
            for t in needs[pid].topics.get(a.name, ()):
                k = _fold(t)
                if not k:
                    continue
                text, who = seen.setdefault(k, (t, []))
                if pid not in who:
                    who.append(pid)
        for text, who in seen.values():
            out.append(Candidate(a.name, text, tuple(who)))
        for t in folded_carry.get(a.name.casefold(), []):
            if _fold(t) not in seen:
                seen[_fold(t)] = (t, [])
                out.append(Candidate(a.name, t, (), True))
    return out


# ------------------------------------------------------------------ ballots


# Topic, BallotLine, ParsedBallot, BallotCheck, parse_ballot_text and
# validate_ballot live in kcg_mail.core.ballot (re-exported here).


# ------------------------------------------------------------------ tally


@dataclass(frozen=True)
class TallyRow:
    number: int
    area: str
    text: str
    votes: int
    voters: int
    focus: bool


@dataclass(frozen=True)
class Tally:
    rows: tuple[TallyRow, ...]  # per area (in config order), sorted by votes
    ties: tuple[str, ...]  # Swedish notes on ties at the focus cut-off
    ballots: int
    late: tuple[str, ...] = ()

    def area_rows(self, area: str) -> list[TallyRow]:
        return [r for r in self.rows if r.area == area]

    def focus(self) -> list[TallyRow]:
        return sorted((r for r in self.rows if r.focus), key=lambda r: (-r.votes, r.number))


def tally(topics: list[Topic], areas: list[Area], ballots: dict[str, dict[int, int]], focus_per_area: int,
          late: list[str] | None = None, *, min_share: float = 0.0) -> Tally:
    """Sum the counted ballots (person -> number -> votes). Per area the topics
    are sorted by votes (then by number). A focus topic has at least
    ``min_share`` of all votes given (and at least one), and each area has at
    most ``focus_per_area``. Votes decide, never the order of the list: when the
    cut-off falls inside a group of topics with equal votes, none of that group
    is marked, and a note says that the coordinator decides."""
    sums: dict[int, int] = {t.number: 0 for t in topics}
    voters: dict[int, int] = {t.number: 0 for t in topics}
    for votes in ballots.values():
        for n, v in votes.items():
            if n in sums and v > 0:
                sums[n] += v
                voters[n] += 1
    floor = max(1, math.ceil(min_share * sum(sums.values()) - 1e-9))
    rows: list[TallyRow] = []
    ties: list[str] = []
    for a in areas:
        mine = sorted((t for t in topics if t.area == a.name), key=lambda t: (-sums[t.number], t.number))
        eligible = [t for t in mine if sums[t.number] >= floor]
        focus = {t.number for t in eligible[:focus_per_area]}
        if len(eligible) > focus_per_area:
            cut = sums[eligible[focus_per_area - 1].number]
            tied = [t for t in eligible if sums[t.number] == cut]
            if any(t.number not in focus for t in tied):
                focus -= {t.number for t in tied}
                names = ", ".join(f"{t.number} {t.text}" for t in tied)
                ties.append(f"{a.name}: lika många röster ({cut}) för {names} vid gränsen för "
                            f"{focus_per_area} fokusområden – samordnaren avgör.")
        for t in mine:
            rows.append(TallyRow(t.number, a.name, t.text, sums[t.number], voters[t.number], t.number in focus))
    return Tally(tuple(rows), tuple(ties), len(ballots), tuple(late or ()))


# ------------------------------------------------------------------ workshop groups


@dataclass(frozen=True)
class Groups:
    groups: tuple[tuple[str, ...], ...]
    repeated_pairs: int  # pairs that sat together last time too


def _pairs(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in combinations(g, 2)}


def workshop_groups(attendees: list[str], coordinator: str | None, n_groups: int,
                    previous: list[list[str]] | None = None) -> Groups:
    """Divide ``attendees`` (person ids, roster order) into ``n_groups`` groups
    whose sizes differ by at most one. The coordinator (if attending) is placed
    first; then each person goes to the smallest-possible group where they meet
    the fewest people they sat with last time. Deterministic."""
    people = list(dict.fromkeys(attendees))
    n = max(1, min(n_groups, len(people))) if people else max(1, n_groups)
    before = _pairs(previous or [])
    sizes = [len(people) // n + (1 if i < len(people) % n else 0) for i in range(n)]
    groups: list[list[str]] = [[] for _ in range(n)]
    # coordinator first, then the people with most former group-mates among the attendees
    mates = {p: sum(1 for q in people if q != p and frozenset((p, q)) in before) for p in people}
    order = sorted(people, key=lambda p: (p != coordinator, -mates[p], people.index(p)))
    for p in order:
        open_ = [i for i in range(n) if len(groups[i]) < sizes[i]]
        best = min(open_, key=lambda i: (sum(frozenset((p, q)) in before for q in groups[i]),
                                         len(groups[i]), i))
        groups[best].append(p)
    repeated = len(_pairs(groups) & before)
    return Groups(tuple(tuple(g) for g in groups), repeated)
