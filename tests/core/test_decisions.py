"""Open decisions and project groups: the pure rules (kcg_mail.core.decisions,
kcg_mail.core.projects, kcg_mail.core.feed) and the projects.yaml config."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from support.helpers import copy_config, meetings, shipped_config

from kcg_mail.config_loader import ConfigError, load_config
from kcg_mail.core import decisions as rules
from kcg_mail.core.decisions import DONE, OPEN, STRUCK, Decision, Mark
from kcg_mail.core.feed import FeedEvent, update
from kcg_mail.core.projects import status_requests_due, status_text
from kcg_mail.core.projects_model import ProjectGroup

pytestmark = pytest.mark.core

CFG = shipped_config()
PEOPLE = CFG.network.members
FEB = date(2023, 2, 6)


def dec(mid: str, i: int, owner: str, due: str, text: str = "Gör något", state=OPEN, meeting_date=FEB) -> Decision:
    return rules.decisions_of(mid, meeting_date, [{"decision": text, "owner": owner, "due": due}] * i,
                              {f"{mid}/{i}": (state, "")})[i - 1]


@pytest.mark.parametrize("text,expected", [
    ("2023-02-27", date(2023, 2, 27)), ("27/2", date(2023, 2, 27)), ("27 februari", date(2023, 2, 27)),
    ("27 feb 2024", date(2024, 2, 27)), ("3/1", date(2024, 1, 3)), ("mars", date(2023, 3, 31)),
    ("till januari", date(2024, 1, 31)), ("löpande", None), ("", None), ("2023-02-30", None),
])
def test_due_dates_as_hosts_write_them(text, expected):
    assert rules.parse_due(text, FEB) == expected


@pytest.mark.parametrize("text,expected", [
    ("klar", DONE), ("Klart!", DONE), ("X", DONE), ("fortsätter", OPEN), ("Pågår, nästan klart", OPEN),
    ("struken", STRUCK), ("Stryks", STRUCK), ("", None), ("vet inte", None),
])
def test_marks(text, expected):
    assert rules.parse_mark(text) == expected


def test_owners_resolve_names_first_names_cities_and_everyone():
    found, unknown = rules.owners("Lisa Thörn, Pia och Göteborg / Okänd Person", PEOPLE)
    assert [p.id for p in found] == ["lisa", "pia", "lena"]
    assert unknown == ["Okänd Person"]
    assert rules.owners("Alla", PEOPLE) == ([], [])
    assert rules.is_everyone("alla medlemmar") and not rules.is_everyone("Alla utom Lisa")


def test_open_before_lists_earlier_open_decisions_but_not_group_proposals():
    dates = {"2023-02": FEB, "2023-03": date(2023, 3, 6)}
    ds = [dec("2023-02", 1, "Lisa", "2023-03-01"), dec("2023-02", 2, "Pia", "", state=DONE),
          dec("2023-02", 3, "Lisa", "", text="Projektgrupp: Trygghet – kartlägga"),
          dec("2023-03", 1, "Pia", "", meeting_date=date(2023, 3, 6))]
    assert [d.ref for d in rules.open_before(ds, dates, date(2023, 3, 6))] == ["2023-02/1"]
    assert [d.ref for d in rules.open_before(ds, dates, date(2023, 4, 3))] == ["2023-02/1", "2023-03/1"]


def test_marks_close_strike_or_carry_and_never_touch_the_meetings_own_decisions():
    ds = [dec("2023-02", 1, "Lisa", ""), dec("2023-02", 2, "Alla", ""), dec("2023-02", 3, "Pia", "")]
    changed = rules.apply_marks(ds, [Mark("2023-02/1", DONE), Mark("2023-02/2", None), Mark("2023-02/3", STRUCK),
                                     Mark("2099-01/1", DONE)], "2023-03")
    assert {(d.ref, d.state, d.settled_in) for d in changed} == {("2023-02/1", DONE, "2023-03"),
                                                                ("2023-02/3", STRUCK, "2023-03")}
    assert rules.apply_marks(ds, [Mark("2023-02/1", DONE)], "2023-02") == []


def test_reminder_only_for_members_and_only_when_due_before_the_next_meeting():
    mdates = [m.date for m in meetings() if not m.tentative]
    before = dec("2023-02", 1, "Lisa Thörn", "2023-02-27")  # March meeting is 2023-03-06
    after = dec("2023-02", 2, "Pia Sandin", "2023-03-08")  # reported back at the March meeting
    everyone = dec("2023-02", 3, "Alla", "2023-02-27")
    send_on = rules.working_days_before(date(2023, 2, 27), rules.REMIND_WORKING_DAYS)
    assert send_on == date(2023, 2, 22)
    assert rules.reminders_due([before, after, everyone], mdates, PEOPLE, date(2023, 2, 21)) == []
    due = rules.reminders_due([before, after, everyone], mdates, PEOPLE, send_on)
    assert [(r.decision.ref, r.person.id) for r in due] == [("2023-02/1", "lisa")]
    assert rules.reminders_due([before], mdates, PEOPLE, date(2023, 2, 28)) == []
    done = dec("2023-02", 1, "Lisa Thörn", "2023-02-27", state=DONE)
    assert rules.reminders_due([done], mdates, PEOPLE, send_on) == []


def test_working_days_skip_weekends_and_holidays():
    # Easter 2023: Good Friday 7 April, Easter Monday 10 April
    assert rules.working_days_before(date(2023, 4, 12), 3) == date(2023, 4, 5)


def test_project_proposal_from_a_decision():
    d = dec("2023-04", 3, "Lisa Thörn, Pia Sandin, Hanna", "löpande",
            text="Projektgrupp: Trygghet i stadskärnan – gemensam kartläggning")
    p = rules.project_proposal(d, PEOPLE)
    assert (p.name, p.purpose, p.lead, p.members) == ("Trygghet i stadskärnan", "gemensam kartläggning", "lisa",
                                                      ("lisa", "pia", "hanna"))
    assert rules.project_proposal(dec("2023-04", 1, "Lisa", "", text="Projektet fortsätter"), PEOPLE) is None
    assert rules.slug(p.name) == "trygghet-i-stadskarnan"


def test_status_requests_before_each_confirmed_meeting_for_groups_started_before_it():
    g = ProjectGroup(name="Trygghet", lead="lisa", members=["lisa", "pia"], start=date(2023, 4, 3))
    ms = meetings()
    may = next(m for m in ms if m.id == "2023-05")
    first = may.date - timedelta(days=10)
    assert status_requests_due([g], ms, first - timedelta(days=1), 10) == []  # sent from ten days before, not earlier
    due = status_requests_due([g], ms, first, 10)
    assert [(m.id, group.name) for group, m in due] == [("2023-05", "Trygghet")]
    assert [m.id for _, m in status_requests_due([g], ms, may.date - timedelta(days=2), 10)] == ["2023-05"]
    assert status_requests_due([g], ms, may.date - timedelta(days=1), 10) == []
    assert status_requests_due([g], ms, date(2023, 3, 27), 10) == []  # the group did not exist yet
    oct_ = next(m for m in ms if m.id == "2023-10")
    assert oct_.tentative and all(m.id != "2023-10" for d in range(1, 30)
                                  for _, m in status_requests_due([g], ms, date(2023, 9, d), 10))


def test_status_text_drops_greeting_quote_and_signoff():
    body = ("Hej!\n\nEnkäten är ute.\nSvar väntas i mars.\n\nHälsningar\nLisa\n\n"
            "Den 2023-08-25 skrev KCG <kcg@example.se>:\n> Hur går det?\n")
    assert status_text(body) == "Enkäten är ute. Svar väntas i mars."
    assert len(status_text("x" * 2000)) == 600


def test_projects_yaml_names_file_field_and_fix(tmp_path):
    d = copy_config(tmp_path)
    (d / "projects.yaml").write_text(
        "groups:\n  - {name: Trygghet, lead: nobody, members: [lisa, ghost], start: 2023-04-03}\n"
        "  - {name: Handel, lead: pia, start: not-a-date}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ={})
    text = str(exc.value)
    assert "projects.yaml: groups[1].start" in text and "YYYY-MM-DD" in text
    (d / "projects.yaml").write_text(
        "groups:\n  - {name: Trygghet, lead: nobody, members: [lisa, ghost], start: 2023-04-03}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(d, environ={})
    probs = exc.value.problems
    assert any("groups[0] (Trygghet).lead: 'nobody' is not a member id" in p and "fix:" in p for p in probs)
    assert any("members: 'ghost'" in p for p in probs)
    (d / "projects.yaml").write_text(
        "request_days: 7\ngroups:\n  - {name: Trygghet, lead: lisa, members: [lisa, pia], start: 2023-04-03}\n",
        encoding="utf-8")
    cfg = load_config(d, environ={})
    assert cfg.projects.request_days == 7 and cfg.projects.groups[0].everyone == ["lisa", "pia"]
    assert shipped_config().projects.groups == []


# ------------------------------------------------------------------ calendar feed

NOW = datetime(2023, 1, 2, 6, tzinfo=UTC)


def ev(mid: str, **kw) -> FeedEvent:
    base = dict(meeting_id=mid, uid=f"kcg-{mid}@x.se", start="2023-02-06T09:00:00+01:00",
                end="2023-02-06T10:00:00+01:00", summary="Möte", description="Värd: A", location="Teams",
                status="CONFIRMED")
    base.update(kw)
    return FeedEvent(**base)


def test_feed_sequence_rises_only_on_change_and_removed_meetings_stay_cancelled():
    first, changed = update([ev("a"), ev("b")], {}, {"a": 1}, NOW)
    assert changed == ["a", "b"] and first["a"].sequence == 1 and first["b"].sequence == 0
    same, changed = update([ev("a"), ev("b")], first, {"a": 1}, datetime(2023, 1, 3, tzinfo=UTC))
    assert changed == [] and same == first
    later = datetime(2023, 1, 4, tzinfo=UTC)
    moved, changed = update([ev("a", start="2023-02-13T09:00:00+01:00")], first, {"a": 1}, later)
    assert changed == ["a", "b"]
    assert (moved["a"].sequence, moved["a"].stamp) == (2, later.isoformat())
    assert (moved["b"].status, moved["b"].sequence) == ("CANCELLED", 1)
    again, changed = update([ev("a", start="2023-02-13T09:00:00+01:00")], moved, {"a": 5}, later)
    assert changed == [] and again["b"].status == "CANCELLED"


def test_a_status_that_names_a_meeting_is_flagged_once_that_meeting_no_longer_lies_ahead():
    from kcg_mail.core.projects import stale_meeting_note

    ms = meetings()  # 2023: October is the tentative study trip, no confirmed meeting; November 6 and December 4 are
    line = "Enkäten är ute; rapport på mötet i oktober."
    # read for the September meeting: October still lies ahead, but its meeting (the study trip) is not confirmed
    assert stale_meeting_note(line, date(2023, 8, 20), ms, date(2023, 9, 4)) == "mötet i oktober har ännu inget bekräftat datum"
    # a month of the plan without any meeting
    assert stale_meeting_note("Rapport på mötet i juli.", date(2023, 6, 1), ms, date(2023, 6, 5)) == \
        "det finns inget möte i juli i årsplanen"
    # read for December: October has passed without a meeting
    assert stale_meeting_note(line, date(2023, 8, 20), ms, date(2023, 12, 4)) == \
        "inget möte hölls i oktober; be gruppen om en ny lägesrapport"
    # a named meeting that was held, and one that still lies ahead
    assert stale_meeting_note("Vi redovisar på mötet i november.", date(2023, 9, 1), ms, date(2023, 12, 4)) == \
        "mötet i november har redan hållits; be gruppen om en ny lägesrapport"
    assert stale_meeting_note("Vi redovisar på mötet i december.", date(2023, 9, 1), ms, date(2023, 12, 4)) is None
    # a month that is not a meeting, and a month name in the next year
    assert stale_meeting_note("Sammanställning i mars.", date(2023, 1, 27), ms, date(2023, 6, 5)) is None
    assert stale_meeting_note("Klart till träffen i februari.", date(2023, 11, 20), ms, date(2023, 12, 4)) is None
