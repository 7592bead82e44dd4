"""The coordinator's cockpit, without a Prefect server: the
standing overview (pure rows and needs, and fed from a real state record),
``kcg status``, the plan edit behind "Bekräfta datum", resending minutes to
one member, and the webhook alert channel against a real local HTTP server
while the mail server is really down (a refused SMTP port)."""

from __future__ import annotations

import json
import re
import shutil
import socket
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import yaml
from support.cockpit_seed import TODAY, at, seed
from support.hook import Hook  # noqa: F401

from kcg_mail.bootstrap import bootstrap
from kcg_mail.config_edit import PlanEditProblem, confirm_date
from kcg_mail.config_loader import DEFAULT_CONFIG_DIR
from kcg_mail.core import overview
from kcg_mail.ports import MARKER_HEADER


def config_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))


def sent(workdir: Path) -> dict:
    out = {}
    for p in sorted((workdir / "mail" / "sent" / "cur").iterdir()):
        m = message_from_bytes(p.read_bytes(), policy=policy.default)
        out[str(m[MARKER_HEADER]).strip()] = m
    return out


# ------------------------------------------------------------------ pure


def facts(**kw) -> overview.MeetingFacts:
    base = dict(id="2023-05", date=date(2023, 5, 2), kind_label="Månadsmöte (digitalt)", theme="Tema 4 Medlemserbjudande",
                host="Armina Ilijasevic")
    return overview.MeetingFacts(**(base | kw))


@pytest.mark.core
@pytest.mark.parametrize("kw,today,expected", [
    ({}, date(2023, 4, 1), "planerat"),
    ({"host_briefed": True}, date(2023, 4, 1), "värd informerad"),
    ({"host_briefed": True, "invited": True}, date(2023, 4, 20), "inbjudan ute"),
    ({"invited": True}, date(2023, 5, 2), "i dag"),
    ({"invited": True}, date(2023, 5, 5), "väntar protokoll"),
    ({"invited": True, "escalated": True}, date(2023, 5, 12), "protokoll saknas"),
    ({"invited": True}, date(2023, 6, 1), "protokoll saknas"),  # past the grace days even without escalation
    ({"filed_version": 1}, date(2023, 5, 12), "arkiverat"),
    ({"filed_version": 2, "distributed": True}, date(2023, 5, 12), "klart"),
    ({"cancelled": True, "invited": False}, date(2023, 4, 20), "inställt"),
    ({"tentative": True}, date(2023, 4, 1), "preliminärt"),
    ({"before_start": True}, date(2023, 6, 1), "före start"),
    ({}, date(2023, 6, 1), "passerat"),  # past, and the cycle never ran for it: nothing is owed
])
def test_stage_in_one_or_two_words(kw, today, expected):
    assert overview.stage(facts(**kw), today) == expected


@pytest.mark.core
def test_rows_have_the_seven_columns_and_no_internal_codes():
    inp = overview.Inputs(
        meetings=(facts(id="2023-04", date=date(2023, 4, 3), invited=True, escalated=True),
                  facts(invited=True, accepted=7, declined=2, filed_version=1, distributed=True),
                  facts(id="2023-10", date=date(2023, 9, 25), kind_label="Studieresa", tentative=True,
                        proposed="Förslag v 39")),
        today=date(2023, 5, 10),
        held=(overview.Held("abc123def456", "lisa@uppsala.example.se", "Sv: Kallelse", "svaret nämner pengar", "2023-05"),),
        quarantined=(overview.Quarantined("0123456789ab", "okand@example.com", "Reklam",
                                         "det gick inte att koppla till något möte"),),
        problems=(overview.Problem("E-postservern", "TransientError: 421 try later", "2023-05-10T07:00"),),
        plan_years=frozenset({2023}),
    )
    rows = overview.rows(inp)
    assert [list(r) for r in rows] == [list(overview.COLUMNS)] * 3
    assert rows[0]["läge"] == "protokoll saknas" and rows[0]["behöver"] == "ja ↓"
    assert rows[1] == {"möte": "2023-05 Månadsmöte", "datum": "2023-05-02", "värd": "Armina Ilijasevic", "läge": "klart",
                       "svar": "7 / 2", "protokoll": "v1, utskickat", "behöver": "ja ↓"}
    assert rows[2]["datum"] == "2023-09-25 prel." and rows[2]["läge"] == "preliminärt"
    lines = [n.line() for n in overview.overview_needs(inp)]
    assert len(lines) == 5
    assert lines[0].startswith("E-postservern fungerar inte sedan 2023-05-10 07:00")
    assert any("2023-04" in x and "har inte kommit in" in x for x in lines)
    assert any("preliminärt datum" in x and "Bekräfta datum" in x for x in lines)
    assert not any(re.search(r"\bkcg[ -]|\.ya?ml\b|config/|`", x) for x in lines), lines  # no flow, command or file
    assert any("abc123def456" in x and "Godkänn" in x for x in lines)
    assert any("0123456789ab" in x and "gick inte att koppla till något möte" in x for x in lines)
    for code in ("unmatched", "brief_host", "send_template", "escalate", "held"):
        assert code not in "\n".join(lines) + json.dumps(rows, ensure_ascii=False)


@pytest.mark.core
def test_missing_next_year_plan_is_a_need_from_october():
    base = dict(meetings=(), plan_years=frozenset({2023}))
    assert not overview.overview_needs(overview.Inputs(today=date(2023, 9, 30), **base))
    (need,) = overview.overview_needs(overview.Inputs(today=date(2023, 10, 1), **base))
    assert "ingen årsplan för 2024" in need.text and "Årsplan 2024 – utkast" in need.todo
    assert "plan-2024.yaml" not in need.todo and "kcg" not in need.todo
    assert not overview.overview_needs(overview.Inputs(today=date(2023, 11, 1), meetings=(),
                                                       plan_years=frozenset({2023, 2024})))
    # a year that has begun without a plan is the one asked for, whatever the month
    (need,) = overview.overview_needs(overview.Inputs(today=date(2025, 3, 1), **base))
    assert "ingen årsplan för 2025" in need.text


@pytest.mark.core
def test_markdown_is_the_table_then_the_list():
    inp = overview.Inputs(meetings=(facts(),), today=date(2023, 4, 1), plan_years=frozenset({2023}))
    md = overview.markdown("KCG", inp, at("2023-04-01"), by="daglig 2023-04-01")
    lines = md.splitlines()
    assert lines[0] == "# KCG: läget just nu"
    head = lines.index("| Möte | Datum | Värd | Läge | Svar | Protokoll | Behöver |")
    assert lines[head + 2].startswith("| 2023-05 Månadsmöte | 2023-05-02 |")
    assert lines.index("## Behöver en människa") > head + 2
    assert md.rstrip().endswith("- Inget just nu.")


@pytest.mark.core
def test_step_lines_are_words():
    assert overview.step_line("2023-03", "brief_host", "sent") == "2023-03: information till värden – skickad"
    assert overview.step_line("2023-03", "invite", "skipped", "datumet är preliminärt") == \
        "2023-03: inbjudan – hoppades över (datumet är preliminärt)"


@pytest.mark.core
def test_confirm_date_edits_only_that_entry_and_keeps_comments():
    text = (DEFAULT_CONFIG_DIR / "plan-2023.yaml").read_text(encoding="utf-8")
    new = confirm_date(text, "2023-10", date(2023, 9, 27))
    doc = yaml.safe_load(new)
    (oct_,) = [m for m in doc["meetings"] if m["month"] == "2023-10"]
    assert oct_["date"] == date(2023, 9, 27) and oct_["tentative"] is False
    assert [m for m in doc["meetings"] if m["month"] != "2023-10"] == \
        [m for m in yaml.safe_load(text)["meetings"] if m["month"] != "2023-10"]
    assert new.splitlines()[:8] == text.splitlines()[:8]  # the comments stay
    # an entry without date/tentative gets both
    new2 = yaml.safe_load(confirm_date(text, "2023-05", date(2023, 5, 8)))
    (may,) = [m for m in new2["meetings"] if m["month"] == "2023-05"]
    assert may["date"] == date(2023, 5, 8) and may["tentative"] is False and may["host"] == "armina"
    with pytest.raises(PlanEditProblem):
        confirm_date(text, "2023-07", date(2023, 7, 3))


# -------------------------------------------------------- from the state


def test_overview_from_a_real_state_record(tmp_path):
    from kcg_mail.services.status import overview_markdown, overview_needs, overview_rows

    app = seed(tmp_path / "work", config_copy(tmp_path))
    now = at(TODAY)
    rows = {r["möte"].split()[0]: r for r in overview_rows(app, now)}
    assert rows["2023-01"]["läge"] == "protokoll saknas"
    assert rows["2023-02"]["läge"] == "klart" and rows["2023-02"]["svar"] == "2 / 1"
    assert rows["2023-02"]["protokoll"] == "v1, utskickat"
    assert rows["2023-10"]["läge"] == "preliminärt"
    needs = overview_needs(app, now)
    assert [n.meeting_id for n in needs] == ["2023-01", "2023-10", None]
    msg = next(m for m in app.state.messages() if m.sender == "okand@example.com")
    assert msg.msg_key[:12] in needs[2].line()
    md = overview_markdown(app, now)
    assert "## Behöver en människa" in md and md.count("\n| 20") == len(app.meetings)


def test_quarantine_reference_from_the_overview_refiles(tmp_path):
    from kcg_mail.services.manual import refile_message
    from kcg_mail.services.status import overview_needs

    app = seed(tmp_path / "work", config_copy(tmp_path))
    need = overview_needs(app, at(TODAY))[2]
    ref = need.line().split("referensen ")[1].split()[0]
    r = refile_message(app, ref, "2023-03")
    assert r.meeting_id == "2023-03" and r.msg_key.startswith(ref)
    assert len(overview_needs(app, at(TODAY))) == 2  # no longer in quarantine


def test_kcg_status_prints_the_same_rows_and_list(tmp_path):
    from typer.testing import CliRunner

    from kcg_mail.entrypoints.cli import app as cli
    from kcg_mail.services.status import overview_needs, overview_rows

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = seed(work, cfgdir)
    out = CliRunner().invoke(cli, ["status", "--workdir", str(work), "--config", str(cfgdir)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for col in overview.COLUMNS:
        assert col.capitalize() in text
    for r in overview_rows(app):
        assert r["möte"] in text and r["läge"] in text
    assert "Behöver en människa" in text
    for n in overview_needs(app):
        assert " ".join(n.text.split())[:60] in text


def test_confirm_date_and_the_daily_run_invites(tmp_path):
    """Confirming the study trip's tentative date is the coordinator's decision stored
    in the state (the same as kcg-set-meeting with the date only): no plan file changes."""
    from kcg_mail.services.coordinator import set_meeting
    from kcg_mail.services.daily import run_daily
    from kcg_mail.services.manual import ManualProblem
    from kcg_mail.services.status import overview_needs

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = bootstrap(work, cfgdir)
    files = {f.name: f.read_bytes() for f in cfgdir.iterdir()}
    assert app.meeting("2023-10").tentative
    with pytest.raises(ManualProblem, match="har redan varit"):
        set_meeting(app, "2023-10", date(2023, 8, 1), "", "", "", at("2023-08-20"))
    d = set_meeting(app, "2023-10", date(2023, 10, 9), "", "", "", at("2023-08-20"))
    assert d.meeting.date == date(2023, 10, 9) and "9 oktober" in d.markdown()
    assert {f.name: f.read_bytes() for f in cfgdir.iterdir()} == files  # nothing written into config/
    app = bootstrap(work, cfgdir)
    trip = app.meeting("2023-10")
    assert trip.date == date(2023, 10, 9) and not trip.tentative
    assert not any(n.meeting_id == "2023-10" and "preliminärt" in n.text for n in overview_needs(app, at("2023-08-20")))
    run_daily(app, at("2023-09-25"))
    assert any(k.startswith("2023-10:invite:") for k in sent(work))


def test_resend_minutes_to_one_member(tmp_path):
    from kcg_mail.services.coordinator import resend_distribution
    from kcg_mail.services.manual import ManualProblem

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    app = seed(work, cfgdir)
    member = next(p for p in app.cfg.network.active_members if p.email != "daniel@gavle.example.se")
    out = resend_distribution(app, "2023-02", member.email.upper(), "run-1", at("2023-02-21"))
    assert out["outcome"] == "sent" and out["to"] == member.email
    m = sent(work)[out["key"]]
    assert [a.addr_spec for a in m["To"].addresses] == [member.email]
    assert any(p.get_filename().endswith(".docx") for p in m.iter_attachments())
    assert resend_distribution(app, "2023-02", member.email, "run-1", at("2023-02-21"))["outcome"] == "already"
    with pytest.raises(ManualProblem, match="inget protokoll"):
        resend_distribution(app, "2023-03", member.email, "run-2", at("2023-02-21"))
    with pytest.raises(ManualProblem, match="finns inte i nätverket"):
        resend_distribution(app, "2023-02", "someone@else.example", "run-3", at("2023-02-21"))


# ------------------------------------------------------------------ webhook




@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Run:
    id = "00000000-0000-0000-0000-0000000000aa"
    name = "daglig 2023-10-25"


class _State:
    def __init__(self, exc):
        self.exc, self.message = exc, f"Flow run encountered an exception: {type(exc).__name__}: {exc}"

    def result(self, raise_on_failure=True):
        return self.exc


def _mail_down_config(tmp_path: Path, monkeypatch, webhook_url: str) -> Path:
    """SMTP/IMAP pointed at a loopback port where nothing listens: the mail server is down."""
    cfgdir = config_copy(tmp_path)
    port = _free_port()
    tr = cfgdir / "transport.yaml"
    tr.write_text(tr.read_text().replace(
        "  kind: maildir", f"  kind: smtp_imap\n  smtp_host: 127.0.0.1\n  smtp_port: {port}\n  imap_port: {port}\n"
        "  smtp_security: none\n  imap_security: none"))
    monkeypatch.setenv("KCG_SMTP_PASSWORD", "unused-password-for-a-closed-port")
    monkeypatch.setenv("KCG_ALERTS__WEBHOOK_URL", webhook_url)
    return cfgdir


@pytest.mark.slow  # the SMTP client retries the refused port a few times
def test_webhook_alert_arrives_when_the_mail_server_is_down(tmp_path, monkeypatch, hook, caplog):
    from kcg_mail.ports import TransientError
    from kcg_mail.services.alerts import retry_pending_alerts, send_failure_alert
    from kcg_mail.services.status import overview_needs

    cfgdir = _mail_down_config(tmp_path, monkeypatch, hook.url)
    app = bootstrap(tmp_path / "work", cfgdir)
    assert app.cfg.transport.alerts.webhook_url == hook.url  # from the environment
    with caplog.at_level("ERROR"):
        out = send_failure_alert(app, "kcg-daily", _Run(), _State(TransientError("421 4.3.2 Service not available")),
                                 now=at("2023-10-25"))
    assert out == "webhook: sent, mail: FAILED"
    (post,) = hook.posts
    assert post["path"] == "/webhookb2/secret-token" and post["type"].startswith("application/json")
    card = post["json"]
    assert card["@type"] == "MessageCard" and card["summary"] == "kcg-daily misslyckades: TransientError"
    assert card["text"].startswith("kcg-daily misslyckades: TransientError")  # Slack shows `text`
    assert "421 4.3.2" in card["text"] and "/runs/flow-run/00000000-0000-0000-0000-0000000000aa" in card["text"]
    assert card["potentialAction"][0]["targets"][0]["uri"].endswith("/runs/flow-run/00000000-0000-0000-0000-0000000000aa")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "by mail" in errors[0].getMessage() and "next run tries again" in errors[0].getMessage()
    assert "secret-token" not in caplog.text
    # the overview says so, in words, until it works again
    lines = [n.line() for n in overview_needs(app, at("2023-10-25"))]
    assert any(x.startswith("E-postservern fungerar inte sedan 2023-10-25") and "421" in x for x in lines)
    assert any(x.startswith("Larm via e-post fungerar inte") for x in lines)
    # the same problem again today: nothing new on the webhook
    assert send_failure_alert(app, "kcg-daily", _Run(), _State(TransientError("421 4.3.2 Service not available")),
                              now=at("2023-10-25", 9)) == "owed: mail"
    assert len(hook.posts) == 1
    # the next run retries the mail (still down: still owed, one more ERROR)
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert retry_pending_alerts(app) == ["mail: FAILED"]
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1

    # the mail server is back (Maildir): the owed mail goes out once, the need is gone
    tr = cfgdir / "transport.yaml"
    tr.write_text((DEFAULT_CONFIG_DIR / "transport.yaml").read_text())
    app2 = bootstrap(tmp_path / "work", cfgdir)
    assert retry_pending_alerts(app2) == ["mail: sent"]
    assert retry_pending_alerts(app2) == []
    (m,) = [m for k, m in sent(tmp_path / "work").items() if k.startswith("alert:kcg-daily:2023-10-25")]
    assert "Mejlservern svarar inte" in m["Subject"]
    assert not any(x.startswith("Larm via e-post") for x in (n.line() for n in overview_needs(app2, at("2023-10-25"))))
    assert len(hook.posts) == 1  # the webhook had it already


def test_failed_webhook_is_retried_next_run(tmp_path, monkeypatch, hook, caplog):
    from kcg_mail.services.alerts import retry_pending_alerts, send_failure_alert
    from kcg_mail.services.status import overview_needs

    cfgdir, work = config_copy(tmp_path), tmp_path / "work"
    monkeypatch.setenv("KCG_ALERTS__WEBHOOK_URL", hook.url)
    app = bootstrap(work, cfgdir)
    hook.status = 500
    with caplog.at_level("ERROR"):
        out = send_failure_alert(app, "kcg-intake", _Run(), _State(RuntimeError("boom")), now=at("2023-10-25"))
    assert out == "mail: sent, webhook: FAILED"
    assert "HTTP 500" in caplog.text and "secret-token" not in caplog.text
    assert any(n.text.startswith("Larm via webhook fungerar inte") for n in overview_needs(app, at("2023-10-25")))
    hook.status = 200
    assert retry_pending_alerts(app) == ["webhook: sent"]
    assert len(hook.posts) == 2 and hook.posts[1]["json"]["summary"] == "kcg-intake misslyckades: RuntimeError"
    assert retry_pending_alerts(app) == []
    assert not any(n.text.startswith("Larm via webhook") for n in overview_needs(app, at("2023-10-25")))
    assert len([k for k in sent(work) if k.startswith("alert:")]) == 1  # the mail went once


def test_webhook_url_in_transport_yaml_is_validated(tmp_path):
    from kcg_mail.config_loader import ConfigError, load_config

    cfgdir = config_copy(tmp_path)
    tr = cfgdir / "transport.yaml"
    tr.write_text(tr.read_text().replace('  webhook_url: ""', '  webhook_url: "https://example.invalid/hook"\n  colour: red'))
    with pytest.raises(ConfigError) as exc:
        load_config(cfgdir, environ={})
    assert any("alerts" in p and "colour" in p for p in exc.value.problems)
