"""The coordinator corrects a member's ballot: by replying to our mail about
an unclear ballot ("Lena: 3: 4, 12: 3", or only the votes), or through the
Prefect form ``kcg-planning-correct-ballot``.

When a member's ballot cannot be counted, the member gets a polite answer
(``services.round``) and the coordinator a short question
(``ask_coordinator``) he may answer from his phone; nobody is asked to edit a
file. His reply reaches ``handle_answer`` only through the intake's rule chain
(authenticated, from the coordinator, a reply to that very question:
``question_ids``). ``correct_ballot`` records the votes as that member's
ballot, the newest counting until the tally, and sends the member a receipt
saying what now counts. An unclear correction gets a one-line question back
and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from kcg_mail.core import ballot as bl
from kcg_mail.core.config_model import Person
from kcg_mail.core.inbound import ParsedMail, QuestionRef
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.plan import date_text
from kcg_mail.ports import ActionRecord
from kcg_mail.services import questions
from kcg_mail.services import round as round_
from kcg_mail.services.app import App

WHAT = "ballot_correction"
QUESTION = round_.QUESTION
ANSWER = "planning_answer"
_QUESTION_KEY = re.compile(r"^plan-(\d{4}):correction_(?:question|answer):[^:]+:([^:]+):")


@dataclass(frozen=True)
class Corrected:
    person: Person
    lines: list[str]
    receipt: str  # what the outbox said of the member's receipt
    note: str

    def markdown(self) -> str:
        rows = "\n".join(f"- {x}" for x in self.lines)
        return (f"# {round_.named(self.person.name)['genitive']} röst är rättad\n\n{rows}\n\n"
                f"{self.person.name} har fått ett kvitto ({self.receipt}).{self.note}\n")


def _members(app: App) -> list[tuple[str, str]]:
    return [(p.id, p.name) for p in round_.round_members(app)]


def find_member(app: App, who: str) -> Person:
    """A member by id, e-mail address, full name or (unique) first name."""
    key = who.strip().casefold()
    people = round_.round_members(app)
    hits = [p for p in people if key in (p.id.casefold(), p.email.casefold(), p.name.casefold())]
    if not hits:
        hits = [p for p in people if p.name.casefold().split()[:1] == [key]]
    if len(hits) != 1:
        names = ", ".join(p.name for p in hits)
        raise round_.PlanningProblem(
            f"”{who}” passar {'flera medlemmar: ' + names if hits else 'ingen medlem'}; "
            f"skriv för- och efternamn eller e-postadressen.")
    return hits[0]


def current_year(app: App) -> int:
    """The plan year whose round is open (the form's default)."""
    years = round_.open_rounds(app)
    if len(years) != 1:
        raise round_.PlanningProblem("ingen planeringsrunda pågår; ange året" if not years else
                                     f"flera planeringsrundor pågår ({', '.join(map(str, years))}); ange året")
    return years[0]


def correct_ballot(app: App, year: int, member: str, votes: str | Mapping[int, int], now: datetime, *,
                   ref: str) -> Corrected:
    """Record ``votes`` ("3: 4, 12: 3" or {3: 4, 12: 3}) as ``member``'s ballot and
    send the member a receipt. ``ref`` names the request (the coordinator's mail
    or the flow run): the same ref again records and sends nothing twice."""
    s, r = round_.get_round(app, year)
    p = find_member(app, member)
    ts = round_.topics(app, year)
    if not ts:
        raise round_.PlanningProblem(f"röstlistan för {year} är inte publicerad ännu; det finns inget att rätta")
    if round_.round_value(app, year, "result", None) is not None:
        raise round_.PlanningProblem(f"rösterna för {year} är redan sammanräknade; rättelsen kan inte räknas "
                                     f"(ändra i stället i utkastet till handlingsplanen)")
    parsed = (bl.parse_ballot_text(votes) if isinstance(votes, str)
              else bl.ParsedBallot(tuple(bl.BallotLine(n, str(v)) for n, v in votes.items())))
    check = bl.validate_ballot(parsed, ts, s.votes_per_member)
    if not check.ok:
        raise round_.PlanningProblem(" ".join(check.problems))
    app.outbox.now = now
    note = round_.record_ballot(app, year, p, f"correction:{ref}", now.astimezone(UTC).isoformat(), now,
                                check.votes, by="coordinator")
    lines = round_.vote_lines(ts, check.votes)
    out = round_._send(app, "planning_receipt", f"plan-{year}:ballot_corrected:{p.email}:{ref[:16]}", [p],
                       {**round_._base(app, year, p), "what": "corrected", "lines": lines,
                        "subject": f"Din röst inför handlingsplan {year}", "deadline_text": date_text(r.votes_deadline),
                        "total": sum(check.votes.values()), "ignored": []})
    return Corrected(p, lines, out, note)


# ------------------------------------------------------------------ the question and the answer


def _question(rec: ActionRecord) -> QuestionRef | None:
    m = _QUESTION_KEY.match(rec.key) if rec.action in (QUESTION, ANSWER) else None
    return QuestionRef(f"{m.group(1)}:{m.group(2)}", None, WHAT) if m else None


def question_ids(actions: Iterable[ActionRecord]) -> dict[str, QuestionRef]:
    """Our questions about unclear ballots, and our answers to his corrections (a reply to
    one is read the same way): Message-ID -> the question ("YYYY:person id")."""
    return questions.ids_from_actions(actions, _question)


def handle_answer(app: App, mail: ParsedMail, q: QuestionRef, key: str, now: datetime) -> tuple[Outcome, str]:
    """The coordinator's reply to our question about an unclear ballot."""
    year_text, _, expected = q.ref.partition(":")
    year = int(year_text)
    c = bl.read_correction(mail.text or "", _members(app), expected or None)
    problem = c.problem
    done: Corrected | None = None
    if not problem and c.person is not None:
        try:
            ts = round_.topics(app, year)
            s, _ = round_.get_round(app, year)
            check = bl.validate_ballot(c.ballot, ts, s.votes_per_member)
            if check.ok:
                done = correct_ballot(app, year, c.person, check.votes, now, ref=key)
            else:
                problem = " ".join(check.problems)
        except round_.PlanningProblem as exc:
            problem = str(exc)
    name = dict(_members(app)).get(expected, expected)
    out = _answer(app, year, mail, key, done, problem, expected, name, now)
    if done is None:
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"rättelsen av {name}s röst oklar: {problem} (frågat igen: {out})"
    return Outcome.COORDINATOR_ANSWER, f"{name}s röst rättad{done.note}: {', '.join(done.lines)} (kvitto: {out})"


def _answer(app: App, year: int, mail: ParsedMail, key: str, done: Corrected | None, problem: str, expected: str,
            name: str, now: datetime) -> str:
    """The receipt, or the one-line question back; a reply to it is read like a reply to the question."""
    coord = app.cfg.network.coordinator
    subject = re.sub(r"^(?:(?:SV|Sv|RE|Re|AW|Aw|VB|FW|Fwd)\s*:\s*)+", "", mail.subject or "")[:150]
    app.outbox.now = now
    return round_._send(app, ANSWER, f"plan-{year}:correction_answer:{coord.email}:{expected}:{key[:16]}", [coord],
                        {**round_._base(app, year, coord), "done": done is not None, "problem": problem,
                         "member": round_.named(done.person.name if done else name),
                         "lines": done.lines if done else [], "subject": subject or "Rättad röst",
                         "example": bl.examples([t.number for t in round_.topics(app, year)])[0],
                         "replaced": bool(done and done.note)},
                        in_reply_to=mail.message_id)


def form_answer(app: App, q: QuestionRef, answer: object, now: datetime) -> str:
    """A yes or no in the ``kcg-approve`` / ``kcg-reject`` forms cannot carry votes: say where they go."""
    from kcg_mail.services.manual import ManualProblem

    raise ManualProblem("en rättad röst anges i formuläret Rätta röst (medlem och röster), "
                        "eller i ett svar på frågemejlet")
