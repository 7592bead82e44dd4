"""The workshop adopts next year's plan, and the product runs it.

After the planning round's tally (``kcg_mail.services.round.close_round``):

- each workshop group gets its task mail (``send_group_tasks``): its
  collaboration area(s), the needs and votes collected for them, the
  workshop's questions, who leads, and the draft Handlingsplan attached;
- the coordinator gets next year's plan as a Word table
  ("Årsplan YYYY – utkast.docx", ``offer_table``) he may edit and mail back.

The January meeting's protocol template has a section for the adopted plan
(``protocol_section``). When the host's protocol is filed, the intake hands
the rebuilt file to ``from_protocol``; the coordinator's edited table comes as a
reply to the table mail. Either way the plan is read (``kcg_mail.documents.plan_table``),
checked like ``kcg check`` checks a plan file, and shown to the coordinator
as a question: what was understood, month by month. His "ja" by reply
(``handle_answer``, reached through ``answers.handle_answer`` for
``what == "adopt_plan"``) stores it as ``<workdir>/plans/plan-YYYY.yaml``,
which the config loader reads with ``config/plan-*.yaml``. Whichever source is
adopted first wins; the other gets a polite note that nothing changed.

Every mail goes through the Outbox with a deterministic key; the candidates
and the adoption are in the state record (``Ledger.plan_adoptions``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kcg_mail.core import plan_adoption as pa
from kcg_mail.core.config_model import Person, Plan
from kcg_mail.core.inbound import ParsedMail, QuestionRef
from kcg_mail.core.inbound.answer import read_yes_no
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.plan import Meeting, resolve_plan
from kcg_mail.core.round import Area
from kcg_mail.ports import ActionRecord, Attachment
from kcg_mail.services import questions
from kcg_mail.services.app import App
from kcg_mail.services.compose import DOCX, person_ctx

log = logging.getLogger(__name__)

WHAT = "adopt_plan"
#: the mails that ask the coordinator about next year's plan (each is a question he can answer by reply)
TABLE_KIND, ASK_KIND, TASK_KIND = "plan_table", "plan_adoption", "workshop_task"
_KEY = re.compile(r"^plan-(\d{4}):adopt:([^:]+):")
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:sv|re|vs|aw|fwd?)\s*:\s*)+", re.IGNORECASE)
DOCUMENTS = (".docx", ".odt")


def _names(app: App) -> dict[str, str]:
    return {p.id: p.name for p in app.cfg.network.members}


def _rows(app: App, meetings: Any) -> list[tuple[str, ...]]:
    rules = app.cfg.meetings
    return pa.table_rows(meetings, _names(app), rules.kind_labels, holiday_policy=rules.holiday_policy,
                         extra_days=frozenset(rules.extra_non_working_days))


def _signed(app: App) -> str:
    c = app.cfg.network.coordinator
    return f"{c.name}, {c.organisation}".rstrip(", ")


def draft_for(app: App, year: int) -> Any:
    """The draft plan for ``year``: themes from the planning round's focus topics when a round ran."""
    from kcg_mail.core.round_draft import draft_plan

    result = _result(app, year)
    themes = [r["text"] for r in sorted((r for r in result["rows"] if r["focus"]),
                                        key=lambda r: (-r["votes"], r["number"]))] if result else None
    return draft_plan(year, list(app.cfg.network.members), [p for p in app.cfg.plans if p.year < year],
                      holiday_policy=app.cfg.meetings.holiday_policy,
                      extra_days=frozenset(app.cfg.meetings.extra_non_working_days), themes=themes)


def _result(app: App, year: int) -> dict[str, Any]:
    """The planning round's result for ``year`` (tally rows, groups), {} before the tally."""
    return dict(app.ledger.planning_values.get(year, "result") or {})


def adoption_meeting(app: App, year: int) -> Meeting | None:
    """The January physical meeting where ``year``'s plan is adopted."""
    m = app.meeting(f"{year}-01")
    return m if m is not None and m.kind == "physical" else None


def has_plan(app: App, year: int) -> bool:
    return any(p.year == year for p in app.cfg.plans)


# ------------------------------------------------------------------ after the tally


def after_tally(app: App, year: int, now: datetime, plan_name: str, plan_doc: bytes, areas: list[Area]) -> list[str]:
    """The workshop groups' tasks and the coordinator's Word table."""
    lines = send_group_tasks(app, year, now, plan_name, plan_doc, areas)
    if not has_plan(app, year):
        lines.append(f"årsplanen {year} som Word-tabell till samordnaren: {offer_table(app, year, now)}")
    return lines


def send_group_tasks(app: App, year: int, now: datetime, plan_name: str, plan_doc: bytes,
                     areas_: list[Area]) -> list[str]:
    app.outbox.now = now
    result = _result(app, year)
    groups: list[list[str]] = result.get("groups") or []
    if not groups:
        return []
    net = app.cfg.network
    people = {p.id: p for p in net.members}
    meeting = adoption_meeting(app, year)
    rows = result.get("rows", [])
    questions = {a.name: list(a.questions) for a in areas_}
    lines = []
    for task in pa.group_tasks(groups, [a.name for a in areas_], net.coordinator.id):
        members = [people[x] for x in task.members if x in people]
        if not members:
            continue
        areas = [{"name": a, "questions": questions.get(a, []),
                  "rows": [r for r in rows if r["area"] == a and r["votes"] > 0],
                  "unvoted": [r["text"] for r in rows if r["area"] == a and r["votes"] == 0]} for a in task.areas]
        ctx = {"year": year, "group": task.number, "members": [p.name for p in members],
               "lead": person_ctx(people[task.lead]) if task.lead in people else None, "areas": areas,
               "questions": list(pa.WORKSHOP_QUESTIONS), "target_question": pa.TARGET_QUESTION,
               "meeting": app.composer.meeting_ctx(meeting, app.meetings) if meeting else None,
               "plan_name": plan_name, "signed": _signed(app)}
        msg = app.composer.message(TASK_KIND, f"plan-{year}:workshop_task:{task.number}", meeting, members, ctx,
                                   attachments=(Attachment(plan_name, DOCX, plan_doc),))
        lines.append(f"workshopgrupp {task.number} ({', '.join(task.areas)}): {app.outbox.send(msg)}")
    return lines


def table_name(year: int) -> str:
    return f"Årsplan {year} – utkast.docx"


def offer_table(app: App, year: int, now: datetime, *, pdf: bool = False) -> str:
    """Next year's plan as a Word table to the coordinator: a question he answers
    with the edited table, or with "ja" to adopt it as it is. ``pdf``: the January
    protocol came as a PDF, from which no plan can be read; the table is offered
    again, saying so."""
    from kcg_mail.documents.plan_table import render_plan_table

    app.outbox.now = now
    draft = draft_for(app, year)
    plan = Plan.model_validate(draft.as_dict())
    ref = "pdf" if pdf else "draft"
    _put_candidate(app, year, ref, "table", plan, now, "utkastet som skickades till dig")
    data = render_plan_table(app.cfg.network.name, year, _rows(app, draft.meetings), signed=_signed(app))
    coord = app.cfg.network.coordinator
    meeting = adoption_meeting(app, year)
    msg = app.composer.message(TABLE_KIND, f"plan-{year}:adopt:{ref}:{coord.email}", None, [coord],
                               {"year": year, "table": table_name(year), "lines": _understood(app, plan),
                                "meeting": app.composer.meeting_ctx(meeting, app.meetings) if meeting else None,
                                "signed": _signed(app), "pdf": pdf},
                               attachments=(Attachment(table_name(year), DOCX, data),))
    return app.outbox.send(msg)


# ------------------------------------------------------------------ the protocol


def protocol_section(app: App, m: Meeting) -> dict[str, Any] | None:
    """The protocol template's section for the plan the January meeting adopts
    (prefilled with the draft), or None for any other meeting."""
    year = m.date.year
    if adoption_meeting(app, year) is None or adoption_meeting(app, year) != m or has_plan(app, year):
        return None
    result = _result(app, year)
    if not result and _round_ahead(app, year):  # the round's votes are not in yet: no draft to adopt
        return None
    draft = draft_for(app, year)
    focus = sorted((r for r in result.get("rows", []) if r["focus"]), key=lambda r: (-r["votes"], r["number"]))
    coord = _signed(app)
    tasks = [pa.Task("Beslutsprotokoll efter varje möte, på nätverkets mall", "Mötets värd", "senast två arbetsdagar efter"),
             pa.Task("Datum, plats och program för fysiska möten och studieresan", coord, "senast tio veckor före"),
             pa.Task("", "", ""), pa.Task("", "", "")]
    return {
        "year": year,
        "focus": [{"area": r["area"], "topic": r["text"], "votes": str(r["votes"])} for r in focus],
        "rows": [dict(zip(("month", "date", "theme", "host", "backup_host", "kind"), r))
                 for r in _rows(app, draft.meetings)],
        "tasks": [t._asdict() for t in tasks],
    }


def _round_ahead(app: App, year: int) -> bool:
    """A planning round for ``year`` is configured (it prepares the workshop's draft)."""
    from kcg_mail.config_loader import ConfigError, load_planning

    try:
        s = load_planning(app.cfg.directory)
    except ConfigError:
        return False
    return s is not None and year in s.rounds


def from_protocol(app: App, m: Meeting, filename: str, data: bytes, now: datetime) -> str:
    """A filed protocol of the January meeting: read its plan section and ask the
    coordinator. "" when the meeting adopts no plan or the file has no plan table."""
    from kcg_mail.documents.ooxml import MinutesRejected
    from kcg_mail.documents.plan_table import read_plan_document

    year = m.date.year
    if adoption_meeting(app, year) != m:
        return ""
    if filename.lower().endswith(".pdf"):  # no table can be read from a PDF: he gets the Word table again
        if protocol_section(app, m) is None or app.ledger.plan_adoptions.get(year).get("adopted"):
            return ""  # the protocol had no plan section to fill in, or the plan is adopted
        return f"protokollet är en PDF, ur den går årsplanen inte att läsa; tabellen till samordnaren: " \
               f"{offer_table(app, year, now, pdf=True)}"
    if not filename.lower().endswith(DOCUMENTS):
        return ""
    try:
        doc = read_plan_document(filename, data)
    except MinutesRejected as rej:
        return f"årsplanen i protokollet kunde inte läsas: {rej.detail}"
    if doc is None or not doc.rows:
        return ""
    ref = "protocol-" + hashlib.sha256(data).hexdigest()[:10]
    label = f"protokollet från mötet {m.date_text()}"
    return _consider(app, year, ref, "protocol", label, doc, now, in_reply_to=None)


# ------------------------------------------------------------------ the coordinator's answers


def _question(r: ActionRecord) -> QuestionRef | None:
    m = _KEY.match(r.key) if r.action in (TABLE_KIND, ASK_KIND) else None
    return QuestionRef(f"{m.group(1)}:{m.group(2)}", None, WHAT) if m else None


def question_ids(app: App, actions: list[ActionRecord]) -> dict[str, QuestionRef]:
    """Our questions to the coordinator about next year's plan: Message-ID -> the question."""
    return questions.ids_from_actions(actions, _question)


def handle_answer(app: App, mail: ParsedMail, q: QuestionRef, key: str, now: datetime) -> tuple[Outcome, str]:
    """His reply: an edited table (read, checked, asked again), or yes/no to a plan we showed him."""
    from kcg_mail.documents.ooxml import MinutesRejected
    from kcg_mail.documents.plan_table import read_plan_document

    app.outbox.now = now
    year_text, _, ref = q.ref.partition(":")
    year = int(year_text)
    docs = [a for a in mail.attachments if a.filename.lower().endswith(DOCUMENTS)]
    for att in docs:
        try:
            doc = read_plan_document(att.filename, att.data)
        except MinutesRejected as rej:
            out = _tell(app, year, f"file-{key[:12]}", "problems", mail, problems=[f"{att.filename}: {rej.message_sv}"])
            return Outcome.COORDINATOR_ANSWER, f"årsplan {year}: {att.filename} kunde inte läsas ({out})"
        if doc is not None:
            reply = _consider(app, year, f"table-{key[:12]}", "table", f"din tabell ({att.filename})", doc, now,
                              in_reply_to=mail)
            return Outcome.COORDINATOR_ANSWER, f"årsplan {year} ur {att.filename}: {reply}"
    if docs:
        out = _tell(app, year, f"file-{key[:12]}", "no_table", mail)
        return Outcome.COORDINATOR_ANSWER, f"årsplan {year}: ingen årsplanstabell i {docs[0].filename} ({out})"
    answer = read_yes_no(mail.text or "")
    if answer.choice is None:
        out = _tell(app, year, f"unclear-{key[:12]}", "unclear", mail, text=answer.text[:80])
        return Outcome.COORDINATOR_ANSWER_UNCLEAR, f"årsplan {year}: svaret ”{answer.text[:80]}” är oklart ({out})"
    adoption = app.ledger.plan_adoptions.get(year)
    if adoption.get("adopted"):
        out = _tell(app, year, f"already-{key[:12]}", "already", mail, adopted=adoption["adopted"]["label"])
        return Outcome.COORDINATOR_ANSWER, f"årsplan {year} var redan antagen; inget ändrat ({out})"
    if ref not in adoption.get("candidates", {}):
        out = _tell(app, year, f"resend-{key[:12]}", "resend", mail)
        return Outcome.COORDINATOR_ANSWER, f"årsplan {year}: inget att anta i det mejlet ({out})"
    if answer.choice == "no":
        out = _tell(app, year, f"no-{key[:12]}", "declined", mail)
        return Outcome.COORDINATOR_ANSWER, f"årsplan {year}: nej, inget antaget ({out})"
    problems = _config_problems(app, Plan.model_validate(adoption["candidates"][ref]["plan"]))
    if problems:
        out = _tell(app, year, f"config-{key[:12]}", "problems", mail, problems=problems)
        return Outcome.COORDINATOR_ANSWER, f"årsplan {year}: kan inte antas: {'; '.join(problems)} ({out})"
    path = adopt(app, year, ref, now)
    out = _tell(app, year, f"adopted-{key[:12]}", "adopted", mail, lines=_understood(app, _plan_of(app, year)),
                adopted=adoption["candidates"][ref]["label"])
    return Outcome.COORDINATOR_ANSWER, f"årsplan {year} antagen ur {adoption['candidates'][ref]['label']}: {path} ({out})"


# ------------------------------------------------------------------ adopting


def _plan_of(app: App, year: int) -> Plan:
    return next(p for p in app.cfg.plans if p.year == year)


def plan_path(app: App, year: int) -> Path:
    if not app.cfg.plans_directory:
        raise RuntimeError("no plans directory: the app was not made by kcg_mail.bootstrap")
    return Path(app.cfg.plans_directory) / f"plan-{year}.yaml"


def plan_yaml(plan: Plan, label: str, when: datetime) -> str:
    head = (f"# Plan {plan.year}, adopted by the coordinator's reply on {when.date().isoformat()} "
            f"(read from: {label}).\n# Written by kcg-mail; a new adoption replaces it.\n")
    body: str = yaml.safe_dump(plan.model_dump(mode="json", exclude_defaults=True), allow_unicode=True,
                               sort_keys=False, width=120)
    return head + body


def adopt(app: App, year: int, ref: str, now: datetime) -> Path:
    """Store candidate ``ref`` as ``<workdir>/plans/plan-YYYY.yaml`` (file first, then
    the state: a crash in between leaves the same file to write again) and run it."""
    adoption = app.ledger.plan_adoptions.get(year)
    cand = adoption["candidates"][ref]
    plan = Plan.model_validate(cand["plan"])
    path = plan_path(app, year)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(plan_yaml(plan, cand["label"], now), encoding="utf-8")
    os.replace(tmp, path)
    adoption["adopted"] = {"ref": ref, "source": cand["source"], "label": cand["label"], "at": now.isoformat(),
                        "path": str(path)}
    app.ledger.plan_adoptions.put(year, adoption)
    cfg = app.cfg.model_copy(update={"plans": [p for p in app.cfg.plans if p.year != year] + [plan]})
    app.cfg = cfg
    app.composer.cfg = cfg
    app.meetings = resolve_plan(cfg)
    log.info("plan %s adopted from %s: %s", year, cand["label"], path)
    return path


def _config_problems(app: App, plan: Plan) -> list[str]:
    """``kcg check`` on the plan files as they would be with this plan added."""
    from kcg_mail.config_loader import plan_problems
    from kcg_mail.core.years import plan_file_problems

    others = [(Path(app.cfg.directory) / f"plan-{p.year}.yaml", p) for p in app.cfg.plans if p.year != plan.year]
    files = others + [(Path(f"plans/plan-{plan.year}.yaml"), plan)]
    net_file = Path(app.cfg.directory) / "network.yaml"
    return plan_file_problems([(str(f), p) for f, p in files]) + plan_problems(files, app.cfg.network, net_file)


def _understood(app: App, plan: Plan) -> list[str]:
    rules = app.cfg.meetings
    return pa.understood(plan, _names(app), rules.kind_labels, holiday_policy=rules.holiday_policy,
                         extra_days=frozenset(rules.extra_non_working_days))


def _put_candidate(app: App, year: int, ref: str, source: str, plan: Plan, now: datetime, label: str,
                   extra: dict[str, Any] | None = None) -> None:
    adoption = app.ledger.plan_adoptions.get(year)
    cands = adoption.setdefault("candidates", {})
    if ref not in cands:
        cands[ref] = {"source": source, "label": label, "at": now.isoformat(), "plan": plan.model_dump(mode="json"),
                      **(extra or {})}
        app.ledger.plan_adoptions.put(year, adoption)


def _consider(app: App, year: int, ref: str, source: str, label: str, doc: pa.PlanDocument, now: datetime, *,
              in_reply_to: ParsedMail | None) -> str:
    """A plan read from a document: a polite note when a plan is adopted already,
    the problems (naming the rows), or the question with what was understood."""
    adoption = app.ledger.plan_adoptions.get(year)
    if adoption.get("adopted") or has_plan(app, year):
        adopted = adoption.get("adopted", {}).get("label", "en tidigare årsplan")
        out = _tell(app, year, ref, "already", in_reply_to, adopted=adopted, source_label=label)
        return f"redan antagen ur {adopted}; inget ändrat ({out})"
    checked = pa.check_rows(doc.rows, year, app.cfg.network.members, app.cfg.meetings.kind_labels,
                            note=f"Handlingsplan {year}, antagen ur {label}.")
    problems = list(checked.problems)
    if checked.plan is not None:
        problems += _config_problems(app, checked.plan)
    if problems or checked.plan is None:
        out = _tell(app, year, ref, "problems", in_reply_to, problems=problems, source_label=label)
        return f"{len(problems)} fel i tabellen; samordnaren har fått dem ({out})"
    _put_candidate(app, year, ref, source, checked.plan, now, label,
                   {"focus": [list(x) for x in doc.focus], "tasks": [list(x) for x in doc.tasks]})
    out = _tell(app, year, ref, "ask", in_reply_to, lines=_understood(app, checked.plan), source_label=label,
                focus=[f"{a}: {t}" for a, t in doc.focus], tasks=[" – ".join(x for x in t if x) for t in doc.tasks])
    return f"{len(checked.plan.meetings)} möten lästa; samordnaren tillfrågad ({out})"


def _tell(app: App, year: int, ref: str, state: str, mail: ParsedMail | None, **ctx: Any) -> str:
    """One mail to the coordinator about next year's plan (each is a question he can answer by reply)."""
    coord: Person = app.cfg.network.coordinator
    subject = _REPLY_PREFIX.sub("", mail.subject or "")[:150] if mail else ""
    base = {"year": year, "state": state, "subject": subject, "signed": _signed(app), "lines": [], "problems": [],
            "focus": [], "tasks": [], "adopted": "", "source_label": "", "text": ""}
    msg = app.composer.message(ASK_KIND, f"plan-{year}:adopt:{ref}:{state}", None, [coord], {**base, **ctx},
                               in_reply_to=mail.message_id if mail else None)
    return app.outbox.send(msg)


def decide(app: App, q: QuestionRef, yes: bool, now: datetime) -> str:
    """The coordinator's yes or no to a plan we showed him, given in a Prefect form
    (``kcg-approve`` / ``kcg-reject`` with the question's reference): checked as a reply is."""
    year_text, _, ref = q.ref.partition(":")
    year = int(year_text)
    adoption = app.ledger.plan_adoptions.get(year)
    if adoption.get("adopted"):
        return f"årsplanen {year} var redan antagen ur {adoption['adopted']['label']}; inget ändrat"
    cand = adoption.get("candidates", {}).get(ref)
    if cand is None:
        return f"det finns ingen årsplan {year} att anta under den referensen"
    if not yes:
        return f"årsplanen {year} ur {cand['label']} antas inte"
    problems = _config_problems(app, Plan.model_validate(cand["plan"]))
    if problems:
        return f"årsplanen {year} kan inte antas: " + "; ".join(problems)
    adopt(app, year, ref, now)
    return f"årsplanen {year} är antagen ur {cand['label']} och gäller från nu"
