"""The path users run, for tests and benchmarks: ``kcg serve`` as a subprocess.

``serve_stack(tmp)`` starts

* the real Dovecot + Postfix of ``tests/support/mailserver.py``, with a mail user for
  the network mailbox and for every member and guest (``bench/_common.server_config``
  rewrites the shipped config's addresses onto the test domain);
* a real Prefect server (``tests/support/prefect_server.py``);
* and, on ``stack.start_serve()``, ``kcg serve --workdir W --config C`` with
  the SMTP/IMAP transport (``transport.yaml`` written here, the password from
  ``KCG_SMTP_PASSWORD``, the server's certificate trusted through
  ``SSL_CERT_FILE``) and Prefect's DEFAULT runner settings: the environment
  carries no ``PREFECT_*`` variable but the API URL, home and logging level.

A host replies as a person would: ``stack.submit(raw, host)`` hands the mail
to Postfix through SMTP submission (STARTTLS, logged in as the host); Postfix
delivers it to the network mailbox over LMTP. The distribution is seen where
a member reads it: ``stack.distributions(member)`` lists the files Dovecot
wrote into the member's Maildir (their names carry Dovecot's delivery time).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (HERE.parent, ROOT):  # ``support`` and ``bench`` importable when a benchmark loads this module
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench._common import MAILBOX, server_config  # noqa: E402
from support.mailserver import MailServer, mail_server  # noqa: E402
from support.prefect_server import PrefectServer, prefect_server  # noqa: E402

_DOVECOT_NAME = re.compile(r"^(\d+)\.M(\d+)P")


@dataclass
class Delivered:
    path: Path
    at: float  # Dovecot's delivery time (epoch seconds, from the Maildir file name)
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return body.get_content() if body is not None else ""


def delivered_at(path: Path) -> float:
    m = _DOVECOT_NAME.match(path.name)
    if not m:
        return path.stat().st_mtime
    return int(m.group(1)) + int(m.group(2)) / 1e6


@dataclass
class ServeStack:
    tmp: Path
    mail: MailServer
    prefect: PrefectServer
    config_dir: Path
    workdir: Path
    users: dict[str, str]
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    starts: int = field(default=0)

    # ------------------------------------------------------------------ kcg serve
    def env(self) -> dict[str, str]:
        env = self.prefect.env()
        for k in list(env):
            if k.startswith("KCG_"):
                env.pop(k)
        env.update({"KCG_SMTP_PASSWORD": self.users[MAILBOX], "SSL_CERT_FILE": str(self.mail.cert_file),
                    "PYTHONUNBUFFERED": "1"})
        return env

    def start_serve(self, args: list[str] | None = None, cmd: list[str] | None = None) -> subprocess.Popen:
        """``kcg serve`` (or ``cmd``) in its own process group, output to ``serve-N.log``."""
        assert self.proc is None or self.proc.poll() is not None, "kcg serve is already running"
        self.starts += 1
        self.log_path = self.tmp / f"serve-{self.starts}.log"
        kcg = Path(sys.executable).with_name("kcg")
        cmd = cmd or [str(kcg), "serve", "--workdir", str(self.workdir), "--config", str(self.config_dir)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([*cmd, *(args or [])], cwd=ROOT, env=self.env(), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop_serve(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send ``sig`` to ``kcg serve``; seconds until it exited (SIGKILL after ``timeout``)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return float("inf")
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything it left behind in its group
                os.killpg(proc.pid, signal.SIGKILL)
        return time.monotonic() - t0

    def wait_no_run_working(self, timeout: float = 60.0) -> bool:
        """Wait until none of this stack's intake runs is pending or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [r for r in self.intake_runs() if r["state_type"] in ("PENDING", "RUNNING")]:
                return True
            time.sleep(0.2)
        return False

    def wait_ready(self, timeout: float = 120.0, runs_before: int = 0) -> None:
        """Ready when the listener's start-up intake run has completed on the server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kcg serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            done = [r for r in self.intake_runs() if r["state_type"] == "COMPLETED"]
            if len(done) > runs_before:
                time.sleep(0.3)  # back in IDLE
                return
            time.sleep(0.2)
        raise TimeoutError(f"kcg serve not ready after {timeout} s:\n{self.log()[-4000:]}")

    # ------------------------------------------------------------------ Prefect server
    def flow_runs(self, flow: str | None = None) -> list[dict]:
        body: dict = {"limit": 200, "sort": "EXPECTED_START_TIME_ASC"}
        if flow:
            body["flows"] = {"name": {"any_": [flow]}}
        r = httpx.post(f"{self.prefect.api_url}/flow_runs/filter", json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def intake_runs(self) -> list[dict]:
        """This stack's intake runs (a Prefect server may be shared between stacks)."""
        mine = str(self.workdir.resolve())
        return [r for r in self.flow_runs("kcg-intake") if (r.get("parameters") or {}).get("workdir") == mine]

    # ------------------------------------------------------------------ mail
    def submit(self, raw: bytes, sender: str) -> float:
        """A person sends ``raw`` through the mail server (SMTP submission as ``sender``).
        Returns the wall-clock time the submission started."""
        t0 = time.time()
        with smtplib.SMTP(self.mail.host, self.mail.smtp_port, timeout=30) as smtp:
            smtp.starttls(context=self.mail.ssl_context())
            smtp.login(sender, self.users[sender])
            smtp.sendmail(sender, [MAILBOX], raw)
        return t0

    def maildir(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.mail.root / "mail" / domain / local / "Maildir"

    def files(self, user: str) -> list[Path]:
        """Every message file of ``user`` in any folder."""
        out = []
        root = self.maildir(user)
        for d in [root, *(p for p in root.glob(".*") if p.is_dir())]:
            for sub in ("new", "cur"):
                with contextlib.suppress(FileNotFoundError):
                    out.extend(p for p in (d / sub).iterdir() if p.is_file())
        return out

    def inbox(self, user: str) -> list[Path]:
        out = []
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                out.extend(p for p in (self.maildir(user) / sub).iterdir() if p.is_file())
        return out

    def distributions(self, user: str, seen: set[Path] | None = None) -> list[Delivered]:
        """Distribution mails of the minutes in ``user``'s INBOX (not in ``seen``), oldest first."""
        out = []
        for p in self.inbox(user):
            if seen is not None and p.name in {s.name for s in seen}:
                continue
            with contextlib.suppress(FileNotFoundError):
                raw = p.read_bytes()
                if b":distribute:members:" in raw:
                    out.append(Delivered(p, delivered_at(p), raw))
        return sorted(out, key=lambda d: d.at)

    def delivery_of(self, user: str, needle: bytes) -> float | None:
        """Dovecot's delivery time of the first message of ``user`` (any folder) containing ``needle``."""
        for p in self.files(user):
            with contextlib.suppress(FileNotFoundError):
                if needle in p.read_bytes():
                    return delivered_at(p)
        return None


def write_transport(config_dir: Path, server: MailServer) -> None:
    from support.helpers import trusted_authserv_id

    (config_dir / "transport.yaml").write_text(
        "# written by tests/support/serve_harness.py: the private test mail server\n"
        "mail:\n"
        "  kind: smtp_imap\n"
        f"  smtp_host: {server.host}\n"
        f"  smtp_port: {server.smtp_port}\n"
        "  smtp_security: starttls\n"
        f"  imap_host: {server.host}\n"
        f"  imap_port: {server.imaps_port}\n"
        "  imap_security: tls\n"
        "archive:\n"
        "  kind: local\n"
        "inbound:  # replies count when our receiving server authenticated them (SECURITY.md)\n"
        f"  trusted_authserv_ids: [{trusted_authserv_id()}]\n"
        "distribution:  # the tests and the benchmark send many versions of one meeting's minutes a day\n"
        "  max_per_meeting_per_day: 1000\n",
        encoding="utf-8",
    )


@contextlib.contextmanager
def serve_stack(tmp: Path, prefect: PrefectServer | None = None) -> Iterator[ServeStack]:
    """Mail server + Prefect server (``prefect``: one already running, e.g. a
    module's); not yet ``kcg serve``: call ``start_serve``."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    cfg_dir, users = server_config(tmp / "config")
    with mail_server(users=users) as server:
        write_transport(cfg_dir, server)
        with contextlib.ExitStack() as ctx:
            if prefect is None:
                prefect = ctx.enter_context(prefect_server(tmp / "prefect"))
            stack = ServeStack(tmp, server, prefect, cfg_dir, tmp / "work", users)
            try:
                yield stack
            finally:
                stack.stop_serve(timeout=15)


def host_and_member(config_dir: Path):
    """(app for composing replies, the meeting, its host's address, a member who is not the host)."""
    from bench._common import first_meeting
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.bootstrap import bootstrap

    compose_dir = config_dir.parent / "compose"
    app = bootstrap(compose_dir, config_dir, mail=MaildirTransport(compose_dir / "mail"))
    m = first_meeting(app)
    member = next(p.email for p in app.cfg.network.active_members if p.email != m.host.email)
    return app, m, m.host.email, member
