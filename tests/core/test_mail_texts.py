"""The texts people read: one voice (signed by the coordinator by name and
organisation), dates in words, the host's brief as a task list whose dates are
the days the cycle really acts on, and no meeting named as coming when it has
been held.

Every template is rendered through the real Composer (the sandboxed Jinja
environment) with the shipped config and plan, at a "now" as a run has it.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta

import pytest
from support.basics import at, copy_config, meeting, meetings, shipped_config

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core.cycle import MeetingState, decide
from kcg_mail.core.plan import add_working_days
from kcg_mail.services.compose import GUEST_KINDS, MAIL_KINDS, Composer, date_words, datum

CFG = shipped_config()
COORD = CFG.network.coordinator
SIGNATURE = f"{COORD.name}, {COORD.organisation}"
#: mail that goes to the coordinator alone: signed by the network's mailbox, not by himself
TO_COORDINATOR = {"alert", "alert_operator", "escalate", "guest_approval", "coordinator_receipt", "coordinator_question",
                  "date_question", "date_receipt"}
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
MACHINE_PHRASES = ("kcg-mail", "Det här behöver en människa", "Ändra gärna inte ämnesraden",
                   "du behöver inte göra något mer än det här", "Välkommen till Key Cities Groups",
                   ", värd, och", "mötesstöd", "Påminnelse: beslut att vara klart", "skickas automatiskt",
                   "sköts resten automatiskt",
                   ".yaml", "Kör flödet", "Prata med din reserv Björn Bergman och meddela Björn Bergman")


def composer(now: datetime | None) -> Composer:
    c = Composer(CFG)
    c.clock = lambda: now
    return c


def render(kind: str, now: datetime | None, **ctx):
    c = composer(now)
    base = c.sample_context()
    base.update(ctx)
    return c.render(kind, base)


# ------------------------------------------------------------------ dates in words


def test_dates_in_words_carry_the_year_only_when_it_is_not_this_year():
    assert date_words(date(2023, 2, 6), date(2023, 1, 20)) == "måndag 6 februari"
    assert date_words(date(2024, 1, 8), date(2023, 12, 1)) == "måndag 8 januari 2024"
    assert date_words(date(2023, 2, 6), None) == "måndag 6 februari 2023"  # the day of the run unknown: say it all
    today = date(2023, 2, 10)
    assert datum("2023-03-01", today) == "onsdag 1 mars"
    assert datum(date(2024, 3, 1), today) == "fredag 1 mars 2024"
    assert datum("fredag 17 november 2023", today) == "fredag 17 november"  # a date the service wrote out
    assert datum("fredag 17 november 2023", date(2024, 1, 2)) == "fredag 17 november 2023"
    for text in ("v 12", "vid behov", "", "2023-13-45"):
        assert datum(text, today) == text


@pytest.mark.parametrize("kind", MAIL_KINDS + GUEST_KINDS)
def test_every_mail_is_signed_and_has_no_iso_date_or_machine_phrase(kind):
    for m in meetings():
        c = composer(at(m.date - timedelta(days=10)))
        ctx = c.sample_context()
        ctx.update(meeting=c.meeting_ctx(m, meetings()), person=c.meeting_ctx(m)["host"],
                   guest_meeting=c.guest_meeting_ctx(m, "sv" if "_en" not in kind else "en"),
                   filename=f"{m.date.isoformat()} KCG Beslutsprotokoll {m.theme_label}.docx")
        r = c.render(kind, ctx)
        for where, text in (("subject", r.subject), ("text", r.text), ("html", html.unescape(r.html))):
            prose = text.replace(ctx["filename"], "")
            assert not ISO_DATE.search(prose), (kind, m.id, where, ISO_DATE.findall(prose))
            for phrase in MACHINE_PHRASES:
                assert phrase.lower() not in prose.lower(), (kind, m.id, where, phrase)
        tail = r.text.strip().splitlines()[-2:]
        if kind in TO_COORDINATOR:
            assert tail[-1] == CFG.network.mailbox.name, (kind, tail)
        elif kind.endswith("_en"):
            assert tail == [COORD.name, COORD.organisation], (kind, tail)
        else:
            assert tail[-1] == SIGNATURE, (kind, tail)
            assert "Key Cities Group" not in tail[-1] and "KCG" not in tail[-1]  # a person signs, not the network
        assert "kcg-mail" not in " ".join(tail).lower()


def test_a_meeting_of_next_year_carries_its_year_and_this_years_do_not():
    dec = meeting("2023-12")
    c = composer(at(date(2023, 11, 10)))
    ctx = c.meeting_ctx(dec, meetings())
    assert ctx["date_words"] == "måndag 4 december"
    assert ctx["next"]["date_words"] == "tisdag 2 januari 2024"  # January's meeting: the year is needed


# ------------------------------------------------------------------ the host's brief


def cycle_days(m, horizon: int = 60) -> dict[str, date]:
    """The days the real cycle makes each step due (settling each as the daily run does)."""
    settled: set[str] = set()
    sent_on: dict[str, date] = {}
    out: dict[str, date] = {}
    for i in range(-horizon, 20):
        day = m.date + timedelta(days=i)
        dec = decide([m], {m.id: MeetingState(frozenset(settled), sent_on=dict(sent_on))}, at(day),
                     CFG.meetings.lead_days, {m.id: ()})
        for d in dec.due:
            out.setdefault(d.action, day)
            settled.add(d.action)
            sent_on[d.action] = day
    return out


@pytest.mark.parametrize("mid", ["2023-02", "2023-05", "2023-11", "2023-12"])
def test_the_brief_promises_the_template_on_the_day_it_comes_and_names_the_protocol_due_date(mid):
    m = meeting(mid)
    days = cycle_days(m)
    r = render("brief_host", at(days["brief_host"]), meeting=composer(at(days["brief_host"])).meeting_ctx(m, meetings()))
    today = days["brief_host"]
    promised = date_words(days["send_template"], today)
    assert f"{promised[0].upper()}{promised[1:]} får du en påminnelse med protokollmallen" in r.text, r.text
    due = add_working_days(m.date, CFG.meetings.lead_days.protocol_due)
    assert f"skicka det senast {date_words(due, today)}." in r.text
    assert due < days["chase_host"]  # the chase comes only after the day the minutes were due
    # a task list: what the host does, what the network does
    assert "Det här gör du:\n1. Öppna mötet och hälsa välkommen." in r.text
    assert f"2. Inled temat ”{m.theme}”" in r.text and "Det här gör vi:\n- Inbjudan går ut" in r.text
    assert "du behöver inte göra något mer" not in r.text and "dagen före mötet" not in r.text
    # and the template mail itself names the same day for the minutes
    t = render("send_template", at(days["send_template"]),
               meeting=composer(at(days["send_template"])).meeting_ctx(m, meetings()))
    assert f"senast {date_words(due, days['send_template'])}" in t.text and "Beslutsprotokollet är bifogat" in t.text


def test_a_host_gets_the_brief_one_mail_with_reminder_and_template_and_a_chase_only_without_minutes():
    m = meeting("2023-02")
    days = cycle_days(m)
    host_mails = [a for a in days if a in ("brief_host", "send_template", "chase_host")]
    assert host_mails == ["brief_host", "send_template", "chase_host"]
    assert "remind_host" not in days
    assert (days["send_template"] - days["brief_host"]).days > 7  # not two host mails days apart


def test_the_brief_says_the_backup_once_when_the_backup_is_the_coordinator():
    dec = meeting("2023-12")
    assert dec.backup_host is not None and dec.backup_host.email == COORD.email
    c = composer(at(date(2023, 11, 13)))
    r = c.render("brief_host", {**c.sample_context(), "meeting": c.meeting_ctx(dec, meetings())})
    line = next(x for x in r.text.splitlines() if x.startswith("Får du förhinder?"))
    assert line == f"Får du förhinder? Hör av dig till mig ({COORD.email}) så snart du kan; jag är reserv för mötet."
    assert "Prata med din reserv" not in r.text
    jan = meeting("2023-01")  # a backup host who is a member
    r = c.render("brief_host", {**c.sample_context(), "meeting": c.meeting_ctx(jan, meetings())})
    assert f"Hör av dig till din reserv {jan.backup_host.name} och till mig ({COORD.email})." in r.text


def test_the_template_sent_after_the_meeting_does_not_talk_of_it_as_ahead():
    m = meeting("2023-02")
    c = composer(at(m.date + timedelta(days=2)))
    r = c.render("send_template", {**c.sample_context(), "meeting": c.meeting_ctx(m, meetings())})
    assert r.subject.startswith("Protokollmall för mötet måndag 6 februari")
    assert "Lycka till" not in r.text and "Tack för att du var värd" in r.text


# ------------------------------------------------------------------ meetings ahead only


def test_the_next_meeting_is_named_only_while_it_lies_ahead():
    feb, mar, apr = meeting("2023-02"), meeting("2023-03"), meeting("2023-04")
    c = composer(at(feb.date + timedelta(days=3)))
    r = c.render("distribute", {**c.sample_context(), "meeting": c.meeting_ctx(feb, meetings())})
    assert "Nästa möte är måndag 6 mars, med David Nilsson som värd" in r.text
    # minutes of February distributed late, after March's meeting: April is the next one ahead
    c = composer(mar.end + timedelta(days=1))
    r = c.render("distribute", {**c.sample_context(), "meeting": c.meeting_ctx(feb, meetings())})
    assert "6 mars" not in r.text and f"Nästa möte är {date_words(apr.date, mar.date)}" in r.text
    # after the last meeting of the plans: no next meeting at all
    last = max(meetings(), key=lambda x: x.start)
    c = composer(last.end + timedelta(days=1))
    r = c.render("distribute", {**c.sample_context(), "meeting": c.meeting_ctx(feb, meetings())})
    assert "Nästa möte" not in r.text and "Nästa möte" not in r.html


def test_a_status_request_names_its_meeting_only_while_it_lies_ahead():
    sep = meeting("2023-09")
    before = composer(at(sep.date - timedelta(days=14)))
    r = before.render("project_status_request", {**before.sample_context(), "meeting": before.meeting_ctx(sep)})
    assert "inför mötet måndag 4 september" in r.subject and "Inför mötet måndag 4 september" in r.text
    after = composer(sep.end + timedelta(hours=1))
    r = after.render("project_status_request", {**after.sample_context(), "meeting": after.meeting_ctx(sep)})
    assert "4 september" not in r.subject + r.text + r.html and "nästa mötes protokollmall" in r.text


def test_the_welcome_lists_only_meetings_ahead():
    c = composer(at(date(2023, 6, 12)))
    ms = [c.meeting_ctx(m) for m in meetings()]
    r = c.render("welcome", {**c.sample_context(), "meetings": ms})
    assert "måndag 5 juni" not in r.text and "måndag 7 augusti: Tema 6" in r.text


def test_the_distribution_says_where_the_minutes_are_kept():
    c = composer(at(date(2023, 2, 8)))
    feb = meeting("2023-02")
    ctx = {**c.sample_context(), "meeting": c.meeting_ctx(feb, meetings()), "folder": "KCG / Protokoll / 2023",
           "link": "https://www.dropbox.com/s/abc/x.docx", "attached": False, "version": 1}
    r = c.render("distribute", ctx)
    assert "Det sparas i nätverkets Dropbox, i mappen KCG / Protokoll / 2023: https://www.dropbox.com/s/abc/x.docx" \
        in r.text
    assert 'href="https://www.dropbox.com/s/abc/x.docx"' in r.html
    r = c.render("distribute", {**ctx, "link": None, "attached": True})
    assert "Protokollet är bifogat." in r.text and "i mappen KCG / Protokoll / 2023." in r.text


# ------------------------------------------------------------------ organisations' names


def test_organisations_are_shown_as_they_write_their_names():
    orgs = {p.id: p.organisation for p in CFG.network.members}
    assert orgs["david"] == "Norrköping City"
    assert not [o for o in orgs.values() if o.isupper() or "Nkpg" in o]


# ------------------------------------------------------------------ the settings


def _set_lead_days(cfgdir, text: str) -> None:
    f = cfgdir / "meetings.yaml"
    src = f.read_text(encoding="utf-8")
    new = re.sub(r"lead_days:\n(?:  .*\n)+", "lead_days:\n" + text, src)
    assert new != src
    f.write_text(new, encoding="utf-8")


def test_protocol_due_is_a_setting_that_must_come_before_the_chase(tmp_path):
    assert CFG.meetings.lead_days.protocol_due == 2 and CFG.meetings.lead_days.send_template == 2
    cfgdir = copy_config(tmp_path)
    _set_lead_days(cfgdir, "  protocol_due: 4\n  chase_host: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfgdir, environ={})
    assert "meetings.yaml" in str(exc.value) and "protocol_due (4) must be before chase_host (3)" in str(exc.value)
    _set_lead_days(cfgdir, "  protocol_due: 1\n")
    assert load_config(cfgdir, environ={}).meetings.lead_days.protocol_due == 1


def test_a_config_that_still_sets_a_separate_reminder_is_told_what_changed(tmp_path):
    cfgdir = copy_config(tmp_path)
    _set_lead_days(cfgdir, "  remind_host: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfgdir, environ={})
    msg = str(exc.value)
    assert "meetings.yaml" in msg and "lead_days" in msg and "remove remind_host" in msg
