"""Welcoming a new member (the ``kcg-onboard-member`` flow).

What the onboarding does:

1. mails the Swedish welcome (template ``welcome``): the network's purpose,
   values and game rules, and the year's remaining meetings, with the year
   plan attached as one ``.ics`` (METHOD:PUBLISH, one VEVENT per remaining
   meeting, the same UIDs as the invitations so calendars do not duplicate);
2. invites the person to the archive's protocol folder (``Archive.add_member``);
3. returns the steps that stay manual (``network.manual_onboarding_steps``:
   Facebook group, Messenger group ...) plus adding the person to
   ``config/network.yaml``, which the onboarding deliberately does not do
   itself: the configuration is the coordinator's file.

The outbox only mails people who are in ``network.yaml``. A new member is by
definition not there yet, so the welcome goes through an outbox built for
this one mail with exactly this one extra address allowed; the app's own
outbox stays as strict as before. The welcome is keyed ``welcome:<email>``:
onboarding the same person twice sends one mail.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from kcg_mail.core.config_model import Person
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import Attachment
from kcg_mail.services.app import App, Outbox
from kcg_mail.services.compose import person_ctx

ICS_TYPE = "text/calendar"


class OnboardingProblem(ValueError):
    pass


@dataclass
class OnboardingResult:
    person: Person
    mail: str  # outbox outcome: sent | already | recovered
    mail_key: str
    meetings: list[Meeting]
    archive_folder: str
    archive: str  # "inbjuden" or the problem
    manual_steps: list[str] = field(default_factory=list)
    yaml_line: str = ""

    def markdown(self) -> str:
        p = self.person
        md = [f"# Välkommen: {p.name} ({p.organisation}, {p.city})", ""]
        md.append(f"- Välkomstmejl till {p.email}: {'skickat' if self.mail == 'sent' else 'var redan skickat'}"
                  f" med {len(self.meetings)} återstående möten i kalenderfilen.")
        md.append(f"- Arkivmappen {self.archive_folder}: {self.archive}.")
        md += ["", "## Gör själv", ""]
        md += [f"- [ ] {s}" for s in self.manual_steps]
        if self.yaml_line:
            md += ["", "Rad att lägga till under `members:` i `config/network.yaml`:", "", "```yaml", self.yaml_line,
                   "```", ""]
        return "\n".join(md)


def person_id(name: str, taken: set[str]) -> str:
    """A config id from a name: 'Åsa Öberg' -> 'asa', then 'asa_oberg', 'asa2'..."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = [w for w in re.split(r"[^a-z0-9]+", ascii_) if w] or ["ny"]
    for cand in (words[0], "_".join(words)):
        if cand not in taken:
            return cand
    n = 2
    while f"{words[0]}{n}" in taken:
        n += 1
    return f"{words[0]}{n}"


def new_person(app: App, name: str, organisation: str, city: str, email: str) -> Person:
    net = app.cfg.network
    email = email.strip().lower()
    known = {p.email for p in net.members + net.guests}
    if email in known:
        raise OnboardingProblem(f"{email} finns redan i nätverket; välkomstmejlet är till för nya medlemmar")
    try:
        return Person(id=person_id(name, {p.id for p in net.members + net.guests}), name=name,
                      organisation=organisation, city=city, email=email)
    except Exception as exc:  # pydantic: bad email, line breaks
        raise OnboardingProblem(f"uppgifterna om den nya personen går inte att använda: {exc}") from exc


def protocol_root(app: App) -> str:
    """The shared protocol folder: the naming pattern's folder up to the first
    part that varies per meeting (``/{short}/Protokoll/{year}`` -> ``/KCG/Protokoll``)."""
    parts = app.cfg.meetings.naming["folder"].strip("/").split("/")
    fixed = []
    for part in parts:
        if re.search(r"\{(?!short\})", part):
            break
        fixed.append(part)
    if not fixed:
        fixed = ["{short}"]
    return "/" + "/".join(fixed).replace("{short}", app.cfg.network.short)


def remaining_meetings(app: App, now: datetime) -> list[Meeting]:
    return [m for m in app.meetings if m.start > now]


def _calendar_link(app: App, now: datetime) -> str:
    """The subscribable year calendar, brought up to date first; "" when
    the archive cannot give a link (the welcome still goes out, with the .ics)."""
    from kcg_mail.services.calendar_feed import publish

    try:
        return publish(app, now, link=True).link
    except Exception:  # noqa: BLE001 - an archive fault must not stop the welcome
        return ""


def onboard(app: App, name: str, organisation: str, city: str, email: str, now: datetime) -> OnboardingResult:
    person = new_person(app, name, organisation, city, email)
    result = welcome(app, person, now)
    result.manual_steps.append(f"Lägg till {person.name} i config/network.yaml under members: (raden nedan), "
                               f"annars får personen inga kallelser")
    entry = {"id": person.id, "name": person.name, "organisation": person.organisation, "city": person.city,
             "email": person.email}
    result.yaml_line = "  - " + json.dumps(entry, ensure_ascii=False)  # JSON is valid YAML flow style
    return result


def welcome(app: App, person: Person, now: datetime) -> OnboardingResult:
    """The welcome mail (once per address) and the archive folder, for a person who is
    not yet a member of this app's configuration (``services.members`` adds them)."""
    meetings = remaining_meetings(app, now)
    app.outbox.now = now  # the mail's date, and its dates in words relative to it
    composer = app.composer
    ics = composer.year_calendar(meetings, now)
    year = now.year
    att = Attachment(f"{app.cfg.network.short} mötesplan {year}.ics", ICS_TYPE, ics)
    key = f"welcome:{person.email}"
    msg = composer.message(
        "welcome", key, None, [person],
        {"person": person_ctx(person), "meetings": [composer.meeting_ctx(m) for m in meetings],
         "manual_steps": list(app.cfg.network.manual_onboarding_steps), "calendar_link": _calendar_link(app, now)},
        attachments=(att,),
    )
    # deliberately: this one mail may go to this one new address
    outbox = Outbox(app.state, app.mail, app.outbox.allowed | {person.email})
    outbox.now = now  # dated by the run, like every other mail of it
    outcome = outbox.send(msg)

    folder = protocol_root(app)
    try:
        app.archive.add_member(folder, person.email)
        archive = "inbjuden"
    except Exception as exc:  # the welcome is out; say what to do about the folder
        archive = f"kunde inte bjuda in ({type(exc).__name__}: {exc}); dela mappen manuellt"
    app.state.record_action(f"welcome:{person.email}:archive", None, "onboard_archive",
                            "done" if archive == "inbjuden" else "failed", {"folder": folder, "result": archive})

    return OnboardingResult(person=person, mail=outcome, mail_key=key, meetings=meetings, archive_folder=folder,
                            archive=archive, manual_steps=list(app.cfg.network.manual_onboarding_steps))
