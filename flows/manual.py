"""Flows the coordinator starts by hand from the Prefect UI ("Run" -> form).

- ``kcg-onboard-member``: welcome a new member (logic in ``kcg_mail.services.onboarding``);
- ``kcg-resend``: send a meeting's invitation (as an update, SEQUENCE + 1, to
  everyone) or its protocol template again;
- ``kcg-start-project``: approve a "Projektgrupp: …" decision (issue 18);
- ``kcg-refile``: after looking at a quarantined message, file it anyway: it is
  moved back to the inbox and approved, and the next intake files it as the
  minutes of the given meeting.

The parameters are typed (str, Literal, optional str) so the UI renders a form
with a dropdown for ``what``. Each flow publishes a markdown artifact saying
what it did and what is left to do. They have no schedule and no failure
mail: the coordinator is looking at the run.

The logic is in ``kcg_mail.services.manual`` and ``kcg_mail.services.onboarding``; these flows
wire it and publish what happened. Every resend is keyed by the flow run id:
the same run retried sends nothing twice, a new click in the UI sends again.
"""

from __future__ import annotations

import uuid
from typing import Literal

from prefect import flow, runtime
from prefect.artifacts import create_markdown_artifact

from flows.common import make_app, when
from kcg_mail.services.manual import refile_message, resend_meeting

ONBOARDING_KEY = "kcg-onboarding"
MANUAL_KEY = "kcg-manual"


def _request_id() -> str:
    return str(runtime.flow_run.id or uuid.uuid4())


def _publish(key: str, md: str, description: str) -> None:
    if runtime.flow_run.id:
        create_markdown_artifact(markdown=md, key=key, description=description)


# ------------------------------------------------------------------- flows


@flow(name="kcg-onboard-member", flow_run_name="välkommen {name}", log_prints=False)
def onboard_member(name: str, organisation: str, city: str, email: str, workdir: str = "var",
                   config_dir: str | None = None, date: str | None = None) -> dict:
    """Welcome a new member: welcome mail with the year plan (.ics), access to the
    protocol folder, and a checklist of what stays manual.

    Args:
        name: Full name, e.g. "Åsa Öberg".
        organisation: The city-centre organisation, e.g. "Umeå City".
        city: The city, e.g. "Umeå".
        email: The new member's email address.
        workdir: kcg-mail's working directory (state, Maildir, local archive).
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
        date: Only for tests: pretend today is this day (YYYY-MM-DD).
    """
    from kcg_mail.services.onboarding import onboard

    app = make_app(workdir, config_dir)
    result = onboard(app, name, organisation, city, email, when(app, date))
    _publish(ONBOARDING_KEY, result.markdown(), f"Onboarding av {result.person.name}")
    return {"email": result.person.email, "mail": result.mail, "meetings": len(result.meetings),
            "archive": result.archive, "manual_steps": result.manual_steps}


@flow(name="kcg-resend", flow_run_name="skicka om {what} {meeting_id}", log_prints=False)
def resend(meeting_id: str, what: Literal["invitation", "template"] = "invitation", workdir: str = "var",
           config_dir: str | None = None, date: str | None = None) -> dict:
    """Send a meeting's invitation (as an update to everyone) or its protocol template again.

    Args:
        meeting_id: The meeting, e.g. "2023-05" (see the kcg-year-plan artifact).
        what: "invitation" or "template".
        workdir: kcg-mail's working directory.
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
        date: Only for tests: pretend today is this day (YYYY-MM-DD).
    """
    app = make_app(workdir, config_dir)
    out = resend_meeting(app, meeting_id, what, _request_id(), when(app, date))
    label = {"invitation": "Inbjudan", "template": "Protokollmallen"}[what]
    state = {"sent": "skickad igen", "already": "var redan omskickad i den här körningen"}.get(out["outcome"], out["outcome"])
    _publish(MANUAL_KEY, f"# {label} till {meeting_id} {state}\n\n- Till: {', '.join(out.get('to', []))}\n"
             f"- Nyckel i tillståndsregistret: `{out.get('key', '')}`\n", f"Skicka om {what} {meeting_id}")
    return out


@flow(name="kcg-refile", flow_run_name="återarkivera {message}", log_prints=False)
def refile(message: str, meeting_id: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict:
    """File a quarantined message anyway, as the minutes of a meeting.

    Args:
        message: The message key (msg_key, 40 hex characters) or its reference (file name) from the run summary.
        meeting_id: The meeting the minutes belong to, e.g. "2023-05"; empty = the meeting the message matched.
        workdir: kcg-mail's working directory.
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
    """
    app = make_app(workdir, config_dir)
    r = refile_message(app, message, meeting_id)
    _publish(MANUAL_KEY, r.markdown(), f"Återarkivering {r.meeting_id}")
    return {"msg_key": r.msg_key, "meeting_id": r.meeting_id, "moved": r.moved}


@flow(name="kcg-start-project", flow_run_name="starta projektgrupp {ref}", log_prints=False)
def start_project(ref: str, lead: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict:
    """Approve a "Projektgrupp: …" decision from filed minutes: start the group.

    Args:
        ref: The decision, e.g. "2023-04/3" (listed in the status as waiting for approval).
        lead: The lead's member id; empty = the first name under Ansvarig.
        workdir: kcg-mail's working directory.
        config_dir: Config directory; empty = config/ or $KCG_CONFIG_DIR.
    """
    from kcg_mail.services.followup import start_group

    app = make_app(workdir, config_dir)
    started = start_group(app, ref, lead=lead)
    _publish(MANUAL_KEY, started.markdown(), f"Projektgrupp {started.group.name}")
    return {"name": started.group.name, "slug": started.group.slug, "lead": started.group.lead,
            "created": started.created}
