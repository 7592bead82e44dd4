"""The coordinator's standing overview: one row per meeting and the list of
what needs a person, computed from facts read out of the state record.

Pure: ``kcg_mail.services.status`` gathers the facts; the Prefect artifact,
``kcg status`` and the demo show the result. Everything here is what a person
reads, so it is Swedish and carries no internal codes (no step names, no keys).

The table is narrow on purpose (seven short columns) so it reads whole in the
Prefect UI at 1,400 px: möte, datum, värd, läge, svar, protokoll, behöver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from kcg_mail.core.plan import date_text

COLUMNS: tuple[str, ...] = ("möte", "datum", "värd", "läge", "svar", "protokoll", "behöver")

#: how long after the meeting the minutes may take before they count as late
#: when no escalation has been recorded (the cycle escalates on its own day)
MINUTES_GRACE_DAYS = 14


@dataclass(frozen=True)
class MeetingFacts:
    """What the state record says about one meeting."""

    id: str
    date: date
    kind_label: str
    theme: str
    host: str
    tentative: bool = False
    proposed: str | None = None
    host_briefed: bool = False
    invited: bool = False
    cancelled: bool = False
    template_sent: bool = False
    chased: bool = False
    escalated: bool = False
    accepted: int = 0
    declined: int = 0
    filed_version: int | None = None
    distributed: bool = False
    before_start: bool = False
    #: the coordinator's open question about the date: "set_meeting", "confirm_date", "set_place"
    awaiting: str = ""
    #: how many times he was asked (and whether the alert channel was told he has not answered)
    date_asked: int = 0
    date_alerted: bool = False


@dataclass(frozen=True)
class Quarantined:
    """A message in the quarantine that the coordinator should look at: its
    reference, who sent it, its subject and why it is there."""

    ref: str
    sender: str
    subject: str
    reason: str


@dataclass(frozen=True)
class Held(Quarantined):
    """A reply held for the coordinator's approval (or a guest's invitation: ``guest``
    is then the guest's name)."""

    meeting_id: str | None = None
    guest: str | None = None


@dataclass(frozen=True)
class Problem:
    """A connection or alert channel that failed and has not recovered."""

    what: str       # "E-postservern", "Arkivet", "Larm via webhook", ...
    detail: str
    since: str      # ISO date-time, local


@dataclass(frozen=True)
class Waited:
    """A mail held back by the member caps: waiting now (``sent`` False) or sent
    lately after it waited."""

    subject: str
    to: str          # who, in words ("Lena Dalerup", "14 medlemmar")
    until: date
    reason: str
    sent: bool = False

    def line(self) -> str:
        when = date_text(self.until)
        if self.sent:
            return f"«{self.subject}» till {self.to} väntade till {when} ({self.reason}) och har gått ut."
        return f"«{self.subject}» till {self.to} väntar till {when} ({self.reason})."


@dataclass(frozen=True)
class Need:
    text: str
    todo: str
    meeting_id: str | None = None

    def line(self) -> str:
        return f"{self.text} Gör: {self.todo}"


@dataclass(frozen=True)
class Inputs:
    meetings: tuple[MeetingFacts, ...]
    today: date
    held: tuple[Held, ...] = ()
    quarantined: tuple[Quarantined, ...] = ()
    problems: tuple[Problem, ...] = ()
    template_problems: tuple[str, ...] = ()
    plan_years: frozenset[int] = field(default_factory=frozenset)
    #: from this day of the year on, next year's plan is expected (MM-DD)
    next_year_plan_due: str = "10-01"
    #: mails that wait for the member caps, and those that waited lately
    waited: tuple[Waited, ...] = ()


# ------------------------------------------------------------------- rows


def stage(m: MeetingFacts, today: date) -> str:
    """The meeting's state in one or two words."""
    if m.cancelled:
        return "inställt"
    if m.before_start:
        return "före start"
    if m.filed_version is not None:
        return "klart" if m.distributed else "arkiverat"
    if m.date < today:
        if not (m.invited or m.template_sent or m.escalated):
            return "passerat"  # the cycle never ran for it (before kcg-mail took over)
        return "protokoll saknas" if minutes_late(m, today) else "väntar protokoll"
    if m.date == today:
        return "i dag"
    if m.awaiting in ("set_meeting", "confirm_date") and m.date_asked:
        return "väntar på samordnaren"
    if m.awaiting == "set_meeting":
        return "inget datum än"  # he decides it; the question goes out in time
    if m.tentative:
        return "preliminärt"
    if m.invited:
        return "inbjudan ute"
    if m.host_briefed:
        return "värd informerad"
    return "planerat"


def minutes_late(m: MeetingFacts, today: date) -> bool:
    if m.filed_version is not None or m.cancelled or m.before_start or m.date >= today:
        return False
    return m.escalated or ((m.invited or m.template_sent) and (today - m.date).days > MINUTES_GRACE_DAYS)


def _answers(m: MeetingFacts) -> str:
    if not (m.accepted or m.declined):
        return "–" if not m.invited else "0 / 0"
    return f"{m.accepted} / {m.declined}"


def _minutes(m: MeetingFacts) -> str:
    if m.filed_version is None:
        return "–"
    text = f"v{m.filed_version}"
    return text + (", utskickat" if m.distributed else ", ej utskickat")


def rows(inp: Inputs, needs: list[Need] | None = None) -> list[dict[str, str]]:
    needs = overview_needs(inp) if needs is None else needs
    per_meeting: dict[str, list[Need]] = {}
    for n in needs:
        if n.meeting_id:
            per_meeting.setdefault(n.meeting_id, []).append(n)
    out = []
    for m in inp.meetings:
        mine = per_meeting.get(m.id, [])
        out.append({
            "möte": f"{m.id} {m.kind_label.split(' (')[0]}",
            "datum": ("inte satt" if m.awaiting == "set_meeting" else
                      m.date.isoformat() + (" prel." if m.tentative else "")),
            "värd": m.host,
            "läge": stage(m, inp.today),
            "svar": _answers(m),
            "protokoll": _minutes(m),
            "behöver": ("ja ↓" if len(mine) == 1 else f"{len(mine)} saker ↓") if mine else "–",
        })
    return out


# ------------------------------------------------------------------ needs


def overview_needs(inp: Inputs) -> list[Need]:
    """Everything open that a person has to act on, oldest concern first."""
    out: list[Need] = []
    for p in inp.problems:
        out.append(Need(f"{p.what} fungerar inte sedan {p.since[:16].replace('T', ' ')}: {p.detail}",
                        "den tekniska kontakten har fått ett larm; nästa körning försöker igen av sig själv."))
    for t in inp.template_problems:
        out.append(Need(f"Mallproblem: {t}", "den tekniska kontakten har fått ett larm; den senaste fungerande mallen används så länge."))
    for m in inp.meetings:
        if minutes_late(m, inp.today):
            out.append(Need(f"Protokollet från mötet {m.id} ({m.theme}, {m.date.isoformat()}) har inte kommit in "
                            f"(värd {m.host}).",
                            "kontakta värden, eller svara på påminnelsen med protokollet bifogat.", m.id))
        if m.awaiting and m.date_asked and not m.cancelled and m.date >= inp.today:
            out.append(_date_need(m))  # asked by mail: waiting for his answer
        elif m.awaiting == "set_meeting":
            pass  # not asked yet: nothing for him to do before the question comes
        elif m.tentative and not m.cancelled and m.date >= inp.today:
            when = f" ({m.proposed})" if m.proposed else ""
            out.append(Need(f"Mötet {m.id} ({m.theme}) har bara ett preliminärt datum, {m.date.isoformat()}{when}; "
                            f"ingen inbjudan går ut förrän det är bekräftat.",
                            "svara på frågan om datumet i mejlet (eller använd formuläret Bekräfta datum i Prefect) när det är bestämt.", m.id))
    for h in inp.held:
        if h.guest is not None:
            out.append(Need(f"Inbjudan till gästen {h.guest} (mötet {h.meeting_id}) väntar på ditt ja.",
                            f"svara ja eller nej på frågan i mejlet (eller i Prefect: Godkänn eller Avvisa med referensen {h.ref}).",
                            h.meeting_id))
            continue
        out.append(Need(f"Ett svar från {h.sender} ({h.subject!r}) väntar på godkännande: {h.reason}.",
                        f"svara ja eller nej på frågan i mejlet (eller i Prefect: Godkänn eller Avvisa med referensen {h.ref}).",
                        h.meeting_id))
    for q in inp.quarantined:
        out.append(Need(f"Meddelande i karantän från {q.sender} ({q.subject!r}): {q.reason}.",
                        f"titta på det och använd formuläret Arkivera ur karantän i Prefect med referensen {q.ref} "
                        f"om det ska arkiveras ändå."))
    missing = missing_plan_year(inp)
    if missing is not None:
        out.append(Need(f"Det finns ingen årsplan för {missing} än.",
                        f"fyll i utkastet till årsplanen (Årsplan {missing} – utkast) med teman och värdar och svara med det."))
    return out


def _date_need(m: MeetingFacts) -> Need:
    """The coordinator decides this meeting's date (or place): it waits for him."""
    asked = "frågad en gång" if m.date_asked == 1 else f"frågad {m.date_asked} gånger"
    silent = ", obesvarad (larm skickat)" if m.date_alerted else ""
    if m.awaiting == "confirm_date":
        when = f" ({m.proposed})" if m.proposed else ""
        text = (f"Mötet {m.id} ({m.theme}) har bara ett preliminärt datum, {m.date.isoformat()}{when}; ingen inbjudan "
                f"går ut förrän du har bekräftat eller flyttat det ({asked}{silent}).")
        todo = "svara ja eller med det nya datumet på frågan i mejlet (eller i formuläret Sätt datum och plats)."
    elif m.awaiting == "set_place":
        text = f"Mötet {m.id} ({m.theme}) {m.date.isoformat()} saknar plats ({asked}{silent})."
        todo = "svara med platsen på frågan i mejlet (eller i formuläret Sätt datum och plats)."
    else:
        text = (f"Mötet {m.id} ({m.theme}) har inget datum än: du bestämmer datum, tid och plats "
                f"({asked}{silent}).")
        todo = "svara på frågan i mejlet, t.ex. ”måndag 15 januari kl 10–16, Stadshuset, Norrköping” " \
               "(eller i formuläret Sätt datum och plats)."
    return Need(text, todo, m.id)


def missing_plan_year(inp: Inputs) -> int | None:
    """This year when it has no plan; next year from ``next_year_plan_due`` on."""
    if not inp.plan_years:
        return None
    if inp.today.year not in inp.plan_years:
        return inp.today.year
    nxt = inp.today.year + 1
    due = date.fromisoformat(f"{inp.today.year}-{inp.next_year_plan_due}")
    return nxt if nxt not in inp.plan_years and inp.today >= due else None


# ---------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(network: str, inp: Inputs, updated: datetime, by: str = "") -> str:
    """The overview as one markdown document: the table, then the list."""
    needs = overview_needs(inp)
    table = rows(inp, needs)
    md = [f"# {network}: läget just nu", "",
          f"Uppdaterad {updated:%Y-%m-%d %H:%M}" + (f" av {by[:1].lower()}{by[1:]}" if by else "") + ".", ""]
    md.append("| " + " | ".join(c.capitalize() for c in COLUMNS) + " |")
    md.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in table:
        md.append("| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |")
    md += ["", "Svar = ja / nej på kalenderinbjudan. Behöver ↓ = se listan nedan.", "", "## Behöver en människa", ""]
    md += [f"- {n.line()}" for n in needs] or ["- Inget just nu."]
    if inp.waited:
        md += ["", "## Utskick som väntar", "",
               "Högst ett utskick om dagen och fyra i veckan når en medlem, och på en mötesdag går bara inbjudan "
               "och protokollet ut; det som skulle gå över väntar till nästa dag det ryms.", ""]
        md += [f"- {w.line()}" for w in inp.waited]
    return "\n".join(md) + "\n"


# ------------------------------------------------------------ run summaries

ACTION_LABELS = {
    "brief_host": "information till värden", "invite": "inbjudan", "update_invitation": "uppdaterad inbjudan",
    "cancel_invitation": "inställelse", "remind_host": "påminnelse till värden", "send_template": "protokollmall",
    "chase_host": "påminnelse om protokollet", "escalate": "protokollet saknas, samordnaren informerad",
    "distribute": "protokollet utskickat", "waited": "utskick som väntat",
}
OUTCOME_LABELS = {"waiting": "väntar (taket för utskick till medlemmarna)", "dropped": "behövdes inte längre",
                  "sent": "skickad", "already": "redan skickad", "recovered": "skickad (bekräftad efter avbrott)",
                  "skipped": "hoppades över", "failed": "misslyckades"}


def step_line(meeting_id: str, action: str, outcome: str, detail: str = "") -> str:
    """One line of a run summary, in words: "2023-03: inbjudan – skickad"."""
    text = f"{meeting_id}: {ACTION_LABELS.get(action, action.replace('_', ' '))} – {OUTCOME_LABELS.get(outcome, outcome)}"
    return text + (f" ({detail})" if detail else "")
