"""``kcg demo --planning``: the planning round for 2024, played in November
and December 2023 on the embedded defaults (Maildir, local folder, SQLite).

The members answer like people do: they reply to the network's mails from
their own address, some with the Word form or ballot filled in (python-docx),
some in the text of the mail. Fourteen members send needs (two after the
reminder). On the ballot they write as people do: "3: 4, 12: 3", "3 fyra
röster" a line each, "4 röster på 3", one fills in the Word ballot. One
member first sends too many votes and corrects it after the polite answer;
one writes a ballot that cannot be read for certain, and the coordinator
answers our question about it with her votes ("Hanna: 3: 6, 12: 4"); one
votes after the reminder and one after the last day, before the tally. The
round ends with "Handlingsplan 2024" and the draft plan in the archive.
Everything goes through the real flows: ``kcg-planning-*`` and the intake.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kcg_mail.core.config_model import Person
from kcg_mail.entrypoints.demo_hosts import (
    ballot_numbers,
    docx_attachment,
    fill_ballot,
    fill_needs_form,
    reply_to,
    reply_to_sent,
    sent_message,
)

YEAR = 2024

#: what members suggest (area -> topics), taken from the network's own lists
SUGGESTIONS = {
    "Omvärldsbevakning": ["Studieresa", "Framtidens stadskärna", "Föredrag: Vad krävs för tillväxt?",
                          "Aktuella föredrag", "Hur gör vi med Kairos?"],
    "Erfarenhetsutbyte & kompetensutveckling": ["Trygghet", "Affärsplanering", "Mobilitet & citylogistik",
                                                 "Medlemsengagemang", "Besöksflöden"],
    "Gemensamma frågor & projekt": ["Gemensamt finansierad omvärldsanalys", "Policy/branschpraxis",
                                    "Omsättningsstatistik", "Etableringar och etableringskonsekvenser"],
    "Kollegialt stöd": ["Roterande faddergrupper", "Utrymme för rådgivning"],
}
#: how popular each topic is when people vote (first = most)
POPULAR = ["Studieresa", "Gemensamt finansierad omvärldsanalys", "Trygghet", "Framtidens stadskärna",
           "Policy/branschpraxis", "Affärsplanering", "Omsättningsstatistik", "Föredrag: Vad krävs för tillväxt?",
           "Mobilitet & citylogistik", "Medlemsengagemang", "Roterande faddergrupper", "Besöksflöden"]
WORD_NEEDS = {"aljosa", "bjorn", "hanna", "lena", "maria", "pia"}
WORD_BALLOT = {"maria"}
LATE_NEEDS = ("jessica", "linda")
INVALID_THEN_FIXED = "daniel"
#: writes a ballot that cannot be read for certain; the coordinator answers our question with her votes
CORRECTED_BY_COORDINATOR = "hanna"
AFTER_REMINDER = "jessica"
#: votes the day after the last day, before the tally: counted (a ballot counts until the result is out)
WEEKEND_VOTER = "lena"


@dataclass
class RoundResult:
    flow_runs: int
    seconds: float
    handlingsplan: str
    draft: str
    #: the workshop groups' task mails, and the 2024 meetings the product runs once the plan is adopted
    group_tasks: int = 0
    adopted: list[str] | None = None


def suggestions_of(i: int) -> dict[str, list[str]]:
    """Member i suggests a few topics per area (overlapping, as in real rounds)."""
    out: dict[str, list[str]] = {}
    for k, (area, pool) in enumerate(SUGGESTIONS.items()):
        n = 1 + (i + k) % 3
        out[area] = [pool[(i + j + k) % len(pool)] for j in range(n)]
    return out


def needs_text(topics: dict[str, list[str]]) -> str:
    lines = ["Hej!", "", "Här kommer mina förslag."]
    for area, ts in topics.items():
        lines += ["", area + ":"] + [f"- {t}" for t in ts]
    return "\n".join(lines + ["", "Hälsningar"])


def preferences(i: int) -> list[str]:
    """Member i's four favourites: the popular ones often, a little personal taste."""
    picks = [POPULAR[i % 4], POPULAR[(i + 4) % 9], POPULAR[(i * 2 + 1) % 12], POPULAR[(i * 5 + 3) % 12]]
    picks = list(dict.fromkeys(picks))
    picks += [t for t in POPULAR if t not in picks][:4 - len(picks)]
    return picks


def votes_of(i: int, numbers: dict[str, int]) -> dict[int, int]:
    prefs = [numbers[t] for t in preferences(i) if t in numbers]
    split = [4, 3, 2, 1][:len(prefs)]
    split[0] += 10 - sum(split)
    return dict(zip(prefs, split))


WORDS = ["noll", "en", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio", "tio"]


def ballot_text(i: int, votes: dict[int, int]) -> str:
    """A ballot in the words of member i: the forms the ballot mail offers, and a few more."""
    items = sorted(votes.items())
    if i % 4 == 0:
        return "Hej!\n\nMina röster: \n" + ", ".join(f"{n}:{v}" for n, v in items) + "\n\nHälsningar"
    if i % 4 == 1:
        return "\n".join(f"{n} {WORDS[v]} {'röst' if v == 1 else 'röster'}" for n, v in items) + "\n\n/hälsningar"
    if i % 4 == 2:
        return "Hej,\n" + "\n".join(f"{v} {'röst' if v == 1 else 'röster'} på {n}" for n, v in items) + "\n\nMvh"
    return "Röster:\n" + "\n".join(f"{n}: {WORDS[v]}" for n, v in items)


def at(d: date, hour: int, tz: str = "Europe/Stockholm") -> datetime:
    return datetime.combine(d, dtime(hour), ZoneInfo(tz))


def play_round(workdir: Path, config_dir: Path | None = None, echo: Callable[[str], None] = print) -> RoundResult:
    """The planning round for 2024 through the real flows; idempotent like the rest of the demo."""
    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from flows.round import planning_start, planning_tick
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.demo_hosts import maildir, stamp_authentication
    from kcg_mail.services import round as round_
    from kcg_mail.services.pacing import next_release_day

    t0 = time.monotonic()
    app = bootstrap(workdir, config_dir)
    _, r = round_.get_round(app, YEAR)
    kw: dict[str, Any] = {"workdir": str(workdir), "config_dir": str(config_dir) if config_dir else None}
    runs = 0
    members = app.cfg.network.active_members
    index = {p.id: i for i, p in enumerate(members)}

    trusted = app.cfg.transport.inbound.trusted_authserv_ids

    def deliver(name: str, raw_of: Callable[[], bytes]) -> None:
        # as our receiving server hands it over: authenticated (SECURITY.md)
        raw = raw_of()
        maildir(app).deliver(stamp_authentication(raw, trusted[0]) if trusted else raw, name)

    def intake(d: date, hour: int = 12) -> None:
        nonlocal runs
        catch_up(d)
        intake_flow(now=f"{d.isoformat()}T{hour:02d}:00", **kw)
        runs += 1

    def flow(f: Callable[..., dict[str, Any]], d: date) -> None:
        nonlocal runs
        catch_up(d)
        f(year=YEAR, date=d.isoformat(), **kw)
        runs += 1

    def catch_up(d: date) -> None:
        """The daily runs up to ``d`` that send what waited for the member caps (the
        schedule runs the daily flow every morning; the demo runs it on those days)."""
        nonlocal runs
        since = last_daily[0]
        while (due := next_release_day(app.state, since)) is not None and due <= d:
            daily_flow(date=due.isoformat(), **kw)
            runs += 1
            since = last_daily[0] = due

    last_daily = [date.fromordinal(r.start.toordinal() - 1)]

    done = round_.round_value(app, YEAR, "result", None)
    if done:  # played already: nothing is sent again
        tasks, adopted, more = play_adoption(workdir, config_dir, echo)
        return RoundResult(more, time.monotonic() - t0, done["path"], done["draft"], tasks, adopted)

    # 1. Nuläge & behov
    flow(planning_start, r.start)
    day = date.fromordinal(r.start.toordinal() + 2)

    def answer_needs(p: Person, d: date) -> None:
        catch_up(d)
        i = index[p.id]
        topics = suggestions_of(i)
        original = sent_message(app, f"plan-{YEAR}:needs:{p.email}")
        if p.id in WORD_NEEDS:
            name, data = docx_attachment(original)
            raw = reply_to(original, p, "Hej! Mina förslag finns i formuläret.", at(d, 10),
                           (name, fill_needs_form(data, topics)))
        else:
            raw = reply_to(original, p, needs_text(topics), at(d, 10))
        deliver(f"needs-{p.id}.eml", lambda: raw)

    def by_day(people: list[Person], step: str, d: date) -> Iterator[tuple[date, list[Person]]]:
        """``people`` by the day they answer: ``d``, or the day our mail of ``step`` reached
        them (it may wait for the member caps; the daily run of that day sends it)."""
        waiting, until = list(people), date.fromordinal(d.toordinal() + 30)
        while waiting:
            if d > until:
                raise RuntimeError(f"{step} never reached {', '.join(p.name for p in waiting)}")
            catch_up(d)
            came = [p for p in waiting if (rec := app.state.action(f"plan-{YEAR}:{step}:{p.email}")) is not None
                    and rec.status == "done"]
            if came:
                yield d, came
            waiting = [p for p in waiting if p not in came]
            d = date.fromordinal(d.toordinal() + 1)

    for d, group in by_day([p for p in members if p.id not in LATE_NEEDS], "needs", day):
        for p in group:
            answer_needs(p, d)
        intake(d)
    flow(planning_tick, r.needs_reminder)
    late_day = date.fromordinal(r.needs_reminder.toordinal() + 2)
    for d, group in by_day([p for p in members if p.id in LATE_NEEDS], "needs_reminder", late_day):
        for p in group:
            answer_needs(p, d)
        intake(d)
    after = date.fromordinal(r.needs_deadline.toordinal() + 3)
    flow(planning_tick, after)  # the candidate list for the coordinator

    # 2. Målbild & prioriteringar: the coordinator publishes the list as written, by replying
    # "ja" to the mail that asks him (services/ballot_publish.py; the form is kcg-planning-publish)
    publish_day = date.fromordinal(after.toordinal() + 2)
    coord = app.cfg.network.coordinator
    asked = sent_message(app, f"plan-{YEAR}:candidates:{coord.email}")
    yes = reply_to(asked, coord, "Ja, publicera den.\n\nBjörn", at(publish_day, 9))
    deliver("publish-answer.eml", lambda: yes)
    intake(publish_day, 10)
    vote_day = date.fromordinal(publish_day.toordinal() + 2)

    def vote(p: Person, d: date, votes_override: dict[int, int] | None = None, tag: str = "") -> None:
        catch_up(d)
        i = index[p.id]
        original = sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
        name, data = docx_attachment(original)
        votes = votes_override or votes_of(i, ballot_numbers(data))
        if p.id in WORD_BALLOT and votes_override is None:
            raw = reply_to(original, p, "Hej! Här är min röstsedel.", at(d, 9), (name, fill_ballot(data, votes)))
        else:
            raw = reply_to(original, p, ballot_text(i, votes), at(d, 9))
        deliver(f"ballot-{p.id}{tag}.eml", lambda: raw)

    def unclear_ballot(p: Person, d: date) -> None:  # numbers without votes: not guessed
        catch_up(d)
        original = sent_message(app, f"plan-{YEAR}:ballot:{p.email}")
        numbers = ballot_numbers(docx_attachment(original)[1])
        raw = reply_to(original, p, f"Hej! Jag röstar på {numbers[POPULAR[0]]} och {numbers[POPULAR[1]]}.", at(d, 9))
        deliver(f"ballot-{p.id}-unclear.eml", lambda: raw)

    def too_many(p: Person, d: date) -> None:
        catch_up(d)
        numbers = ballot_numbers(docx_attachment(sent_message(app, f"plan-{YEAR}:ballot:{p.email}"))[1])
        vote(p, d, {numbers[POPULAR[0]]: 6, numbers[POPULAR[2]]: 6}, "-1")  # 12 votes: too many

    voters = [p for p in members if p.id not in (AFTER_REMINDER, WEEKEND_VOTER)]
    last = vote_day
    for d, group in by_day(voters, "ballot", vote_day):
        for p in group:
            {CORRECTED_BY_COORDINATOR: unclear_ballot, INVALID_THEN_FIXED: too_many}.get(p.id, vote)(p, d)
        intake(d)
        last = d
    # the coordinator answers our question about the unclear ballot with her votes (she told him by phone)
    hanna = next(p for p in members if p.id == CORRECTED_BY_COORDINATOR)
    numbers = ballot_numbers(docx_attachment(sent_message(app, f"plan-{YEAR}:ballot:{hanna.email}"))[1])
    question = next(r.key for r in app.state.actions() if r.action == "planning_question"
                    and f":{hanna.id}:" in r.key)
    answer_day = date.fromordinal(last.toordinal() + 1)
    answer = reply_to_sent(app, question, app.cfg.network.coordinator, at(answer_day, 8),
                           f"{hanna.name.split()[0]}: {numbers[POPULAR[0]]}: 6, {numbers[POPULAR[1]]}: 4")
    assert answer is not None
    maildir(app).deliver(answer, f"correction-{hanna.id}.eml")
    intake(answer_day)
    fix_day = date.fromordinal(last.toordinal() + 3)
    vote(next(p for p in members if p.id == INVALID_THEN_FIXED), fix_day, tag="-2")
    intake(fix_day)
    flow(planning_tick, r.votes_reminder)
    # the day after the reminder reached her (it may wait for the member caps)
    late_voter = next(p for p in members if p.id == AFTER_REMINDER)
    waited = app.ledger.waiting_mail(f"plan-{YEAR}:ballot_reminder:{late_voter.email}")
    reminded = date.fromordinal((date.fromisoformat(waited["until"]) if waited else r.votes_reminder).toordinal() + 1)
    vote(next(p for p in members if p.id == AFTER_REMINDER), reminded)
    intake(reminded)
    weekend = date.fromordinal(r.votes_deadline.toordinal() + 1)
    vote(next(p for p in members if p.id == WEEKEND_VOTER), weekend)
    intake(weekend)
    flow(planning_tick, date.fromordinal(r.votes_deadline.toordinal() + 3))  # closes the round
    res = round_.round_value(app, YEAR, "result", {})
    echo(f"Handlingsplan {YEAR}: {res.get('path')}")
    tasks, adopted, more = play_adoption(workdir, config_dir, echo)
    return RoundResult(runs + more, time.monotonic() - t0, res.get("path", ""), res.get("draft", ""), tasks, adopted)


#: what the workshop changed in the draft (a row of the protocol's year plan): February's theme
WORKSHOP_EDIT = ("Februari 2024", 2, "Tema 1: Trygghet i stadskärnan – projektgruppen redovisar")


def play_adoption(workdir: Path, config_dir: Path | None = None,
                  echo: Callable[[str], None] = print) -> tuple[int, list[str], int]:
    """The January workshop adopts the 2024 plan: the host mails back the protocol with
    its Handlingsplan section filled in (the workshop changed February's theme), the
    coordinator is asked and says "Ja" by reply, and the daily run then briefs
    February's host. Returns (group task mails, the first 2024 meetings, flow runs)."""
    import io

    from docx import Document

    from flows.daily import daily_flow
    from flows.intake import intake_flow
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.core.cycle import due_dates
    from kcg_mail.entrypoints.demo_hosts import fill_protocol, maildir, reply_to_template, stamp_authentication
    from kcg_mail.services import daily
    from kcg_mail.services.pacing import next_release_day

    app = bootstrap(workdir, config_dir)
    kw: dict[str, Any] = {"workdir": str(workdir), "config_dir": str(config_dir) if config_dir else None}
    jan = app.meeting(f"{YEAR}-01")
    runs = 0
    # the group tasks (and the result) may wait for the member caps: the daily runs send them before the workshop
    result = app.ledger.planning_values.get(YEAR, "result") or {}
    since = datetime.fromisoformat(result["at"]).date() if result.get("at") else None
    while since is not None and jan is not None and (due := next_release_day(app.state, since)) is not None \
            and due < jan.date:
        daily_flow(date=due.isoformat(), **kw)
        runs += 1
        since = due
    tasks = sum(1 for r in app.state.actions() if r.action == "workshop_task" and r.status == "done")
    trusted = app.cfg.transport.inbound.trusted_authserv_ids
    coord = app.cfg.network.coordinator

    def deliver(raw: bytes, name: str) -> None:
        maildir(app).deliver(stamp_authentication(raw, trusted[0]) if trusted else raw, name)

    def workshop_asks() -> list[str]:
        """The questions to the coordinator about a plan read from a protocol with the workshop's edit."""
        cands = app.ledger.plan_adoptions.get(YEAR).get("candidates", {})
        return [f"plan-{YEAR}:adopt:{ref}:ask" for ref, c in sorted(cands.items()) if c["source"] == "protocol"
                and any(f"Tema {m.get('theme_no')}: {m['theme']}" == WORKSHOP_EDIT[2] for m in c["plan"]["meetings"])]

    if jan is not None and not any(p.year == YEAR for p in app.cfg.plans):
        if not workshop_asks():  # the host's protocol with the section as the workshop filled it in
            if app.state.action(f"{jan.id}:send_template:{jan.host.email}") is None:  # the round played alone
                daily.send_template(app, jan, at(date.fromordinal(jan.date.toordinal() - 1), 7))
            template = hosts_template(app, jan)
            doc = Document(io.BytesIO(fill_protocol(daily.render_protocol(app, jan).data, jan)))
            month, col, text = WORKSHOP_EDIT
            table = next(t for t in doc.tables if t.rows[0].cells[0].text == "Månad")
            cell = next(r for r in table.rows if r.cells[0].text == month).cells[col]
            cell.paragraphs[0].runs[0].text = text
            out = io.BytesIO()
            doc.save(out)
            # the day after the meeting; the day after that when the host's minutes already went out
            # (the year's run): a second version the same day would reach every member twice
            when = at(date.fromordinal(jan.date.toordinal() + (2 if app.state.filings(jan.id) else 1)), 11)
            deliver(reply_to_template(jan, when, to=app.cfg.network.mailbox.email, subject=template[0],
                                      message_id=template[1], filename=template[2], docx=b"", filled=out.getvalue()),
                    f"{jan.id}-protocol-handlingsplan.eml")
            intake_flow(now=f"{when.date().isoformat()}T12:00", **kw)
            runs += 1
        asked = workshop_asks()
        if asked:  # the coordinator reads what was understood and says yes from his phone
            original = sent_message(app, asked[-1])
            rec = app.state.action(asked[-1])  # he answers the day after he was asked
            asked_on = date.fromisoformat(rec.detail["on"]) if rec and rec.detail.get("on") else jan.date
            day = date.fromordinal(asked_on.toordinal() + 1)
            deliver(reply_to(original, coord, "Ja, det stämmer. Tack!\n\nBjörn", at(day, 8)), "plan-2024-yes.eml")
            intake_flow(now=f"{day.isoformat()}T09:00", **kw)
            runs += 1
    app = bootstrap(workdir, config_dir)  # as the next flow run reads the config: with plans/plan-2024.yaml
    planned = [m for m in app.meetings if m.date.year == YEAR and m.id != f"{YEAR}-01"]
    if planned:  # the product runs the adopted plan: February's host is briefed on the day it is due
        first = planned[0]
        brief = due_dates(first, app.cfg.meetings.lead_days, app.extra_days)["brief_host"]
        adopted = app.ledger.plan_adoptions.get(YEAR).get("adopted", {}).get("at")
        # the first daily run after the yes (a brief due earlier goes out then, as it would for real)
        day = max(brief, datetime.fromisoformat(adopted).date()) if adopted else brief
        daily_flow(date=day.isoformat(), **kw)
        runs += 1
    shown = [f"{m.date_text()}: {m.theme_label}, värd {m.host.name}" for m in planned[:3]]
    for line in shown:
        echo(f"Årsplan {YEAR}: {line}")
    return tasks, shown, runs


def hosts_template(app: Any, m: Any) -> tuple[str, str, str]:
    """(subject, Message-ID, file name) of the template mail the host replies to."""
    original = sent_message(app, f"{m.id}:send_template:{m.host.email}")
    name = next((p.get_filename() for p in original.iter_attachments()), None) or "protokoll.docx"
    return str(original["Subject"]), str(original["Message-ID"]), name
