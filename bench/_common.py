"""Shared set-up for the benchmarks: machine facts, real replies, the real mail server.

Replies are built the way ``kcg demo`` plays a host: the real protocol
template rendered for the meeting, the decisions table filled in (python-docx),
attached to a reply from the host's address with the meeting token in the
subject. Each reply gets a different first decision, so each one is a new
version of the minutes: filed and distributed, never a duplicate.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"
TESTS = ROOT / "tests"


def machine() -> str:
    from datetime import date

    return (f"{date.today().isoformat()}, {platform.node() or 'host'}: {os.cpu_count()} CPUs (nproc "
            f"{len(os.sched_getaffinity(0))}), Python {platform.python_version()}, {platform.platform(terse=True)}")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def mail_server_module():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from support import mailserver  # tests/support/mailserver.py: real Dovecot + Postfix in a temp dir

    return mailserver


def first_meeting(app):
    return next(m for m in app.meetings if not m.tentative)


def intake_time(m) -> datetime:
    """The simulated 'now' of the intake: noon the day after the meeting."""
    return datetime.combine(m.date + timedelta(days=1), datetime.min.time(), m.start.tzinfo).replace(hour=12)


def filled_minutes(app, m) -> bytes:
    from kcg_mail.entrypoints.demo_hosts import fill_protocol
    from kcg_mail.services.daily import render_protocol

    return fill_protocol(render_protocol(app, m).data, m)


def variant(docx_bytes: bytes, text: str) -> bytes:
    from kcg_mail.documents.fill import edit_decisions

    def change(table) -> None:
        table.rows[1].cells[0].text = text

    return edit_decisions(docx_bytes, change)


def reply(app, m, docx_bytes: bytes, tag: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{m.host.name} <{m.host.email}>"
    msg["To"] = app.cfg.network.mailbox.email
    msg["Subject"] = f"SV: Protokoll {m.token} {tag}"
    msg["Date"] = format_datetime(intake_time(m) - timedelta(hours=1))
    msg["Message-ID"] = make_msgid(domain=m.host.email.rpartition("@")[2])
    msg.set_content(f"Hej!\n\nHär kommer protokollet ({tag}).\n\nHälsningar\n{m.host.name}\n")
    msg.add_attachment(docx_bytes, maintype="application",
                       subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                       filename=f"Protokoll {m.id}.docx")
    from kcg_mail.entrypoints.demo_hosts import stamp_authentication

    # as our receiving server hands it over: its Authentication-Results on top
    return stamp_authentication(msg.as_bytes(), app.cfg.transport.inbound.trusted_authserv_ids[0])


def lift_distribution_limit() -> None:
    """The benchmarks file many versions of one meeting in one day to measure
    throughput; the product holds all but distribution.max_per_meeting_per_day
    of them for approval. Lift the limit for a benchmark process only."""
    os.environ.setdefault("KCG_DISTRIBUTION__MAX_PER_MEETING_PER_DAY", "1000000")


def replies(app, m, n: int, prefix: str) -> list[tuple[str, bytes]]:
    base = filled_minutes(app, m)
    out = []
    for i in range(n):
        tag = f"#{prefix}{i:04d}"
        out.append((tag, reply(app, m, variant(base, f"Beslut {prefix}{i}: ta fram underlag"), tag)))
    return out


# --------------------------------------------------------------------------- a network on the test server

TEST_DOMAIN = "kcg.test"
MAILBOX = f"kcg@{TEST_DOMAIN}"
_EMAIL = __import__("re").compile(r"([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+)(?:\.[A-Za-z0-9.-]+)")


def server_config(dst: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the shipped config whose addresses all live on the test mail
    server (``aljosa@sodertalje.example.se`` -> ``aljosa.sodertalje@kcg.test``,
    the network mailbox -> ``kcg@kcg.test``), so Postfix accepts and delivers
    every distribution. Returns the config dir and the mail users to create."""
    import shutil

    from kcg_mail.config_loader import load_config

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(CONFIG_DIR, dst)
    net = dst / "network.yaml"
    mailbox = load_config(CONFIG_DIR, environ={}).network.mailbox.email
    text = net.read_text(encoding="utf-8").replace(mailbox, MAILBOX)
    text = _EMAIL.sub(lambda m: m.group(0) if m.group(0) == MAILBOX else f"{m.group(1)}.{m.group(2)}@{TEST_DOMAIN}", text)
    net.write_text(text, encoding="utf-8")
    cfg = load_config(dst, environ={})
    emails = {p.email for p in cfg.network.members + cfg.network.guests} | {MAILBOX}
    return dst, {e: "pw-" + e.partition("@")[0] for e in sorted(emails)}


def result_line(name: str, data: dict) -> None:
    """One machine-readable line for ``python -m bench`` to collect."""
    import json

    print("RESULT " + json.dumps({"bench": name, **data}, ensure_ascii=False), flush=True)


def start_server(users: dict[str, str]):
    """The real Dovecot + Postfix of tests/support/mailserver.py (a context manager)."""
    ms = mail_server_module()
    reason = ms.available()
    if reason:
        raise SystemExit(f"cannot start the mail server here: {reason}")
    return ms.mail_server(users=users)
