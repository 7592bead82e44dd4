"""The crash scenario on every transport, killed for real (SIGKILL).

A *world* is one (mail transport, archive) pair with its server: the embedded
Maildir + local folder; SMTP/IMAP against the real Dovecot + Postfix
(tests/support/mailserver.py); Exchange (tests/support/fake_ews.py) and Graph
(tests/support/fake_graph.py) at the protocol level; Maildir + Dropbox
(tests/support/fake_dropbox.py). The scenario is three runs of the crash scenario
(tests/support/helpers.py: CRASH_OPS): the daily run of 20 February (mails, the
March invitation, the invitation snapshot), the intake of 21 February (the
host's minutes filed, linked, their decisions recorded and distributed, a
member's calendar answer recorded, the messages moved) and the onboarding of
a new member (the welcome mail, the archive invitation).

A crash point runs one op in a child process (``python tests/support/crash_worlds.py``)
that kills itself with SIGKILL at the chosen call (``KCG_TEST_KILL=method:n:when``
- no ``finally``, no connection close, no flush), then reruns the op in this
process with clean adapters, and compares everything observable with a run
without crash: the state record, and what went out on the wire as counted by
the *server* (the recipients' mailboxes on Dovecot, the fakes' outgoing log,
the files, links and members in the fake Dropbox).

The Exchange and Graph fakes live in this process (requests_mock, respx): the
child reaches them through :class:`Bridge`, a loopback HTTP server here that
replays each request through the fake's own installation, so the child's
exchangelib / httpx+msal stacks run unchanged over a real socket.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))  # run as a script (the crash child): ``support`` is importable

from kcg_mail.config_loader import Config, load_config  # noqa: E402
from kcg_mail.ports import MARKER_HEADER  # noqa: E402
from support.basics import config_with, meeting, small_network  # noqa: E402
from support.helpers import CRASH_MEMBERS, CRASH_OPS, CrashPlan, KillPlan, authenticated, calendar_accept, close, make_app  # noqa: E402

#: daily 2023-02-20, intake 2023-02-21, onboarding 2023-03-15
# go-live on 3 Feb: the invitation and the template to the host; the minutes and a March
# acceptance come in on 21 Feb; a new member is welcomed
SCENARIO = (CRASH_OPS[0], CRASH_OPS[3], CRASH_OPS[7])

MAIL_METHODS = ("send", "send_invitation", "move", "_append_sent")
ARCHIVE_METHODS = ("store", "shared_link", "add_member")
STATE_METHODS = ("record_action", "record_filing", "record_message", "put", "replace_decisions", "record_attendance")


def scenario_configs(config_dir: str | None) -> tuple[Config, Config]:
    """As helpers.crash_configs, from any config directory (kcg.test addresses
    for the real mail server)."""
    from datetime import timedelta

    from support.basics import CONFIG_DIR

    full = load_config(Path(config_dir or CONFIG_DIR), environ={})
    mar = meeting("2023-03", full)
    base = small_network(config_with(full, ["2023-02", "2023-03"]), CRASH_MEMBERS)
    moved = small_network(config_with(full, ["2023-02", "2023-03"],
                                      **{"2023-03": {"date": mar.date + timedelta(days=7)}}), CRASH_MEMBERS)
    return base, moved


def new_member(cfg: Config) -> tuple[str, str, str, str]:
    domain = cfg.network.mailbox.email.rpartition("@")[2]
    return ("Nina Nyberg", "Nya Staden AB", "Nyköping", f"nina@{domain}")


def run_scenario_op(i: int, app) -> Any:
    from kcg_mail.services.daily import run_daily
    from kcg_mail.services.intake import run_intake
    from kcg_mail.services.onboarding import onboard

    op = SCENARIO[i]
    if op.kind == "daily":
        return run_daily(app, op.when)
    if op.kind == "onboard":
        return onboard(app, *new_member(app.cfg), op.when)
    report = run_intake(app, op.when)
    assert report.errors == [], report.errors
    return report


def arm(obj: Any, methods: tuple[str, ...], plan: CrashPlan) -> None:
    """Route ``methods`` of this adapter instance through ``plan`` (the kill).
    Instance attributes: the adapter's own internal calls (``self._append_sent``)
    go through them too."""
    for name in methods:
        fn = getattr(obj, name, None)
        if callable(fn):
            setattr(obj, name, functools.partial(plan.call, name, fn))


# ---------------------------------------------------------------------------- the bridge


class Bridge:
    """Loopback HTTP server replaying the child's requests through ``replay``
    (method, url, headers, body) -> (status, headers, body), in this process."""

    HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}

    def __init__(self, replay: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                url = self.headers["X-Bridge-Url"]
                method = self.headers["X-Bridge-Method"]
                headers = {k: v for k, v in self.headers.items()
                           if not k.lower().startswith("x-bridge-") and k.lower() not in Bridge.HOP
                           and k.lower() != "host"}
                status, rh, payload = replay(method, url, headers, body)
                self.send_response(status)
                for k, v in rh.items():
                    if k.lower() not in Bridge.HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True, name="crash-bridge").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def forward(bridge_url: str, method: str, url: str, headers: dict[str, str], body: bytes
            ) -> tuple[int, list[tuple[str, str]], bytes]:
    """In the child: one request over the bridge (urllib: no mock library sees it)."""
    req = urllib.request.Request(bridge_url, data=body or b"", method="POST")
    for k, v in headers.items():
        if k.lower() not in Bridge.HOP and k.lower() != "host":
            req.add_header(k, v)
    req.add_header("X-Bridge-Url", url)
    req.add_header("X-Bridge-Method", method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, list(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, list(err.headers.items()), err.read()


# ---------------------------------------------------------------------------- worlds


def _keys_of(raws: list[bytes]) -> Counter:
    parser = BytesParser(policy=policy.default)
    return Counter(str(parser.parsebytes(r, headersonly=True)[MARKER_HEADER] or "").strip() for r in raws)


class World:
    """One (transport, archive) pair. ``conn()`` is what the child needs to
    reach the same server; ``wire()`` what the server says went out."""

    name = "?"
    config_dir: str | None = None
    workdir: Path | None = None

    def bind(self, workdir: Path) -> None:
        self.workdir = workdir

    def reset(self) -> None: ...
    def mail(self, workdir: Path): raise NotImplementedError  # noqa: E704
    def archive(self, workdir: Path): return None  # noqa: E704  (None: the local folder)
    def deliver(self, raw: bytes) -> None: raise NotImplementedError  # noqa: E704
    def template_raw(self, m): raise NotImplementedError  # noqa: E704  (raw bytes or a cycle_driver.Template)
    def wire(self) -> dict: return {}  # noqa: E704
    def conn(self) -> dict: return {}  # noqa: E704
    def stop(self) -> None: ...

    def settle(self) -> None:
        """Let the server finish what it accepted (a rerun comes later than that)."""

    @contextlib.contextmanager
    def active(self):
        """What must be active in this process while the child runs (the fakes' mocks)."""
        yield


class MaildirWorld(World):
    name = "maildir"

    def mail(self, workdir: Path):
        from kcg_mail.adapters.maildir import MaildirTransport

        return MaildirTransport(workdir / "mail")

    def deliver(self, raw: bytes) -> None:
        from kcg_mail.adapters.maildir import MaildirTransport

        MaildirTransport(self.workdir / "mail").deliver(raw, f"in-{len(raw)}-{abs(hash(raw))}.eml")

    def template_raw(self, m) -> bytes | None:
        from kcg_mail.adapters.maildir import sent_name

        p = self.workdir / "mail" / "sent" / "cur" / sent_name(f"{m.id}:send_template:{m.host.email}")
        return p.read_bytes() if p.exists() else None

    def wire(self) -> dict:
        from support.helpers import sent_by_key

        return {"out": dict(sent_by_key(self.workdir))}


class ImapWorld(World):
    name = "smtp_imap"

    #: the own copy arrives within a second from the local Postfix
    settle_seconds = 3.0

    def __init__(self, server, config_dir: str, users: list[str], mailbox: str) -> None:
        self.server, self.config_dir, self.users, self.mailbox = server, config_dir, users, mailbox

    def reset(self) -> None:
        self.wait_queue()
        for u in self.users:
            self.server.reset(u)

    def mail(self, workdir: Path):
        from kcg_mail.adapters.smtp_imap import SmtpImapTransport

        return SmtpImapTransport(**self.server.transport_kwargs(self.mailbox), settle_seconds=self.settle_seconds)

    def conn(self) -> dict:
        kw = self.server.transport_kwargs(self.mailbox)
        return {"settings": kw["settings"].model_dump(), "password": kw["password"], "cafile": str(self.server.cert_file)}

    def deliver(self, raw: bytes) -> None:
        from email import message_from_bytes

        sender = message_from_bytes(raw, policy=policy.default)["From"].addresses[0].addr_spec
        self.server.deliver(raw, self.mailbox, mail_from=sender)

    def template_raw(self, m) -> bytes | None:
        self.wait_queue()
        for raw in self.server.messages(m.host.email, "INBOX"):
            if _keys_of([raw]).get(f"{m.id}:send_template:{m.host.email}"):
                return raw
        return None

    def settle(self) -> None:
        self.wait_queue()

    def wait_queue(self) -> None:
        self.server.wait_queue()

    def wire(self) -> dict:
        """Per key, how many copies arrived in the people's INBOXes (a key
        twice in one INBOX is a mail that person got twice)."""
        self.wait_queue()
        out: Counter = Counter()
        for u in self.users:
            if u != self.mailbox:
                out.update(_keys_of(self.server.messages(u, "INBOX")))
        out.pop("", None)
        return {"out": dict(out)}


class EwsWorld(World):
    name = "exchange"

    def __init__(self) -> None:
        self.fake = None
        self.reset()
        self.bridge = Bridge(self._replay)

    def reset(self) -> None:
        from support.fake_ews import FakeEWS
        from support.helpers import shipped_config

        self.fake = FakeEWS(mailbox=shipped_config().network.mailbox.email)

    @contextlib.contextmanager
    def active(self):
        import requests_mock

        with requests_mock.Mocker() as mocker:
            self.fake.install(mocker)
            yield

    def _replay(self, method, url, headers, body):
        import requests

        with self.bridge.lock:
            r = requests.Session().request(method, url, headers=headers, data=body)
            return r.status_code, dict(r.headers), r.content

    def mail(self, workdir: Path):
        from exchangelib.protocol import close_connections

        from kcg_mail.adapters.exchange import ExchangeTransport
        from kcg_mail.adapters.exchange_ews import EwsSession

        close_connections()
        f = self.fake
        return ExchangeTransport(EwsSession(f.mailbox, "basic", f.url, username=f.username, password=f.password,
                                            sleep=lambda s: None))

    def conn(self) -> dict:
        f = self.fake
        return {"bridge": self.bridge.url, "mailbox": f.mailbox, "url": f.url, "username": f.username,
                "password": f.password}

    def deliver(self, raw: bytes) -> None:
        self.fake.deliver(raw)

    def template_raw(self, m) -> bytes | None:
        from support.cycle_driver import ews_harness

        t = ews_harness(None, self.fake).template(m)
        return t

    def wire(self) -> dict:
        from support.cycle_driver import ews_harness

        return {"out": dict(Counter(o.key or f"{o.method}:{o.uid}" for o in ews_harness(None, self.fake).outgoing()))}

    def stop(self) -> None:
        self.bridge.stop()


class GraphWorld(World):
    name = "graph"
    #: the fake files a Sent Items copy this long after the 202 ...
    sent_delay = 0.5
    #: ... and a recovering run waits this long for it
    settle_seconds = 1.5

    def __init__(self) -> None:
        self.fake = None
        self.reset()
        self.bridge = Bridge(self._replay)

    def reset(self) -> None:
        from support.fake_graph import FakeGraph
        from support.helpers import shipped_config

        self.fake = FakeGraph(mailbox=shipped_config().network.mailbox.email)
        self.fake.sent_delay = self.sent_delay

    def _replay(self, method, url, headers, body):
        import httpx

        with self.bridge.lock:  # the fake's respx mock is active (World.active) while the child runs
            with httpx.Client() as c:
                r = c.request(method, url, headers=headers, content=body)
                return r.status_code, dict(r.headers), r.content

    def mail(self, workdir: Path):
        from kcg_mail.adapters.graph import GraphTransport
        from kcg_mail.adapters.graph_http import GraphClient

        f = self.fake
        return GraphTransport(GraphClient(f.settings(), f.client_secret, sleep=time.sleep,
                                          max_wait=5), settle_seconds=self.settle_seconds)

    @contextlib.contextmanager
    def active(self):
        with self.fake.running():
            yield

    def conn(self) -> dict:
        f = self.fake
        return {"bridge": self.bridge.url, "settings": f.settings().model_dump(), "secret": f.client_secret}

    def deliver(self, raw: bytes) -> None:
        self.fake.deliver(raw)

    def template_raw(self, m) -> bytes | None:
        from support.cycle_driver import graph_harness

        return graph_harness(None, self.fake).template(m)

    def wire(self) -> dict:
        from support.cycle_driver import graph_harness

        return {"out": dict(Counter(o.key or f"{o.method}:{o.uid}" for o in graph_harness(None, self.fake).outgoing()))}

    def stop(self) -> None:
        self.bridge.stop()


class DropboxWorld(MaildirWorld):
    name = "dropbox"

    def __init__(self) -> None:
        self.fake = None
        self.reset()

    def reset(self) -> None:
        from support.fake_dropbox import FakeDropbox

        if self.fake is not None:
            self.fake.stop()
        self.fake = FakeDropbox().start()

    def archive(self, workdir: Path):
        from kcg_mail.adapters.dropbox_archive import DropboxArchive

        return DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=self.fake.session(),
                              sleep=lambda s: None)

    def conn(self) -> dict:
        return {"base_url": self.fake.base_url}

    def wire(self) -> dict:
        files, links, members = {}, set(), {}
        for ns in self.fake.namespaces.values():
            for f in ns.files.values():
                files[f.path_display] = f.content_hash
            links |= set(ns.links)
            for folder in ns.folders.values():
                m = self.fake.members(folder.path_display, ns.ns_id) if folder.shared_folder_id else []
                if m:
                    members[folder.path_display] = sorted(m)
        return {**super().wire(), "files": files, "links": sorted(links), "members": members}

    def stop(self) -> None:
        self.fake.stop()


# ---------------------------------------------------------------------------- the child


def _child_adapters(spec: dict, workdir: Path):
    """The adapters of the world ``spec`` names, built in the child."""
    kind, conn = spec["world"], spec["conn"]
    if kind in ("maildir", "dropbox"):
        from kcg_mail.adapters.maildir import MaildirTransport

        mail = MaildirTransport(workdir / "mail")
    elif kind == "smtp_imap":
        import ssl

        from kcg_mail.adapters.smtp_imap import SmtpImapTransport
        from kcg_mail.core.config_model import SmtpImapSettings

        mail = SmtpImapTransport(SmtpImapSettings(**conn["settings"]), conn["password"],
                                 ssl_context=ssl.create_default_context(cafile=conn["cafile"]))
    elif kind == "exchange":
        import requests_mock

        from kcg_mail.adapters.exchange import ExchangeTransport
        from kcg_mail.adapters.exchange_ews import EwsSession

        def ews(request, context):
            status, headers, body = forward(conn["bridge"], request.method, request.url, dict(request.headers),
                                            request.body if isinstance(request.body, bytes)
                                            else (request.body or "").encode())
            context.status_code = status
            context.headers = {k: v for k, v in headers if k.lower() not in Bridge.HOP}
            return body

        mocker = requests_mock.Mocker()
        mocker.start()
        mocker.register_uri(requests_mock.ANY, requests_mock.ANY, content=ews)
        mail = ExchangeTransport(EwsSession(conn["mailbox"], "basic", conn["url"], username=conn["username"],
                                            password=conn["password"], sleep=lambda s: None))
    elif kind == "graph":
        import httpx
        import respx

        from kcg_mail.adapters.graph import GraphTransport
        from kcg_mail.adapters.graph_http import GraphClient
        from kcg_mail.core.config_model import GraphSettings

        def graph(request: httpx.Request) -> httpx.Response:
            status, headers, body = forward(conn["bridge"], request.method, str(request.url), dict(request.headers),
                                            request.content)
            return httpx.Response(status, headers=[(k, v) for k, v in headers if k.lower() not in Bridge.HOP],
                                  content=body)

        router = respx.mock(assert_all_called=False)
        router.start()
        router.route().mock(side_effect=graph)
        mail = GraphTransport(GraphClient(GraphSettings(**conn["settings"]), conn["secret"], sleep=lambda s: None))
    else:
        raise SystemExit(f"unknown world {kind}")
    archive = None
    if kind == "dropbox":
        import requests

        from kcg_mail.adapters.dropbox_archive import DropboxArchive
        from support.fake_dropbox import _LoopbackAdapter

        s = requests.Session()
        s.trust_env = False
        s.mount("https://", _LoopbackAdapter(conn["base_url"]))
        s.mount("http://", _LoopbackAdapter(conn["base_url"]))
        archive = DropboxArchive("test-app-key", "test-app-secret", "test-refresh-token", session=s,
                                 sleep=lambda s: None)
    return mail, archive


def child_main() -> None:
    spec = json.loads(os.environ["KCG_CRASH_SPEC"])
    workdir = Path(spec["workdir"])
    method, n, when = os.environ["KCG_TEST_KILL"].split(":")
    plan = KillPlan(method, int(n), when)
    cfg = scenario_configs(spec.get("config_dir"))[1 if SCENARIO[spec["op"]].moved else 0]
    mail, archive = _child_adapters(spec, workdir)
    from kcg_mail.adapters.sqlite_state import SqliteState

    state = SqliteState(workdir / "state.sqlite")
    app = make_app(workdir, cfg, mail=mail, archive=archive, state=state)
    arm(app.mail, MAIL_METHODS, plan)
    arm(app.archive, ARCHIVE_METHODS, plan)
    arm(app.state, STATE_METHODS, plan)
    run_scenario_op(spec["op"], app)
    print(json.dumps({"calls": dict(plan.calls), "fired": plan.fired}))


#: Worlds whose servers live outside this process's memory (files, Dovecot and
#: Postfix, the fake Dropbox's socket): their child can be a fork of this
#: process (no interpreter start-up: the matrix stays within minutes). The
#: Exchange and Graph fakes live in this process's mocks, which a fork would
#: copy: their child is a fresh interpreter talking through the bridge.
FORKABLE = {"maildir", "dropbox", "smtp_imap"}


def _fork_child(env: dict[str, str]) -> subprocess.CompletedProcess:
    import traceback

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the op, die by SIGKILL at the crash point
        code = 1
        try:
            os.close(r)
            sys.stdout = sys.stderr = os.fdopen(w, "w", buffering=1)
            os.environ.update(env)
            child_main()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "r", errors="replace") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return subprocess.CompletedProcess(["fork"], rc, out, out)


def run_child(world: World, workdir: Path, op: int, kill: str) -> subprocess.CompletedProcess:
    spec = {"world": world.name, "conn": world.conn(), "workdir": str(workdir), "op": op,
            "config_dir": world.config_dir}
    if world.name in FORKABLE:
        return _fork_child({"KCG_CRASH_SPEC": json.dumps(spec), "KCG_TEST_KILL": kill})
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KCG_CRASH_SPEC": json.dumps(spec), "KCG_TEST_KILL": kill, "PYTHONPATH": pythonpath}
    with world.active():
        return subprocess.run([sys.executable, str(Path(__file__))], env=env, capture_output=True, text=True,
                              timeout=120)


def app_for(world: World, workdir: Path, op: int, plan: CrashPlan | None = None):
    """An app on ``world`` for scenario op ``op``, in this process; ``plan``
    only counts calls (no crash)."""
    from kcg_mail.adapters.sqlite_state import SqliteState

    cfg = scenario_configs(world.config_dir)[1 if SCENARIO[op].moved else 0]
    app = make_app(workdir, cfg, mail=world.mail(workdir), archive=world.archive(workdir),
                   state=SqliteState(workdir / "state.sqlite"))
    if plan is not None:
        arm(app.mail, MAIL_METHODS, plan)
        arm(app.archive, ARCHIVE_METHODS, plan)
        arm(app.state, STATE_METHODS, plan)
    return app


def deliveries(world: World, app, op: int) -> list[bytes]:
    """What people send before op ``op``: the host's minutes (answering the
    template mail as it arrived), a member accepting the March invitation."""
    from support.cycle_driver import Template, host_reply, template_from_mime

    if SCENARIO[op].kind != "intake":
        return []
    when = SCENARIO[op].when
    feb = app.meeting("2023-02")
    mar = app.meeting("2023-03")
    tpl = world.template_raw(feb)
    assert tpl is not None, f"{world.name}: the host never got the template"
    t = tpl if isinstance(tpl, Template) else template_from_mime(tpl, app.cfg.network.mailbox.email)
    reply = host_reply(t, feb, when.replace(hour=9)).replace(b"Message-ID: <", b"Message-ID: <crash-minutes.", 1)
    return [reply, authenticated(calendar_accept(app, mar, "lisa", when.replace(hour=8)))]


def observe_state(workdir: Path) -> dict:
    from kcg_mail.adapters.sqlite_state import SqliteState

    st = SqliteState(workdir / "state.sqlite")
    try:
        def settled(k: str, v: str) -> str:
            return "settled" if ":step:" in k and v in ("done", "skipped") else v

        return {
            "actions": {r.key: settled(r.key, r.status) for r in st.actions()},
            # our own copies (SMTP: see SmtpImapTransport.own_copy) arrive while a run goes on;
            # which run files them depends on timing, not on the crash
            "messages": sorted((m.outcome, m.status, m.meeting_id) for m in st.messages() if m.outcome != "own"),
            "filings": [(f.meeting_id, f.version, f.path, f.content_hash, bool(f.link)) for f in st.filings()],
            "decisions": st.decisions(),
            "attendance": {mid: st.attendance(mid) for mid in ("2023-02", "2023-03")},
            "kv": {k: st.get(k) for k in ("invitation:2023-02", "invitation:2023-03")},
        }
    finally:
        st.close()


def close_app(app) -> None:
    close(app)
    with contextlib.suppress(Exception):
        app.mail.close()


if __name__ == "__main__":
    child_main()
