"""A real, private mail server for the tests: Dovecot (IMAP + LMTP) and Postfix.

Everything lives in a temp dir and listens on free high ports on 127.0.0.1:

* Dovecot 2.3 (Debian ``dovecot-imapd dovecot-lmtpd``) with its own config file:
  IMAP with STARTTLS (``imap_port``) and implicit TLS (``imaps_port``), IDLE,
  MOVE, UIDPLUS; LMTP (``lmtp_port``); a passwd-file with known users; mail is
  stored as Maildir under the temp dir, owned by the ``mail`` user.
* Postfix (Debian ``postfix`` installed with "No configuration", see
  ``.ci/install-mail.sh``) as a private instance ``postfix -c DIR`` with its own
  ``main.cf``/``master.cf``/queue: SMTP submission with STARTTLS (``smtp_port``)
  and implicit TLS (``smtps_port``), SASL auth checked by Dovecot's auth socket,
  every ``@kcg.test`` recipient delivered to Dovecot over LMTP.

TLS uses a throw-away self-signed certificate; ``server.ssl_context()`` trusts it.

Usage::

    with mail_server() as server:
        server.deliver(raw_bytes, "kcg@kcg.test")   # simulate incoming mail
        SmtpImapTransport(**server.transport_kwargs("kcg@kcg.test"))

``mail_server`` is a fixture factory: it returns a context manager, so the suite
can wrap it in a session-scoped fixture. Skips (pytest.skip) when the binaries
are not installed, with a hint to run ``.ci/install-mail.sh``.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kcg_mail.entrypoints.prefect_env import stop_process

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
POSTFIX = "/usr/sbin/postfix"
HOST = "127.0.0.1"

#: The network's mailbox and a couple of hosts, with known passwords.
DEFAULT_USERS: dict[str, str] = {
    "kcg@kcg.test": "kcg-secret",
    "host.lund@kcg.test": "lund-secret",
    "host.umea@kcg.test": "umea-secret",
}

START_TIMEOUT = 30.0


class MailServerError(RuntimeError):
    pass


def available() -> str | None:
    """None when the servers can run here, else the reason they cannot."""
    missing = [p for p in (DOVECOT, DOVEADM, POSTFIX) if not os.access(p, os.X_OK)]
    if missing:
        return f"{', '.join(missing)} not installed (run .ci/install-mail.sh as root)"
    if os.geteuid() != 0:
        return "the private Dovecot/Postfix instances must be started as root"
    for user in ("mail", "dovecot", "dovenull", "postfix"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} missing (run .ci/install-mail.sh)"
    return None


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _wait_banner(port: int, expect: bytes, deadline: float, *, tls: bool = False, what: str = "") -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if tls:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    with ctx.wrap_socket(s) as t:
                        if t.recv(200).startswith(expect):
                            return
                elif s.recv(200).startswith(expect):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise MailServerError(f"{what or port} did not come up on {HOST}:{port}: {last}")


@dataclass
class MailServer:
    root: Path
    users: dict[str, str]
    imap_port: int
    imaps_port: int
    lmtp_port: int
    smtp_port: int
    smtps_port: int
    separator: str = "."
    prefix: str = ""
    host: str = HOST
    #: lines appended to Postfix's main.cf / master.cf (support/reference_mx.py adds its MX port and milters)
    main_cf_extra: str = ""
    master_cf_extra: str = ""
    cert_file: Path = field(init=False)
    _dovecot: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _postfix_started: bool = field(default=False, init=False, repr=False)
    startup_seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.cert_file = self.root / "tls" / "cert.pem"

    # ------------------------------------------------------------------ paths
    @property
    def dovecot_conf(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    @property
    def postfix_dir(self) -> Path:
        return self.root / "postfix" / "etc"

    def logs(self) -> str:
        """Both servers' logs, for assertion messages."""
        out = []
        for p in (self.root / "dovecot" / "dovecot.log", self.root / "postfix" / "postfix.log"):
            if p.exists():
                out.append(f"==> {p.name}\n{p.read_text(errors='replace')[-6000:]}")
        return "\n".join(out)

    # ------------------------------------------------------------------ client helpers
    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the server's self-signed certificate (hostname 127.0.0.1/localhost)."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    def transport_kwargs(self, user: str = "kcg@kcg.test", **overrides) -> dict:
        """Constructor arguments for SmtpImapTransport logged in as ``user``."""
        kw = dict(
            smtp_host=self.host,
            smtp_port=self.smtp_port,
            imap_host=self.host,
            imap_port=self.imaps_port,
            username=user,
            password=self.users[user],
            smtp_security="starttls",
            imap_security="tls",
            ssl_context=self.ssl_context(),
            timeout=10,
        )
        kw.update(overrides)
        return kw

    def deliver(self, raw: bytes, rcpt: str | list[str], mail_from: str = "sender@outside.test") -> None:
        """Deliver ``raw`` straight into the recipients' INBOX over LMTP (as if from outside)."""
        rcpts = [rcpt] if isinstance(rcpt, str) else list(rcpt)
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as lmtp:
            refused = lmtp.sendmail(mail_from, rcpts, raw)
            if refused:
                raise MailServerError(f"LMTP refused {refused}")

    @contextlib.contextmanager
    def imap(self, user: str = "kcg@kcg.test") -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib connection (plain IMAP on loopback) for assertions."""
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            conn.login(user, self.users[user])
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def mailbox_name(self, name: str) -> str:
        """Server mailbox name for a ``/``-separated folder path (prefix + separator)."""
        if name.upper() == "INBOX":
            return "INBOX"
        return self.prefix + name.replace("/", self.separator)

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Raw messages in ``folder`` of ``user`` (empty when the folder does not exist)."""
        with self.imap(user) as conn:
            typ, _ = conn.select(_q(self.mailbox_name(folder)), readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            uids = data[0].split()
            out = []
            for uid in uids:
                typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                for item in data:
                    if isinstance(item, tuple):
                        out.append(item[1])
            return out

    def wait_for(self, user: str, folder: str = "INBOX", count: int = 1, timeout: float = 15.0) -> list[bytes]:
        """Poll until ``folder`` holds at least ``count`` messages; return them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(user, folder)
            if len(msgs) >= count or time.monotonic() > deadline:
                if len(msgs) < count:
                    raise AssertionError(
                        f"{user}/{folder}: {len(msgs)} messages after {timeout}s, wanted {count}\n{self.logs()}"
                    )
                return msgs
            time.sleep(0.1)

    def doveadm(self, *args: str) -> str:
        proc = subprocess.run(
            [DOVEADM, "-c", str(self.dovecot_conf), *args], capture_output=True, text=True, timeout=30
        )
        if proc.returncode != 0:
            raise MailServerError(f"doveadm {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        """Change a mailbox's UIDVALIDITY, as a server migration/rebuild would."""
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), self.mailbox_name(folder))

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "uidvalidity", self.mailbox_name(folder))
        return int(out.strip().split("=", 1)[1])

    def empty(self, user: str, folder: str = "INBOX") -> None:
        self.doveadm("expunge", "-u", user, "mailbox", self.mailbox_name(folder), "all")

    def folders(self, user: str) -> list[str]:
        """Server names of the user's mailboxes."""
        return [line for line in self.doveadm("mailbox", "list", "-u", user).splitlines() if line]

    def wait_queue(self, timeout: float = 30.0) -> None:
        """Until Postfix has handed every accepted mail to Dovecot (mail sent by
        one test must not land in the next one's mailboxes: the SMTP transport
        sends an own copy of everything to the sender's mailbox)."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(["postqueue", "-c", str(self.postfix_dir), "-p"], capture_output=True, text=True,
                                 timeout=30).stdout
            if "Mail queue is empty" in out or not out.strip():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix queue not empty after {timeout}s:\n{out}\n{self.logs()}")
            time.sleep(0.1)

    def reset(self, user: str) -> None:
        """Empty INBOX and delete every other mailbox of ``user`` (test isolation)."""
        self.wait_queue()
        self.empty(user)
        others = sorted((f for f in self.folders(user) if f != "INBOX"), key=len, reverse=True)
        if others:
            self.doveadm("mailbox", "delete", "-u", user, "-r", "-s", *others)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        t0 = time.monotonic()
        self._write_tls()
        self._write_dovecot()
        self._write_postfix()
        deadline = time.monotonic() + START_TIMEOUT
        log = open(self.root / "dovecot" / "stdout.log", "ab")
        self._dovecot = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.dovecot_conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        proc = subprocess.run(
            [POSTFIX, "-c", str(self.postfix_dir), "start"], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise MailServerError(
                f"postfix start failed: {proc.stdout}{proc.stderr}\n{self.logs()}\n"
                f"(postfix reports to syslog or a tty only; to see why: script -qc "
                f"'{POSTFIX} -c {self.postfix_dir} check' /dev/null)"
            )
        self._postfix_started = True
        try:
            _wait_banner(self.imap_port, b"* OK", deadline, what="dovecot imap")
            _wait_banner(self.imaps_port, b"* OK", deadline, tls=True, what="dovecot imaps")
            _wait_banner(self.lmtp_port, b"220", deadline, what="dovecot lmtp")
            _wait_banner(self.smtp_port, b"220", deadline, what="postfix submission")
            _wait_banner(self.smtps_port, b"220", deadline, tls=True, what="postfix smtps")
        except MailServerError as exc:
            if self._dovecot.poll() is not None:
                out = (self.root / "dovecot" / "stdout.log").read_text(errors="replace")
                raise MailServerError(f"{exc}\ndovecot exited: {out}\n{self.logs()}") from None
            raise MailServerError(f"{exc}\n{self.logs()}") from None
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        if self._postfix_started:
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.root / "postfix" / "queue" / "pid" / "master.pid").read_text().split()[0])
            subprocess.run([POSTFIX, "-c", str(self.postfix_dir), "stop"], capture_output=True, timeout=60)
            self._postfix_started = False
            # "postfix stop" only signals the master; wait for it (and so its children) to go.
            deadline = time.monotonic() + 10
            while pid and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        if self._dovecot is not None:
            stop_process(self._dovecot, grace=15)
        self._dovecot = None

    def stop_dovecot(self) -> None:
        """Stop the whole Dovecot instance: the master and the processes it
        started (Dovecot's master leaves running imap processes behind on
        SIGTERM, which a service manager stopping the unit would not)."""
        proc = self._dovecot
        if proc is not None and proc.poll() is None:
            kids = _children(proc.pid)
            proc.terminate()
            proc.wait(15)
            for pid in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)

    def start_dovecot(self) -> None:
        """Start Dovecot again (same config, certificate and mail) and wait for IMAP and LMTP."""
        log = open(self.root / "dovecot" / "stdout.log", "ab")
        self._dovecot = subprocess.Popen([DOVECOT, "-F", "-c", str(self.dovecot_conf)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        _wait_banner(self.imaps_port, b"* OK", deadline, tls=True, what="dovecot imaps")
        _wait_banner(self.lmtp_port, b"220", deadline, what="dovecot lmtp")

    def restart_dovecot(self, down_for: float = 0.0) -> None:
        """The mail server goes away for ``down_for`` seconds and comes back."""
        self.stop_dovecot()
        time.sleep(down_for)
        self.start_dovecot()

    # ------------------------------------------------------------------ config
    def _write_tls(self) -> None:
        d = self.root / "tls"
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        os.chmod(d, 0o755)
        os.chmod(d / "cert.pem", 0o644)
        # Postfix's smtpd runs as user postfix and reads the key itself.
        os.chown(d / "key.pem", pwd.getpwnam("postfix").pw_uid, 0)
        os.chmod(d / "key.pem", 0o600)

    def _write_dovecot(self) -> None:
        d = self.root / "dovecot"
        for sub in ("run", "state"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        mail = pwd.getpwnam("mail")
        maildirs = self.root / "mail"
        maildirs.mkdir(exist_ok=True)
        os.chown(maildirs, mail.pw_uid, mail.pw_gid)
        users = d / "users"
        users.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        os.chown(users, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(users, 0o640)
        self.dovecot_conf.write_text(
            f"""\
# Private test instance written by tests/support/mailserver.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = kcg-test-{self.imap_port}
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = {HOST}
ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.root}/tls/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# no 2 s penalty after a wrong password: the tests provoke several
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_uid = mail
mail_gid = mail
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
default_internal_user = dovecot
default_login_user = dovenull
mail_plugins =
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={maildirs}/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix = {self.prefix}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {self.lmtp_port}
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
# no growing per-IP penalty after failed logins either (documented way to turn it off)
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@kcg.test
}}
"""
        )

    def _write_postfix(self) -> None:
        base = self.root / "postfix"
        etc, queue, data = base / "etc", base / "queue", base / "data"
        for p in (etc, queue, data):
            p.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        os.chmod(queue, 0o755)
        pf = pwd.getpwnam("postfix")
        os.chown(data, pf.pw_uid, pf.pw_gid)
        key = self.root / "tls" / "key.pem"
        (etc / "main.cf").write_text(
            f"""\
# Private test instance written by tests/support/mailserver.py
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base}/postfix.log
maillog_file_prefixes = {base}
myhostname = mail.kcg.test
mydomain = kcg.test
myorigin = kcg.test
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = {HOST}
inet_protocols = ipv4
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_dns_support_level = disabled
virtual_mailbox_domains = kcg.test
virtual_transport = lmtp:inet:{HOST}:{self.lmtp_port}
local_transport = error:local delivery is disabled in tests
default_transport = error:no delivery outside kcg.test in tests
relay_transport = error:no relaying in tests
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.root}/dovecot/run/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_tls_cert_file = {self.cert_file}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_helo_required = no
smtpd_error_sleep_time = 0s
smtputf8_enable = yes
message_size_limit = 10240000
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{self.main_cf_extra}"""
        )
        (etc / "master.cf").write_text(
            f"""\
# Private test instance written by tests/support/mailserver.py (no chroot)
{HOST}:{self.smtp_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
{HOST}:{self.smtps_port} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{self.master_cf_extra}"""
        )


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def mail_server(
    users: dict[str, str] | None = None, *, separator: str = ".", prefix: str = "", keep: bool = False,
    configure=None,
) -> Iterator[MailServer]:
    """Fixture factory: start a private Dovecot + Postfix, yield it, stop and clean up.

    Skips the calling test (pytest.skip) when the servers can't run here.
    ``keep=True`` (or env ``KCG_KEEP_MAILSERVER=1``) leaves the temp dir for inspection.
    ``configure(server)`` runs before the start (it may set ``main_cf_extra``/``master_cf_extra``).
    """
    reason = available()
    if reason:
        import pytest

        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="kcg-mailserver-"))
    os.chmod(root, 0o755)  # the mail, dovecot and postfix users must traverse it
    ports = _free_ports(5)
    server = MailServer(
        root=root,
        users=dict(users or DEFAULT_USERS),
        imap_port=ports[0],
        imaps_port=ports[1],
        lmtp_port=ports[2],
        smtp_port=ports[3],
        smtps_port=ports[4],
        separator=separator,
        prefix=prefix,
    )
    try:
        if configure is not None:
            configure(server)
        server.start()
        yield server
    finally:
        server.stop()
        if not (keep or os.environ.get("KCG_KEEP_MAILSERVER") == "1"):
            shutil.rmtree(root, ignore_errors=True)
