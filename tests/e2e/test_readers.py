"""Every mail of a demo year, read by each of its readers.

Runs what ``kcg demo`` runs on the embedded defaults (the real Prefect flows: the
2023 year with hosts replying, the coordinator approving the guests' invitations
and a project group, then the 2024 planning round), reads every mail in the
Maildir Sent folder and, for every recipient, checks what that reader sees (the
display headers, the text and HTML bodies, the calendar parts and .ics
attachments) for things that reader must never see:

- a plan's internal comment (it is for the host's brief and the coordinator only), also in
  the attached Word documents (the minutes every member gets);
- another person's address: a guest sees only their own and the network's mailbox;
  members, hosts and the coordinator see people of the network, never a guest's;
- a file path (``/KCG/...``, ``C:\\...``, ``var/``, ``config/``), a shell command
  (``kcg ...``, ``prefect ...``), a YAML file name, or a Prefect flow name.

Also the calendar feed the members subscribe to, and the calendar titles (no token).
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
from support.basics import shipped_config
from support.demo_year import play_demo_year
from support.helpers import CONFIG_DIR, sent_mails

from kcg_mail.core.plan import resolve_plan
from kcg_mail.ports import MARKER_HEADER

ROOT = Path(__file__).resolve().parents[2]
CFG = shipped_config()
MAILBOX = CFG.network.mailbox.email
COORD = CFG.network.coordinator.email
MEMBERS = {p.email for p in CFG.network.members}
GUESTS = {g.email: g for g in CFG.network.guests}
MEETINGS = {m.id: m for m in resolve_plan(CFG)}

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PATH = re.compile(r"(?<![\w:/.\-@])/[\w.-]+/?|\b[A-Za-z]:\\\S*|\b(?:var|config)/")
COMMAND = re.compile(r"(?<![\w-])(?:kcg|prefect) [a-z][a-z-]*")
YAML = re.compile(r"[\w-]+\.ya?ml\b", re.I)


def flow_names() -> set[str]:
    """Every Prefect flow name the project defines (the deployments carry them too)."""
    names = set()
    for p in (ROOT / "flows").glob("*.py"):
        names |= set(re.findall(r"@flow\(\s*name=\"([^\"]+)\"", p.read_text(encoding="utf-8")))
    return names


FLOWS = flow_names()


def plan_comments() -> dict[str, str]:
    """meeting id -> its internal comment, where it is not also the public proposed-date text."""
    out = {}
    for pm in CFG.all_meetings():
        if pm.comment.strip() and pm.comment.strip() != (pm.proposed or "").strip():
            out[pm.meeting_id] = pm.comment.strip()
    return out


COMMENTS = plan_comments()


@dataclass(frozen=True)
class Seen:
    """What a reader sees of one mail, by where it is."""

    key: str
    parts: dict[str, str]


def _html_text(raw: str) -> str:
    links = " ".join(re.findall(r"""(?:href|src)\s*=\s*["']([^"']*)["']""", raw, re.I))
    return html.unescape(re.sub(r"<[^>]+>", " ", raw)) + " " + links


def _unfold_ics(raw: str) -> str:
    return re.sub(r"\r?\n[ \t]", "", raw)


def _docx_text(data: bytes) -> str:
    import io

    import docx

    doc = docx.Document(io.BytesIO(data))
    cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
    return "\n".join([p.text for p in doc.paragraphs] + cells)


def what_is_seen(msg: EmailMessage) -> Seen:
    parts: dict[str, str] = {}
    for h in ("From", "To", "Cc", "Reply-To", "Subject"):
        if msg[h] is not None:
            parts[f"header {h}"] = str(msg[h])
    for i, part in enumerate(msg.walk()):
        ct = part.get_content_type()
        name = part.get_filename() or ""
        if ct == "text/plain" and not name:
            parts[f"text #{i}"] = part.get_content()
        elif ct == "text/html" and not name:
            parts[f"html #{i}"] = _html_text(part.get_content())
        elif ct == "text/calendar" or name.lower().endswith(".ics"):
            data = part.get_payload(decode=True) or b""
            parts[f"calendar #{i} {name}".strip()] = _unfold_ics(data.decode("utf-8", "replace"))
        elif name.lower().endswith(".docx"):  # the minutes, the planning forms, the action plan
            parts[f"document {name}"] = _docx_text(part.get_payload(decode=True) or b"")
    return Seen(str(msg[MARKER_HEADER]).strip(), parts)


def calendar_lines(text: str) -> list[str]:
    """The property lines a calendar shows (not PRODID, UID, DTSTAMP ...), with
    iCalendar's escapes undone."""
    shown = ("SUMMARY", "DESCRIPTION", "LOCATION", "ORGANIZER", "ATTENDEE", "URL", "COMMENT")
    return [ln.replace("\\n", "\n").replace("\\,", ",").replace("\\;", ";").replace("\\\\", "\\")
            for ln in text.splitlines() if ln.split(";", 1)[0].split(":", 1)[0] in shown]


def reader_of(email: str, meeting_id: str | None) -> str:
    if email in GUESTS:
        return "guest"
    if email == COORD:
        return "coordinator"
    m = MEETINGS.get(meeting_id or "")
    if m is not None and email == m.host.email:
        return "host"
    if m is not None and m.backup_host is not None and email == m.backup_host.email:
        return "backup host"
    return "member"


def problems_for(reader: str, email: str, seen: Seen, meeting_id: str | None, recipients: set[str]) -> list[str]:
    out = []
    action = (seen.key.split(":") + ["", ""])[1]
    own_mailbox = {MAILBOX}
    for where, text in seen.parts.items():
        shown = "\n".join(calendar_lines(text)) if where.startswith("calendar") else text
        # 1. internal plan comments: only the host's brief (host, backup host) and mail to the coordinator alone
        may_see_comment = (action == "brief_host" and reader in ("host", "backup host", "coordinator")) or \
            (reader == "coordinator" and recipients == {COORD})
        for mid, comment in COMMENTS.items():
            if comment in shown and not may_see_comment:
                out.append(f"{where}: the plan comment of {mid} ({comment!r})")
        if where.startswith("document"):
            continue  # a Word document is the host's text (minutes, forms): only the plan comment is ours to keep out
        # 2. other people's addresses
        for a in {x.lower() for x in EMAIL.findall(shown)}:
            base = re.sub(r"\+[^@]*@", "@", a)  # plus-addressed replies to the mailbox
            if a == email or base in own_mailbox:
                continue
            if reader == "guest":
                out.append(f"{where}: another person's address {a}")
            elif a in GUESTS or a not in MEMBERS:
                out.append(f"{where}: an address from outside the network {a}")
        # 3. technical things no reader should be asked to deal with
        for pattern, what in ((PATH, "a file path"), (COMMAND, "a shell command"), (YAML, "a YAML file name")):
            for hit in pattern.findall(shown):
                out.append(f"{where}: {what} {hit!r}")
        for flow in FLOWS:
            if flow in shown:
                out.append(f"{where}: the Prefect flow name {flow!r}")
    return out


def test_the_checks_catch_what_they_look_for():
    """The detectors themselves, on text with each kind of leak (and on text without)."""
    assert {"kcg-daily", "kcg-approve"} <= FLOWS and COMMENTS["2023-08"].startswith("Bjud in")
    comment = COMMENTS["2023-12"]
    bad = Seen("2023-12:invite:members:s0", {
        "text": f"{comment}\nKör `kcg planning publish --year 2024` eller flödet {sorted(FLOWS)[0]}.\n"
                "Filen /KCG/Handlingsplan/2024/x.yaml, C:\\Users\\x, var/demo och config/plan-2024.yaml.\n"
                f"Skriv till {next(iter(GUESTS))} eller daniel@gavle.example.se.",
        # what an invitation's calendar part looked like: the comment in a folded, escaped DESCRIPTION
        "calendar": _unfold_ics("DESCRIPTION:Tema 10\\n" + comment[:20] + "\r\n " + comment[20:].replace(",", "\\,")
                                + "\\nDagordning\r\nUID:x\r\n"),
    })
    found = "\n".join(problems_for("guest", "contact@centreforcities.example.org", bad, "2023-12",
                                   {"contact@centreforcities.example.org"}))
    assert "calendar: the plan comment" in found, found
    for expected in ("plan comment", "another person's address daniel@", "shell command 'kcg planning'",
                     "'/KCG/", "C:\\\\", "'var/'", "'config/'", "YAML file name", "Prefect flow name"):
        assert expected in found, (expected, found)
    good = Seen("2023-12:guest_invite:x:s0", {
        "text": "When: Monday 4 December 2023\nWhere: Online – https://teams.example.se/kcg-manadsmote\n"
                f"Reply to {MAILBOX} or kcg+2023-12.x@svenskastadskarnor.example.se. Key Cities Group / Svenska Stadskärnor",
        "calendar": "PRODID:-//Svenska Stadskärnor//kcg-mail//SV\nTZID:Europe/Stockholm\n"
                    "ORGANIZER;CN=KCG:mailto:" + MAILBOX,
    })
    assert problems_for("guest", "contact@centreforcities.example.org", good, "2023-12", set()) == []


@pytest.fixture(scope="module")
def demo_year(prefect_api, tmp_path_factory):
    """The workdir after ``kcg demo``: the year, then the planning round."""
    return play_demo_year(tmp_path_factory.mktemp("readers"))


def check_every_reader(mails: list[EmailMessage]) -> tuple[Counter[str], dict[str, list[str]]]:
    """(mails per kind of reader, problems per mail and reader)."""
    per_reader: Counter[str] = Counter()
    failures: dict[str, list[str]] = defaultdict(list)
    for msg in mails:
        seen = what_is_seen(msg)
        mid = seen.key.split(":")[0]
        to = {a.lower() for _, a in getaddresses([str(msg[h]) for h in ("To", "Cc") if msg[h] is not None])}
        assert to, seen.key
        for email in sorted(to):
            reader = reader_of(email, mid)
            per_reader[reader] += 1
            for p in problems_for(reader, email, seen, mid, to):
                failures[f"{seen.key} ({str(msg['Subject'])[:60]}) for the {reader} {email}"].append(p)
    return per_reader, failures


def _report(failures: dict[str, list[str]]) -> str:
    return "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in sorted(failures.items()))


def test_every_mail_of_the_demo_year_shows_each_reader_only_what_is_theirs(demo_year):
    mails = sent_mails(demo_year)
    assert len(mails) > 100
    per_reader, failures = check_every_reader(mails)
    # every kind of reader got mail, so none of the checks above passed for want of mail
    assert set(per_reader) == {"coordinator", "host", "backup host", "member", "guest"}, per_reader
    assert not failures, f"{len(failures)} mails show a reader what is not theirs:\n{_report(failures)}"


def test_a_year_where_nobody_answers_shows_each_reader_only_what_is_theirs(shipped_year):
    """The shipped plan with no host answering (tests/support/real_run.py): the chases, the
    escalations to the coordinator and the coordinator's questions about guests."""
    work, index = shipped_year
    actions = {k.split(":")[1] for k in index}
    assert {"chase_host", "escalate", "guest_approval"} <= actions, actions
    per_reader, failures = check_every_reader(sent_mails(work))
    assert {"coordinator", "host", "member"} <= set(per_reader), per_reader
    assert not failures, f"{len(failures)} mails show a reader what is not theirs:\n{_report(failures)}"


def test_guests_get_their_own_invitation_in_their_language_after_the_coordinator_said_yes(demo_year):
    from icalendar import Calendar
    from support.helpers import calendar_parts

    mails = sent_mails(demo_year)
    by_key = {str(m[MARKER_HEADER]).strip(): m for m in mails}
    for mid in ("2023-08", "2023-12"):
        m = MEETINGS[mid]
        # the open meeting's date was set by the coordinator: its invitation updates the save-the-date
        members = by_key.get(f"{mid}:invite:members:s0") or by_key[f"{mid}:invite:members:s1"]
        to = {a.lower() for _, a in getaddresses([str(members["To"])])}
        assert not to & set(GUESTS), f"{mid}: a guest is on the members' invitation"
        for g in m.guests:
            ask = by_key[f"{mid}:guest_approval:{COORD}:{g.id}"]
            assert ask["Date"] is not None and {a.lower() for _, a in getaddresses([str(ask["To"])])} == {COORD}
            inv = by_key[f"{mid}:guest_invite:{g.email}:s0"]
            assert {a.lower() for _, a in getaddresses([str(inv[h]) for h in ("To", "Cc") if inv[h]])} == {g.email}
            cal = Calendar.from_ical(calendar_parts(inv)[0].get_payload(decode=True))
            ev = next(iter(cal.walk("VEVENT")))
            assert [str(a).lower() for a in (ev.get("attendee") if isinstance(ev.get("attendee"), list)
                                             else [ev.get("attendee")])] == [f"mailto:{g.email}"]
            assert str(ev["organizer"]).lower() == f"mailto:{MAILBOX}"
            assert str(ev["uid"]) != str(Calendar.from_ical(calendar_parts(members)[0].get_payload(decode=True))
                                         .walk("VEVENT")[0]["uid"])
            text = inv.get_body(("plain",)).get_content()
            if g.language == "en":
                assert str(inv["Subject"]).strip().startswith("Invitation: ") and "Dear " in text and "Kind regards" in text
                assert "Monday 4 December 2023" in text
            else:
                assert str(inv["Subject"]).strip().startswith("Inbjudan: ") and "Vänliga hälsningar" in text
            # the approval came before the invitation
            assert ask["Date"].datetime <= inv["Date"].datetime


def test_calendar_titles_and_the_feed_are_clean(demo_year):
    from icalendar import Calendar
    from support.helpers import calendar_parts

    summaries = []
    for msg in sent_mails(demo_year):
        for part in calendar_parts(msg):
            for ev in Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT"):
                summaries.append(str(ev["summary"]))
    feed = next((demo_year / "dropbox").rglob("*.ics"))
    cal = Calendar.from_ical(feed.read_bytes())
    feed_text = "\n".join(f"{ev['summary']}\n{ev['description']}" for ev in cal.walk("VEVENT"))
    summaries += [str(ev["summary"]) for ev in cal.walk("VEVENT")]
    assert len(summaries) > 20
    assert not [s for s in summaries if re.search(r"\[[A-Z]+-[\d-]+\]", s)], "a token in a calendar title"
    leaked = [c for c in COMMENTS.values() if c in feed_text]
    assert not leaked, f"plan comments in the members' calendar feed: {leaked}"


# ------------------------------------------------------------------ one voice, dates in words

ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
COORDINATOR = CFG.network.coordinator
SIGNED = f"{COORDINATOR.name}, {COORDINATOR.organisation}"


def voice_problems(msg: EmailMessage) -> list[str]:
    """A mail read as its reader reads it: the date in words (ISO only in a file name), signed by
    the coordinator by name and organisation (a mail to him alone by the network's mailbox), never
    by the software."""
    files = [p.get_filename() for p in msg.walk() if p.get_filename()]
    out = []
    texts = {"subject": str(msg["Subject"])}
    for i, part in enumerate(msg.walk()):
        if part.get_content_type() in ("text/plain", "text/html") and not part.get_filename():
            body = part.get_content()
            texts[f"{part.get_content_type()} #{i}"] = html.unescape(body) if part.get_content_type() == "text/html" \
                else body
    for where, text in texts.items():
        for name in files:
            text = text.replace(name, "")
        for hit in ISO_DATE.findall(text):
            out.append(f"{where}: an ISO date in prose {hit!r}")
        if "kcg-mail" in text.lower():
            out.append(f"{where}: the software's name")
    plain = next((t for w, t in texts.items() if w.startswith("text/plain")), "")
    tail = [x.strip() for x in plain.strip().splitlines()[-3:]]
    to = {a.lower() for _, a in getaddresses([str(msg[h]) for h in ("To", "Cc") if msg[h] is not None])}
    if to == {COORD}:  # the coordinator's own questions and notices: the network's mailbox, or his round mail
        if CFG.network.mailbox.name not in tail and SIGNED not in tail:
            out.append(f"no signature: {tail}")
    elif not (SIGNED in tail or tail[-2:] == [COORDINATOR.name, COORDINATOR.organisation]):
        out.append(f"not signed '{SIGNED}': {tail}")
    return out


def test_every_mail_of_the_demo_year_is_signed_by_the_coordinator_with_dates_in_words(demo_year):
    mails = sent_mails(demo_year)
    failures = {f"{str(m[MARKER_HEADER]).strip()} ({str(m['Subject'])[:60]})": p
                for m in mails if (p := voice_problems(m))}
    assert not failures, f"{len(failures)} mails:\n{_report(failures)}"
    # and the checks find what they look for
    bad = EmailMessage()
    bad["Subject"] = "Protokoll 2023-02-06"
    bad["To"] = "daniel@gavle.example.se"
    bad[MARKER_HEADER] = "2023-02:chase_host:daniel@gavle.example.se"
    bad.set_content("Hej!\n\nMötet 2023-02-06.\n\nHälsningar\nkcg-mail\n")
    assert {p.split(":")[0] for p in voice_problems(bad)} >= {"subject", "text/plain #0", "not signed '" + SIGNED + "'"}


def test_a_host_gets_at_most_four_mails_a_meeting_and_a_chase_only_without_minutes(demo_year):
    mails = sent_mails(demo_year)
    per_host: Counter[tuple[str, str]] = Counter()
    distributed: dict[str, object] = {}
    chased: dict[str, object] = {}
    for msg in mails:
        key = str(msg[MARKER_HEADER]).strip()
        mid, action = (key.split(":") + [""])[:2]
        m = MEETINGS.get(mid)
        if m is None:
            continue
        if action == "distribute":
            distributed.setdefault(mid, msg["Date"].datetime)
        if action == "chase_host":
            chased[mid] = msg["Date"].datetime
        if action in ("invite", "cancel", "distribute", "update_invitation", "cancel_invitation"):
            continue  # the calendar invitation and the minutes go to everyone
        to = {a.lower() for _, a in getaddresses([str(msg[h]) for h in ("To", "Cc") if msg[h] is not None])}
        if m.host.email in to:
            per_host[(mid, action)] += 1
    by_meeting: Counter[str] = Counter()
    for (mid, _), n in per_host.items():
        by_meeting[mid] += n
    assert by_meeting and max(by_meeting.values()) <= 4, by_meeting
    assert not [k for k in per_host if k[1] == "remind_host"], "a separate reminder: it goes with the template"
    # every meeting held in the demo year (confirmed, with minutes) gave its host one reminder with the template
    held = [mid for mid in distributed if not MEETINGS[mid].tentative]
    assert held and {mid: per_host[(mid, "send_template")] for mid in held} == {mid: 1 for mid in held}
    early = [mid for mid, when in chased.items() if mid in distributed and distributed[mid] < when]
    assert not early, f"chased although the minutes were in: {early}"


@pytest.mark.parametrize("operator", [False, True], ids=["no operator", "operator"])
def test_an_alert_shows_the_coordinator_no_command_file_or_flow(tmp_path, operator):
    """A failed run's alert (every kind the alerts know, and an unknown one), read as
    the coordinator reads it: the technical steps go to the operator, if any."""
    import shutil

    from support.basics import at
    from support.failed_run import FailedRun, FailedState

    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.alerts import PLAIN, send_failure_alert

    cfgdir = Path(shutil.copytree(CONFIG_DIR, tmp_path / "config"))
    if operator:
        tr = cfgdir / "transport.yaml"
        tr.write_text(tr.read_text(encoding="utf-8") + "operator_contacts: [{name: Kim Drift, email: drift@svenskastadskarnor.example.se}]\n",
                      encoding="utf-8")
    app = bootstrap(tmp_path / "work", cfgdir)

    detail = "config/plan-2023.yaml: meetings[0]: fix it, then run `kcg check` and kcg state restore"
    for i, kind in enumerate([*PLAIN, "KeyError"]):
        exc = type(kind, (Exception,), {})(f"{detail} {i}")
        send_failure_alert(app, ["kcg-daily", "kcg-intake", "kcg-planning-tick"][i % 3], FailedRun(), FailedState(exc),
                           now=at("2023-10-25"))
    to_coordinator = [m for m in sent_mails(tmp_path / "work") if COORD in str(m["To"])]
    assert len(to_coordinator) == len(PLAIN) + 1
    failures = {}
    for msg in to_coordinator:
        seen = what_is_seen(msg)
        found = problems_for("coordinator", COORD, seen, None, {COORD})
        if found:
            failures[seen.key] = found
    assert not failures, _report(failures)
    assert all(("Kim Drift" if operator else "Be den som sköter") in m.get_body(("plain",)).get_content()
               for m in to_coordinator)
    operator_mails = [m for m in sent_mails(tmp_path / "work") if "drift@" in str(m["To"])]
    assert len(operator_mails) == (len(PLAIN) + 1 if operator else 0)
    if operator:  # the operator does get the technical text
        assert all("kcg check" in m.get_body(("plain",)).get_content() for m in operator_mails)
