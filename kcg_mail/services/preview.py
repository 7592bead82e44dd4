"""See it before it is sent: every mail a period will send, per reader, as it will look.

Two sources feed the same page:

* ``dry_run(...)``: the daily runs of the period played on a throw-away copy of
  the state record (``bootstrap.dry_run_app``: embedded Maildir and a local
  archive under a temp folder);
  the real configuration, templates and plan, so the texts are exactly those
  that will go out if nothing else happens (no host replies are imagined:
  mails caused by a reply, such as the distribution of minutes, are not in it).
* ``read_maildir(...)``: mails already in a Maildir ``sent`` folder (the demo's
  simulated year).

``render_html`` makes one self-contained HTML page: a table of mails per reader
and month, then each mail once, with who gets it in which role, its text and
its calendar entry. Nothing here sends anything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, select_autoescape

from kcg_mail.core.config_model import Config
from kcg_mail.core.pacing import CapCheck, SentMail, check_caps
from kcg_mail.core.plan import Meeting
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services.app import App

#: the roles a reader can have, in the order the page lists them
ROLES = ("samordnare", "värd", "reservvärd", "medlem", "gäst", "annan")
ROLE_TITLES = {"samordnare": "Samordnaren", "värd": "Värden", "reservvärd": "Reservvärden",
               "medlem": "Medlemmar", "gäst": "Gäster", "annan": "Andra mottagare"}


@dataclass(frozen=True)
class Reader:
    email: str
    name: str
    role: str


@dataclass
class PreviewMail:
    key: str
    meeting_id: str | None
    sent_at: datetime | None
    sender: str
    subject: str
    text: str
    calendar: str | None
    attachments: tuple[str, ...]
    readers: tuple[Reader, ...]

    @property
    def month(self) -> str:
        return self.sent_at.strftime("%Y-%m") if self.sent_at else ""


@dataclass
class Preview:
    title: str
    note: str
    mails: list[PreviewMail] = field(default_factory=list)

    def counts(self) -> dict[Reader, Counter[str]]:
        """Mails per person and month, whatever role each mail gave them; a person
        is listed in their standing role (samordnare, medlem, gäst)."""
        standing = {"värd": "medlem", "reservvärd": "medlem"}
        out: dict[Reader, Counter[str]] = defaultdict(Counter)
        for m in self.mails:
            for r in m.readers:
                out[Reader(r.email, r.name, standing.get(r.role, r.role))][m.month] += 1
        return dict(out)

    def months(self) -> list[str]:
        return sorted({m.month for m in self.mails if m.month})


# ------------------------------------------------------------------ the member caps


def cap_check(app: App, mails: Iterable[PreviewMail]) -> CapCheck:
    """How the member caps held over ``mails`` (each mail's kind from the state
    record, its day from its Date, its recipients from its headers)."""
    mails = [m for m in mails if m.sent_at is not None and m.key]
    kinds = {rec.key: rec.action for rec in app.state.actions() if ":step:" not in rec.key}
    tz = ZoneInfo(app.cfg.meetings.timezone)
    sent = [SentMail(m.key, kinds.get(m.key, ""), m.sent_at.astimezone(tz).date(), tuple(r.email for r in m.readers))
            for m in mails if m.sent_at is not None]
    net = app.cfg.network
    return check_caps(sent, [p.email for p in net.active_members], net.coordinator.email,
                      [m.date for m in app.meetings], app.cfg.meetings.member_caps)


# ------------------------------------------------------------------ who reads what


def reader_of(cfg: Config, meeting: Meeting | None, email: str, name: str = "") -> Reader:
    """The role ``email`` reads a mail of ``meeting`` in."""
    e = email.strip().lower()
    net = cfg.network
    if e == net.coordinator.email.lower():
        return Reader(e, net.coordinator.name, "samordnare")
    if meeting is not None and e == meeting.host.email.lower():
        return Reader(e, meeting.host.name, "värd")
    if meeting is not None and meeting.backup_host is not None and e == meeting.backup_host.email.lower():
        return Reader(e, meeting.backup_host.name, "reservvärd")
    for p in net.members:
        if p.email.lower() == e:
            return Reader(e, p.name, "medlem")
    for g in net.guests + net.audience_people:  # the open meeting's audience is invited as guests are
        if g.email.lower() == e:
            return Reader(e, g.name, "gäst")
    return Reader(e, name or e, "annan")


def _meeting_of(meetings: Iterable[Meeting], key: str) -> Meeting | None:
    mid = key.split(":", 1)[0]
    return next((m for m in meetings if m.id == mid), None)


def _body(msg: EmailMessage) -> tuple[str, str | None, tuple[str, ...]]:
    text, cal, files = "", None, []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            continue
        fname = part.get_filename()
        if ctype == "text/calendar":
            cal = part.get_content() if isinstance(part, EmailMessage) else str(part.get_payload())
        elif fname:
            files.append(fname)
        elif ctype == "text/plain" and not text:
            text = part.get_content() if isinstance(part, EmailMessage) else str(part.get_payload())
    return text, cal, tuple(files)


def parse_sent(cfg: Config, meetings: list[Meeting], raw: bytes) -> PreviewMail:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    key = str(msg.get(MARKER_HEADER, "") or "").strip()
    meeting = _meeting_of(meetings, key) if key else None
    addrs = getaddresses([str(v) for v in (msg.get_all("To", []) or []) + (msg.get_all("Cc", []) or [])])
    readers = tuple(dict.fromkeys(reader_of(cfg, meeting, a, n) for n, a in addrs if a))
    when: datetime | None = None
    if msg.get("Date"):
        try:
            when = parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            when = None
    text, cal, files = _body(msg)
    return PreviewMail(key=key, meeting_id=meeting.id if meeting else None, sent_at=when, sender=str(msg.get("From", "")),
                       subject=str(msg.get("Subject", "")), text=text, calendar=cal, attachments=files, readers=readers)


def read_maildir(cfg: Config, meetings: list[Meeting], sent_dir: Path) -> list[PreviewMail]:
    """Every mail in a Maildir folder (``.../sent``), oldest first."""
    mails = [parse_sent(cfg, meetings, p.read_bytes()) for p in sorted((sent_dir / "cur").iterdir()) if p.is_file()]
    return sorted(mails, key=lambda m: (m.sent_at or datetime.min.astimezone(), m.key))


# ------------------------------------------------------------------ the dry run


def _days(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def month_bounds(month: str) -> tuple[date, date]:
    """``2024-02`` -> (1 Feb, 29 Feb)."""
    y, m = (int(x) for x in month.split("-"))
    first = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def dry_run(app: App, first: date, last: date, sent_dir: Path) -> list[PreviewMail]:
    """The mails the daily runs from ``first`` to ``last`` send on ``app``, which
    must be a throw-away copy (``bootstrap.dry_run_app``); ``sent_dir`` is its
    Maildir sent folder."""
    from kcg_mail.services.daily import run_daily

    tz = ZoneInfo(app.cfg.meetings.timezone)
    for day in _days(first, last):
        run_daily(app, datetime.combine(day, app.cfg.meetings.send_at, tz))
    return read_maildir(app.cfg, app.meetings, sent_dir)


# ------------------------------------------------------------------ the page

PAGE = """<!doctype html>
<html lang="sv"><head><meta charset="utf-8"><title>{{ p.title }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f4f4f4} .n{text-align:right} .mail{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1.5rem 0}
.meta{color:#555;font-size:.9rem} pre{white-space:pre-wrap;font-family:inherit;background:#fafafa;padding:.75rem}
.cal{font-size:.85rem;color:#444} .role{display:inline-block;background:#eef;border-radius:3px;padding:0 .3rem;margin:.1rem}
</style></head><body>
<h1>{{ p.title }}</h1>
<p>{{ p.note }}</p>
<p>{{ p.mails|length }} utskick.</p>
<h2>Utskick per mottagare och månad</h2>
<div style="overflow-x:auto"><table><tr><th>Mottagare</th><th>Roll</th>{% for mo in months %}<th>{{ short(mo) }}</th>{% endfor %}<th>Totalt</th></tr>
{% for r, c in counts %}<tr><td>{{ r.name }}</td><td>{{ r.role }}</td>{% for mo in months %}<td class="n">{{ c[mo] or "" }}</td>{% endfor %}<td class="n">{{ c.total() }}</td></tr>
{% endfor %}</table></div>
{% for m in p.mails %}
<div class="mail"><div class="meta">{{ m.sent_at.strftime("%Y-%m-%d %H:%M") if m.sent_at else "" }} · från {{ m.sender }}</div>
<h3>{{ m.subject }}</h3>
<div class="meta">Till: {% for role, rs in by_role(m) %}<span class="role">{{ role }}: {{ rs|map(attribute="name")|join(", ") }}</span> {% endfor %}</div>
{% if m.attachments %}<div class="meta">Bilagor: {{ m.attachments|join(", ") }}</div>{% endif %}
<pre>{{ m.text }}</pre>
{% if m.calendar %}<details class="cal"><summary>Kalenderposten</summary><pre>{{ m.calendar }}</pre></details>{% endif %}
</div>
{% endfor %}
</body></html>
"""


def _by_role(m: PreviewMail) -> list[tuple[str, list[Reader]]]:
    groups: dict[str, list[Reader]] = defaultdict(list)
    for r in m.readers:
        groups[r.role].append(r)
    return [(ROLE_TITLES[role], groups[role]) for role in ROLES if role in groups]


def render_html(p: Preview) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    counts = sorted(p.counts().items(), key=lambda kv: (ROLES.index(kv[0].role), kv[0].name))
    return env.from_string(PAGE).render(p=p, months=p.months(), counts=counts, by_role=_by_role, short=_short_month)


def _short_month(month: str) -> str:
    """``2023-11`` -> ``nov 23``."""
    from kcg_mail.core.plan import MONTHS_SV

    return f"{MONTHS_SV[int(month[5:]) - 1][:3]} {month[2:4]}"


def render_markdown(p: Preview) -> str:
    """The same content for a Prefect artifact (markdown): the counts, then each mail."""
    lines = [f"# {p.title}", "", p.note, "", "| Mottagare | Roll | Utskick |", "|---|---|---|"]
    for r, c in sorted(p.counts().items(), key=lambda kv: (ROLES.index(kv[0].role), kv[0].name)):
        lines.append(f"| {r.name} | {r.role} | {c.total()} |")
    for m in p.mails:
        when = m.sent_at.strftime("%Y-%m-%d") if m.sent_at else ""
        roles = "; ".join(f"{role}: {', '.join(r.name for r in rs)}" for role, rs in _by_role(m))
        lines += ["", f"## {when} · {m.subject}", f"*Till: {roles}*", ""]
        lines += [f"> {line}" if line else ">" for line in m.text.strip().splitlines()]
    return "\n".join(lines) + "\n"
