"""The yearly planning round, run on the same ports as the meetings.

Everything leaves through the Outbox with deterministic keys
(``plan-YYYY:<step>:<email>[:<msg>]``), everything read is recorded in the
state record (``planning:YYYY:*`` keys, rewritten idempotently per message),
so a crash anywhere neither loses nor doubles a mail or a vote.

Steps (the dates are in ``config/planning.yaml``):

- ``start_round``: the needs mail with the Word form to every active member;
- ``tick`` (daily, or by hand): one reminder before each deadline to those
  who have not answered; after the needs deadline the candidate list is
  written to the archive (YAML, for the coordinator to edit) and the
  coordinator is told; after the votes deadline the round is closed;
- ``publish_ballot`` ("publicera röstlistan"): reads the edited list, numbers
  it and sends the ballot;
- ``handle_reply`` (from the intake): needs and ballots, from members only;
  each gets a receipt or a polite answer with what is wrong;
- ``close_round``: tally, workshop groups, the draft plan and "Handlingsplan
  YYYY" in the archive, and the result to the members.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from kcg_mail.core import round as pl
from kcg_mail.core.ballot import about_member, examples, number_text
from kcg_mail.core.config_model import Person
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.inbound.verdict import RoundReply
from kcg_mail.core.plan import MONTHS_SV, date_text
from kcg_mail.ports import ActionRecord, Attachment
from kcg_mail.services.app import App
from kcg_mail.services.compose import DOCX, person_ctx

PREFIX = "planning_"
#: the mail to the coordinator about a ballot that could not be counted (his reply corrects it)
QUESTION = "planning_question"


class PlanningProblem(ValueError):
    """The coordinator asked for something that cannot be done now; says why and what to do."""


# ------------------------------------------------------------------ basics


_SETTINGS: dict[str, tuple[tuple[int, ...], Any]] = {}


def _stamp(directory: Path) -> tuple[int, ...]:
    out: list[int] = []
    for name in ("planning.yaml", "network.yaml"):
        try:
            st = (directory / name).stat()
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            out += [-1, -1, -1]
    return tuple(out)


def settings(app: App) -> pl.PlanningSettings:
    """``planning.yaml``, read again only when it (or ``network.yaml``) changed: a
    round's mails ask for it many times a run (about 40 ms a read)."""
    from kcg_mail.config_loader import load_planning

    directory = Path(app.cfg.directory)
    stamp = _stamp(directory)
    hit = _SETTINGS.get(str(directory))
    s: pl.PlanningSettings | None
    if hit is not None and hit[0] == stamp:
        s = hit[1]
    else:
        s = load_planning(directory)
        _SETTINGS[str(directory)] = (stamp, s)
    if s is None:
        raise PlanningProblem(f"{app.cfg.directory}/planning.yaml is missing (fix: copy config/planning.yaml from "
                              f"the kcg-mail repository and set the dates of the round)")
    return s


def get_round(app: App, year: int) -> tuple[pl.PlanningSettings, pl.Round]:
    s = settings(app)
    if year not in s.rounds:
        raise PlanningProblem(f"{app.cfg.directory}/planning.yaml: rounds.{year}: missing (fix: add the dates "
                              f"start, needs_reminder, needs_deadline, votes_reminder, votes_deadline for {year})")
    return s, s.rounds[year]


def token(app: App, year: int) -> str:
    return f"[{app.cfg.network.short}-PLAN-{year}]"


def round_value(app: App, year: int, what: str, default: Any) -> Any:
    value = app.ledger.planning_values.get(year, what)
    return value if value is not None else default


def _put(app: App, year: int, what: str, value: Any) -> None:
    app.ledger.planning_values.put(year, what, value)


def folder(app: App, year: int) -> str:
    return settings(app).folder.format(short=app.cfg.network.short, year=year)


def round_members(app: App) -> list[Person]:
    return app.cfg.network.active_members


def _base(app: App, year: int, person: Person | None = None) -> dict[str, Any]:
    s, r = get_round(app, year)
    return {"year": year, "token": token(app, year), "votes": s.votes_per_member,
            "votes_text": number_text(s.votes_per_member), "person": person_ctx(person) if person else None}


def topics(app: App, year: int) -> list[pl.Topic]:
    return [pl.Topic(*row) for row in round_value(app, year, "topics", [])]


def _send(app: App, kind: str, key: str, to: list[Person], ctx: dict[str, Any], *,
          attachments: tuple[Attachment, ...] = (), in_reply_to: str | None = None,
          moot_if: list[Any] | None = None) -> str:
    msg = app.composer.message(kind, key, None, to, ctx, attachments=attachments, in_reply_to=in_reply_to)
    return app.outbox.send(msg, moot_if=moot_if)


# ------------------------------------------------------------------ start: needs


def _carry_over(app: App, year: int, r: pl.Round) -> dict[str, list[str]]:
    """Last year's topics not chosen: from last year's round by mail, else from config."""
    last = round_value(app, year - 1, "result", None)
    if last:
        out: dict[str, list[str]] = {}
        for row in last["rows"]:
            if not row["focus"]:
                out.setdefault(row["area"], []).append(row["text"])
        return out
    return {k: list(v) for k, v in r.carry_over.items()}


def start_round(app: App, year: int, now: datetime) -> list[str]:
    s, r = get_round(app, year)
    app.outbox.now = now
    carry = _carry_over(app, year, r)
    form = Attachment(f"{app.cfg.network.short} Nuläge och behov {year}.docx", DOCX, _needs_form(app, year, s, carry))
    areas = [{"name": a.name, "questions": a.questions, "carry_over": carry.get(a.name, [])} for a in s.areas]
    lines = []
    for p in round_members(app):
        ctx = {**_base(app, year, p), "areas": areas, "deadline_text": date_text(r.needs_deadline), "reminder": False}
        out = _send(app, "planning_needs", f"plan-{year}:needs:{p.email}", [p], ctx, attachments=(form,))
        lines.append(f"behovsutskick till {p.name}: {out}")
    if round_value(app, year, "started", None) is None:
        _put(app, year, "started", now.isoformat())
    return lines


def _needs_form(app: App, year: int, s: pl.PlanningSettings, carry: dict[str, list[str]]) -> bytes:
    from kcg_mail.documents.round_forms import needs_form

    return needs_form(app.cfg.network.name, year, s.areas, carry)


# ------------------------------------------------------------------ tick


def tick(app: App, year: int, now: datetime) -> list[str]:
    """What is due today: reminders, the candidate list, closing the round."""
    s, r = get_round(app, year)
    app.outbox.now = now
    today = now.date()
    lines: list[str] = []
    if round_value(app, year, "started", None) is None:
        return [f"planeringsrundan {year} är inte startad (den startar enligt planeringsrundans datum)"]
    published = bool(round_value(app, year, "topics", []))
    needs = round_value(app, year, "needs", {})
    if not published and r.needs_reminder <= today <= r.needs_deadline:
        carry = _carry_over(app, year, r)
        areas = [{"name": a.name, "questions": a.questions, "carry_over": carry.get(a.name, [])} for a in s.areas]
        for p in round_members(app):
            if p.id not in needs:
                ctx = {**_base(app, year, p), "areas": areas, "deadline_text": date_text(r.needs_deadline),
                       "reminder": True}
                out = _send(app, "planning_needs", f"plan-{year}:needs_reminder:{p.email}", [p], ctx,
                            moot_if=[year, "needs", p.id])
                lines.append(f"påminnelse om förslag till {p.name}: {out}")
    if not published and today > r.needs_deadline:
        lines += write_candidates(app, year, now)
    if published and r.votes_reminder <= today <= r.votes_deadline:
        ballots = round_value(app, year, "ballots", {})
        for p in round_members(app):
            if p.id not in ballots:
                out = _send(app, "planning_ballot", f"plan-{year}:ballot_reminder:{p.email}", [p],
                            _ballot_ctx(app, year, p, r, reminder=True), moot_if=[year, "ballots", p.id])
                lines.append(f"påminnelse om röst till {p.name}: {out}")
    if published and today > r.votes_deadline and round_value(app, year, "result", None) is None:
        lines += close_round(app, year, now)
    return lines


# ------------------------------------------------------------------ candidates


def candidates_path(app: App, year: int) -> str:
    return f"{folder(app, year)}/{app.cfg.network.short} Röstlista {year}.yaml"


def candidates(app: App, year: int) -> list[pl.Candidate]:
    s, r = get_round(app, year)
    stored = round_value(app, year, "needs", {})
    needs = {}
    for pid, by_msg in stored.items():
        merged: dict[str, list[str]] = {}
        for _key, entry in sorted(by_msg.items(), key=lambda kv: kv[1]["at"]):
            for area, ts in entry["topics"].items():
                merged.setdefault(area, []).extend(ts)
        needs[pid] = pl.Needs({k: tuple(v) for k, v in merged.items()})
    return pl.merge_candidates(s.areas, needs, _carry_over(app, year, r))


def candidates_yaml(app: App, year: int, cands: list[pl.Candidate]) -> str:
    s = settings(app)
    names = {p.id: p.name for p in app.cfg.network.members}
    def q(v: str) -> str:  # a JSON string is a YAML scalar
        return json.dumps(v, ensure_ascii=False)

    out = [f"# Röstlista för handlingsplan {year}, skriven av kcg-mail när tiden för förslag gick ut.",
           "# Redigera fritt: slå ihop, stryk eller formulera om (en rad per förslag under sitt område).",
           "# Samordnaren publicerar sedan listan genom att svara ja på mejlet om röstlistan.",
           f"year: {year}", "areas:"]
    for a in s.areas:
        mine = [c for c in cands if c.area == a.name]
        out.append(f"  {q(a.name)}:" + ("" if mine else " []"))
        for c in mine:
            who = "förra året" if c.carried_over else ", ".join(names.get(p, p) for p in c.proposers)
            out.append(f"    - {q(c.text)}  # {who}")
    return "\n".join(out) + "\n"


def write_candidates(app: App, year: int, now: datetime) -> list[str]:
    if round_value(app, year, "candidates", None):
        return []
    cands = candidates(app, year)
    path = candidates_path(app, year)
    stored = app.archive.store(path, candidates_yaml(app, year, cands).encode("utf-8"), overwrite=True)
    needs = round_value(app, year, "needs", {})
    missing = [p.name for p in round_members(app) if p.id not in needs]
    coord = app.cfg.network.coordinator
    out = _send(app, "planning_candidates", f"plan-{year}:candidates:{coord.email}", [coord],
                {**_base(app, year, coord), "answered": len(round_members(app)) - len(missing),
                 "members": len(round_members(app)), "missing": missing, "count": len(cands), "path": stored.path})
    _put(app, year, "candidates", {"path": stored.path, "at": now.isoformat(), "count": len(cands)})
    return [f"röstlistan ({len(cands)} förslag) skriven till {stored.path}; samordnaren informerad: {out}"]


def read_candidates(app: App, year: int, data: bytes, where: str) -> list[pl.Topic]:
    """The coordinator's edited list, numbered across areas in config order."""
    s = settings(app)
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PlanningProblem(f"{where}: not valid YAML: {exc} (fix: check quotes and indentation)") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("areas"), dict):
        raise PlanningProblem(f"{where}: areas: missing (fix: keep the layout 'areas:' with one list per area)")
    known = {a.name.casefold(): a.name for a in s.areas}
    problems = []
    for name in doc["areas"]:
        if str(name).casefold() not in known:
            problems.append(f"{where}: areas.{name}: unknown area (fix: use one of {', '.join(known.values())})")
    numbered: list[pl.Topic] = []
    by_area = {str(k).casefold(): v for k, v in doc["areas"].items()}
    for a in s.areas:
        items = by_area.get(a.name.casefold()) or []
        if not isinstance(items, list):
            problems.append(f"{where}: areas.{a.name}: expected a list of topics (fix: one '- text' line per topic)")
            continue
        for i, t in enumerate(items):
            if not isinstance(t, str) or not t.strip():
                problems.append(f"{where}: areas.{a.name}[{i}]: expected a topic as text (fix: write '- text')")
                continue
            numbered.append(pl.Topic(len(numbered) + 1, a.name, pl.clean_topic(t)))
    if not numbered and not problems:
        problems.append(f"{where}: no topics (fix: add at least one topic under an area)")
    if problems:
        raise PlanningProblem("\n".join(problems))
    return numbered


# ------------------------------------------------------------------ publish: votes


def _ballot_ctx(app: App, year: int, p: Person, r: pl.Round, *, reminder: bool) -> dict[str, Any]:
    s = settings(app)
    ts = topics(app, year)
    areas = [{"name": a.name, "topics": [{"number": t.number, "text": t.text} for t in ts if t.area == a.name]}
             for a in s.areas]
    example, example_one = examples([t.number for t in ts])
    return {**_base(app, year, p), "areas": [a for a in areas if a["topics"]], "example": example,
            "example_one": example_one, "deadline_text": date_text(r.votes_deadline), "reminder": reminder}


def publish_ballot(app: App, year: int, now: datetime) -> list[str]:
    """"Publicera röstlistan": read the (edited) list from the archive, number it, send the ballot."""
    from kcg_mail.documents.round_forms import ballot_form

    s, r = get_round(app, year)
    app.outbox.now = now
    ts = topics(app, year)
    if not ts:
        cand = round_value(app, year, "candidates", None)
        if cand is None:
            if now.date() <= r.needs_deadline:
                raise PlanningProblem(f"tiden för förslag går ut {r.needs_deadline}; publicera röstlistan efter det "
                                      f"(eller flytta needs_deadline i planning.yaml)")
            write_candidates(app, year, now)
            cand = round_value(app, year, "candidates", None)
        path = cand["path"]
        ts = read_candidates(app, year, app.archive.read(path), path)
        _put(app, year, "topics", [list(t) for t in ts])
        _put(app, year, "published", now.isoformat())
    data = ballot_form(app.cfg.network.name, year, s.areas, ts, s.votes_per_member)
    att = Attachment(f"{app.cfg.network.short} Röstsedel {year}.docx", DOCX, data)
    lines = [f"röstlistan publicerad: {len(ts)} förslag"]
    for p in round_members(app):
        out = _send(app, "planning_ballot", f"plan-{year}:ballot:{p.email}", [p],
                    _ballot_ctx(app, year, p, r, reminder=False), attachments=(att,))
        lines.append(f"röstsedel till {p.name}: {out}")
    return lines


# ------------------------------------------------------------------ replies


def mail_ids(actions: Iterable[ActionRecord]) -> dict[str, RoundReply]:
    """Our planning mails by Message-ID (and the round and step each belongs to), for
    the intake's classifier: a reply to one of them is a reply to the round."""
    out: dict[str, RoundReply] = {}
    for rec in actions:
        mid = rec.detail.get("message_id") if rec.action.startswith(PREFIX) else None
        m = re.match(r"plan-(\d{4}):(\w+):", rec.key) if mid else None
        if m:
            if m.group(2).startswith("correction_") or m.group(2) == "candidates":
                continue  # the coordinator's questions: services.ballot_correction, services.ballot_publish
            step = next((x for x in ("needs", "ballot") if m.group(2).startswith(x)), "")
            out.setdefault(str(mid), RoundReply(int(m.group(1)), step))
    return out


def sender_member(app: App, mail: Any) -> Person | None:
    """The member who sent ``mail``, or None. The one place the round decides
    whom to trust: today the From address must be a member's; when the intake's
    sender-authentication rules apply, this is where they plug in."""
    return next((p for p in app.cfg.network.members if p.active and p.email == mail.sender), None)


def handle_reply(app: App, mail: Any, rt: RoundReply, key: str, now: datetime) -> tuple[Outcome, str]:
    """A member's needs or ballot. Returns (outcome, reason) for the intake record."""
    person = sender_member(app, mail)
    if person is None:
        return Outcome.NOT_ALLOWED, f"svar på planeringsrundan {rt.year} från {mail.sender}, som inte är medlem"
    try:
        s, r = get_round(app, rt.year)
    except PlanningProblem as exc:
        return Outcome.UNMATCHED, f"planeringsrunda {rt.year}: {exc}"
    app.outbox.now = now
    published = bool(round_value(app, rt.year, "topics", []))
    if rt.step == "needs" and published:
        return _problem(app, rt.year, person, mail, key, "needs",
                        ["Tiden för förslag har gått ut och röstlistan är publicerad; rösta i stället på listan "
                         "i mejlet med röstsedeln."], r.votes_deadline)
    if published:
        return _ballot(app, rt.year, person, mail, key, now, s, r)
    return _needs(app, rt.year, person, mail, key, now, s, r)


def _subject(mail: Any) -> str:
    return re.sub(r"^(?:(?:SV|Sv|RE|Re|AW|Aw|VB|FW|Fwd)\s*:\s*)+", "", mail.subject or "")[:150] or "Handlingsplan"


def _problem(app: App, year: int, p: Person, mail: Any, key: str, what: str, problems: list[str],
             deadline: date, *, understood: list[str] | None = None) -> tuple[Outcome, str]:
    s = settings(app)
    out = _send(app, "planning_problem", f"plan-{year}:{what}_problem:{p.email}:{key[:12]}", [p],
                {**_base(app, year, p), "what": what, "problems": problems, "subject": _subject(mail),
                 "deadline_text": date_text(deadline), "votes": s.votes_per_member,
                 "understood": understood or [], "example": examples([t.number for t in topics(app, year)])[0]},
                in_reply_to=mail.message_id)
    rejected = round_value(app, year, "rejected", {})
    rejected[key] = {"person": p.id, "what": what, "problems": problems}
    _put(app, year, "rejected", rejected)
    invalid = Outcome.PLANNING_NEEDS_INVALID if what == "needs" else Outcome.PLANNING_BALLOT_INVALID
    return invalid, "; ".join(problems) + f" (svar: {out})"


def _docx_attachments(mail: Any) -> list[Any]:
    return [a for a in mail.attachments if a.filename.lower().endswith(".docx") or a.content_type == DOCX]


def _needs(app: App, year: int, p: Person, mail: Any, key: str, now: datetime, s: pl.PlanningSettings,
           r: pl.Round) -> tuple[Outcome, str]:
    from kcg_mail.documents.ooxml import MinutesRejected
    from kcg_mail.documents.round_forms import read_needs_form

    found: dict[str, list[str]] = {}
    problems: list[str] = []
    for att in _docx_attachments(mail):
        try:
            for area, ts in read_needs_form(att.filename, att.data, s.areas).topics.items():
                found.setdefault(area, []).extend(ts)
        except MinutesRejected as rej:
            problems.append(f"{att.filename}: {rej.message_sv}")
    for area, ts in pl.parse_needs_text(mail.text or "", s.areas).topics.items():
        found.setdefault(area, []).extend(ts)
    if not any(found.values()):
        return _problem(app, year, p, mail, key, "needs", problems or [
            "Vi hittade inga förslag under något av områdena (Omvärldsbevakning, Erfarenhetsutbyte & "
            "kompetensutveckling, Gemensamma frågor & projekt, Kollegialt stöd)."], r.needs_deadline)
    needs = round_value(app, year, "needs", {})
    needs.setdefault(p.id, {})[key] = {"topics": found, "at": now.isoformat()}
    _put(app, year, "needs", needs)
    lines = [f"{area}: {t}" for area, ts in found.items() for t in ts]
    out = _send(app, "planning_receipt", f"plan-{year}:needs_ok:{p.email}:{key[:12]}", [p],
                {**_base(app, year, p), "what": "needs", "lines": lines, "subject": _subject(mail),
                 "deadline_text": date_text(r.needs_deadline), "total": 0, "ignored": []},
                in_reply_to=mail.message_id)
    late = " (efter sista dagen, men före röstlistan)" if now.date() > r.needs_deadline else ""
    if round_value(app, year, "candidates", None):  # the list is already with the coordinator
        after = round_value(app, year, "late_needs", {})
        after[key] = {"person": p.id, "topics": lines}
        _put(app, year, "late_needs", after)
        late = " (kom efter att röstlistan skrevs: samordnaren lägger till det för hand)"
    return Outcome.PLANNING_NEEDS, f"{len(lines)} förslag från {p.name}{late} (kvitto: {out})"


def vote_lines(ts: list[pl.Topic], votes: dict[int, int]) -> list[str]:
    """What we understood, by name: "3. Studieresa – fyra röster"."""
    by_no = {t.number: t for t in ts}
    return [f"{n}. {by_no[n].text} – {number_text(v)} {'röst' if v == 1 else 'röster'}"
            for n, v in sorted(votes.items()) if n in by_no]


def read_ballot(mail: Any) -> tuple[pl.ParsedBallot, list[str]]:
    """The votes of a mail: the Word ballot if one is attached and filled in, else
    the text. Both filled in with different votes is unclear, never guessed."""
    from kcg_mail.documents.ooxml import MinutesRejected
    from kcg_mail.documents.round_forms import read_ballot_form

    form: pl.ParsedBallot | None = None
    problems: list[str] = []
    for att in _docx_attachments(mail):
        try:
            form = read_ballot_form(att.filename, att.data)
            break
        except MinutesRejected as rej:
            problems.append(f"{att.filename}: {rej.message_sv}")
    text = pl.parse_ballot_text(mail.text or "")
    if form is None or not (form.lines or form.unclear):
        return text, ([] if text.lines else problems)
    if text.lines and sorted((x.number, x.votes) for x in text.lines) != sorted(
            (x.number, x.votes) for x in form.lines):
        return form, ["Röstsedeln och mejlets text ger olika fördelningar. Skicka gärna en av dem, "
                      "så räknar vi den."]
    return form, []


def record_ballot(app: App, year: int, p: Person, key: str, sent_at: str, now: datetime,
                  votes: dict[int, int], *, by: str = "") -> str:
    """Store ``p``'s ballot (the newest counts until the tally); returns a note for the record."""
    ballots = round_value(app, year, "ballots", {})
    prev = ballots.get(p.id)
    if prev is None or prev["msg"] == key or prev["sent_at"] <= sent_at:
        entry = {"msg": key, "sent_at": sent_at, "at": now.isoformat(), "votes": {str(k): v for k, v in votes.items()}}
        ballots[p.id] = entry | ({"by": by} if by else {})
        _put(app, year, "ballots", ballots)
        return "" if prev is None or prev["msg"] == key else " (ersätter en tidigare röst)"
    return " (äldre än den röst som redan räknas; den senaste gäller)"


def _ballot(app: App, year: int, p: Person, mail: Any, key: str, now: datetime, s: pl.PlanningSettings,
            r: pl.Round) -> tuple[Outcome, str]:
    ts = topics(app, year)
    parsed, extra = read_ballot(mail)
    check = pl.validate_ballot(parsed, ts, s.votes_per_member)
    if not check.ok or extra:
        problems = list(check.problems) + extra
        outcome, reason = _problem(app, year, p, mail, key, "ballot", problems, r.votes_deadline,
                                   understood=vote_lines(ts, check.votes))
        if round_value(app, year, "result", None) is None:
            asked = ask_coordinator(app, year, p, key, problems, vote_lines(ts, check.votes), now)
            reason += f"; samordnaren tillfrågad ({asked})"
        return outcome, reason
    lines = vote_lines(ts, check.votes)
    sent_at = (mail.date or now).astimezone(UTC).isoformat()  # comparable across time zones
    # A ballot counts until the tally is published (a Saturday vote before Monday's tally counts);
    # after that it is answered and kept for the coordinator, never named to anyone else.
    if round_value(app, year, "result", None) is not None:
        late = round_value(app, year, "late", {})
        late[p.id] = {"msg": key, "at": now.isoformat(), "votes": {str(k): v for k, v in check.votes.items()}}
        _put(app, year, "late", late)
        out = _send(app, "planning_receipt", f"plan-{year}:ballot_late:{p.email}:{key[:12]}", [p],
                    {**_base(app, year, p), "what": "late", "lines": lines, "subject": _subject(mail),
                     "deadline_text": date_text(r.votes_deadline), "total": sum(check.votes.values()),
                     "ignored": list(parsed.ignored)}, in_reply_to=mail.message_id)
        return Outcome.PLANNING_BALLOT_LATE, f"röst från {p.name} efter sammanräkningen; räknas inte (svar: {out})"
    note = record_ballot(app, year, p, key, sent_at, now, check.votes)
    out = _send(app, "planning_receipt", f"plan-{year}:ballot_ok:{p.email}:{key[:12]}", [p],
                {**_base(app, year, p), "what": "ballot", "lines": lines, "subject": _subject(mail),
                 "deadline_text": date_text(r.votes_deadline), "total": sum(check.votes.values()),
                 "after_deadline": now.date() > r.votes_deadline, "ignored": list(parsed.ignored)},
                in_reply_to=mail.message_id)
    return Outcome.PLANNING_BALLOT, f"{sum(check.votes.values())} röster från {p.name}{note} (kvitto: {out})"


def _genitive(name: str) -> str:
    return name if name[-1:].casefold() in ("s", "x", "z") else name + "s"


def named(name: str) -> dict[str, str]:
    """A member's name for the coordinator's mails, with the genitive ("Lena Dalerups röst")."""
    first = name.split()[0]
    return {"name": name, "first_name": first, "genitive": _genitive(name), "first_genitive": _genitive(first)}


def ask_coordinator(app: App, year: int, p: Person, key: str, problems: list[str], understood: list[str],
                    now: datetime) -> str:
    """Tell the coordinator that ``p``'s ballot could not be counted, and that he
    may answer with the votes if he knows them: a reply to it is a correction
    (``services.ballot_correction``)."""
    coord = app.cfg.network.coordinator
    if coord.id == p.id:  # his own ballot: the answer to him already says what to do
        return "samordnarens egen röst"
    _, r = get_round(app, year)
    app.outbox.now = now
    return _send(app, QUESTION, f"plan-{year}:correction_question:{coord.email}:{p.id}:{key[:12]}", [coord],
                {**_base(app, year, coord), "member": named(p.name),
                 "problems": [about_member(x, p.name.split()[0]) for x in problems], "understood": understood,
                 "example": examples([t.number for t in topics(app, year)])[0],
                 "deadline_text": date_text(r.votes_deadline)})


# ------------------------------------------------------------------ close


def current_tally(app: App, year: int) -> pl.Tally:
    s = settings(app)
    ballots = {pid: {int(k): v for k, v in b["votes"].items()} for pid, b in round_value(app, year, "ballots", {}).items()}
    n_late = len(round_value(app, year, "late", {}))  # counted, never named: the notes reach every member
    late = [f"{n_late} {'röst' if n_late == 1 else 'röster'} kom efter sammanräkningen och räknades inte."] if n_late else []
    return pl.tally(topics(app, year), s.areas, ballots, s.focus_per_area, late, min_share=s.focus_min_share)


def groups_for(app: App, year: int, r: pl.Round) -> pl.Groups:
    s = settings(app)
    attending = [p.id for p in round_members(app)]
    if r.physical_meeting:
        answers = app.state.attendance(r.physical_meeting)
        declined = {e for e, v in answers.items() if v == "DECLINED"}
        attending = [p.id for p in round_members(app) if p.email not in declined]
    previous = round_value(app, year - 1, "groups", None) or [list(g) for g in r.previous_groups]
    return pl.workshop_groups(attending, app.cfg.network.coordinator.id, s.groups, previous)


def close_round(app: App, year: int, now: datetime) -> list[str]:
    """Tally, groups, draft plan and Handlingsplan in the archive; the result to the members."""
    from kcg_mail.core.round_draft import draft_plan

    s, r = get_round(app, year)
    app.outbox.now = now
    if not topics(app, year):
        raise PlanningProblem(f"röstlistan för {year} är inte publicerad än: svara ja på mejlet om röstlistan först")
    t = current_tally(app, year)
    g = groups_for(app, year, r)
    _put(app, year, "groups", [list(x) for x in g.groups])
    if r.physical_meeting:
        names = {p.id: p.name for p in app.cfg.network.members}
        app.ledger.workshop_groups.put(r.physical_meeting, [[names.get(x, x) for x in grp] for grp in g.groups])
    themes = [row.text for row in t.focus()]
    earlier = [p for p in app.cfg.plans if p.year < year]
    draft = draft_plan(year, list(app.cfg.network.members), earlier, holiday_policy=app.cfg.meetings.holiday_policy,
                       extra_days=frozenset(app.cfg.meetings.extra_non_working_days), themes=themes)
    base = folder(app, year)
    short = app.cfg.network.short
    draft_file = app.archive.store(f"{base}/plan-{year} utkast.yaml", draft.to_yaml().encode("utf-8"))
    doc = action_plan_docx(app, year, t, g, draft)
    from kcg_mail.core.naming import render_name

    name = render_name(app.cfg.meetings.naming["file"], {
        "date": now.date().isoformat(), "short": short, "doc": "Handlingsplan", "theme_no": "", "theme": str(year),
        "theme_label": str(year), "host": app.cfg.network.coordinator.name, "city": "", "year": year,
        "month": f"{now.month:02d}", "kind": "Handlingsplan"})
    stored = app.archive.store(f"{base}/{name}.docx", doc)
    result = {"rows": [r_.__dict__ for r_ in t.rows], "ties": list(t.ties), "late": list(t.late),
              "ballots": t.ballots, "path": stored.path, "draft": draft_file.path, "at": now.isoformat(),
              "groups": [list(x) for x in g.groups], "repeated_pairs": g.repeated_pairs}
    names = {p.id: p.name for p in app.cfg.network.members}
    areas = [{"name": a.name, "rows": [x.__dict__ for x in t.area_rows(a.name) if x.votes > 0]} for a in s.areas]
    meeting = app.meeting(r.physical_meeting) if r.physical_meeting else None
    out = _send(app, "planning_result", f"plan-{year}:result:members", round_members(app),
                {**_base(app, year), "areas": areas, "ballots": t.ballots, "notes": list(t.ties) + list(t.late),
                 "groups": [[names.get(x, x) for x in grp] for grp in g.groups], "path": stored.path,
                 "meeting_text": meeting.date_text() if meeting else ""},
                attachments=(Attachment(stored.path.rpartition("/")[2], DOCX, doc),))
    _put(app, year, "result", result)
    from kcg_mail.services.plan_adoption import after_tally  # the workshop groups' tasks, the coordinator's table

    workshop = after_tally(app, year, now, stored.path.rpartition("/")[2], doc, list(s.areas))
    return workshop + [f"rösterna räknade: {t.ballots} röstsedlar, {len(t.focus())} fokusområden",
            f"Handlingsplan {year} arkiverad: {stored.path}", f"utkast till årsplan: {draft_file.path}",
            f"resultatet till medlemmarna: {out}"] + list(t.ties) + list(t.late)


def action_plan_docx(app: App, year: int, t: pl.Tally, g: pl.Groups, draft: Any) -> bytes:
    """"Handlingsplan YYYY – utkast": what the network adopts at January's physical meeting."""
    from kcg_mail.core.plan import apply_holiday_policy, first_monday
    from kcg_mail.core.plan_adoption import Task
    from kcg_mail.documents.round_action_plan import ActionPlan, AreaNeeds, PlanRow, TopicVotes, render_action_plan

    net, rules_ = app.cfg.network, app.cfg.meetings
    first = {p.id: p.name.split()[0] for p in net.members}
    labels = rules_.kind_labels
    extra = frozenset(rules_.extra_non_working_days)
    rows: list[PlanRow] = []
    tasks: list[Task] = []
    earlier = [m for p in app.cfg.plans if p.year < year for m in p.meetings if m.month.startswith(f"{year}-")]
    for pm in sorted(earlier + list(draft.meetings), key=lambda m: m.month):
        y, mo = int(pm.month[:4]), int(pm.month[5:])
        if pm.date is not None and not pm.tentative:
            when = date_text(pm.date)
        elif pm.kind in ("physical", "study_trip") or pm.tentative:
            when = "bestäms av samordnaren"  # a place and travel: the coordinator sets the date
        else:
            when = date_text(apply_holiday_policy(first_monday(y, mo), rules_.holiday_policy, extra))
        theme = f"Tema {pm.theme_no}: {pm.theme}" if pm.theme_no else pm.theme
        host = first.get(pm.host, pm.host) + (f" ({first.get(pm.backup_host, pm.backup_host)})" if pm.backup_host else "")
        month = f"{MONTHS_SV[mo - 1].capitalize()} {y}"
        rows.append(PlanRow(month, when, labels.get(pm.kind, pm.kind), theme, host))
        if pm.kind == "study_trip":
            what = "Studieresa: resmål, program och resa" + ("" if pm.theme.casefold() == "studieresa" else f" ({pm.theme})")
        elif pm.kind == "physical":
            what = "Fysiskt möte: lokal, program och workshop"
        else:
            what = f"Leda månadens tema: {theme}"
        tasks.append(Task(what, host, when if when != "bestäms av samordnaren" else f"{month} (datum bestäms av samordnaren)"))
    coordinator = f"{net.coordinator.name}, {net.coordinator.organisation}".rstrip(", ")
    tasks += [
        Task("Beslutsprotokoll efter varje möte, på nätverkets mall", "Mötets värd", "senast två arbetsdagar efter mötet"),
        Task("Protokollet arkiveras och skickas till alla medlemmar", coordinator, "när protokollet kommit in"),
        Task("Datum, plats och program för fysiska möten och studieresan", coordinator, "senast tio veckor före"),
    ]

    from kcg_mail.services.followup import groups as project_groups
    from kcg_mail.services.followup import proposals as project_proposals

    projects: list[str] = []
    for grp in project_groups(app):
        if grp.start.year <= year and (grp.end is None or grp.end.year >= year):
            lead = net.person(grp.lead).name if grp.lead in {p.id for p in net.members} else grp.lead
            since = f"{MONTHS_SV[grp.start.month - 1]} {grp.start.year}"
            projects.append(f"{grp.name} – pågår sedan {since}; ledare {lead}"
                            + (f"; {grp.purpose}" if grp.purpose else ""))
            tasks.append(Task(f"Projektgrupp {grp.name}: lägesrapport", lead, "inför varje månadsmöte"))
    for d, prop in project_proposals(app):
        lead = net.person(prop.lead).name if prop.lead in {p.id for p in net.members} else prop.lead
        projects.append(f"{prop.name} – föreslagen i protokollet {d.meeting_id}, ännu inte startad; föreslagen ledare {lead}")
    s = settings(app)
    adopt = app.meeting(f"{year}-01")
    ap = ActionPlan(
        year=year, network=net.name, short=net.short, purpose=net.purpose, values=list(net.values),
        rules=list(net.rules), members=[(p.name, p.organisation) for p in net.active_members],
        areas={a.name: [TopicVotes(x.number, x.text, x.votes, x.focus) for x in t.area_rows(a.name)] for a in s.areas},
        needs={a.name: AreaNeeds(a.description, tuple(a.questions)) for a in s.areas},
        plan=rows, agenda=list(app.cfg.meetings.agenda), tasks=tasks, projects=projects,
        groups=[[net.person(x).name for x in grp] for grp in g.groups], ballots=t.ballots,
        notes=list(t.ties), draft=True, votes_per_member=s.votes_per_member, min_share=s.focus_min_share,
        adopt_at=f"vid det fysiska mötet {adopt.date_text()}" if adopt and adopt.kind == "physical" else "")
    return render_action_plan(ap)


def draft_for(app: App, year: int) -> Any:
    """The draft plan for ``year``: themes from the round's focus topics when a round ran."""
    from kcg_mail.services.plan_adoption import draft_for as draft

    return draft(app, year)


def open_rounds(app: App) -> list[int]:
    """Plan years whose round is started and not closed (what the daily tick looks after)."""
    try:
        s = settings(app)
    except PlanningProblem:
        return []
    return sorted(y for y in s.rounds if round_value(app, y, "started", None) and round_value(app, y, "result", None) is None)


def write_draft(app: App, year: int, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(draft_for(app, year).to_yaml(), encoding="utf-8")
    return out
