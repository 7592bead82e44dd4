"""An alert has two readers: the coordinator (``alerts_to``) reads what happened
and what it means for the network, never a command, a file or a flow name; the
operator (``transport.yaml`` ``operator_contacts``, and the webhook) reads the
technical steps. Real Maildir transport, a real HTTP server for the webhook."""

from __future__ import annotations

import re
import shutil
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.basics import at
from support.failed_run import FailedRun as _Run
from support.failed_run import FailedState as _State
from support.hook import Hook

from kcg_mail.bootstrap import bootstrap
from kcg_mail.config_loader import DEFAULT_CONFIG_DIR, load_config
from kcg_mail.core.config_model import ConfigError
from kcg_mail.ports import MARKER_HEADER, TransientError

OPERATOR = "  - {name: Kim Drift, email: drift@svenskastadskarnor.example.se}\n"
#: what the coordinator must never be told: a command, a file, a YAML name, a flow name, a Python error
TECHNICAL = re.compile(r"`|\bkcg[ -]|config/|\.ya?ml\b|state\.sqlite|templates/|Error\b|Exception\b")


def _config(tmp_path: Path, operators: str = "", webhook: str = "") -> Path:
    cfgdir = Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))
    tr = cfgdir / "transport.yaml"
    text = tr.read_text(encoding="utf-8")
    if operators:
        text += "operator_contacts:\n" + operators
    if webhook:
        text = text.replace('webhook_url: ""', f"webhook_url: {webhook}")
    tr.write_text(text, encoding="utf-8")
    return cfgdir


def _sent(workdir: Path) -> dict[str, EmailMessage]:
    out = {}
    for p in sorted((workdir / "mail" / "sent" / "cur").iterdir()):
        m = message_from_bytes(p.read_bytes(), policy=policy.default)
        out[str(m[MARKER_HEADER]).strip()] = m
    return out


def _text(m: EmailMessage) -> str:
    return str(m["Subject"]) + "\n" + m.get_body(("plain",)).get_content()



@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def _kind(name: str, text: str) -> BaseException:
    return type(name, (Exception,), {})(text)


@pytest.mark.parametrize("exc", [
    _kind("ConfigError", "plan-2023.yaml: meetings[0].month: '2023-13' is not a month (fix: write YYYY-MM)"),
    _kind("StateReset", "state.sqlite is empty. Nothing was sent. Run kcg state restore"),
    _kind("TransportError", "LOGIN failed"),
    _kind("RecipientNotAllowed", "x@evil.example.com is not in config/network.yaml"),
    _kind("TemplateProblem", "templates/mail/invite.txt.j2: unexpected end"),
    RuntimeError("boom"),
], ids=lambda e: type(e).__name__)
def test_with_an_operator_the_coordinator_reads_plain_swedish_and_the_operator_the_steps(tmp_path, exc, hook):
    work = tmp_path / "work"
    app = bootstrap(work, _config(tmp_path, OPERATOR, hook.url))
    from kcg_mail.services.alerts import send_failure_alert

    out = send_failure_alert(app, "kcg-daily", _Run(), _State(exc), now=at("2023-10-25", "07:01"))
    assert out == "webhook: sent, mail: sent, operator: sent"
    mails = _sent(work)
    (coord,) = [m for k, m in mails.items() if k.startswith("alert:") and not k.endswith(":operator")]
    (ops,) = [m for k, m in mails.items() if k.startswith("alert:") and k.endswith(":operator")]
    assert coord["To"].addresses[0].addr_spec == "bjorn@svenskastadskarnor.example.se"
    assert ops["To"].addresses[0].addr_spec == "drift@svenskastadskarnor.example.se"
    seen = _text(coord)
    assert not TECHNICAL.search(seen), TECHNICAL.search(seen)
    assert "kcg-daily" not in seen and "den dagliga körningen" in seen
    assert "Kim Drift" in seen and "har fått ett eget mejl" in seen
    tech = _text(ops)
    assert "kcg-daily" in tech and type(exc).__name__ in tech and str(exc).split(":")[0] in tech
    assert "Gör så här" in tech
    # the webhook is the operator's: the technical text
    assert type(exc).__name__ in hook.posts[0]["json"]["text"]


def test_a_stop_says_what_it_means_for_the_network(tmp_path):
    work = tmp_path / "work"
    app = bootstrap(work, _config(tmp_path, OPERATOR))
    from kcg_mail.services.alerts import send_failure_alert

    send_failure_alert(app, "kcg-intake", _Run(), _State(_kind("ConfigError", "network.yaml: x")),
                       now=at("2023-10-25", "07:01"))
    (coord,) = [m for k, m in _sent(work).items() if k.startswith("alert:") and not k.endswith(":operator")]
    seen = _text(coord)
    assert "Inga utskick går ut förrän det är rättat" in seen
    assert "inläsningen av inkommande mejl" in seen
    assert "Kör" not in seen and "Rätta filen" not in seen


def test_without_an_operator_the_coordinator_is_told_whom_to_ask_and_no_command(tmp_path):
    work = tmp_path / "work"
    app = bootstrap(work, _config(tmp_path))
    from kcg_mail.services.alerts import send_failure_alert

    exc = _kind("StateReset", "state.sqlite is empty. Run kcg state restore")
    assert send_failure_alert(app, "kcg-daily", _Run(), _State(exc), now=at("2023-10-25", "07:01")) == "mail: sent"
    mails = {k: m for k, m in _sent(work).items() if k.startswith("alert:")}
    assert len(mails) == 1 and not any(k.endswith(":operator") for k in mails)
    seen = _text(next(iter(mails.values())))
    assert not TECHNICAL.search(seen), TECHNICAL.search(seen)
    assert "Be den som sköter den tekniska installationen" in seen
    assert "Inga utskick går ut förrän uppgifterna är återställda" in seen


def test_an_owed_operator_mail_is_sent_by_the_next_run(tmp_path, monkeypatch):
    from kcg_mail.services import alerts

    work, cfgdir = tmp_path / "work", _config(tmp_path, OPERATOR)
    app = bootstrap(work, cfgdir)
    real = alerts.send_operator_mail

    def down(app, alert):
        raise TransientError("421 busy")

    monkeypatch.setattr(alerts, "send_operator_mail", down)
    out = alerts.send_failure_alert(app, "kcg-daily", _Run(), _State(RuntimeError("boom")), now=at("2023-10-25"))
    assert out == "mail: sent, operator: FAILED"
    assert not any(k.endswith(":operator") for k in _sent(work))
    monkeypatch.setattr(alerts, "send_operator_mail", real)
    assert alerts.retry_pending_alerts(bootstrap(work, cfgdir)) == ["operator: sent"]
    ops = [m for k, m in _sent(work).items() if k.endswith(":operator")]
    assert len(ops) == 1 and "RuntimeError" in _text(ops[0])


def test_operator_contacts_errors_name_file_field_and_fix(tmp_path):
    bad = _config(tmp_path, "  - {name: Kim, email: not-an-address}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    text = str(info.value)
    assert "transport.yaml" in text and "operator_contacts" in text and "fix:" in text
    twice = tmp_path / "twice"
    shutil.copytree(bad, twice)
    tr = twice / "transport.yaml"
    tr.write_text(tr.read_text().replace("not-an-address", "drift@x.example.se") + "  - drift@x.example.se\n")
    with pytest.raises(ConfigError) as info:
        load_config(twice)
    assert "more than once" in str(info.value) and "transport.yaml" in str(info.value)


def test_a_bare_address_is_an_operator_contact(tmp_path):
    cfg = load_config(_config(tmp_path, "  - drift@x.example.se\n"))
    (c,) = cfg.transport.operator_contacts
    assert c.email == "drift@x.example.se" and c.name == ""
