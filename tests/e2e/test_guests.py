"""A guest's own invitation, on the embedded adapters (Maildir, SQLite, local folder):
held until the coordinator says yes, then a calendar request with only the organizer
and the guest, in the guest's language; updated and cancelled with the plan; never
sent after a no. Also the ``language`` field of network.yaml."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from icalendar import Calendar
from support.basics import at, config_with, copy_config, shipped_config
from support.helpers import calendar_parts, close, make_app, sent_mails

from kcg_mail.config_loader import load_config
from kcg_mail.core.config_model import ConfigError
from kcg_mail.core.cycle import due_dates
from kcg_mail.ports import MARKER_HEADER
from kcg_mail.services import approval, guests
from kcg_mail.services.coordinator import set_meeting
from kcg_mail.services.daily import run_daily
from kcg_mail.services.manual import ManualProblem

CFG = shipped_config()
DEC = "2023-12"
GUEST = next(g for g in CFG.network.guests if g.id == "centre_for_cities")
COORD = CFG.network.coordinator.email
MEMBERS = {p.email for p in CFG.network.active_members}


def _cfg(**changes):
    return config_with(CFG, [DEC], **({DEC: changes} if changes else {}))


def _invite_day(cfg) -> date:
    m = next(m for m in make_app_meetings(cfg) if m.id == DEC)
    return due_dates(m, cfg.meetings.lead_days)["invite"]


def make_app_meetings(cfg):
    from kcg_mail.core.plan import resolve_plan

    return resolve_plan(cfg)


def _mails(wd) -> dict[str, object]:
    return {str(m[MARKER_HEADER]).strip(): m for m in sent_mails(wd)}


def _to(msg) -> set[str]:
    return {a.addr_spec.lower() for h in ("To", "Cc") if msg[h] is not None for a in msg[h].addresses}


def _event(msg):
    (part,) = calendar_parts(msg)
    cal = Calendar.from_ical(part.get_payload(decode=True))
    (ev,) = cal.walk("VEVENT")
    return cal, ev


def _attendees(ev) -> list[str]:
    a = ev.get("attendee")
    return [str(x).lower() for x in (a if isinstance(a, list) else [a] if a else [])]


def _day(app, d: date, hour: int = 7):
    return run_daily(app, at(d, hour))


def test_guest_invitation_waits_for_the_coordinator_then_goes_to_the_guest_alone(tmp_path):
    cfg = _cfg()
    app = make_app(tmp_path, cfg)
    day = _invite_day(cfg)
    try:
        _day(app, day)
        sent = _mails(tmp_path)
        members = sent[f"{DEC}:invite:members:s0"]
        assert _to(members) == MEMBERS  # the guest is not on the members' invitation
        assert GUEST.email not in members.as_string()
        assert "Bjud in Centre for Cities" not in members.as_string()  # nor the plan's comment
        ask = sent[f"{DEC}:guest_approval:{COORD}:{GUEST.id}"]
        assert _to(ask) == {COORD}
        ask_text = ask.get_body(("plain",)).get_content()
        assert "Bjud in Centre for Cities" in ask_text  # the coordinator sees the comment
        assert not [k for k in sent if k.startswith(f"{DEC}:guest_invite")]
        (held,) = [p for p in approval.pending(app) if p.kind == guests.KIND]
        assert held.meeting_id == DEC and held.msg_key[:12] in ask_text
        # the coordinator's overview says what waits, in words
        from kcg_mail.core.overview import overview_needs
        from kcg_mail.services.status import overview_inputs

        needs = [n.text for n in overview_needs(overview_inputs(app, at(day, 8)))]
        assert f"Inbjudan till gästen Centre for Cities (mötet {DEC}) väntar på ditt ja." in needs, needs

        # a rerun the same day and the next: nothing new, not asked twice
        _day(app, day)
        _day(app, day + timedelta(days=1))
        assert set(_mails(tmp_path)) == set(sent)

        out = approval.approve(app, held.msg_key[:12], at(day, 10))
        assert "skickad" in out.detail
        inv = _mails(tmp_path)[f"{DEC}:guest_invite:{GUEST.email}:s0"]
        assert _to(inv) == {GUEST.email}
        cal, ev = _event(inv)
        assert str(cal["METHOD"]) == "REQUEST" and int(ev["SEQUENCE"]) == 0
        assert _attendees(ev) == [f"mailto:{GUEST.email}"]
        assert str(ev["organizer"]).lower() == f"mailto:{CFG.network.mailbox.email}"
        assert str(ev["uid"]) == f"kcg-{DEC}-guest-{GUEST.id}@svenskastadskarnor.example.se"
        assert str(ev["summary"]) == "Key Cities Group: online meeting – Vad behövs för tillväxt?"
        text = inv.get_body(("plain",)).get_content()
        assert str(inv["Subject"]).strip() == "Invitation: Key Cities Group, Monday 4 December 2023 [KCG-2023-12]"
        assert text.startswith("Dear Centre for Cities,") and "Monday 4 December 2023, 09:00" in text
        assert not any(e in inv.as_string() for e in MEMBERS)
        assert not approval.pending(app)

        # approved twice (a retried form) or a later daily run: no second invitation
        with pytest.raises(ManualProblem, match="väntar inte på godkännande"):
            approval.approve(app, held.msg_key[:12], at(day, 11))
        _day(app, day + timedelta(days=2))
        assert sum(k.startswith(f"{DEC}:guest_invite") for k in _mails(tmp_path)) == 1
    finally:
        close(app)


def test_the_guest_gets_updates_and_the_cancellation_under_their_own_uid(tmp_path):
    cfg = _cfg()
    app = make_app(tmp_path, cfg)
    day = _invite_day(cfg)
    _day(app, day)
    (held,) = approval.pending(app)
    approval.approve(app, held.msg_key, at(day, 10))
    close(app)

    # the meeting moves a day: members and guest get an update, each under their own UID
    moved = _cfg(date=date(2023, 12, 5))
    app = make_app(tmp_path, moved)
    _day(app, day + timedelta(days=1))
    sent = _mails(tmp_path)
    upd = sent[f"{DEC}:guest_invite:{GUEST.email}:s1"]
    _, ev = _event(upd)
    assert int(ev["SEQUENCE"]) == 1 and str(ev["uid"]).startswith(f"kcg-{DEC}-guest-")
    assert ev.decoded("dtstart").date() == date(2023, 12, 5)
    assert str(upd["Subject"]).strip().startswith("Updated invitation: ") and "has changed" in upd.get_body(("plain",)).get_content()
    assert _to(upd) == {GUEST.email}
    assert f"{DEC}:invite:members:s1" in sent
    close(app)

    # the guest is taken off the plan: a cancellation saying the invitation no longer applies
    without = _cfg(date=date(2023, 12, 5), guests=[])
    app = make_app(tmp_path, without)
    _day(app, day + timedelta(days=2))
    cancel = _mails(tmp_path)[f"{DEC}:guest_cancel:{GUEST.email}:s2"]
    cal, ev = _event(cancel)
    assert str(cal["METHOD"]) == "CANCEL" and str(ev["status"]) == "CANCELLED" and int(ev["SEQUENCE"]) == 2
    assert _attendees(ev) == [f"mailto:{GUEST.email}"]
    assert "no longer applies" in cancel.get_body(("plain",)).get_content()
    assert not [k for k in _mails(tmp_path) if k.startswith(f"{DEC}:cancel:members")]  # the members' meeting stands
    close(app)

    # back on the plan, then the meeting itself is cancelled: invited again (approved before), then cancelled
    app = make_app(tmp_path, moved)
    _day(app, day + timedelta(days=3))
    assert f"{DEC}:guest_invite:{GUEST.email}:s3" in _mails(tmp_path)
    close(app)
    app = make_app(tmp_path, _cfg(date=date(2023, 12, 5), cancelled=True))
    try:
        _day(app, day + timedelta(days=4))
        sent = _mails(tmp_path)
        gone = sent[f"{DEC}:guest_cancel:{GUEST.email}:s4"]
        assert "has been cancelled or postponed" in gone.get_body(("plain",)).get_content()
        assert _to(gone) == {GUEST.email}
        _day(app, day + timedelta(days=5))
        assert set(_mails(tmp_path)) == set(sent)  # nothing twice
    finally:
        close(app)


def test_a_rejected_guest_is_never_invited(tmp_path):
    cfg = _cfg()
    app = make_app(tmp_path, cfg)
    day = _invite_day(cfg)
    try:
        _day(app, day)
        (held,) = approval.pending(app)
        out = approval.reject(app, held.msg_key[:12])
        assert out.action == "rejected" and not approval.pending(app)
        _day(app, day + timedelta(days=1))
        _day(app, day + timedelta(days=3))
        assert not [m for m in sent_mails(tmp_path) if GUEST.email in _to(m)]
        assert sum(":guest_approval:" in k for k in _mails(tmp_path)) == 1
    finally:
        close(app)


def test_a_swedish_guest_reads_swedish(tmp_path):
    aug = "2023-08"
    cfg = config_with(CFG, [aug])
    app = make_app(tmp_path, cfg)
    m = next(x for x in make_app_meetings(cfg) if x.id == aug)
    day = due_dates(m, cfg.meetings.lead_days)["invite"]
    try:
        # the open meeting's date is the coordinator's: he set it (services/meeting_dates)
        set_meeting(app, aug, date(2023, 8, 7), "", "", "Kulturhuset, Stockholm", at(day - timedelta(days=30)))
        _day(app, day)
        (held,) = approval.pending(app)
        approval.approve(app, held.msg_key, at(day, 9))
        sh = next(g for g in CFG.network.guests if g.id == "sh_innovation")
        inv = _mails(tmp_path)[f"{aug}:guest_invite:{sh.email}:s0"]
        text = inv.get_body(("plain",)).get_content()
        assert str(inv["Subject"]).strip() == "Inbjudan: Key Cities Group, måndag 7 augusti [KCG-2023-08]"
        assert "vill gärna bjuda in dig" in text and "Vänliga hälsningar\r\nBjörn Bergman, Svenska Stadskärnor" in text
        assert "Bjud in alla" not in inv.as_string() and _to(inv) == {sh.email}
    finally:
        close(app)


def test_language_is_validated_and_only_for_guests(tmp_path):
    d = copy_config(tmp_path)
    net = d / "network.yaml"
    text = net.read_text(encoding="utf-8")
    net.write_text(text.replace("role: guest, language: en}", "role: guest, language: english}"), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(d, environ={})
    assert "network.yaml: guests[1].language" in str(e.value) and "fix:" in str(e.value)
    net.write_text(text.replace("email: pia@malmo.example.se}", "email: pia@malmo.example.se, language: en}"),
                   encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(d, environ={})
    assert "pia" in str(e.value) and "only for guests" in str(e.value)


def _scenario(day: date):
    """(config, step) in order: the invitation day, the approval, a move, the guest withdrawn."""
    ref = guests.hold_key(DEC, GUEST.email)

    def approve(app):
        try:
            approval.approve(app, ref, at(day, 10))
        except ManualProblem:  # the approval was recorded before the crash: the form says so
            assert guests.answer(app, DEC, GUEST.email) == "approved"

    moved = _cfg(date=date(2023, 12, 5))
    return [
        (_cfg(), lambda app: _day(app, day)),
        (_cfg(), approve),
        (moved, lambda app: _day(app, day + timedelta(days=1))),
        (_cfg(date=date(2023, 12, 5), guests=[]), lambda app: _day(app, day + timedelta(days=2))),
    ]


def _play(wd, plan, day) -> None:
    from support.helpers import Crash, crashing_app

    for cfg, step in _scenario(day):
        for _attempt in range(2):
            app = crashing_app(wd, cfg, plan)
            try:
                step(app)
                break
            except Crash:
                continue  # the rerun of the same step after the kill
            finally:
                close(app)


def test_a_crash_at_any_point_of_the_guest_flow_sends_nothing_twice_and_loses_nothing(tmp_path):
    from support.helpers import CrashPlan

    day = _invite_day(_cfg())
    ref = CrashPlan()
    _play(tmp_path / "ref", ref, day)
    expected = set(_mails(tmp_path / "ref"))
    assert {f"{DEC}:guest_approval:{COORD}:{GUEST.id}", f"{DEC}:guest_invite:{GUEST.email}:s0",
            f"{DEC}:guest_invite:{GUEST.email}:s1", f"{DEC}:guest_cancel:{GUEST.email}:s2"} <= expected
    points = [(m, n) for m in ("send", "send_invitation", "record_message", "put") for n in range(1, ref.calls[m] + 1)]
    assert len(points) > 20
    for i, (method, n) in enumerate(points):
        for when in ("before", "after"):
            plan = CrashPlan(method, n, when)
            wd = tmp_path / f"c{i}-{when}"
            _play(wd, plan, day)
            assert plan.fired, plan
            assert set(_mails(wd)) == expected, plan
            assert all(v == 1 for v in plan.writes.values()), (plan, [k for k, v in plan.writes.items() if v > 1])


def test_nothing_goes_to_a_guest_on_a_weekend(tmp_path):
    cfg = _cfg()
    app = make_app(tmp_path, cfg)
    day = _invite_day(cfg)
    _day(app, day)
    approval.approve(app, guests.hold_key(DEC, GUEST.email), at(day, 10))
    close(app)
    app = make_app(tmp_path, _cfg(date=date(2023, 12, 5)))
    try:
        saturday = day + timedelta(days=(5 - day.weekday()) % 7)
        assert saturday.weekday() == 5
        assert guests.sync(app, at(saturday, 7)) == []
        assert f"{DEC}:guest_invite:{GUEST.email}:s1" not in _mails(tmp_path)
        _day(app, saturday + timedelta(days=2))  # Monday: the members' update and the guest's
        sent = _mails(tmp_path)
        assert f"{DEC}:guest_invite:{GUEST.email}:s1" in sent and f"{DEC}:invite:members:s1" in sent
    finally:
        close(app)


def test_the_protocol_template_leaves_the_plan_comment_out(tmp_path):
    """The filled-in minutes are mailed to every member: the comment stays in the brief."""
    import io

    import docx

    from kcg_mail.services.daily import render_protocol

    app = make_app(tmp_path, _cfg())
    try:
        m = app.meeting(DEC)
        assert m.comment.startswith("Bjud in Centre for Cities")
        doc = docx.Document(io.BytesIO(render_protocol(app, m).data))
        text = "\n".join(c.text for t in doc.tables for row in t.rows for c in row.cells)
        text += "\n".join(p.text for p in doc.paragraphs)
        assert "Centre for Cities" in text  # the guest is named
        assert m.comment not in text and "Björn har kontakten" not in text
    finally:
        close(app)
