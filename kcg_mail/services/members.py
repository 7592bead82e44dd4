"""Members added or removed by the coordinator: by a mail and a "ja", or in a Prefect form.

Björn mails the network "Ny medlem: Anna Andersson, anna@x.se, Västerås City"
(or "Ta bort medlem: Anna Andersson"); ``core.inbound.member_request`` reads it.
The product answers with what it understood and asks for a "ja" (a question of
kind ``member_add`` / ``member_remove``, ``services.questions``); nothing changes
before he says yes. The Prefect forms ``kcg-member-add`` / ``kcg-member-remove``
are the same decision taken in the form: they act at once.

Where a member is stored: ``config/network.yaml`` stays the operator's setup; the
coordinator's changes go to the members overlay ``<workdir>/members.yaml``
(``config_loader.write_members_overlay``), which ``bootstrap`` reads over the
network (``config_loader.apply_members_overlay``). So from the next run on, an
added member is invited (the daily run sends the meetings' invitations as an
update with the new attendee), gets the minutes and the planning round; a removed
one is inactive: no invitation, no distribution, no round, and the next daily run
updates the calendar event of each coming meeting without them.

Nothing twice: the request is a state record ``member_request:<ref>`` (asked ->
done | rejected); the overlay write is idempotent (by address), the welcome is
keyed ``welcome:<address>``; a second "ja" finds the request done.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

from kcg_mail.config_loader import read_members_overlay, write_members_overlay
from kcg_mail.core.config_model import Person
from kcg_mail.core.inbound.member_request import MemberRequest, city_of, find_member
from kcg_mail.core.inbound.verdict import QuestionRef
from kcg_mail.services import questions
from kcg_mail.services.app import App
from kcg_mail.services.lock import lock_dir
from kcg_mail.services.manual import ManualProblem
from kcg_mail.services.onboarding import person_id, welcome

KIND_ADD = "member_add"
KIND_REMOVE = "member_remove"


@dataclass(frozen=True)
class Change:
    op: Literal["add", "remove"]
    name: str
    email: str
    organisation: str = ""
    city: str = ""
    id: str = ""
    state: str = "asked"  # asked | done | rejected
    detail: str = ""

    @property
    def what(self) -> str:
        return KIND_ADD if self.op == "add" else KIND_REMOVE

    def person(self) -> Person:
        return Person(id=self.id, name=self.name, organisation=self.organisation, city=self.city, email=self.email)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name

    def label(self) -> str:
        org = f" ({self.organisation})" if self.organisation and self.organisation != self.name else ""
        return f"{self.name}{org}"


def request_ref(op: str, email: str, source: str) -> str:
    """The request's reference (40 hex digits): one per request mail or form run."""
    return hashlib.sha1(f"member:{op}:{email.lower()}:{source}".encode()).hexdigest()


def _member(app: App, email: str) -> Person | None:
    return next((p for p in app.cfg.network.members if p.email == email.lower()), None)


def _hosting(app: App, p: Person, now: datetime) -> list[str]:
    return [m.date_text() for m in app.meetings if m.start > now and p in (m.host, m.backup_host)]


def understand(app: App, req: MemberRequest, now: datetime) -> Change:
    """What the request means for this network, or ManualProblem (one Swedish line) when it cannot be done."""
    if req.op == "add":
        email = req.email.strip().lower()
        known = _member(app, email)
        if known is not None and known.active:
            raise ManualProblem(f"{known.name} ({email}) är redan medlem")
        if any(g.email == email for g in app.cfg.network.guests):
            raise ManualProblem(f"{email} står som gäst i nätverket och kan inte också vara medlem")
        taken = {p.id for p in app.cfg.network.members + app.cfg.network.guests}
        pid = known.id if known is not None else person_id(req.name, taken)
        city = req.city or city_of(req.organisation)
        try:
            Person(id=pid, name=req.name, organisation=req.organisation, city=city, email=email)
        except ValueError as exc:
            raise ManualProblem(f"uppgifterna om den nya medlemmen går inte att använda ({exc})") from None
        return Change("add", req.name, email, req.organisation, city, pid)
    hits = find_member(req.who, app.cfg.network.members)
    if not hits:
        raise ManualProblem(f"jag hittar ingen medlem som heter eller har adressen ”{req.who}”")
    if len(hits) > 1:
        raise ManualProblem(f"”{req.who}” passar in på {len(hits)} medlemmar ({', '.join(p.name for p in hits)}); "
                            "skriv e-postadressen")
    p = hits[0]
    if p.role == "coordinator":
        raise ManualProblem("samordnaren kan inte tas bort ur nätverket")
    hosting = _hosting(app, p, now)
    if hosting:
        raise ManualProblem(f"{p.name} är värd eller reserv för mötet {hosting[0]} och kan inte tas bort förrän "
                            "mötet har fått en annan värd")
    return Change("remove", p.name, p.email, p.organisation, p.city, p.id)


def _load(app: App, ref: str) -> Change | None:
    raw = app.ledger.member_requests.get(ref)
    return Change(**raw) if raw else None  # type: ignore[arg-type]


def _save(app: App, ref: str, change: Change) -> None:
    app.ledger.member_requests.put(ref, {k: str(v) for k, v in asdict(change).items()})


def propose(app: App, change: Change, ref: str, *, in_reply_to: str | None = None) -> str:
    """Record the request and ask the coordinator for a "ja" (once)."""
    if _load(app, ref) is None:
        _save(app, ref, change)
    if change.op == "add":
        q = questions.Question(
            subject=f"Ny medlem: {change.name}",
            lead="Så här uppfattade jag den nya medlemmen:",
            details=(f"Namn: {change.name}", f"E-post: {change.email}",
                     f"Organisation: {change.organisation or '(ingen angiven)'}",
                     f"Stad: {change.city or '(ingen angiven)'}"),
            yes=f"lägga till {change.name} som medlem (välkomstmejl med årets möten, kallelser och protokoll "
                "från och med nu)",
            no="låta bli")
    else:
        q = questions.Question(
            subject=f"Ta bort medlem: {change.name}",
            lead=f"Så här uppfattade jag det: {change.label()}, {change.email}, ska inte längre vara medlem.",
            yes=f"ta bort {change.name} (inga fler kallelser eller protokoll; kommande möten uppdateras i "
                f"kalendern utan {change.first_name})",
            no="låta bli")
    return questions.ask(app, change.what, ref, None, q, in_reply_to=in_reply_to)


def _overlay_add(app: App, change: Change) -> None:
    wd = lock_dir(app)
    data = read_members_overlay(wd)
    data["removed"] = [x for x in data["removed"] if str(x.get("email", "")).lower() != change.email]
    if not any(str(x.get("email", "")).lower() == change.email for x in data["added"]) \
            and _member(app, change.email) is None:
        data["added"].append({"id": change.id, "name": change.name, "organisation": change.organisation,
                              "city": change.city, "email": change.email})
    write_members_overlay(wd, data)


def _overlay_remove(app: App, change: Change) -> None:
    wd = lock_dir(app)
    data = read_members_overlay(wd)
    if not any(str(x.get("email", "")).lower() == change.email for x in data["removed"]):
        data["removed"].append({"email": change.email, "name": change.name})
        write_members_overlay(wd, data)


def carry_out(app: App, ref: str, now: datetime) -> str:
    """The coordinator said yes: store the change (and welcome a new member). Idempotent."""
    change = _load(app, ref)
    if change is None:
        raise ManualProblem("det finns ingen sådan förfrågan om en medlem")
    if change.state == "done":
        return f"det är redan gjort: {change.detail}"
    if change.state == "rejected":
        raise ManualProblem(f"förfrågan om {change.name} är redan avböjd")
    if change.op == "add":
        _overlay_add(app, change)  # first: a rerun after a crash finds the member stored
        app.outbox.now = now
        w = welcome(app, change.person(), now)
        mail = "välkomstmejlet med årets möten är skickat" if w.mail in ("sent", "recovered", "already") else w.mail
        detail = (f"{change.label()} är medlem från och med nu: {mail}, och kallelserna till kommande möten "
                  f"uppdateras med {change.first_name}")
    else:
        _overlay_remove(app, change)
        detail = (f"{change.label()} är inte längre medlem: inga fler kallelser eller protokoll, och kommande "
                  f"möten uppdateras i kalendern utan {change.first_name}")
    _save(app, ref, Change(**{**asdict(change), "state": "done", "detail": detail}))
    return detail


def decline(app: App, ref: str) -> str:
    change = _load(app, ref)
    if change is None:
        raise ManualProblem("det finns ingen sådan förfrågan om en medlem")
    if change.state == "done":
        raise ManualProblem(f"det är redan gjort: {change.detail}")
    _save(app, ref, Change(**{**asdict(change), "state": "rejected"}))
    return f"inget ändras: {change.name} {'läggs inte till' if change.op == 'add' else 'är kvar som medlem'}"


def on_yes(app: App, q: QuestionRef, now: datetime) -> str:
    return carry_out(app, q.ref, now)


def on_no(app: App, q: QuestionRef, now: datetime) -> str:
    return decline(app, q.ref)


def add_by_form(app: App, name: str, email: str, organisation: str, city: str, now: datetime, run_id: str) -> str:
    """``kcg-member-add``: the decision taken in the form, carried out at once."""
    req = MemberRequest("add", name=name.strip(), email=email.strip().lower(), organisation=organisation.strip(),
                        city=city.strip())
    known = _member(app, req.email)
    if known is not None and known.active:  # the form sent again (or a retried run): nothing to do, not a failure
        return f"{known.name} ({req.email}) är redan medlem; inget ändrades"
    change = understand(app, req, now)
    ref = request_ref("add", change.email, f"form:{run_id}")
    if _load(app, ref) is None:
        _save(app, ref, change)
    return carry_out(app, ref, now)


def remove_by_form(app: App, who: str, now: datetime, run_id: str) -> str:
    """``kcg-member-remove``: the decision taken in the form, carried out at once."""
    change = understand(app, MemberRequest("remove", who=who), now)
    ref = request_ref("remove", change.email, f"form:{run_id}")
    if _load(app, ref) is None:
        _save(app, ref, change)
    return carry_out(app, ref, now)
