"""Flows the coordinator starts by hand from the Prefect UI ("Kör" -> form).

- ``kcg-onboard-member``: kept for existing deployments; the same as ``kcg-member-add``;
- ``kcg-resend``: send a meeting's invitation (as an update, SEQUENCE + 1, to
  everyone) or its protocol template again;
- ``kcg-resend-minutes``: send a meeting's filed minutes again to one member;
- ``kcg-refile``: file a quarantined message anyway, as the minutes of a meeting;
- ``kcg-confirm-date``: confirm a tentative date (the study trip's): the same
  decision as ``kcg-set-meeting`` with the date only, stored in the state (no file
  is edited); the daily run then sends the invitation;
- ``kcg-set-meeting``: set a meeting's date, times and place (a physical meeting,
  the study trip, the open meeting), the same as replying to the question mail
  (``kcg_mail.services.meeting_dates``);
- ``kcg-approve`` / ``kcg-reject``: yes or no to an open question to the
  coordinator, as his reply by mail would answer it (``services.answers.decide``:
  a reply held for approval, a guest's invitation, a member to add or remove);
- ``kcg-member-add`` / ``kcg-member-remove``: add or remove a member at once
  (``kcg_mail.services.members``; stored in the members overlay, not in network.yaml).
- ``kcg-start-project``: approve a "Projektgrupp: …" decision;
- ``kcg-preview``: every mail a month will send, per reader, as it will look
  (``kcg_mail.services.preview``), as a markdown artifact; nothing is sent.

The forms: every parameter has a Swedish title and description
(``json_schema_extra`` overrides the title Prefect takes from the name) and
the form shows nothing else. Where a run works (``KCG_WORKDIR``,
``KCG_CONFIG_DIR``) is bound to the deployment's environment by ``kcg serve``
or ``prefect.yaml``; a test pretends a day with ``KCG_TODAY``, not a field.

Each flow names its run after what it did, publishes a markdown artifact
saying what it did and what is left to do, and rewrites the overview. They
have no schedule and no failure mail: the coordinator is looking at the run.
Every resend is keyed by the flow run id: the same run retried sends nothing
twice, a new click in the UI sends again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import date as date_cls
from typing import Any, Literal

from prefect import flow, runtime
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from flows.common import make_app, pretend_today, publish_overview, rename_run, when, workdir_and_config
from kcg_mail.services.app import App
from kcg_mail.services.status import artifact_slug

WHAT: dict[str, Literal["invitation", "template"]] = {"inbjudan": "invitation", "protokollmall": "template"}


def _field(title: str, description: str, default: Any = ...) -> Any:
    return Field(default, description=description, json_schema_extra={"title": title})


def _request_id() -> str:
    return str(runtime.flow_run.id or uuid.uuid4())


def _publish(app: App, md: str, description: str, run_name: str) -> None:
    rename_run(run_name)
    if runtime.flow_run.id:
        create_markdown_artifact(markdown=md, key=f"{artifact_slug(app)}-manuellt", description=description)
    publish_overview(app, by=run_name)


def _resent(app: App, out: dict[str, Any], what: str, to: list[str], *, neuter: bool = False) -> dict[str, Any]:
    """Say what a resend did: ``what`` ("inbjudan till 2023-05") went ``to`` these
    addresses again, or had already gone in this very run (a retried run sends nothing).
    The run's name names the receiver when there is one."""
    sent = "skickat" if neuter else "skickad"
    state = {"sent": f"{sent} igen", "already": f"var redan {sent} i den här körningen"}.get(out["outcome"],
                                                                                           out["outcome"])
    _publish(app, f"# {what[:1].upper()}{what[1:]} {state}\n\n- Till: {', '.join(to)}\n", f"Skicka om {what}",
             f"{what} {state}" + (f" till {to[0]}" if len(to) == 1 else ""))
    return out


@contextlib.contextmanager
def _app_and_now() -> Iterator[tuple[App, Any]]:
    """The app and "now" for a manual run; the app is closed at the end."""
    with make_app() as app:
        yield app, when(app, pretend_today())


# ------------------------------------------------------------------- flows


@flow(name="kcg-onboard-member", flow_run_name="välkomna {name}", log_prints=False)
def onboard_member(
    name: str = _field("Namn", "Den nya medlemmens för- och efternamn, t.ex. Åsa Öberg."),
    organisation: str = _field("Organisation", "Stadskärneorganisationen, t.ex. Umeå City."),
    city: str = _field("Stad", "Staden, t.ex. Umeå.", ""),
    email: str = _field("E-postadress", "Adressen som kallelser och protokoll ska gå till."),
) -> dict[str, Any]:
    """Välkomna en ny medlem: samma sak som Lägg till medlem (välkomstmejl med årets möten,
    tillgång till protokollmappen, kallelser och protokoll från och med nu)."""
    return member_add.fn(name, email, organisation, city)


@flow(name="kcg-resend", flow_run_name="skicka om {what} {meeting_id}", log_prints=False)
def resend(
    meeting_id: str = _field("Möte", "Mötets id, t.ex. 2023-05 (se översikten)."),
    what: Literal["inbjudan", "protokollmall"] = _field(
        "Vad", "Inbjudan går ut som en uppdatering till alla; protokollmallen till värden.", "inbjudan"),
) -> dict[str, Any]:
    """Skicka om ett mötes inbjudan eller protokollmall."""
    from kcg_mail.services.manual import resend_meeting

    with _app_and_now() as (app, now):
        out = resend_meeting(app, meeting_id, WHAT[what], _request_id(), now)
        return _resent(app, out, f"{what} till {meeting_id}", out.get("to", []))


@flow(name="kcg-resend-minutes", flow_run_name="skicka protokollet {meeting_id} till {email}", log_prints=False)
def resend_minutes(
    meeting_id: str = _field("Möte", "Mötets id, t.ex. 2023-05: det senast arkiverade protokollet skickas."),
    email: str = _field("Till", "Medlemmens e-postadress (ska finnas i nätverket)."),
) -> dict[str, Any]:
    """Skicka ett mötes protokoll igen till en medlem (t.ex. någon som inte fick det)."""
    from kcg_mail.services.coordinator import resend_distribution

    with _app_and_now() as (app, now):
        out = resend_distribution(app, meeting_id, email, _request_id(), now)
        return _resent(app, out, f"protokollet från {meeting_id} (version {out['version']})", [out["to"]], neuter=True)


@flow(name="kcg-refile", flow_run_name="arkivera ur karantän {message}", log_prints=False)
def refile(
    message: str = _field("Meddelande", "Referensen i översiktens lista (12 tecken) eller filnamnet."),
    meeting_id: str = _field("Möte", "Mötet protokollet hör till, t.ex. 2023-05; tomt = mötet meddelandet matchade.",
                             ""),
) -> dict[str, Any]:
    """Arkivera ett meddelande ur karantänen ändå, som protokoll från ett möte."""
    from kcg_mail.services.manual import refile_message

    with _app_and_now() as (app, _):
        r = refile_message(app, message, meeting_id or None)
        _publish(app, r.markdown(), f"Återarkivering {r.meeting_id}", f"godkände protokoll till {r.meeting_id}")
        return {"msg_key": r.msg_key, "meeting_id": r.meeting_id, "moved": r.moved}


@flow(name="kcg-confirm-date", flow_run_name="bekräfta datum {meeting_id}", log_prints=False)
def confirm_date(
    meeting_id: str = _field("Möte", "Mötet med preliminärt datum, t.ex. 2023-10 (studieresan)."),
    datum: date_cls = _field("Datum", "Det bestämda datumet."),
) -> dict[str, Any]:
    """Bekräfta ett preliminärt datum: samma beslut som Sätt datum och plats med bara datumet;
    medlemmarna får en save-the-date och inbjudan i tid."""
    return set_meeting.fn(meeting_id, datum, "", "", "")


@flow(name="kcg-set-meeting", flow_run_name="sätt datum och plats {meeting_id}", log_prints=False)
def set_meeting(
    meeting_id: str = _field("Möte", "Mötet, t.ex. 2024-01 (fysiskt möte), 2023-10 (studieresan) eller 2023-08."),
    datum: date_cls | None = _field("Datum", "Mötets datum (tomt: datumet står kvar, t.ex. när bara platsen "
                                             "läggs till, eller för att bekräfta det preliminära datumet).", None),
    start: str = _field("Börjar", "Klockslag, t.ex. 10:00 (tomt: mötestypens vanliga tid).", ""),
    slut: str = _field("Slutar", "Klockslag, t.ex. 16:00 (tomt: mötestypens vanliga tid).", ""),
    plats: str = _field("Plats", "Lokal och ort, t.ex. Stadshuset, Norrköping (tomt: meddelas senare).", ""),
) -> dict[str, Any]:
    """Sätt datum, tid och plats för ett möte som samordnaren bestämmer: medlemmarna får en
    save-the-date direkt och inbjudan med plats och program i tid, som uppdateringar av samma kalenderbokning."""
    from kcg_mail.services.coordinator import set_meeting as decide

    with _app_and_now() as (app, now):
        d = decide(app, meeting_id, datum, start, slut, plats, now)
        _publish(app, d.markdown(), f"Datum och plats för {meeting_id}", f"satte {meeting_id}: {d.meeting.date_text()}")
        return {"meeting_id": meeting_id, "date": d.meeting.date.isoformat(), "place": d.meeting.place,
                "done": d.done}


def _approval(verb: Literal["approve", "reject"], ref: str) -> dict[str, Any]:
    from kcg_mail.services import answers  # every open question: held replies, guests, members ...

    with _app_and_now() as (app, now):
        out = answers.decide(app, ref, "yes" if verb == "approve" else "no", now)
        word = {"approve": "godkände", "reject": "avvisade"}[verb]
        _publish(app, out.markdown(), f"{word} {ref}", f"{word} svar {ref}")
        return {"ref": ref, "result": out.action, "detail": out.detail}


@flow(name="kcg-approve", flow_run_name="godkänn {ref}", log_prints=False)
def approve_reply(ref: str = _field("Referens", "Referensen i frågan du fick med e-post, eller i översiktens lista "
                                                "där det också står varför det väntar.")) -> dict[str, Any]:
    """Svara ja på en fråga: ett svar som väntar arkiveras och skickas ut, en gäst bjuds in, en medlem läggs till
    eller tas bort. Samma sak som att svara ja på frågan i e-posten."""
    return _approval("approve", ref)


@flow(name="kcg-reject", flow_run_name="avvisa {ref}", log_prints=False)
def reject_reply(ref: str = _field("Referens", "Referensen i frågan du fick med e-post, eller i översiktens "
                                               "lista.")) -> dict[str, Any]:
    """Svara nej på en fråga: inget skickas och inget ändras. Samma sak som att svara nej i e-posten."""
    return _approval("reject", ref)


@flow(name="kcg-member-add", flow_run_name="ny medlem {name}", log_prints=False)
def member_add(
    name: str = _field("Namn", "Den nya medlemmens för- och efternamn, t.ex. Anna Andersson."),
    email: str = _field("E-postadress", "Adressen som kallelser och protokoll ska gå till."),
    organisation: str = _field("Organisation", "Stadskärneorganisationen, t.ex. Västerås City."),
    city: str = _field("Stad", "Staden, t.ex. Västerås; tomt = staden i organisationens namn.", ""),
) -> dict[str, Any]:
    """Lägg till en medlem: välkomstmejl med årets möten, tillgång till protokollmappen, och från och med
    nu kallelser och protokoll (kommande mötens inbjudningar uppdateras)."""
    from kcg_mail.services import members

    with _app_and_now() as (app, now):
        done = members.add_by_form(app, name, email, organisation, city, now, _request_id())
        _publish(app, f"# Ny medlem: {name}\n\n{done[:1].upper()}{done[1:]}.\n", f"Ny medlem {name}",
                 f"lade till {name}")
        return {"email": email.strip().lower(), "result": done}


@flow(name="kcg-member-remove", flow_run_name="ta bort medlem {who}", log_prints=False)
def member_remove(
    who: str = _field("Medlem", "Medlemmens namn eller e-postadress, t.ex. Anna Andersson."),
) -> dict[str, Any]:
    """Ta bort en medlem: inga fler kallelser eller protokoll, och kommande möten uppdateras i kalendern."""
    from kcg_mail.services import members

    with _app_and_now() as (app, now):
        done = members.remove_by_form(app, who, now, _request_id())
        _publish(app, f"# Medlem borttagen: {who}\n\n{done[:1].upper()}{done[1:]}.\n", f"Ta bort {who}",
                 f"tog bort {who}")
        return {"who": who, "result": done}


@flow(name="kcg-start-project", flow_run_name="starta projektgrupp {ref}", log_prints=False)
def start_project(
    ref: str = _field("Beslut", "Beslutet som föreslår gruppen, t.ex. 2023-04/3 (listas i översikten)."),
    lead: str = _field("Ledare", "Ledarens medlems-id; tomt = första namnet under Ansvarig.", ""),
) -> dict[str, Any]:
    """Starta en projektgrupp som ett protokoll föreslår ("Projektgrupp: …")."""
    from kcg_mail.services.followup import start_group

    with _app_and_now() as (app, _):
        started = start_group(app, ref, lead=lead or None)
        _publish(app, started.markdown(), f"Projektgrupp {started.group.name}", f"startade projektgrupp {started.group.name}")
        return {"name": started.group.name, "slug": started.group.slug, "lead": started.group.lead,
                "created": started.created}


@flow(name="kcg-preview", flow_run_name="förhandsvisa {month}", log_prints=False)
def preview(month: str = _field("Månad", "Månaden att förhandsvisa, t.ex. 2024-02. Inget skickas.",
                                "")) -> dict[str, Any]:
    """Show every mail ``month`` will send (this month when empty), per reader;
    a dry run on a copy of the state record, nothing is sent."""
    from kcg_mail.bootstrap import dry_run_app
    from kcg_mail.services.preview import Preview, dry_run, month_bounds, render_markdown

    workdir, config_dir = workdir_and_config(None, None)
    with make_app() as app:
        month = month or (pretend_today() or when(app, None).date().isoformat())[:7]
        first, last = month_bounds(month)
        with dry_run_app(workdir, config_dir) as (scratch, sent):
            mails = dry_run(scratch, first, last, sent)
        p = Preview(f"Förhandsvisning {month}", "Så här ser månadens utskick ut om inget annat händer "
                    "(svar från värdar, som utskicket av protokollet, syns inte här).", mails)
        rename_run(f"förhandsvisning {month}: {len(mails)} utskick")
        if runtime.flow_run.id:
            create_markdown_artifact(markdown=render_markdown(p), key=f"{artifact_slug(app)}-forhandsvisning",
                                     description=f"Förhandsvisning av utskicken {month}")
        return {"month": month, "mails": len(mails)}
