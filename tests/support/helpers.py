"""Shared helpers for the core, embedded-adapter, crash and flow tests.

Plain functions and small classes (the lead owns conftest.py). Everything here
builds the REAL objects: the shipped config, the real adapters on a temporary
directory, real MIME mail. The crash wrappers subclass the real adapters and
only add a crash at a chosen call.
"""

from __future__ import annotations

import email
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path

from kcg_mail.adapters.local_archive import LocalFolderArchive
from kcg_mail.adapters.maildir import MaildirTransport, sent_name
from kcg_mail.adapters.sqlite_state import SqliteState
from kcg_mail.config_loader import Config
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.app import App
from kcg_mail.services.compose import DEFAULT_TEMPLATES, Composer

TEMPLATES_DIR = DEFAULT_TEMPLATES
#: the reply-key secret of test apps (bootstrap reads KCG_REPLY_SECRET or the work directory's)
TEST_REPLY_SECRET = b"kcg-test-reply-secret"


# ------------------------------------------------------------------ config

from support.basics import CONFIG_DIR, ROOT, TZ, at, config_with, copy_config, meeting, meetings, shipped_config, small_network  # noqa: E402,F401

# ------------------------------------------------------------------ the app


@lru_cache(maxsize=1)
def renderer():
    """The protocol renderer parses the Word template once; it holds no run state."""
    from kcg_mail.documents.render import ProtocolRenderer

    return ProtocolRenderer(TEMPLATES_DIR / "protocol.docx")


_COMPOSERS: dict[int, tuple[Config, Composer]] = {}


def composer_for(cfg: Config) -> Composer:
    """One Composer per config object: it only caches compiled templates, and
    compiling them again for every simulated run would dominate the crash tests."""
    hit = _COMPOSERS.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = _COMPOSERS[id(cfg)] = (cfg, Composer(cfg, TEMPLATES_DIR))
    return hit[1]


def make_app(workdir: Path, cfg: Config | None = None, *, mail=None, archive=None, state=None,
             templates: Path | None = None) -> App:
    """An App on the embedded adapters under ``workdir`` (same layout as
    kcg_mail.bootstrap: mail/, dropbox/, state.sqlite)."""
    cfg = cfg or shipped_config()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return App(
        reply_secret=TEST_REPLY_SECRET,
        cfg=cfg,
        state=state or SqliteState(workdir / "state.sqlite"),
        mail=mail or MaildirTransport(workdir / "mail"),
        archive=archive or LocalFolderArchive(workdir / "dropbox"),
        composer=Composer(cfg, templates) if templates else composer_for(cfg),
        renderer=renderer(),
    )


def close(app: App) -> None:
    close_state = getattr(app.state, "close", None)
    if close_state:
        close_state()


# ------------------------------------------------------------------ mail on disk


def read_mail(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def sent_files(workdir: Path) -> list[Path]:
    d = Path(workdir) / "mail" / "sent" / "cur"
    return sorted(d.iterdir()) if d.is_dir() else []


def sent_mails(workdir: Path) -> list[EmailMessage]:
    return [read_mail(p) for p in sent_files(workdir)]


def sent_by_key(workdir: Path) -> Counter:
    """How many files in mail/sent/cur carry each X-KCG-Mail key."""
    from email.parser import BytesHeaderParser

    parser = BytesHeaderParser(policy=policy.default)
    return Counter(str(parser.parsebytes(p.read_bytes())[MARKER_HEADER]) for p in sent_files(workdir))


def sent_with_action(workdir: Path, action: str) -> list[EmailMessage]:
    """Sent mails whose key has ``action`` as its second field (``meeting:action:...``)."""
    out = []
    for m in sent_mails(workdir):
        parts = str(m[MARKER_HEADER]).split(":")
        if len(parts) > 1 and parts[1] == action:
            out.append(m)
    return out


def recipients(msg: EmailMessage) -> set[str]:
    out = set()
    for h in ("To", "Cc"):
        if msg[h] is not None:
            out |= {a.addr_spec.lower() for a in msg[h].addresses}
    return out


def attachment_names(msg: EmailMessage) -> list[str]:
    return [p.get_filename() for p in msg.iter_attachments() if p.get_filename()]


def body_text(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def calendar_parts(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.walk() if p.get_content_type() == "text/calendar"]


def mailbox_files(workdir: Path, box: str) -> list[Path]:
    root = Path(workdir) / "mail" / box
    out = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
    for sub in ("new", "cur"):
        if (root / sub).is_dir():
            out += [p for p in (root / sub).iterdir() if p.is_file()]
    return sorted(out)


def archive_files(workdir: Path, suffix: str = ".docx") -> list[Path]:
    root = Path(workdir) / "dropbox"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffix)) if root.is_dir() else []


# ------------------------------------------------------------------ incoming mail


def trusted_authserv_id() -> str:
    """The authserv-id of "our receiving server" in the shipped config."""
    return shipped_config().transport.inbound.trusted_authserv_ids[0]


def authenticated(raw: bytes, result: str = "pass", authserv_id: str | None = None) -> bytes:
    """``raw`` as our receiving server hands it over: its Authentication-Results
    (SPF, DKIM, DMARC = ``result`` for the From domain) on top."""
    from kcg_mail.entrypoints.demo_hosts import stamp_authentication

    return stamp_authentication(raw, authserv_id or trusted_authserv_id(), result)


def plain_mail(sender: str, to: str, subject: str, body: str = "Hej!\n", *, when: datetime | None = None,
               msgid: str, in_reply_to: str | None = None,
               attachments: Iterable[tuple[str, str, bytes]] = (), auth: str | None = "pass") -> bytes:
    """An ordinary mail as a person's mail program sends it, as our receiving
    server hands it over (``auth``: its SPF/DKIM/DMARC verdict; None: no
    Authentication-Results at all)."""
    m = EmailMessage(policy=SMTP)
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = format_datetime(when or datetime(2023, 2, 7, 11, 0, tzinfo=TZ))
    m["Message-ID"] = msgid
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    for filename, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return authenticated(m.as_bytes(), auth) if auth else m.as_bytes()


def changed_minutes(docx_bytes: bytes, extra_decision: str) -> bytes:
    """The filled protocol with one decision text changed: a new version."""
    from kcg_mail.documents.fill import edit_decisions

    def change(table) -> None:
        table.rows[1].cells[0].text = extra_decision

    return edit_decisions(docx_bytes, change)


def attachment_of(raw: bytes, suffix: str = ".docx") -> tuple[str, bytes]:
    msg = email.message_from_bytes(raw, policy=policy.default)
    part = next(p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(suffix))
    return part.get_filename(), part.get_content()


def replace_attachment(raw: bytes, data: bytes, msgid: str) -> bytes:
    """The same reply with another attachment body and a new Message-ID
    (the host sends a corrected file)."""
    msg = email.message_from_bytes(raw, policy=SMTP)
    for part in msg.iter_attachments():
        if (part.get_filename() or "").endswith(".docx"):
            name = part.get_filename()
            part.set_content(data, maintype="application",
                             subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                             filename=name)
    del msg["Message-ID"]
    msg["Message-ID"] = msgid
    return msg.as_bytes()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# ------------------------------------------------------------------ crash injection


class Crash(BaseException):
    """A simulated kill. BaseException, like KeyboardInterrupt/SystemExit: the
    intake's "one bad message never stops the rest" must not swallow it."""


class CrashPlan:
    """Crash at the ``n``-th call of ``method`` (counted over every adapter
    sharing this plan), ``before`` or ``after`` the real call. With
    ``method=None`` nothing crashes and calls are only counted. ``writes``
    counts, per idempotency key, how often a mail really was written by the
    transport: a key written twice is a mail a person would get twice."""

    def __init__(self, method: str | None = None, n: int = 0, when: str = "before"):
        assert when in ("before", "after")
        self.method, self.n, self.when = method, n, when
        self.calls: Counter = Counter()
        self.fired = False
        self.writes: Counter = Counter()
        #: (method, n, what): every call in order; ``what`` names the key or
        #: status involved, to tell which calls happen at the same moment.
        self.log: list[tuple[str, int, str]] = []

    def crash(self, where: str) -> None:
        raise Crash(where)

    def call(self, method: str, fn, *args, **kwargs):
        self.calls[method] += 1
        self.log.append((method, self.calls[method], _what(method, args, kwargs)))
        hit = not self.fired and method == self.method and self.calls[method] == self.n
        if hit and self.when == "before":
            self.fired = True
            self.crash(f"{method} #{self.n} before")
        out = fn(*args, **kwargs)
        if hit and self.when == "after":
            self.fired = True
            self.crash(f"{method} #{self.n} after")
        return out

    def __repr__(self) -> str:
        return f"CrashPlan({self.method} #{self.n} {self.when})"


def _what(method: str, args: tuple, kwargs: dict) -> str:
    if method == "send":
        return args[0].key
    if method == "send_invitation":
        return args[0].message.key
    if method == "record_action":  # args: (state, key, meeting_id, action, status, ...)
        key, _mid, _action, status = (list(args[1:]) + [None] * 4)[:4]
        return f"{key} {status or kwargs.get('status')}"
    return ""


class CrashingMaildir(MaildirTransport):
    def __init__(self, root, plan: CrashPlan):
        super().__init__(root)
        self.plan = plan

    def send(self, message):
        def real(m):
            MaildirTransport.send(self, m)
            self.plan.writes[m.key] += 1
        return self.plan.call("send", real, message)

    def send_invitation(self, invitation):
        def real(inv):
            MaildirTransport.send_invitation(self, inv)
            self.plan.writes[inv.message.key] += 1
        return self.plan.call("send_invitation", real, invitation)

    def move(self, ref, folder):
        return self.plan.call("move", MaildirTransport.move, self, ref, folder)


class CrashingState(SqliteState):
    def __init__(self, path, plan: CrashPlan):
        super().__init__(path)
        self.plan = plan

    def record_action(self, *args, **kwargs):
        return self.plan.call("record_action", SqliteState.record_action, self, *args, **kwargs)

    def record_filing(self, record):
        return self.plan.call("record_filing", SqliteState.record_filing, self, record)

    def record_message(self, record):
        return self.plan.call("record_message", SqliteState.record_message, self, record)

    def put(self, key, value):
        return self.plan.call("put", SqliteState.put, self, key, value)

    def replace_decisions(self, meeting_id, decisions):
        return self.plan.call("replace_decisions", SqliteState.replace_decisions, self, meeting_id, decisions)

    def record_attendance(self, meeting_id, email, response):
        return self.plan.call("record_attendance", SqliteState.record_attendance, self, meeting_id, email, response)


class CrashingArchive(LocalFolderArchive):
    def __init__(self, root, plan: CrashPlan):
        super().__init__(root)
        self.plan = plan

    def store(self, path, data, *, overwrite=False):
        return self.plan.call("store", LocalFolderArchive.store, self, path, data, overwrite=overwrite)

    def shared_link(self, path):
        return self.plan.call("shared_link", LocalFolderArchive.shared_link, self, path)

    def add_member(self, folder, email):
        return self.plan.call("add_member", LocalFolderArchive.add_member, self, folder, email)


def crashing_app(workdir: Path, cfg: Config, plan: CrashPlan) -> App:
    workdir = Path(workdir)
    return make_app(workdir, cfg, mail=CrashingMaildir(workdir / "mail", plan),
                    archive=CrashingArchive(workdir / "dropbox", plan),
                    state=CrashingState(workdir / "state.sqlite", plan))


class KillPlan(CrashPlan):
    """A real kill: SIGKILL to this process at the chosen call (subprocess test)."""

    def crash(self, where: str) -> None:
        import os
        import signal

        sys.stderr.write(f"killing myself at {where}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ the crash scenario

CRASH_MEMBERS = ("bjorn", "daniel", "david", "lisa")


@lru_cache(maxsize=1)
def crash_configs() -> tuple[Config, Config]:
    """February and March 2023 on a four-person network; the second config
    moves the March meeting a week later (an invitation update)."""
    full = shipped_config()
    mar = meeting("2023-03")
    base = small_network(config_with(full, ["2023-02", "2023-03"]), CRASH_MEMBERS)
    moved = small_network(config_with(full, ["2023-02", "2023-03"],
                                      **{"2023-03": {"date": mar.date + timedelta(days=7)}}), CRASH_MEMBERS)
    return base, moved


@dataclass(frozen=True)
class Op:
    """One run of a flow body: the daily run or the intake run at ``when``."""

    name: str
    kind: str  # daily | intake | onboard
    moved: bool  # with the plan change
    when: datetime


CRASH_OPS = (
    # Go-live on Friday 3 February, Feb meeting on Monday 6: the invitation, and the template for the host
    # (with the reminder; it replaces the late brief: one mail a day per person and meeting)
    Op("daily 2023-02-03", "daily", False, at(date(2023, 2, 3))),
    # Feb chase: 3 working days after the meeting (spaced from when the template went out)
    Op("daily 2023-02-09", "daily", False, at(date(2023, 2, 9))),
    # Feb escalation (2 working days after the chase at the earliest); March brief + invite
    Op("daily 2023-02-20", "daily", False, at(date(2023, 2, 20))),
    # Feb minutes, a reply without attachment, a stranger's mail
    Op("intake 2023-02-21", "intake", False, at(date(2023, 2, 21), 12)),
    # March moved a week: updated invitation + plan change mail to the host
    Op("daily 2023-02-22", "daily", True, at(date(2023, 2, 22))),
    # March (moved to 13 March): the template with the reminder, a day late on Friday 10 March
    Op("daily 2023-03-10", "daily", True, at(date(2023, 3, 10))),
    # March minutes, and corrected Feb minutes (version 2)
    Op("intake 2023-03-14", "intake", True, at(date(2023, 3, 14), 12)),
    # a new member: the welcome mail and an invitation to the archive folder
    Op("onboard 2023-03-15", "onboard", True, at(date(2023, 3, 15), 10)),
)

#: The new member of the onboarding op.
NEW_MEMBER = ("Nina Nyberg", "Nya Staden AB", "Nyköping", "nina@nykoping.example.se")


def run_op(op: Op, workdir: Path, plan: CrashPlan):
    from kcg_mail.services.daily import run_daily
    from kcg_mail.services.intake import run_intake
    from kcg_mail.services.onboarding import onboard

    cfg = crash_configs()[1 if op.moved else 0]
    app = crashing_app(workdir, cfg, plan)
    try:
        if op.kind == "daily":
            return run_daily(app, op.when)
        if op.kind == "onboard":
            return onboard(app, *NEW_MEMBER, op.when)
        report = run_intake(app, op.when)
        assert report.errors == [], report.errors
        return report
    finally:
        close(app)


def crash_deliveries(op: Op, workdir: Path) -> list[tuple[str, bytes]]:
    """The mail people send before ``op`` (built from what we sent them)."""
    from kcg_mail.entrypoints.demo_hosts import host_reply

    if op.kind != "intake":
        return []
    cfg = crash_configs()[1 if op.moved else 0]
    app = make_app(workdir, cfg)
    try:
        feb = next(m for m in app.meetings if m.id == "2023-02")
        mar = next(m for m in app.meetings if m.id == "2023-03")
        mailbox = cfg.network.mailbox.email
        tpl = {m.id: read_mail(Path(workdir) / "mail" / "sent" / "cur" / sent_name(f"{m.id}:send_template:{m.host.email}"))
               for m in (feb, mar) if (Path(workdir) / "mail" / "sent" / "cur" /
                                       sent_name(f"{m.id}:send_template:{m.host.email}")).exists()}
        if op.when.date() == date(2023, 2, 21):
            reply = host_reply(app, feb, op.when.replace(hour=9))
            _, docx_bytes = attachment_of(reply)
            return [
                ("feb-minutes.eml", replace_attachment(reply, docx_bytes, "<feb-minutes@gavle.example.se>")),
                ("feb-noatt.eml", plain_mail(feb.host.email, mailbox, "SV: " + str(tpl["2023-02"]["Subject"]),
                                             "Protokollet kommer!\n", when=op.when.replace(hour=10),
                                             msgid="<feb-noatt@gavle.example.se>",
                                             in_reply_to=str(tpl["2023-02"]["Message-ID"]).strip())),
                ("lisa-accepts.eml", authenticated(calendar_accept(app, mar, "lisa", op.when.replace(hour=8)))),
                ("stranger.eml", plain_mail("spam@elsewhere.example.com", mailbox, "Protokoll [KCG-2023-02]",
                                            "Hej\n", when=op.when.replace(hour=10), msgid="<s@elsewhere.example.com>",
                                            attachments=[("p.docx", "application/vnd.openxmlformats-officedocument."
                                                          "wordprocessingml.document", docx_bytes)])),
            ]
        reply = host_reply(app, mar, op.when.replace(hour=9))
        _, mar_docx = attachment_of(reply)
        feb_raw = (Path(workdir) / "mail" / "processed" / "cur" / "feb-minutes.eml:2,S").read_bytes()
        feb_v2 = changed_minutes(attachment_of(feb_raw)[1], "Korrigerat beslut")
        return [
            ("mar-minutes.eml", replace_attachment(reply, mar_docx, "<mar-minutes@norrkoping.example.se>")),
            ("feb-v2.eml", replace_attachment(feb_raw, feb_v2, "<feb-v2@gavle.example.se>")),
        ]
    finally:
        close(app)


def calendar_accept(app: App, m: Meeting, person_id: str, when: datetime) -> bytes:
    """A member's calendar program accepting the invitation (iMIP REPLY)."""
    from kcg_mail.services.compose import meeting_uid

    p = next(x for x in app.cfg.network.members if x.id == person_id)
    ics = "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
        "METHOD:REPLY", "BEGIN:VEVENT", f"UID:{meeting_uid(app.cfg, m.id)}",
        f"DTSTAMP:{when.astimezone(TZ).strftime('%Y%m%dT%H%M%S')}",
        f"ATTENDEE;PARTSTAT=ACCEPTED;CN={p.name}:mailto:{p.email}",
        f"ORGANIZER:mailto:{app.cfg.network.mailbox.email}", "SEQUENCE:0", "END:VEVENT", "END:VCALENDAR", ""])
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{p.name} <{p.email}>"
    msg["To"] = app.cfg.network.mailbox.email
    msg["Subject"] = f"Accepterat: {m.id}"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<accept-{m.id}-{p.id}@{p.email.rpartition('@')[2]}>"
    msg.set_content(ics, subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes()


def _archive_digest(p: Path) -> str:
    """The content of an archive file; for the local archive's member list
    (which stamps when each person was added) the members themselves."""
    import hashlib

    if p.name == ".kcg-members.json":
        return "members:" + ",".join(sorted(m["email"].lower() for m in json.loads(p.read_text("utf-8"))["members"]))
    return hashlib.sha256(p.read_bytes()).hexdigest()


def observe(workdir: Path) -> dict:
    """Everything a rerun must reproduce: sent mail, archive, mailboxes, state."""

    workdir = Path(workdir)
    root = workdir / "dropbox"
    st = SqliteState(workdir / "state.sqlite")
    try:
        return {
            "sent": dict(sent_by_key(workdir)),
            "archive": sorted((p.relative_to(root).as_posix(), _archive_digest(p))
                              for p in root.rglob("*") if p.is_file()) if root.is_dir() else [],
            "boxes": {box: sorted(p.name for p in mailbox_files(workdir, box))
                      for box in ("inbox", "processed", "quarantine")},
            "actions": {r.key: r.status for r in st.actions()},
            "messages": {m.msg_key: (m.outcome, m.status) for m in st.messages()},
            "filings": [(f.meeting_id, f.version, f.path, f.content_hash) for f in st.filings()],
            "decisions": st.decisions(),
            "kv": {k: st.get(k) for k in ("invitation:2023-02", "invitation:2023-03", "mail:cursor")},
            "attendance": {mid: st.attendance(mid) for mid in ("2023-02", "2023-03")},
        }
    finally:
        st.close()


def _subprocess_main(argv: list[str]) -> None:
    """``python tests/support/helpers.py WORKDIR OP_INDEX``: run one op of the crash
    scenario; ``KCG_TEST_KILL=method:n:before|after`` kills the process there."""
    import os

    workdir, index = Path(argv[0]), int(argv[1])
    kill = os.environ.get("KCG_TEST_KILL")
    if kill:
        method, n, when = kill.split(":")
        plan: CrashPlan = KillPlan(method, int(n), when)
    else:
        plan = CrashPlan()
    run_op(CRASH_OPS[index], workdir, plan)
    print(json.dumps({"writes": dict(plan.writes), "calls": dict(plan.calls)}))


def decided_by_reply(work: Path, host: str = "maria_lund") -> None:
    """A work directory as the coordinator's replies leave it: a member he added (Maria
    Lund, id ``maria_lund``) and an adopted plan for 2024 whose February host is ``host``.
    Called again with another ``host``, it rewrites the plan."""
    from kcg_mail.config_loader import write_members_overlay

    (work / "plans").mkdir(parents=True, exist_ok=True)
    write_members_overlay(work, {"added": [{"id": "maria_lund", "name": "Maria Lund", "organisation": "Lunds City",
                                            "city": "Lund", "email": "maria@lundscity.example.se"}], "removed": []})
    plan = ("year: 2024\nmeetings:\n- month: '2024-02'\n  kind: digital\n  theme: Trygghet\n"
            f"  host: {host}\n  backup_host: pia\n")
    (work / "plans" / "plan-2024.yaml").write_text(plan, encoding="utf-8")


if __name__ == "__main__":
    _subprocess_main(sys.argv[1:])

