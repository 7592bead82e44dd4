"""The planning round's pure core: ballots, needs, tally, groups; the draft plan."""

from __future__ import annotations

from datetime import date
from itertools import combinations

import pytest
import yaml

from kcg_mail.config_loader import load_config
from kcg_mail.core import round as pl
from kcg_mail.core.config_model import Plan, PlannedMeeting
from kcg_mail.core.round_draft import DraftPlan, draft_plan

pytestmark = pytest.mark.core


def hosting_problems(plans: list[Plan], people: list[str], from_month: str = "") -> list[str]:
    """Problems with the fairness rule in a sequence of plans: a member who
    hosts (in ``from_month`` or later) again before every other of ``people``
    has hosted once since."""
    seq = [pm.host for pm in sorted((m for p in plans for m in p.meetings if not m.cancelled), key=lambda m: m.month)]
    problems = []
    months = sorted(m.month for p in plans for m in p.meetings if not m.cancelled)
    for i, h in enumerate(seq):
        if months[i] < from_month:
            continue
        prev = [j for j in range(i) if seq[j] == h]
        if prev:
            since = set(seq[prev[-1] + 1:i])
            missing = [p for p in people if p != h and p not in since]
            if missing:
                problems.append(f"{h} hosts meeting {i + 1} again before {', '.join(missing)} hosted once since")
    return problems


def as_plan(d: DraftPlan) -> Plan:
    return Plan(year=d.year, note=d.note, months_without_meeting=list(d.months_without_meeting),
                meetings=[PlannedMeeting.model_validate(m) for m in d.as_dict()["meetings"]])

AREAS = [pl.Area(name="Omvärldsbevakning"), pl.Area(name="Erfarenhetsutbyte & kompetensutveckling"),
         pl.Area(name="Gemensamma frågor & projekt"), pl.Area(name="Kollegialt stöd")]
TOPICS = [pl.Topic(i, AREAS[(i - 1) // 6].name, f"Ämne {i}") for i in range(1, 25)]


def votes_of(text: str) -> pl.BallotCheck:
    return pl.validate_ballot(pl.parse_ballot_text(text), TOPICS, 10)


@pytest.mark.parametrize("text", [
    "3: 4, 12: 3, 20: 3",
    "3 4\n12 3\n20 3",
    "#3 x4\n#12 x3\n#20 x3",
    "Hej!\n\nMina röster:\n3: 4 röster\n12=3; 20 x 3\n\nHälsningar\nPia\n070-123 45 67",
    "3:4,12:3,20:3",
])
def test_ballot_forms_people_write(text):
    check = votes_of(text)
    assert check.ok, check.problems
    assert check.votes == {3: 4, 12: 3, 20: 3}


def test_quoted_list_and_signature_do_not_count():
    text = "1: 10\n\n-- \n2: 5\n"
    assert votes_of(text).votes == {1: 10}
    quoted = "5 2\n\nDen 1 dec 2023 skrev KCG:\n> 1 Studieresa\n7: 3\n"
    assert votes_of(quoted).votes == {5: 2}
    assert votes_of("> 3: 4\n4: 1").votes == {4: 1}


@pytest.mark.parametrize("text, fragment", [
    ("3: 4, 99: 3", "Nummer 99 finns inte"),
    ("3: 2,5", "som ett helt tal"),
    ("3: 6, 4: 5", "Vi fick 11 röster från dig, men var och en har tio."),
    ("3: 4, 3: 2", "mer än en gång"),
    ("Hej, jag röstar på studieresan!", "inga röster"),
    ("3: 0", "minst en röst"),
])
def test_invalid_ballots_say_what_is_wrong(text, fragment):
    check = votes_of(text)
    assert not check.ok
    assert any(fragment in p for p in check.problems), check.problems


def test_ignored_lines_are_reported():
    ballot = pl.parse_ballot_text("3: 4\nRing mig på 08-123 45 67 om något är oklart")
    assert [(line.number, line.votes) for line in ballot.lines] == [(3, "4")]
    assert ballot.ignored == ("Ring mig på 08-123 45 67 om något är oklart",) and ballot.unclear == ()


def test_needs_text_reads_areas_and_topics():
    text = ("Hej!\nHär är mina förslag.\n\nOmvärldsbevakning:\n- Studieresa\n- Framtidens stadskärna\n\n"
            "2. Erfarenhetsutbyte\n* Trygghet\n\nKollegialt stöd\nFaddergrupper\n\nHälsningar\nLisa\n"
            "> Gemensamma frågor & projekt\n> - citerat\n")
    needs = pl.parse_needs_text(text, AREAS)
    assert needs.topics == {
        "Omvärldsbevakning": ("Studieresa", "Framtidens stadskärna"),
        "Erfarenhetsutbyte & kompetensutveckling": ("Trygghet",),
        "Kollegialt stöd": ("Faddergrupper",),
    }
    assert pl.parse_needs_text("Hej! Inga förslag i år.", AREAS).count == 0


def test_merge_dedupes_and_carries_over():
    needs = {"pia": pl.Needs({"Omvärldsbevakning": ("Studieresa", "Finansiering")}),
             "lisa": pl.Needs({"Omvärldsbevakning": ("studieresa.",), "Kollegialt stöd": ("Fadder",)})}
    cands = pl.merge_candidates(AREAS, needs, {"Omvärldsbevakning": ["Finansiering", "Kairos"]})
    omv = [c for c in cands if c.area == "Omvärldsbevakning"]
    assert [(c.text, c.proposers, c.carried_over) for c in omv] == [
        ("studieresa.", ("lisa", "pia"), False),
        ("Finansiering", ("pia",), False), ("Kairos", (), True)]
    # the result does not depend on the order replies arrived in
    assert pl.merge_candidates(AREAS, dict(reversed(list(needs.items()))), {}) == pl.merge_candidates(AREAS, needs, {})


def test_tally_sorts_marks_focus_and_reports_ties():
    ballots = {"a": {1: 5, 2: 3, 3: 2}, "b": {2: 4, 3: 4, 7: 2}, "c": {4: 7, 8: 3}}
    t = pl.tally(TOPICS, AREAS, ballots, 2, late=["d"])
    omv = t.area_rows("Omvärldsbevakning")
    assert [(r.number, r.votes) for r in omv[:4]] == [(2, 7), (4, 7), (3, 6), (1, 5)]
    assert [r.focus for r in omv[:3]] == [True, True, False]
    assert sum(r.votes for r in t.rows) == sum(sum(v.values()) for v in ballots.values())
    erf = t.area_rows("Erfarenhetsutbyte & kompetensutveckling")
    assert [(r.number, r.votes, r.focus) for r in erf[:3]] == [(8, 3, True), (7, 2, True), (9, 0, False)]
    assert t.ties == () and t.late == ("d",) and t.ballots == 3
    tied = pl.tally(TOPICS, AREAS, {"a": {1: 2, 2: 2, 3: 2}}, 2)
    assert len(tied.ties) == 1 and "1 Ämne 1, 2 Ämne 2, 3 Ämne 3" in tied.ties[0]
    # the votes decide, never the list's order: none of the tied topics is marked, the coordinator decides
    assert [r.number for r in tied.rows if r.focus] == []
    above = pl.tally(TOPICS, AREAS, {"a": {1: 5, 2: 2, 3: 2}}, 2)
    assert [r.number for r in above.rows if r.focus] == [1] and "2 Ämne 2, 3 Ämne 3" in above.ties[0]


def test_a_focus_topic_needs_a_minimum_share_of_all_votes():
    # one area has many votes, another a single one: one vote is no focus area at 5 %
    ballots = {"a": {1: 6, 2: 5, 4: 7}, "b": {2: 1, 1: 3, 8: 1}, "c": {8: 0, 7: 0, 4: 10}}
    t = pl.tally(TOPICS, AREAS, ballots, 3, min_share=0.05)  # 33 votes: at least 2
    erf = {r.number: r.focus for r in t.area_rows("Erfarenhetsutbyte & kompetensutveckling")}
    assert erf[8] is False and not any(erf.values())
    omv = {r.number: (r.votes, r.focus) for r in t.area_rows("Omvärldsbevakning")}
    assert omv[4] == (17, True) and omv[1] == (9, True) and omv[2] == (6, True)
    assert pl.tally(TOPICS, AREAS, ballots, 3).area_rows("Erfarenhetsutbyte & kompetensutveckling")[0].focus


def test_workshop_groups_balanced_coordinator_placed_and_mixed():
    seed_groups = [["pia", "david", "isabel"], ["lisa", "daniel", "armina", "hanna"],
                   ["maria", "lena", "monica", "bjorn"]]
    people = ["aljosa", "armina", "bjorn", "daniel", "david", "hanna", "isabel", "jessica", "lena", "lisa",
              "linda", "maria", "monica", "pia"]
    g = pl.workshop_groups(people, "bjorn", 3, seed_groups)
    sizes = sorted(len(x) for x in g.groups)
    assert sizes == [4, 5, 5]
    assert sorted(p for x in g.groups for p in x) == sorted(people)
    assert any("bjorn" in x for x in g.groups)
    before = {frozenset(p) for x in seed_groups for p in combinations(x, 2)}
    now = {frozenset(p) for x in g.groups for p in combinations(x, 2)}
    assert len(before & now) == g.repeated_pairs
    # 3 groups of old size 3-4 can be fully mixed into 3 new groups when at most 3 share a group
    assert g.repeated_pairs <= 3
    # a naive split in roster order repeats more
    naive = [people[0:5], people[5:10], people[10:14]]
    assert g.repeated_pairs < len({frozenset(p) for x in naive for p in combinations(x, 2)} & before)
    small = pl.workshop_groups(["a", "b"], None, 3)
    assert sorted(len(x) for x in small.groups) == [1, 1]


def test_round_dates_must_be_in_order():
    with pytest.raises(ValueError, match="needs_deadline"):
        pl.Round(start=date(2023, 11, 6), needs_reminder=date(2023, 11, 13), needs_deadline=date(2023, 11, 10),
                 votes_reminder=date(2023, 12, 4), votes_deadline=date(2023, 12, 8))


# ------------------------------------------------------------------ draft plan


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_draft_follows_calendar_rules(cfg):
    d = draft_plan(2024, cfg.network.members, cfg.plans)
    plan = as_plan(d)
    months = [m.month for m in plan.meetings]
    assert "2024-01" not in months  # plan-2023 already has January 2024
    assert "2024-07" not in months and plan.months_without_meeting == ["2024-07"]
    assert months[-1] == "2025-01" and plan.meetings[-1].kind == "physical"
    trip = [m for m in plan.meetings if m.kind == "study_trip"]
    # the trip keeps its month; last year's proposed week ("Förslag v 39") is not copied: the coordinator sets the date
    assert len(trip) == 1 and trip[0].tentative and trip[0].date is None and trip[0].month == "2024-10"
    assert not trip[0].proposed and "v 39" not in trip[0].comment
    aug = next(m for m in plan.meetings if m.month == "2024-08")
    assert aug.kind == "all_members"
    # April 2024: first Monday is Easter Monday, moved to Tuesday
    assert "2 april 2024" in d.to_yaml() and "2024-04-01 är helgdag" in d.to_yaml()


def test_draft_rotates_hosts_fairly(cfg):
    members = [p.id for p in cfg.network.members if p.role != "coordinator"]
    plans = list(cfg.plans)
    for year in (2024, 2025, 2026, 2027):
        d = as_plan(draft_plan(year, cfg.network.members, plans))
        for m in d.meetings:
            assert m.backup_host and m.backup_host != m.host
        plans.append(d)
        assert hosting_problems(plans, members, f"{year}-01") == []
    hosts_2024 = [m.host for m in plans[1].meetings]
    # the first hosts of 2024 are the members who did not host in 2023
    never = [p for p in members if p not in {m.host for m in cfg.plans[0].meetings}]
    assert hosts_2024[:len(never)] == never
    coord = cfg.network.coordinator.id
    for p in plans[1:]:
        assert all(m.host != coord for m in p.meetings)
        assert {m.month[5:] for m in p.meetings if m.backup_host == coord} <= {"12"}
    assert any(m.backup_host == coord for m in plans[1].meetings if m.month.endswith("-12"))


def test_draft_themes_from_focus_topics(cfg):
    d = draft_plan(2024, cfg.network.members, cfg.plans, themes=["Trygghet", "Studieresa", "Omsättningsstatistik"])
    plan = as_plan(d)
    themed = [(m.theme_no, m.theme) for m in plan.meetings if m.theme_no]
    assert themed[0] == (1, "Trygghet") and themed[1] == (2, "Omsättningsstatistik")
    assert next(m for m in plan.meetings if m.kind == "study_trip").theme == "Studieresa"
    assert themed[2][1] == "Tema 3 – att bestämma"


def test_draft_yaml_loads_as_plan_and_passes_check(cfg, tmp_path):
    import shutil

    d = draft_plan(2024, cfg.network.members, cfg.plans, themes=["Trygghet"])
    data = yaml.safe_load(d.to_yaml())
    assert Plan.model_validate(data) == as_plan(d)
    conf = tmp_path / "config"
    shutil.copytree(cfg.directory, conf)
    (conf / "plan-2024.yaml").write_text(d.to_yaml(), encoding="utf-8")
    loaded = load_config(conf)
    assert [p.year for p in loaded.plans] == [2023, 2024]
