"""The yearly planning round as Prefect flows (logic in ``kcg_mail.services.round``).

- ``kcg-planning-start``: the coordinator starts the round for a plan year
  (the needs mail with the Word form to every member);
- ``kcg-planning-publish`` ("publicera röstlistan"): after editing the
  candidate list in the archive, send the numbered ballot;
- ``kcg-planning-tick``: what is due on a day (reminders, the candidate list
  after the needs deadline, closing the round after the votes deadline);
  serve it daily during a round, or run it by hand;
- ``kcg-planning-correct-ballot`` (a form, like the flows in ``flows.manual``):
  the coordinator records a member's votes (when a ballot could not be read);
  the member gets a receipt. The same correction can be made by replying to
  the mail about the unclear ballot (``kcg_mail.services.ballot_correction``).

Replies are read by the intake flow. Each run publishes the round as table
artifacts (members' answers, the tally) and a markdown summary.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime
from prefect.artifacts import create_table_artifact

from flows.common import make_app, publish, rename_run, when
from flows.manual import _app_and_now, _field, _publish, _request_id
from kcg_mail.services import round as round_
from kcg_mail.services import round_status as view
from kcg_mail.services.app import App


def publish_round(app: App, year: int, title: str, lines: list[str]) -> str:
    if runtime.flow_run.id:
        create_table_artifact(table=view.member_rows(app, year), key=f"kcg-planning-{year}",
                              description=f"Planeringsrunda {year}: förslag och röster per medlem")
        tally = view.tally_rows(app, year)
        if tally:
            create_table_artifact(table=tally, key=f"kcg-planning-tally-{year}",
                                  description=f"Handlingsplan {year}: röster per samverkansområde (fokus = ja)")
    return publish(app, title, lines + view.status_lines(app, year), view.needs_a_person(app))


def _run(step: str, year: int, date: str | None, workdir: str, config_dir: str | None) -> dict[str, Any]:
    with make_app(workdir, config_dir) as app:
        at = when(app, date, "08:00")
        do = {"start": round_.start_round, "publish": round_.publish_ballot, "tick": round_.tick}[step]
        lines = do(app, year, at)
        title = {"start": "start", "publish": "publicera röstlistan", "tick": "dagens steg"}[step]
        sent = len(app.outbox.sent)
        rename_run(f"planering {year}: {title}, {sent} mejl")
        publish_round(app, year, f"Planeringsrunda {year}: {title}", lines)
        return {"year": year, "step": step, "sent": sent, "lines": lines}


@flow(name="kcg-planning-correct-ballot", flow_run_name="rätta röst {member}", log_prints=False)
def planning_correct_ballot(
    member: str = _field("Medlem", "Medlemmens namn eller e-postadress, t.ex. Lena Dalerup."),
    votes: str = _field("Röster", "Nummer och antal röster från röstlistan, t.ex. 3: 4, 12: 3, 20: 3."),
    year: int | None = _field("År", "Handlingsplanens år, t.ex. 2024; tomt = den runda som pågår.", None),
) -> dict[str, Any]:
    """Rätta en medlems röst: fördelningen räknas som medlemmens röst (den senaste gäller
    fram till sammanräkningen) och medlemmen får ett kvitto."""
    from kcg_mail.services.ballot_correction import correct_ballot, current_year

    with _app_and_now() as (app, now):
        done = correct_ballot(app, year or current_year(app), member, votes, now, ref=_request_id())
        whose = round_.named(done.person.name)["genitive"]
        _publish(app, done.markdown(), f"Rättad röst: {done.person.name}", f"rättade {whose} röst")
        return {"member": done.person.email, "votes": done.lines, "receipt": done.receipt}


@flow(name="kcg-planning-start", flow_run_name="planering {year}: start", log_prints=False)
def planning_start(year: int, date: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict[str, Any]:
    """Start the planning round: the needs mail ("Nuläge & behov") to every member.

    Args:
        year: The plan year, e.g. 2024 (its dates are in config/planning.yaml).
        date: Simulated day YYYY-MM-DD (default today).
    """
    return _run("start", year, date, workdir, config_dir)


@flow(name="kcg-planning-publish", flow_run_name="planering {year}: publicera röstlistan", log_prints=False)
def planning_publish(year: int, date: str | None = None, workdir: str = "var", config_dir: str | None = None) -> dict[str, Any]:
    """Publicera röstlistan: read the edited candidate list from the archive and send the ballot.

    Args:
        year: The plan year, e.g. 2024.
        date: Simulated day YYYY-MM-DD (default today).
    """
    return _run("publish", year, date, workdir, config_dir)


@flow(name="kcg-planning-tick", flow_run_name="planering: dagens steg", log_prints=False)
def planning_tick(year: int | None = None, date: str | None = None, workdir: str = "var",
                  config_dir: str | None = None) -> dict[str, Any]:
    """What the round needs today: reminders, the candidate list, closing and the Handlingsplan.

    Args:
        year: The plan year, e.g. 2024; empty: every round that is started and not closed.
        date: Simulated day YYYY-MM-DD (default today).
    """
    if year is not None:
        return _run("tick", year, date, workdir, config_dir)
    with make_app(workdir, config_dir) as app:
        years = round_.open_rounds(app)
    if not years:
        rename_run("planering: ingen pågående runda")
        return {"year": None, "step": "tick", "sent": 0, "lines": ["ingen planeringsrunda pågår"]}
    results = [_run("tick", y, date, workdir, config_dir) for y in years]
    return {"year": years, "step": "tick", "sent": sum(r["sent"] for r in results),
            "lines": [line for r in results for line in r["lines"]]}
