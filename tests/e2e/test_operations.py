"""Operating it: deployments, manual flows, alerts, plan changes.

Tests without the ``server`` mark run the core (``kcg_mail.services.daily.run_daily``,
``kcg_mail.services.onboarding``, the manual-flow logic) on a temporary copy of
``config/`` and the Maildir/local-folder defaults, no Prefect involved.

Tests marked ``server`` start a real Prefect server on loopback
(``tests/support/prefect_server.py``) and ``kcg serve`` against it in a subprocess,
and check what an operator sees: the deployments with their schedules, the
artifacts of a run, the alert mail of a failed run, the onboarding mail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from support.basics import at  # noqa: E402

from kcg_mail.bootstrap import bootstrap
from kcg_mail.config_loader import DEFAULT_CONFIG_DIR
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.app import App
from kcg_mail.services.daily import run_daily

TZ = ZoneInfo("Europe/Stockholm")
NEW = {"name": "Åsa Öberg", "organisation": "Umeå City", "city": "Umeå", "email": "asa@umea.example.se"}


# ------------------------------------------------------------------ helpers


def config_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))


def edit_plan(cfgdir: Path, month: str, change) -> None:
    """Apply ``change(entries, index)`` to the plan entry for ``month`` and save."""
    f = cfgdir / "plan-2023.yaml"
    doc = yaml.safe_load(f.read_text(encoding="utf-8"))
    i = next(i for i, e in enumerate(doc["meetings"]) if e["month"] == month)
    change(doc["meetings"], i)
    f.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def sent(workdir: Path) -> dict[str, EmailMessage]:
    """Every mail in the Maildir sent folder, by its idempotency key."""
    out = {}
    for p in sorted((workdir / "mail" / "sent" / "cur").iterdir()):
        m = message_from_bytes(p.read_bytes(), policy=policy.default)
        out[str(m[MARKER_HEADER]).strip()] = m  # a long key is folded: unfolding leaves a leading space
    return out


def calendar_part(m: EmailMessage) -> bytes:
    for part in m.walk():
        if part.get_content_type() == "text/calendar":
            return part.get_payload(decode=True)
    raise AssertionError("no text/calendar part")


def unfold(ics: bytes) -> list[str]:
    """Minimal RFC 5545 §3.1 reader, independent of icalendar: CRLF lines,
    a line starting with a space or tab continues the previous one."""
    lines: list[str] = []
    for raw in ics.decode("utf-8").split("\r\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def vevents(ics: bytes) -> list[dict[str, str]]:
    """VEVENT properties (name without parameters -> (params, value)) from the unfolded lines."""
    events, cur = [], None
    for line in unfold(ics):
        if line == "BEGIN:VEVENT":
            cur = {}
        elif line == "END:VEVENT":
            events.append(cur)
            cur = None
        elif cur is not None:
            head, _, value = line.partition(":")
            cur.setdefault(head.split(";")[0], head + ":" + value)
    return events


def invited(tmp_path: Path, day: str) -> tuple[App, Path, Path]:
    """A fresh workdir and config copy after the daily run of ``day``."""
    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)
    run_daily(app, at(day))
    return app, cfgdir, work


# ------------------------------------------------------------ plan changes


def test_moved_date_updates_invitation_same_uid_higher_sequence(tmp_path):
    from icalendar import Calendar

    app, cfgdir, work = invited(tmp_path, "2023-10-25")  # 2023-11 (6 Nov, host Lisa) invited on 23 Oct
    first = sent(work)["2023-11:invite:members:s0"]
    cal0 = Calendar.from_ical(calendar_part(first))
    ev0 = next(iter(cal0.walk("VEVENT")))

    edit_plan(cfgdir, "2023-11", lambda ms, i: ms[i].update(date="2023-11-13"))
    app = bootstrap(work, cfgdir)
    report = run_daily(app, at("2023-10-26"))
    assert [(r.meeting_id, r.action, r.outcome) for r in report.results] == [("2023-11", "update_invitation", "sent")]

    mails = sent(work)
    upd = mails["2023-11:invite:members:s1"]
    assert "method=REQUEST" in upd.as_string().replace('"', "")
    cal1 = Calendar.from_ical(calendar_part(upd))
    assert cal1["METHOD"] == "REQUEST"
    ev1 = next(iter(cal1.walk("VEVENT")))
    assert str(ev1["UID"]) == str(ev0["UID"])
    assert int(ev1["SEQUENCE"]) == int(ev0["SEQUENCE"]) + 1 == 1
    assert ev1.decoded("DTSTART") == datetime(2023, 11, 13, 9, 0, tzinfo=TZ)
    assert len(ev1.get("ATTENDEE")) == len(ev0.get("ATTENDEE"))
    # the host hears about it personally, nobody else gets a plan_change mail
    changes = sorted(k for k in mails if ":plan_change:" in k)
    assert changes == ["2023-11:plan_change:lisa@uppsala.example.se:s1"]
    assert "13 november" in mails[changes[0]].get_body(("plain",)).get_content()

    # the same day again: nothing new goes out
    before = set(sent(work))
    assert run_daily(bootstrap(work, cfgdir), at("2023-10-26", "12:00")).sent == 0
    assert set(sent(work)) == before


def test_changed_host_tells_old_and_new_host(tmp_path):
    app, cfgdir, work = invited(tmp_path, "2023-11-22")  # 2023-12 (4 Dec, Linda, backup Björn) invited 20 Nov
    assert "2023-12:invite:members:s0" in sent(work)

    edit_plan(cfgdir, "2023-12", lambda ms, i: ms[i].update(host="maria"))
    report = run_daily(bootstrap(work, cfgdir), at("2023-11-23"))
    assert [(r.action, r.outcome) for r in report.results] == [("update_invitation", "sent")]
    assert "host" in report.results[0].detail
    mails = sent(work)
    assert "2023-12:invite:members:s1" in mails
    to = sorted(k.split(":")[2] for k in mails if ":plan_change:" in k)
    assert to == ["bjorn@svenskastadskarnor.example.se", "linda@boras.example.se", "maria@vasteras.example.se"]
    # the new host is the host from now on: the reminder with the template goes to her
    run_daily(bootstrap(work, cfgdir), at("2023-11-30"))  # 2 working days before Monday 4 December
    assert "2023-12:send_template:maria@vasteras.example.se" in sent(work)


def test_removed_meeting_is_cancelled_once(tmp_path):
    from icalendar import Calendar

    app, cfgdir, work = invited(tmp_path, "2023-10-25")
    uid0 = str(next(iter(Calendar.from_ical(calendar_part(sent(work)["2023-11:invite:members:s0"])).walk("VEVENT")))["UID"])

    edit_plan(cfgdir, "2023-11", lambda ms, i: ms.pop(i))
    report = run_daily(bootstrap(work, cfgdir), at("2023-10-26"))
    assert [(r.meeting_id, r.action, r.outcome) for r in report.results] == [("2023-11", "cancel_invitation", "sent")]
    cancel = sent(work)["2023-11:cancel:members:s1"]
    assert "method=CANCEL" in cancel.as_string().replace('"', "")
    cal = Calendar.from_ical(calendar_part(cancel))
    assert cal["METHOD"] == "CANCEL"
    ev = next(iter(cal.walk("VEVENT")))
    assert (str(ev["UID"]), int(ev["SEQUENCE"]), str(ev["STATUS"])) == (uid0, 1, "CANCELLED")
    assert len(cancel["To"].addresses) == len(app.attendees(app.meeting("2023-11")))
    # independent reader agrees
    (raw_ev,) = vevents(calendar_part(cancel))
    assert raw_ev["UID"].endswith(":" + uid0) and raw_ev["SEQUENCE"] == "SEQUENCE:1"

    assert run_daily(bootstrap(work, cfgdir), at("2023-10-27")).sent == 0


def test_cancelled_flag_in_plan_cancels_too(tmp_path):
    app, cfgdir, work = invited(tmp_path, "2023-10-25")
    edit_plan(cfgdir, "2023-11", lambda ms, i: ms[i].update(cancelled=True))
    report = run_daily(bootstrap(work, cfgdir), at("2023-10-26"))
    assert [(r.action, r.outcome) for r in report.results] == [("cancel_invitation", "sent")]
    assert "2023-11:cancel:members:s1" in sent(work)


# ---------------------------------------------------------------- onboarding


def remaining_starts(app: App, now: datetime) -> list[datetime]:
    return [m.start for m in app.meetings if m.start > now]


def check_welcome(app: App, work: Path, now: datetime) -> None:
    from icalendar import Calendar

    mail = sent(work)[f"welcome:{NEW['email']}"]
    assert mail["To"].addresses[0].addr_spec == NEW["email"]
    assert mail["Subject"] == "Välkommen till Key Cities Group!"
    text = mail.get_body(("plain",)).get_content()
    assert "Hej Åsa!" in text and "Allas åsikter är lika viktiga" in text
    assert "Samarbete och handlingskraft" in text and "kollegialt stöd" in text
    (att,) = [p for p in mail.iter_attachments() if p.get_filename().endswith(".ics")]
    assert att.get_content_type() == "text/calendar"
    ics = att.get_payload(decode=True)
    want = remaining_starts(app, now)
    assert len(want) >= 3

    cal = Calendar.from_ical(ics)
    assert cal["METHOD"] == "PUBLISH"
    events = list(cal.walk("VEVENT"))
    assert len(events) == len(want)
    assert sorted(e.decoded("DTSTART") for e in events) == want
    assert {str(e["UID"]) for e in events} >= {f"kcg-{m.id}@svenskastadskarnor.example.se" for m in app.meetings
                                               if m.start > now}
    # the hand-written reader sees the same
    raw = vevents(ics)
    assert len(raw) == len(want)
    got = sorted(re.search(r":(\d{8}T\d{6})$", e["DTSTART"]).group(1) for e in raw)
    assert got == [s.strftime("%Y%m%dT%H%M%S") for s in want]
    assert all("TZID=Europe/Stockholm" in e["DTSTART"] for e in raw)
    assert "BEGIN:VTIMEZONE" in unfold(ics)


def test_onboarding_welcome_ics_archive_and_checklist(tmp_path):
    from kcg_mail.services.onboarding import onboard

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)
    now = at("2023-08-20", "10:00")
    r = onboard(app, NEW["name"], NEW["organisation"], NEW["city"], NEW["email"], now)
    assert r.mail == "sent"
    check_welcome(app, work, now)

    members = json.loads((work / "dropbox" / "KCG" / "Protokoll" / ".kcg-members.json").read_text())
    assert [m["email"] for m in members["members"]] == [NEW["email"]]
    md = r.markdown()
    for step in app.cfg.network.manual_onboarding_steps:
        assert f"- [ ] {step}" in md
    assert "config/network.yaml" in md
    entry = yaml.safe_load(r.yaml_line.strip()[2:])
    assert entry == {"id": "asa", **NEW}
    # onboarding is not a config change
    assert NEW["email"] not in (cfgdir / "network.yaml").read_text()

    # twice: one mail
    again = onboard(bootstrap(work, cfgdir), NEW["name"], NEW["organisation"], NEW["city"], NEW["email"], now)
    assert again.mail == "already"
    assert sum(k.startswith("welcome:") for k in sent(work)) == 1


def test_onboarding_opens_the_guard_for_exactly_one_address(tmp_path):
    from kcg_mail.ports import Address
    from kcg_mail.services.app import RecipientNotAllowed
    from kcg_mail.services.onboarding import OnboardingProblem, onboard

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)
    onboard(app, NEW["name"], NEW["organisation"], NEW["city"], NEW["email"], at("2023-08-20"))
    # the app's outbox still refuses the new person (not in network.yaml yet) ...
    msg = app.composer.message("alert", "x:1", None, [], {"alert": {"title": "t", "what": "w", "means": "", "todo": "t", "url": "u"}},
                               to_addresses=[Address("Åsa", NEW["email"])])
    with pytest.raises(RecipientNotAllowed):
        app.outbox.send(msg)
    # ... and a stranger
    stranger = app.composer.message("alert", "x:2", None, [], {"alert": {"title": "t", "what": "w", "means": "", "todo": "t", "url": "u"}},
                                    to_addresses=[Address("X", "x@evil.example.com")])
    with pytest.raises(RecipientNotAllowed):
        app.outbox.send(stranger)
    # onboarding refuses an existing member
    with pytest.raises(OnboardingProblem):
        onboard(app, "Lisa", "Uppsala City", "Uppsala", "LISA@uppsala.example.se", at("2023-08-20"))
    assert not any(k.startswith(("x:", "welcome:lisa")) for k in sent(work))


def test_person_id_is_unique_and_config_safe():
    from kcg_mail.services.onboarding import person_id

    assert person_id("Åsa Öberg", set()) == "asa"
    assert person_id("Åsa Öberg", {"asa"}) == "asa_oberg"
    assert person_id("Åsa Öberg", {"asa", "asa_oberg"}) == "asa2"
    assert person_id("Lisa", {"lisa"}) == "lisa2"


# ------------------------------------------------------------ manual flows


def test_resend_invitation_is_an_update_to_everyone(tmp_path):
    from icalendar import Calendar

    from kcg_mail.services.manual import ManualProblem, resend_meeting

    app, cfgdir, work = invited(tmp_path, "2023-10-25")
    with pytest.raises(ManualProblem, match="ingen inbjudan"):
        resend_meeting(app, "2023-12", "invitation", "run-0", at("2023-10-25"))
    out = resend_meeting(app, "2023-11", "invitation", "run-1", at("2023-10-25", "10:00"))
    assert out["outcome"] == "sent" and out["sequence"] == 1
    mail = sent(work)["2023-11:invite:members:s1"]
    ev = next(iter(Calendar.from_ical(calendar_part(mail)).walk("VEVENT")))
    assert int(ev["SEQUENCE"]) == 1
    assert len(mail["To"].addresses) == len(app.attendees(app.meeting("2023-11")))
    # the same request (a retried run) sends nothing; a new one sends s2
    assert resend_meeting(app, "2023-11", "invitation", "run-1", at("2023-10-25"))["outcome"] == "already"
    assert resend_meeting(app, "2023-11", "invitation", "run-2", at("2023-10-25"))["sequence"] == 2
    # the daily run sees nothing changed
    assert run_daily(bootstrap(work, cfgdir), at("2023-10-26")).sent == 0


def test_resend_template_goes_out_again_and_is_recorded(tmp_path):
    from kcg_mail.services.manual import resend_meeting

    # template for Monday 6 Nov sent on Thursday 2 Nov (two working days before)
    app, cfgdir, work = invited(tmp_path, "2023-11-03")
    assert "2023-11:send_template:lisa@uppsala.example.se" in sent(work)
    out = resend_meeting(app, "2023-11", "template", "run-7", at("2023-11-03", "15:00"))
    key = "2023-11:send_template:lisa@uppsala.example.se:resend:run-7"
    assert out["outcome"] == "sent" and out["key"] == key
    mail = sent(work)[key]
    assert [p.get_filename() for p in mail.iter_attachments()][0].endswith(".docx")
    assert app.state.action(key).status == "done"
    assert app.state.action("2023-11:resend:template:run-7").detail["key"] == key
    assert "Inför mötet måndag 6 november" in str(mail["Subject"])
    # asked again after the meeting: the text speaks of it as held, not as ahead
    resend_meeting(app, "2023-11", "template", "run-8", at("2023-11-08", "15:00"))
    late = sent(work)["2023-11:send_template:lisa@uppsala.example.se:resend:run-8"]
    text = late.get_body(("plain",)).get_content()
    assert str(late["Subject"]).startswith("Protokollmall för mötet måndag 6 november")
    assert "Tack för att du var värd" in text and "Lycka till" not in text


def _stranger_minutes(app: App, work: Path) -> bytes:
    """Minutes for 2023-11 (filled template) sent by a member who is not a filer."""
    from email.utils import make_msgid

    from kcg_mail.entrypoints.demo_hosts import fill_protocol
    from kcg_mail.services.daily import render_protocol

    m = app.meeting("2023-11")
    doc = fill_protocol(render_protocol(app, m).data, m)
    msg = EmailMessage()
    msg["From"] = "Pia Sandin <pia@malmo.example.se>"
    msg["To"] = "kcg@svenskastadskarnor.example.se"
    msg["Subject"] = "Protokoll från novembermötet [KCG-2023-11]"
    msg["Message-ID"] = make_msgid(domain="malmo.example.se")
    msg["Date"] = "Tue, 07 Nov 2023 10:00:00 +0100"
    msg.set_content("Hej! Lisa bad mig skicka protokollet.\n/Pia")
    msg.add_attachment(doc, maintype="application", subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                       filename="protokoll.docx")
    return msg.as_bytes()


def test_refile_quarantined_minutes_from_a_non_filer(tmp_path):
    from kcg_mail.services.intake import msg_key, run_intake
    from kcg_mail.services.manual import ManualProblem, refile_message

    app, cfgdir, work = invited(tmp_path, "2023-11-05")
    raw = _stranger_minutes(app, work)
    app.mail.deliver(raw, "pia.eml")
    r1 = run_intake(app, at("2023-11-07", "12:00"))
    assert [h.outcome for h in r1.handled] == ["held"]
    assert len(list((work / "mail" / "quarantine" / "cur").iterdir())) == 1
    assert app.state.filings("2023-11") == []

    key = msg_key(raw)
    with pytest.raises(ManualProblem):
        refile_message(app, "nonexistent.eml")
    r = refile_message(app, "pia.eml")  # by reference; the meeting comes from the match
    assert (r.msg_key, r.meeting_id) == (key, "2023-11")
    assert "inkorgen" in r.moved
    assert list((work / "mail" / "quarantine" / "cur").iterdir()) == []
    assert app.state.get(f"approved:{key}") == "2023-11"

    r2 = run_intake(app, at("2023-11-07", "12:05"))
    assert [h.outcome for h in r2.handled] == ["minutes"]
    (filing,) = app.state.filings("2023-11")
    assert filing.path.startswith("/KCG/Protokoll/2023/") and filing.source_msg_key == key
    assert "2023-11:distribute:members:v1" in sent(work)
    assert len(list((work / "mail" / "processed" / "cur").iterdir())) == 1
    # approval is for that message only: the same sender's next message is quarantined again
    app.mail.deliver(raw.replace(b"Hej! Lisa", b"Hej igen! Lisa"), "pia2.eml")
    assert [h.outcome for h in run_intake(app, at("2023-11-07", "12:10")).handled] == ["held"]


# ------------------------------------------------------------------ alerts


class _Run:
    def __init__(self, id="00000000-0000-0000-0000-000000000001", name="daily 2023-10-25"):
        self.id, self.name, self.parameters = id, name, {}


class _State:
    def __init__(self, exc):
        self.exc, self.message = exc, f"Flow run encountered an exception: {type(exc).__name__}: {exc}"

    def result(self, raise_on_failure=True):
        return self.exc


def test_alert_once_per_problem_and_day(tmp_path):
    from kcg_mail.ports import TransientError
    from kcg_mail.services.alerts import send_failure_alert

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)
    now = at("2023-10-25", "07:01")
    assert send_failure_alert(app, "kcg-daily", _Run(), _State(TransientError("busy, retry in 30 s")), now=now) == "mail: sent"
    # same problem, other numbers in the text, next run: no second mail
    assert send_failure_alert(app, "kcg-daily", _Run(name="daily 2"), _State(TransientError("busy, retry in 60 s")),
                              now=now + timedelta(hours=3)) == "already"
    # another problem: a mail
    assert send_failure_alert(app, "kcg-daily", _Run(), _State(KeyError("x")), now=now) == "mail: sent"
    # still there tomorrow: one reminder
    assert send_failure_alert(app, "kcg-daily", _Run(), _State(TransientError("busy")),
                              now=now + timedelta(days=1)) == "mail: sent"
    alerts = {k: m for k, m in sent(work).items() if k.startswith("alert:")}
    assert len(alerts) == 3
    m = next(m for k, m in alerts.items() if "2023-10-25" in k and "Mejlservern svarar inte" in m["Subject"])
    assert m["To"].addresses[0].addr_spec == "bjorn@svenskastadskarnor.example.se"
    body = m.get_body(("plain",)).get_content()
    assert "/runs/flow-run/00000000-0000-0000-0000-000000000001" in body
    assert "Nästa körning försöker igen" in body  # what it means
    assert "TransientError" not in m["Subject"] + body and "kcg-daily" not in m["Subject"] + body


def test_alerts_to_overrides_recipients_without_opening_the_guard(tmp_path):
    from kcg_mail.services.alerts import send_failure_alert

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    tr = cfgdir / "transport.yaml"
    tr.write_text(tr.read_text().replace("alerts_to: []", "alerts_to: [drift@svenskastadskarnor.example.se]"))
    app = bootstrap(work, cfgdir)
    send_failure_alert(app, "kcg-intake", _Run(), _State(RuntimeError("boom")), now=at("2023-10-25"))
    (m,) = [m for k, m in sent(work).items() if k.startswith("alert:")]
    assert m["To"].addresses[0].addr_spec == "drift@svenskastadskarnor.example.se"
    assert "drift@svenskastadskarnor.example.se" not in app.outbox.allowed


def test_alert_falls_back_to_last_good_config(tmp_path):
    from kcg_mail.bootstrap import alert_app
    from kcg_mail.services.alerts import snapshot_config

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    snapshot_config(bootstrap(work, cfgdir), work)
    (cfgdir / "network.yaml").write_text("name: [unclosed\n")
    app, note = alert_app(work, str(cfgdir))
    assert note and "senast fungerande" in note
    assert app.cfg.network.coordinator.email == "bjorn@svenskastadskarnor.example.se"


# ============================================================ real server

server = pytest.mark.server


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    from support.prefect_server import prefect_server

    try:
        with prefect_server(tmp_path_factory.mktemp("prefect-home")) as s:
            yield s
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:  # pragma: no cover - no server possible
        pytest.skip(f"cannot start a Prefect server: {exc}")


@pytest.fixture(scope="module")
def api(prefect):
    """This test process talks to the server (flows called in-process, client reads)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect.api_url, PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield prefect


@pytest.fixture(scope="module")
def served(api, tmp_path_factory):
    """``kcg serve`` in a subprocess against the server, on a temporary workdir and config."""
    from prefect.client.orchestration import get_client
    from support.prefect_server import stop

    base = tmp_path_factory.mktemp("served")
    cfgdir = Path(shutil.copytree(DEFAULT_CONFIG_DIR, base / "config"))
    work = base / "work"
    # KCG_TODAY: the manual flows pretend a day through the environment, never the form
    env = api.env() | {"PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "INFO", "KCG_TODAY": "2023-08-20"}
    log = base / "serve.log"
    kcg = Path(sys.executable).with_name("kcg")
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(kcg), "serve", "--workdir", str(work), "--config", str(cfgdir)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=str(Path(__file__).parents[2]),
                                start_new_session=True)
    names = ["kcg-daily/KCG", "kcg-intake/KCG", "kcg-onboard-member/KCG", "kcg-resend/KCG", "kcg-refile/KCG",
             "kcg-resend-minutes/KCG", "kcg-confirm-date/KCG", "kcg-approve/KCG", "kcg-reject/KCG"]
    try:
        with get_client(sync_client=True) as client:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"kcg serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
                deps = client.read_deployments()
                flows = {f.id: f.name for f in client.read_flows()}
                found = {f"{flows.get(d.flow_id)}/{d.name}" for d in deps}
                if set(names) <= found:
                    break
                if time.monotonic() - t0 > 60:
                    raise AssertionError(f"deployments not registered:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"proc": proc, "work": work, "config": cfgdir, "names": names, "log": log, "base": base,
               "startup": time.monotonic() - t0}
    finally:
        stop(proc)


def _wait(name: str, params: dict, timeout: float = 90):
    from prefect.deployments import run_deployment

    return run_deployment(name, parameters=params, timeout=timeout, poll_interval=0.5)


def _hooks_done(flow_run_id, timeout: float = 30) -> None:
    """The server marks the run Failed before the on_failure hook has run:
    wait for the hook's own log line (shipped to the API by the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    t0 = time.monotonic()
    with get_client(sync_client=True) as client:
        while time.monotonic() - t0 < timeout:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any("Hook 'alert_on_failure' finished" in log.message for log in logs):
                return
            time.sleep(0.5)
    raise AssertionError(f"the failure hook of {flow_run_id} did not finish within {timeout} s")


def _artifacts(flow_run_id, key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


@server
def test_serve_registers_deployments_with_schedules_and_concurrency(served):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    with get_client(sync_client=True) as client:
        daily = client.read_deployment_by_name("kcg-daily/KCG")
        intake = client.read_deployment_by_name("kcg-intake/KCG")
        manual = [client.read_deployment_by_name(n) for n in served["names"][2:]]
    (ds,) = daily.schedules
    assert (ds.schedule.cron, ds.schedule.timezone, ds.active) == ("0 7 * * *", "Europe/Stockholm", True)
    (is_,) = intake.schedules
    assert (is_.schedule.cron, is_.schedule.timezone, is_.active) == ("*/30 * * * *", "Europe/Stockholm", True)
    for d in (daily, intake, *manual):
        assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1, d.name
        assert not d.paused
        assert "KCG" in d.tags and "kcg" in d.tags
        # where a run works is bound to the deployment, never a field of the form
        assert not {"workdir", "config_dir", "date", "now"} & set(d.parameter_openapi_schema["properties"]), d.name
    for d in (daily, intake):
        assert d.parameters["workdir"] == str(served["work"])
        assert d.parameters["config_dir"] == str(served["config"])
    assert daily.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert intake.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert all(d.schedules == [] and d.parameters == {} and "manual" in d.tags for d in manual)
    # the forms: Swedish titles and descriptions, a dropdown for `what` with a default
    resend = manual[1].parameter_openapi_schema
    assert resend["properties"]["what"]["enum"] == ["inbjudan", "protokollmall"]
    assert resend["properties"]["what"]["default"] == "inbjudan"
    assert set(resend["required"]) == {"meeting_id"}
    onboard = manual[0].parameter_openapi_schema
    assert set(onboard["required"]) == {"name", "organisation", "email"}  # the city may be left out
    assert [onboard["properties"][p]["title"] for p in ("name", "organisation", "city", "email")] == \
        ["Namn", "Organisation", "Stad", "E-postadress"]
    for d in manual:
        for name, prop in d.parameter_openapi_schema["properties"].items():
            assert prop["title"] != name and prop["description"], (d.name, name)


@server
def test_daily_run_through_deployment_publishes_artifacts(served):
    run = _wait("kcg-daily/KCG", {"date": "2023-10-25"})
    assert run.state.is_completed(), (run.state, served["log"].read_text()[-3000:])
    (view,) = _artifacts(run.id, "kcg-oversikt")
    assert view.type == "markdown"
    rows = {line.split()[1]: line for line in view.data.splitlines() if line.startswith("| 20")}
    assert len(rows) == len(bootstrap(served["work"], served["config"]).meetings)
    assert "| inbjudan ute |" in rows["2023-11"]
    assert "| planerat |" in rows["2023-12"]
    (summary,) = _artifacts(run.id, "kcg-korning")
    assert summary.type == "markdown"
    assert "# Daglig körning 2023-10-25" in summary.data
    assert "2023-11: inbjudan – skickad" in summary.data
    assert "## Behöver en människa" in summary.data
    assert "2023-11:invite:members:s0" in sent(served["work"])
    with get_client_sync() as client:
        assert {"kcg", "KCG", "daily"} <= set(client.read_flow_run(run.id).tags)


def get_client_sync():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@server
def test_onboarding_through_deployment(served):
    run = _wait("kcg-onboard-member/KCG", NEW)
    assert run.state.is_completed(), (run.state, served["log"].read_text()[-3000:])
    app = bootstrap(served["work"], served["config"])
    check_welcome(app, served["work"], at("2023-08-20", "07:00"))
    (md,) = _artifacts(run.id, "kcg-manuellt")
    # the same path as kcg-member-add: the member is added, nobody is told to edit network.yaml
    assert "är medlem från och med nu" in md.data and "network.yaml" not in md.data


@server
def test_failed_run_through_deployment_alerts_once(served):
    broken = served["base"] / "broken-config"
    shutil.copytree(served["config"], broken)
    (broken / "plan-2023.yaml").write_text("year: 2023\nmeetings:\n  - month: 2023-13\n")
    # a good run happened before (daily test or this one), so last-good-config exists
    assert (served["work"] / "last-good-config" / "network.yaml").exists() or \
        _wait("kcg-daily/KCG", {"date": "2023-08-01"}).state.is_completed()
    before = {k for k in sent(served["work"]) if k.startswith("alert:")}
    r1 = _wait("kcg-daily/KCG", {"date": "2023-10-26", "config_dir": str(broken)})
    r2 = _wait("kcg-daily/KCG", {"date": "2023-10-27", "config_dir": str(broken)})
    assert r1.state.is_failed() and r2.state.is_failed()
    _hooks_done(r1.id)
    _hooks_done(r2.id)
    new = {k: m for k, m in sent(served["work"]).items() if k.startswith("alert:") and k not in before}
    assert len(new) == 1, (new.keys(), served["log"].read_text()[-3000:])
    (m,) = new.values()
    body = m.get_body(("plain",)).get_content()
    assert "Inställningarna för utskicken har ett fel" in m["Subject"]
    assert f"/runs/flow-run/{r1.id}" in body
    assert "Inga utskick går ut förrän det är rättat" in body
    # the coordinator is not told to edit a file or run a command (no operator configured: whom to ask)
    assert "plan-2023.yaml" not in body and "kcg check" not in body and "Be den som sköter" in body


@server
def test_failing_transport_in_process_alerts_once(api, tmp_path, monkeypatch):
    """A flow called in this process against the server; the Maildir transport
    refuses invitations. The failure hook mails the coordinator once."""
    from flows.daily import daily_flow
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.ports import TransientError

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"

    def refuse(self, inv):
        raise TransientError("421 4.3.2 Service not available, try again later")

    monkeypatch.setattr(MaildirTransport, "send_invitation", refuse)
    from kcg_mail.entrypoints import prefect_env

    with prefect_env.without_heartbeats():
        for day in ("2023-10-25", "2023-10-25"):
            state = daily_flow(date=day, workdir=str(work), config_dir=str(cfgdir), return_state=True)
            assert state.is_failed()
    alerts = [m for k, m in sent(work).items() if k.startswith("alert:kcg-daily:")]
    assert len(alerts) == 1
    assert "Mejlservern svarar inte" in alerts[0]["Subject"]
    assert "/runs/flow-run/" in alerts[0].get_body(("plain",)).get_content()
    assert api.api_url.removesuffix("/api") in alerts[0].get_body(("plain",)).get_content()


@server
def test_restarting_serve_keeps_schedules_active(served):
    """Runs last in the module: stop ``kcg serve`` like a restart would."""
    from prefect.client.orchestration import get_client

    # the runner is up and executing runs (a SIGINT during its start-up would
    # not reach the shutdown code that pauses schedules)
    # (an unscheduled deployment: the intake's real 5-minute schedule may be
    # running right now, and its CANCEL_NEW limit would cancel a second run)
    run = _wait("kcg-onboard-member/KCG", NEW)
    assert run.state.is_completed(), run.state
    proc = served["proc"]
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(30)
    with get_client(sync_client=True) as client:
        for name in served["names"][:2]:
            d = client.read_deployment_by_name(name)
            assert not d.paused and all(s.active for s in d.schedules), name
