"""Next year's plan from a table, pure: cells as people write them, the checks
``kcg check`` makes, in Swedish naming the row; the workshop groups' areas."""

from __future__ import annotations

from datetime import date

import pytest
from support.basics import shipped_config

from kcg_mail.core import plan_adoption as pa

pytestmark = pytest.mark.core

CFG = shipped_config()
MEMBERS = CFG.network.members
LABELS = CFG.meetings.kind_labels


def row(n: int, month: str, host: str = "Maria Martinsson", *, when: str = "", theme: str = "Tema 1: Trygghet",
        backup: str = "", kind: str = "Månadsmöte (digitalt)") -> pa.PlanRow:
    return pa.PlanRow(n, month, when, theme, host, backup, kind)


@pytest.mark.parametrize(("text", "month"), [
    ("Februari 2024", "2024-02"), ("februari", "2024-02"), ("feb", "2024-02"), ("2024-03", "2024-03"),
    ("Januari 2025", "2025-01"), ("Mars, 2024", "2024-03"), ("Smarch", None), ("ma", None), ("2024-13", None),
    ("", None), ("februari nästa år", None),
])
def test_months_as_people_write_them(text, month):
    assert pa.parse_month(text, 2024) == month


@pytest.mark.parametrize(("text", "expected"), [
    ("måndag 5 februari 2024", date(2024, 2, 5)), ("5 februari", date(2024, 2, 5)), ("2024-02-12", date(2024, 2, 12)),
    ("", None), ("bestäms av samordnaren", None), ("Preliminärt v 39", None),
])
def test_dates_as_people_write_them(text, expected):
    assert pa.parse_date(text, "2024-02") == expected


def test_a_date_that_is_not_one_is_a_problem():
    assert "finns inte i kalendern" in str(pa.parse_date("31 februari", "2024-02"))
    assert "känns inte igen" in str(pa.parse_date("snart", "2024-02"))


@pytest.mark.parametrize(("text", "pid"), [
    ("Maria Martinsson", "maria"), ("maria", "maria"), ("Maria", "maria"), ("Maria Martinsson, Västerås City", "maria"),
    ("Kalle Anka", None), ("", None),
])
def test_people_by_name_first_name_or_id(text, pid):
    assert pa.person_id(text, MEMBERS) == pid


@pytest.mark.parametrize(("text", "kind"), [
    ("Månadsmöte (digitalt)", "digital"), ("Fysiskt möte", "physical"), ("möte för alla", "all_members"),
    ("studieresa", "study_trip"), ("middag", None),
])
def test_kinds_by_label_or_word(text, kind):
    assert pa.parse_kind(text, LABELS) == kind


def test_a_good_table_becomes_a_plan():
    rows = [row(1, "Februari 2024", when="måndag 5 februari 2024", backup="Monica"),
            row(2, "Oktober 2024", "Lena Dalerup", when="bestäms av samordnaren", theme="Studieresa", kind="Studieresa"),
            row(3, "Januari 2025", "Hanna", theme="Fysiskt möte 2025", kind="Fysiskt möte")]
    checked = pa.check_rows(rows, 2024, MEMBERS, LABELS)
    assert checked.ok and checked.plan is not None
    feb, trip, jan = checked.plan.meetings
    assert (feb.month, feb.theme_no, feb.theme, feb.host, feb.backup_host, feb.date) == \
        ("2024-02", 1, "Trygghet", "maria", "monica", date(2024, 2, 5))
    assert trip.kind == "study_trip" and trip.tentative and trip.date is None
    assert jan.month == "2025-01" and jan.kind == "physical" and jan.theme_no is None
    assert "2024-07" in checked.plan.months_without_meeting and "2024-02" not in checked.plan.months_without_meeting


def test_every_problem_names_its_row_in_swedish():
    rows = [row(1, "Februari 2024"), row(2, "Mars 2024", "Kalle Anka"), row(3, "Smarch"),
            row(4, "April 2024", backup="Maria"), row(5, "Februari 2024"), row(6, "Maj 2024", kind="middag"),
            row(7, "Juni 2024", when="3 juli"), row(8, "Mars 2025"), row(9, "September 2024", theme="")]
    checked = pa.check_rows(rows, 2024, MEMBERS, LABELS)
    assert not checked.ok and checked.plan is None
    text = "\n".join(checked.problems)
    assert "Rad 2 (Mars 2024): värden ”Kalle Anka” är ingen av nätverkets medlemmar" in text
    assert "Rad 3: månaden ”Smarch” känns inte igen" in text
    assert "Rad 4 (April 2024): värd och reservvärd är samma person" in text
    assert "Rad 5 (Februari 2024): februari 2024 står redan på rad 1" in text
    assert "Rad 6 (Maj 2024): typen ”middag” känns inte igen" in text
    assert "Rad 7 (Juni 2024): onsdag 3 juli 2024 ligger inte i juni 2024" in text
    assert "Rad 8 (Mars 2025): mars 2025 hör inte till årsplanen 2024" in text
    assert "Rad 9 (September 2024): temat saknas" in text
    assert "Rad 1" not in text


def test_an_inactive_member_cannot_host():
    inactive = [m.model_copy(update={"active": False}) if m.id == "maria" else m for m in MEMBERS]
    checked = pa.check_rows([row(1, "Februari 2024")], 2024, inactive, LABELS)
    assert checked.problems and "Maria Martinsson" in checked.problems[0]


def test_tables_found_by_their_headers():
    plan = [["Månad", "Datum", "Tema", "Värd", "Reservvärd", "Typ"], ["Februari 2024", "", "Tema 1: X", "Maria", "", "Månadsmöte"],
            ["", "", "", "", "", ""]]
    focus = [["Område", "Fokusområde", "Röster"], ["Omvärldsbevakning", "Studieresa", "22"]]
    tasks = [["Vad", "Vem", "När"], ["Protokoll", "Värden", "två dagar efter"], ["", "", ""]]
    decisions = [["Beslut", "Ansvarig", "Klart till"], ["Något", "Någon", "snart"]]
    doc = pa.read_tables([decisions, focus, plan, tasks])
    assert doc is not None
    assert [r.month for r in doc.rows] == ["Februari 2024"] and doc.rows[0].number == 1
    assert doc.focus == (("Omvärldsbevakning", "Studieresa"),)
    assert doc.tasks == (("Protokoll", "Värden", "två dagar efter"),)
    assert pa.read_tables([decisions, tasks]) is None


def test_written_rows_read_back_to_the_same_plan():
    rows = [row(1, "Februari 2024", backup="Monica Bruvik"), row(2, "Mars 2024", "Daniel", theme="Tema 2: Y"),
            row(3, "Oktober 2024", "Lena", theme="Studieresa", kind="Studieresa")]
    first = pa.check_rows(rows, 2024, MEMBERS, LABELS).plan
    assert first is not None
    names = {p.id: p.name for p in MEMBERS}
    written = pa.table_rows(first.meetings, names, LABELS)
    assert written[0] == ("Februari 2024", "måndag 5 februari 2024", "Tema 1: Trygghet", "Maria Martinsson",
                          "Monica Bruvik", "Månadsmöte (digitalt)")
    again = pa.check_rows([pa.PlanRow(i, *r) for i, r in enumerate(written, 1)], 2024, MEMBERS, LABELS).plan
    assert again is not None
    assert [(m.month, m.kind, m.theme_no, m.theme, m.host, m.backup_host, m.tentative) for m in again.meetings] == \
        [(m.month, m.kind, m.theme_no, m.theme, m.host, m.backup_host, m.tentative) for m in first.meetings]


def test_each_group_gets_areas_in_turn_and_a_lead_who_is_not_the_coordinator():
    groups = [["bjorn", "pia", "david"], ["lisa", "daniel"], ["maria", "lena"]]
    tasks = pa.group_tasks(groups, ["A", "B", "C", "D"], "bjorn")
    assert [t.areas for t in tasks] == [("A", "D"), ("B",), ("C",)]
    assert [t.lead for t in tasks] == ["pia", "lisa", "maria"]
    assert [t.number for t in tasks] == [1, 2, 3]
