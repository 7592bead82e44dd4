"""The reference MX: a real authenticating receiver in front of Dovecot, for the tests.

What runs (all private, in the temp dir of ``tests/support/mailserver.py``, on free
loopback ports, started and stopped by the fixture):

* the private Postfix + Dovecot of ``tests/support/mailserver.py``, plus an inbound
  SMTP listener (``mx_port``, like port 25: no authentication, mail for our
  domains only) whose mail passes two milters;
* **OpenDKIM** (Debian ``opendkim``) in verify mode: checks DKIM signatures
  and writes ``Authentication-Results: <authserv-id>; dkim=...``;
* **OpenDMARC** (Debian ``opendmarc``) with ``SPFSelfValidate``: checks SPF
  itself (libspf2), reads OpenDKIM's field (``TrustedAuthservIDs``), applies
  the domain's DMARC record and writes ``<authserv-id>; dmarc=... header.from=...``
  on top (and its SPF result in a field of its own);
* a loopback **DNS server** (``dnslib``) serving the members' SPF, DKIM and
  DMARC records. The milters resolve through it: each runs in a private mount
  namespace (``unshare --mount``) whose ``/etc/resolv.conf`` is a bind mount
  of a file naming the DNS server (glibc's resolver, which OpenDMARC and
  libspf2 use, takes no port and reads only that file); OpenDKIM is also
  pointed at it with ``Nameservers``. A nameserver needs port 53, so the DNS
  server binds port 53 on a free random address of 127.0.0.0/8.
* Postfix ``header_checks`` drop every incoming ``Authentication-Results``
  that claims our authserv-id before the milters run (OpenDMARC would
  otherwise take a forged ``dkim=pass`` of the sender as input), and
  ``milter_default_action = tempfail``: no mail is delivered without our field.

The test plays the sending MTAs. ``send(raw, client_ip=...)`` connects to the
MX port and, with Postfix's ``XCLIENT`` (allowed from loopback only), gives the
address the mail comes from, so SPF is evaluated for a real-looking sender
address instead of 127.0.0.1 (libspf2 passes loopback clients unconditionally).
``sign(raw, domain)`` DKIM-signs with that domain's key (``dkimpy``).

Needs root, ``unshare`` and the Debian packages of ``.ci/install-mail.sh``;
skips (pytest.skip) otherwise, which ``KCG_REQUIRE_SERVERS=1`` turns into a failure.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kcg_mail.entrypoints.prefect_env import stop_process
from support.mailserver import HOST, MailServer, MailServerError, _free_ports, mail_server

OPENDKIM = "/usr/sbin/opendkim"
OPENDMARC = "/usr/sbin/opendmarc"
UNSHARE = "/usr/bin/unshare"
SELECTOR = "kcg2023"

#: Where the members' own mail servers send from (their SPF records name it).
MEMBER_MTA_IP = "192.0.2.10"
#: Anybody else on the internet.
STRANGER_IP = "198.51.100.66"


def available() -> str | None:
    missing = [p for p in (OPENDKIM, OPENDMARC, UNSHARE, "/usr/bin/openssl") if not os.access(p, os.X_OK)]
    if missing:
        return f"{', '.join(missing)} not installed (run .ci/install-mail.sh as root)"
    for mod in ("dnslib", "dkim"):
        try:
            __import__(mod)
        except ImportError:
            return f"Python package {mod} missing (pip install -c constraints.txt -e '.[test]')"
    probe = subprocess.run([UNSHARE, "--mount", "--propagation", "private", "true"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return f"cannot make a private mount namespace for the milters' resolv.conf: {probe.stderr.strip()}"
    return None


# ------------------------------------------------------------------ DNS


class _Zone:
    """TXT records by name; NXDOMAIN for names it does not know, empty NOERROR otherwise."""

    def __init__(self, txt: dict[str, list[str]]):
        self.txt = {k.lower().rstrip("."): v for k, v in txt.items()}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _exists(self, name: str) -> bool:
        return any(k == name or k.endswith("." + name) for k in self.txt)

    def resolve(self, request, handler):  # dnslib's resolver interface
        from dnslib import QTYPE, RCODE, RR, TXT

        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        with self._lock:
            self.queries.append((name, str(qtype)))
        if qtype in ("TXT", "ANY") and name in self.txt:
            for value in self.txt[name]:
                chunks = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        elif not self._exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _dns_address() -> str:
    """A free address of 127.0.0.0/8 with port 53 free for UDP and TCP."""
    rnd = random.Random()
    for _ in range(50):
        ip = f"127.{rnd.randint(60, 250)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        socks = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind((ip, 53))
            return ip
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise MailServerError("no free address on 127.0.0.0/8 with port 53 free")


# ------------------------------------------------------------------ the MX


@dataclass
class ReferenceMX:
    server: MailServer
    authserv_id: str
    #: every domain with its DNS records: SPF names MEMBER_MTA_IP, DKIM key, DMARC p=reject
    domains: tuple[str, ...]
    #: of those, domains that publish no DMARC record
    without_dmarc: tuple[str, ...] = ()
    mx_port: int = 0
    dns_ip: str = ""
    keys: dict[str, bytes] = field(default_factory=dict)  # domain -> private key (PEM)
    zone: _Zone | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _dns: list = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.server.root / "reference-mx"

    # ------------------------------------------------------------ for tests
    def sign(self, raw: bytes, domain: str, *, selector: str = SELECTOR) -> bytes:
        """``raw`` with a DKIM-Signature of ``domain`` (relaxed/relaxed, rsa-sha256), as the host's
        mail system signs it."""
        import dkim

        sig = dkim.sign(raw, selector.encode(), domain.encode(), self.keys[domain],
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to",
                                         b"references", b"mime-version", b"content-type"])
        return sig + raw

    def send(self, raw: bytes, rcpt: str, *, mail_from: str, client_ip: str = STRANGER_IP,
             helo: str = "mail.sender.test") -> None:
        """Hand ``raw`` to the MX port as the MTA at ``client_ip`` would (no authentication)."""
        with smtplib.SMTP(HOST, self.mx_port, timeout=30) as smtp:
            smtp.ehlo("xclient.test")
            code, msg = smtp.docmd("XCLIENT", f"ADDR={client_ip} NAME=[UNAVAILABLE] HELO={helo}")
            if code != 220:
                raise MailServerError(f"XCLIENT refused: {code} {msg!r}")
            smtp.ehlo(helo)
            refused = smtp.sendmail(mail_from, [rcpt], raw)
            if refused:
                raise MailServerError(f"MX refused {refused}")

    def logs(self) -> str:
        out = [self.server.logs()]
        for p in sorted(self.root.glob("*.log")):
            out.append(f"==> {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    # ------------------------------------------------------------ lifecycle
    def configure(self, server: MailServer) -> None:
        """Before Postfix starts: the MX listener with its milters, XCLIENT, header_checks."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.mx_port, self.dkim_port, self.dmarc_port = _free_ports(3)
        checks = self.root / "header_checks"
        ident = self.authserv_id.replace(".", r"\.")
        # every incoming field that names our id anywhere (also after a comment, folded, any case)
        checks.write_text(f"/^Authentication-Results:(.*[^[:alnum:].-])?{ident}([^[:alnum:].-].*)?$/ IGNORE\n")
        server.main_cf_extra = (
            f"smtpd_authorized_xclient_hosts = {HOST}\n"
            f"header_checks = regexp:{checks}\n"
            "milter_default_action = tempfail\n"
            "milter_protocol = 6\n"
        )
        server.master_cf_extra = (
            f"{HOST}:{self.mx_port} inet n - n - - smtpd\n"
            "  -o syslog_name=postfix/mx\n"
            "  -o smtpd_sasl_auth_enable=no\n"
            "  -o smtpd_tls_security_level=none\n"
            "  -o smtpd_relay_restrictions=reject_unauth_destination\n"
            "  -o smtpd_recipient_restrictions=reject_unauth_destination\n"
            f"  -o smtpd_milters=inet:{HOST}:{self.dkim_port},inet:{HOST}:{self.dmarc_port}\n"
        )

    def start_dns_and_milters(self) -> None:
        from dnslib.server import DNSLogger, DNSServer

        self._write_keys_and_zone()
        self.dns_ip = _dns_address()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", logf=lambda s: None)
        for tcp in (False, True):
            srv = DNSServer(self.zone, address=self.dns_ip, port=53, tcp=tcp, logger=quiet)
            srv.start_thread()
            self._dns.append(srv)
        resolv = self.root / "resolv.conf"
        resolv.write_text(f"nameserver {self.dns_ip}\noptions attempts:2 timeout:2\n")
        ignore = self.root / "ignore-hosts"
        ignore.write_text("192.0.2.250\n")  # nobody: every client is evaluated (the default is 127.0.0.1)
        (self.root / "opendkim.conf").write_text(f"""\
# reference MX: OpenDKIM verifies
Mode                v
AuthservID          {self.authserv_id}
Socket              inet:{self.dkim_port}@{HOST}
PidFile             {self.root}/opendkim.pid
Background          no
Syslog              no
Nameservers         {self.dns_ip}
InternalHosts       {ignore}
MinimumKeyBits      1024
AlwaysAddARHeader   yes
""")
        (self.root / "opendmarc.conf").write_text(f"""\
# reference MX: OpenDMARC checks SPF itself and decides DMARC
AuthservID          {self.authserv_id}
TrustedAuthservIDs  {self.authserv_id}
Socket              inet:{self.dmarc_port}@{HOST}
PidFile             {self.root}/opendmarc.pid
Background          false
Syslog              false
IgnoreHosts         {ignore}
SPFSelfValidate     true
SPFIgnoreResults    true
RejectFailures      false
FailureReports      false
RequiredHeaders     false
""")
        for name, cmd in (("opendkim", [OPENDKIM, "-f", "-x", str(self.root / "opendkim.conf")]),
                          ("opendmarc", [OPENDMARC, "-f", "-c", str(self.root / "opendmarc.conf")])):
            log = open(self.root / f"{name}.log", "ab")
            wrapped = [UNSHARE, "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv), *cmd]
            self._procs.append(subprocess.Popen(wrapped, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL))
            log.close()
        deadline = time.monotonic() + 30
        for port, proc, name in ((self.dkim_port, self._procs[0], "opendkim"),
                                 (self.dmarc_port, self._procs[1], "opendmarc")):
            while True:
                if proc.poll() is not None:
                    raise MailServerError(f"{name} exited ({proc.returncode}):\n{self.logs()}")
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise MailServerError(f"{name} did not listen on {HOST}:{port}\n{self.logs()}")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self._procs:
            stop_process(proc)
        self._procs.clear()
        for srv in self._dns:
            with contextlib.suppress(Exception):
                srv.stop()
                srv.server.server_close()
        self._dns.clear()

    def _write_keys_and_zone(self) -> None:
        txt: dict[str, list[str]] = {}
        for domain in self.domains:
            key = self.root / f"{domain}.key"
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True,
                           timeout=60)
            der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                                 capture_output=True, timeout=60).stdout
            self.keys[domain] = key.read_bytes()
            txt[domain] = [f"v=spf1 ip4:{MEMBER_MTA_IP} -all"]
            txt[f"{SELECTOR}._domainkey.{domain}"] = [f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"]
            if domain not in self.without_dmarc:
                txt[f"_dmarc.{domain}"] = ["v=DMARC1; p=reject; adkim=r; aspf=r"]
        self.zone = _Zone(txt)


@contextlib.contextmanager
def reference_mx(users: dict[str, str], domains: set[str] | tuple[str, ...], authserv_id: str, *,
                 without_dmarc: set[str] | tuple[str, ...] = (), keep: bool = False) -> Iterator[ReferenceMX]:
    """Fixture factory: the private Dovecot + Postfix of tests/support/mailserver.py with the reference MX in
    front (OpenDKIM, OpenDMARC, loopback DNS serving ``domains``' records). Skips when it can't run."""
    reason = available()
    if reason:
        import pytest

        pytest.skip(reason)
    mx: ReferenceMX | None = None

    def configure(server: MailServer) -> None:
        nonlocal mx
        mx = ReferenceMX(server=server, authserv_id=authserv_id, domains=tuple(sorted(set(domains) | set(without_dmarc))),
                         without_dmarc=tuple(sorted(without_dmarc)))
        mx.configure(server)

    with mail_server(users=users, keep=keep, configure=configure):
        assert mx is not None
        try:
            mx.start_dns_and_milters()
            yield mx
        finally:
            mx.stop()
