"""What leaves the system: invitation MIME and iCalendar, headers of ordinary
mail, the outbox guard and the template sandbox."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta

import pytest
from icalendar import Calendar
from support.helpers import (
    TEMPLATES_DIR,
    at,
    calendar_parts,
    close,
    config_with,
    make_app,
    meeting,
    meetings,
    read_mail,
    recipients,
    sent_files,
    sent_with_action,
    shipped_config,
)

from kcg_mail.core.mime import HeaderInjection, build_invitation, build_message
from kcg_mail.ports import MARKER_HEADER, Address, OutgoingMessage, message_id_for
from kcg_mail.services.app import Outbox, RecipientNotAllowed
from kcg_mail.services.compose import Composer, TemplateProblem, addr
from kcg_mail.services.daily import run_daily

CFG = shipped_config()
AUG = meeting("2023-08")  # all members + the Svensk Handel guest
MAILBOX = CFG.network.mailbox.email


def attendees_of(m):
    return list(CFG.network.active_members)  # guests get an invitation of their own (test_guests.py)


def invitation(m, seq=0, cancel=False, composer=None):
    c = composer or Composer(CFG)
    return c.invitation(m, meetings(), attendees_of(m), seq, cancel=cancel, now=at(m.date - timedelta(days=14)))


def vevent(ics: bytes):
    cal = Calendar.from_ical(ics)
    events = [c for c in cal.walk("VEVENT")]
    assert len(events) == 1
    return cal, events[0]


def attendee_params(ev) -> dict[str, dict]:
    att = ev.get("attendee")
    att = att if isinstance(att, list) else [att]
    return {str(a).removeprefix("mailto:").lower(): dict(a.params) for a in att}


# ------------------------------------------------------------ invitation MIME


def test_invitation_mime_has_calendar_part_with_method():
    inv = invitation(AUG)
    msg = build_invitation(inv)
    assert msg.get_content_type() == "multipart/alternative"
    cal_parts = calendar_parts(msg)
    assert len(cal_parts) == 1
    part = cal_parts[0]
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == inv.ics
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "text/html", "text/calendar"]  # calendar last: preferred by clients


def test_invitation_ics_request():
    inv = invitation(AUG)
    cal, ev = vevent(inv.ics)
    assert str(cal["METHOD"]) == "REQUEST"
    assert str(ev["ORGANIZER"]).lower() == f"mailto:{MAILBOX}"
    assert str(ev["UID"]) == inv.uid == "kcg-2023-08@svenskastadskarnor.example.se"
    assert int(ev["SEQUENCE"]) == 0
    assert str(ev["STATUS"]) == "CONFIRMED"
    params = attendee_params(ev)
    expected = {p.email for p in CFG.network.active_members}
    assert set(params) == expected and len(expected) == 14
    for email, p in params.items():
        assert p["RSVP"] == "TRUE", email
        assert p["PARTSTAT"] == "NEEDS-ACTION"
        assert p["ROLE"] == "REQ-PARTICIPANT"
        assert p["CN"]
    assert ev.decoded("DTSTART") == AUG.start and ev.decoded("DTEND") == AUG.end
    assert ev["DTSTART"].params["TZID"] == "Europe/Stockholm"
    dtstamp = ev.decoded("DTSTAMP")
    assert dtstamp.utcoffset() == timedelta(0)
    assert dtstamp == at(AUG.date - timedelta(days=14))
    assert str(ev["SUMMARY"]) == "KCG Möte för alla: Tema 6 Mobilitet & citylogistik"  # no token in the title
    # the To: of the mail is the attendee list
    assert recipients(build_invitation(inv)) == expected


def test_invitation_vtimezone_has_daylight_and_standard():
    cal, _ = vevent(invitation(AUG).ics)
    tzs = cal.walk("VTIMEZONE")
    assert len(tzs) == 1 and str(tzs[0]["TZID"]) == "Europe/Stockholm"
    kinds = {c.name for c in tzs[0].subcomponents}
    assert kinds >= {"DAYLIGHT", "STANDARD"}
    # winter meetings too: the timezone carries both rules
    cal, _ = vevent(invitation(meeting("2024-01")).ics)
    assert {c.name for c in cal.walk("VTIMEZONE")[0].subcomponents} >= {"DAYLIGHT", "STANDARD"}


def test_invitation_has_no_auto_submitted_headers():
    msg = build_invitation(invitation(AUG))
    assert msg["Auto-Submitted"] is None
    assert msg["X-Auto-Response-Suppress"] is None  # we want the accept/decline answers
    assert msg[MARKER_HEADER] == "2023-08:invite:members:s0"


def test_update_keeps_uid_and_raises_sequence():
    first = invitation(AUG, 0)
    later = dataclasses.replace(AUG, place="Stockholm, Sergels torg")
    update = invitation(later, 1)
    _, ev0 = vevent(first.ics)
    cal1, ev1 = vevent(update.ics)
    assert str(ev1["UID"]) == str(ev0["UID"])
    assert int(ev1["SEQUENCE"]) == 1 > int(ev0["SEQUENCE"])
    assert str(cal1["METHOD"]) == "REQUEST"
    assert "Sergels torg" in str(ev1["LOCATION"])
    assert update.message.key != first.message.key
    assert update.message.message_id != first.message.message_id
    assert update.message.subject.startswith("Uppdaterad inbjudan")


def test_cancel_has_method_cancel():
    inv = invitation(AUG, 2, cancel=True)
    cal, ev = vevent(inv.ics)
    assert str(cal["METHOD"]) == "CANCEL"
    assert str(ev["STATUS"]) == "CANCELLED"
    assert int(ev["SEQUENCE"]) == 2
    assert str(ev["UID"]) == "kcg-2023-08@svenskastadskarnor.example.se"
    part = calendar_parts(build_invitation(inv))[0]
    assert part.get_param("method") == "CANCEL"
    assert all(p.get("RSVP") != "TRUE" for p in attendee_params(ev).values())


def test_update_and_cancel_through_the_daily_run(tmp_path):
    """The real path: invite, then the plan moves the meeting (update, same
    UID, SEQUENCE 1), then it becomes tentative (CANCEL, SEQUENCE 2)."""
    feb = meeting("2023-02")
    cfg = config_with(CFG, ["2023-02"])
    app = make_app(tmp_path, cfg)
    run_daily(app, at(feb.date - timedelta(days=14)))
    close(app)
    moved = config_with(CFG, ["2023-02"], **{"2023-02": {"date": feb.date + timedelta(days=7)}})
    app = make_app(tmp_path, moved)
    report = run_daily(app, at(feb.date - timedelta(days=12)))
    assert [(r.action, r.outcome) for r in report.results] == [("update_invitation", "sent")]
    close(app)
    tentative = config_with(CFG, ["2023-02"], **{"2023-02": {"date": feb.date + timedelta(days=7), "tentative": True}})
    app = make_app(tmp_path, tentative)
    report = run_daily(app, at(feb.date - timedelta(days=10)))
    # the tentative date is a question to the coordinator too (services/meeting_dates)
    assert [(r.action, r.outcome) for r in report.results] == [("cancel_invitation", "sent"), ("date_question", "sent")]
    close(app)

    invites = sorted(sent_with_action(tmp_path, "invite"), key=lambda m: str(m[MARKER_HEADER]))
    cancels = sent_with_action(tmp_path, "cancel")
    assert [str(m[MARKER_HEADER]) for m in invites] == ["2023-02:invite:members:s0", "2023-02:invite:members:s1"]
    assert [str(m[MARKER_HEADER]) for m in cancels] == ["2023-02:cancel:members:s2"]
    events = [vevent(calendar_parts(m)[0].get_payload(decode=True)) for m in invites + cancels]
    assert {str(ev["UID"]) for _, ev in events} == {"kcg-2023-02@svenskastadskarnor.example.se"}
    assert [int(ev["SEQUENCE"]) for _, ev in events] == [0, 1, 2]
    assert [str(cal["METHOD"]) for cal, _ in events] == ["REQUEST", "REQUEST", "CANCEL"]
    assert events[1][1].decoded("DTSTART").date() == feb.date + timedelta(days=7)
    # the host is told about the change in a plan_change mail
    changes = sent_with_action(tmp_path, "plan_change")
    assert [recipients(m) for m in changes] == [{feb.host.email}]


# ------------------------------------------------------------ ordinary mail


def _brief(m=None):
    m = m or meeting("2023-02")
    c = Composer(CFG)
    return c.message("brief_host", f"{m.id}:brief_host:{m.host.email}", m, [m.host],
                     {"meeting": c.meeting_ctx(m, meetings())})


def test_outgoing_mail_headers():
    out = _brief()
    msg = build_message(out)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "OOF" in msg["X-Auto-Response-Suppress"] and "AutoReply" in msg["X-Auto-Response-Suppress"]
    assert msg[MARKER_HEADER] == "2023-02:brief_host:daniel@gavle.example.se"
    assert msg["Message-ID"] == out.message_id
    assert msg["Message-ID"] == message_id_for(out.key, "svenskastadskarnor.example.se")
    assert msg["Message-ID"].endswith("@svenskastadskarnor.example.se>")
    assert str(msg["Reply-To"]).endswith(f"<{MAILBOX}>")
    assert msg["From"].addresses[0].addr_spec == MAILBOX
    assert "[KCG-2023-02]" in str(msg["Subject"])
    assert msg.get_body(("plain",)).get_content().startswith("Hej")
    assert msg.get_body(("html",)) is not None


def test_message_id_is_stable():
    a, b = _brief(), _brief()
    assert a.key == b.key and a.message_id == b.message_id
    assert build_message(a)["Message-ID"] == build_message(b)["Message-ID"]
    other = _brief(meeting("2023-03"))
    assert other.message_id != a.message_id


def test_html_part_is_escaped():
    m = dataclasses.replace(meeting("2023-02"), theme="<b>fet</b> & \"citat\"")
    html = build_message(_brief(m)).get_body(("html",)).get_content()
    assert "<b>fet</b>" not in html
    assert "&lt;b&gt;fet&lt;/b&gt; &amp;" in html


def _plain(**kw) -> OutgoingMessage:
    base = dict(key="x:brief_host:daniel@gavle.example.se", action="brief_host", meeting_id="x",
                sender=Address("KCG", MAILBOX), to=(Address("Daniel", "daniel@gavle.example.se"),),
                subject="Hej", text="Text\n")
    base.update(kw)
    return OutgoingMessage(**base)


@pytest.mark.parametrize("field,value", [
    ("subject", "Hej\r\nBcc: evil@example.com"),
    ("subject", "Hej\nBcc: evil@example.com"),
    ("subject", "Hej\rX-Evil: 1"),
    ("to", (Address("Daniel\r\nBcc: evil@example.com", "daniel@gavle.example.se"),)),
    ("sender", Address("KCG\nX-Evil: 1", MAILBOX)),
    ("in_reply_to", "<a@b>\r\nBcc: evil@example.com"),
    ("key", "x:brief_host\r\nBcc: evil@example.com"),
])
def test_header_injection_raises(field, value):
    with pytest.raises(HeaderInjection):
        build_message(_plain(**{field: value}))


def test_header_injection_blocked_in_the_transport(tmp_path):
    from kcg_mail.adapters.maildir import MaildirTransport

    t = MaildirTransport(tmp_path / "mail")
    with pytest.raises(HeaderInjection):
        t.send(_plain(subject="Hej\r\nBcc: evil@example.com"))
    assert sent_files(tmp_path) == []


def test_theme_with_line_break_cannot_inject_headers():
    m = dataclasses.replace(meeting("2023-02"), theme="Policy\r\nBcc: evil@example.com")
    msg = build_message(_brief(m))
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])


# ------------------------------------------------------------ outbox guard


def test_outbox_refuses_recipient_outside_the_network(tmp_path):
    app = make_app(tmp_path)
    stranger = Address("Okänd", "someone@elsewhere.example.com")
    msg = _plain(key="2023-02:brief_host:someone", to=(stranger,))
    with pytest.raises(RecipientNotAllowed) as exc:
        app.outbox.send(msg)
    assert "someone@elsewhere.example.com" in str(exc.value) and "network.yaml" in str(exc.value)
    assert sent_files(tmp_path) == []
    assert app.state.action(msg.key) is None  # nothing recorded, nothing half-sent
    # also in Cc
    with pytest.raises(RecipientNotAllowed):
        app.outbox.send(_plain(key="k2", cc=(stranger,)))
    close(app)


def test_outbox_allows_members_guests_and_is_case_insensitive(tmp_path):
    app = make_app(tmp_path)
    guest = CFG.network.guests[0]
    msg = _plain(key="k:guest", to=(Address(guest.name, guest.email.upper()), addr(CFG.network.coordinator)))
    assert app.outbox.send(msg) == "sent"
    assert app.outbox.send(msg) == "already"
    assert len(sent_files(tmp_path)) == 1
    assert read_mail(sent_files(tmp_path)[0])[MARKER_HEADER] == "k:guest"
    close(app)


def test_outbox_guard_with_explicit_allowed_list(tmp_path):
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.adapters.sqlite_state import SqliteState

    ob = Outbox(SqliteState(tmp_path / "s.sqlite"), MaildirTransport(tmp_path / "mail"), {"Daniel@Gavle.Example.se"})
    assert ob.send(_plain()) == "sent"
    with pytest.raises(RecipientNotAllowed):
        ob.send(_plain(key="k3", to=(Address("X", "x@gavle.example.se"),)))


# ------------------------------------------------------------ template sandbox


@pytest.fixture
def templates_copy(tmp_path):
    dst = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, dst)
    return dst


def _edit_template(templates, name: str, old: str, new: str) -> None:
    f = templates / "mail" / name
    text = f.read_text(encoding="utf-8")
    assert old in text
    f.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("expr", [
    "''.__class__.__mro__",
    "''.__class__.__mro__[1].__subclasses__()",
    "meeting.__class__.__init__.__globals__",
    "cycler.__init__.__globals__.os",
    "network.mailbox.__class__",
])
def test_sandbox_blocks_python_internals(templates_copy, expr):
    _edit_template(templates_copy, "brief_host.txt.j2", "{% block body %}", "{% block body %}{{ " + expr + " }}")
    c = Composer(CFG, templates_copy)
    m = meeting("2023-02")
    with pytest.raises(TemplateProblem) as exc:
        c.render("brief_host", {"meeting": c.meeting_ctx(m, meetings())})
    assert "templates/mail/brief_host" in str(exc.value)
    assert "SecurityError" in str(exc.value) and "is unsafe" in str(exc.value)
    assert any("brief_host" in p for p in c.check())


def test_sandbox_blocks_unsafe_calls_in_html_template(templates_copy):
    _edit_template(templates_copy, "invite.html.j2", "{% block content %}",
                   "{% block content %}{{ ''.__class__.__mro__[1].__subclasses__() }}")
    c = Composer(CFG, templates_copy)
    with pytest.raises(TemplateProblem):
        invitation(AUG, composer=c)


def test_edited_template_still_renders_and_typos_are_errors(templates_copy):
    _edit_template(templates_copy, "brief_host.txt.j2", "{% block body %}", "{% block body %}Extra rad från koordinatorn.\n")
    c = Composer(CFG, templates_copy)
    m = meeting("2023-02")
    r = c.render("brief_host", {"meeting": c.meeting_ctx(m, meetings())})
    assert r.text.startswith("Extra rad från koordinatorn.")
    _edit_template(templates_copy, "brief_host.txt.j2", "Extra rad", "{{ meeting.temaa }}")
    with pytest.raises(TemplateProblem) as exc:
        c.render("brief_host", {"meeting": c.meeting_ctx(m, meetings())})
    assert "temaa" in str(exc.value)


def test_shipped_templates_pass_check():
    assert Composer(CFG).check() == []
