"""Every kind of record the ledger declares reads what the services stored under its
key before (an existing ``state.sqlite``) and writes the very same string back: the key
patterns and the way values are stored (JSON as written, days and moments in ISO 8601)
did not change with the ledger's declarations. Real SQLite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kcg_mail.adapters.sqlite_state import SqliteState
from kcg_mail.services.ledger import Ledger

# the key and the string as stored; the ledger's record, the ids that fill its key, the value read
RECORDS: list[tuple[str, str, str, tuple[Any, ...], Any]] = [
    ("demo:day", "2023-05-02", "demo_day", (), date(2023, 5, 2)),
    ("invitation:2023-02", '{"uid": "kcg-2023-02", "sequence": 1}', "invitations", ("2023-02",),
     {"uid": "kcg-2023-02", "sequence": 1}),
    ("original:2023-02:" + "e" * 64, '{"path": "/arkiv/original.docx", "removed": ["bild"]}', "originals",
     ("2023-02", "e" * 64), {"path": "/arkiv/original.docx", "removed": ["bild"]}),
    ("member_request:q1", '{"state": "asked", "name": "Åsa Öberg"}', "member_requests", ("q1",),
     {"state": "asked", "name": "Åsa Öberg"}),
    ("planning:2024:needs", '{"gbg": ["trygghet"], "vas": []}', "planning_values", (2024, "needs"),
     {"vas": [], "gbg": ["trygghet"]}),
    ("planning:groups:2024-01", '[["Anna", "Per"], ["Eva"]]', "workshop_groups", ("2024-01",),
     [["Anna", "Per"], ["Eva"]]),
    ("plan_adoption:2024", '{"adopted": {"source": "protocol"}, "candidates": {}}', "plan_adoptions", (2024,),
     {"candidates": {}, "adopted": {"source": "protocol"}}),
    ("decision:2023-02/1", '{"state": "open", "settled_in": "", "text": "Ta fram en handelsrapport"}',
     "decision_states", ("2023-02/1",), {"state": "open", "settled_in": "", "text": "Ta fram en handelsrapport"}),
    ("projects:approved", '[{"slug": "handel", "name": "Handel"}]', "approved_groups", (),
     [{"slug": "handel", "name": "Handel"}]),
    ("projects:declined", '["2023-02/3", "2023-03/1"]', "declined_proposals", (), {"2023-03/1", "2023-02/3"}),
    ("project_status:handel", '[{"on": "2023-03-01", "text": "igång"}]', "project_statuses", ("handel",),
     [{"on": "2023-03-01", "text": "igång"}]),
    ("calendar_feed", '{"kcg-2023-02": {"title": "Möte i Västerås"}}', "calendar_feed", (),
     {"kcg-2023-02": {"title": "Möte i Västerås"}}),
    ("artifact:overview", "9f2c", "artifact_digests", ("overview",), "9f2c"),
    ("guest_invitations:2023-02", '{"gast@exempel.se": {"uid": "g1"}}', "guest_invitations", ("2023-02",),
     {"gast@exempel.se": {"uid": "g1"}}),
]

# the same for what a named method reads and writes (a list added to, a map merged into, a key normalised)
METHODS: list[tuple[str, str, Callable[[Ledger], Any], Any, Callable[[Ledger], None]]] = [
    ("meeting_dates", '{"2023-02": {"date": "2023-02-07"}}', lambda led: led.meeting_dates(),
     {"2023-02": {"date": "2023-02-07"}}, lambda led: led.set_meeting_date("2023-02", {"date": "2023-02-07"})),
    ("date_questions:2023-02", '[{"on": "2023-01-02", "what": "confirm_date"}]',
     lambda led: led.date_questions("2023-02"), [{"on": "2023-01-02", "what": "confirm_date"}],
     lambda led: led.add_date_question("2023-02", "confirm_date", date(2023, 1, 2))),
    ("date_alert:2023-02:confirm_date", "2023-01-20", lambda led: led.date_alerted("2023-02", "confirm_date"),
     True, lambda led: led.mark_date_alerted("2023-02", "confirm_date", date(2023, 1, 20))),
    ("guest_approval:2023-02:gast@exempel.se", "approved", lambda led: led.guest_approval("2023-02", "Gast@Exempel.se"),
     "approved", lambda led: led.set_guest_approval("2023-02", "GAST@exempel.se", "approved")),
]


def _stored(path: Path, key: str, raw: str | None, use: Callable[[Ledger], Any]) -> tuple[Any, str | None]:
    """What ``use`` gives on a ledger over a state file holding ``raw`` at ``key``, and what is stored there after."""
    st = SqliteState(path)
    try:
        if raw is not None:
            st.put(key, raw)
        return use(Ledger(st)), st.get(key)
    finally:
        st.close()


@pytest.mark.parametrize(("key", "raw", "name", "ids", "value"), RECORDS, ids=[r[0] for r in RECORDS])
def test_a_record_stored_before_reads_the_same_and_is_written_the_same(tmp_path, key, raw, name, ids, value):
    def read(led: Ledger) -> Any:
        return getattr(led, name).get(*ids)

    assert _stored(tmp_path / "before.sqlite", key, raw, read) == (value, raw)
    assert _stored(tmp_path / "after.sqlite", key, None, lambda led: getattr(led, name).put(*ids, value)) == (None, raw)


@pytest.mark.parametrize(("key", "raw", "read", "value", "write"), METHODS, ids=[m[0] for m in METHODS])
def test_a_named_method_reads_and_writes_what_was_stored_before(tmp_path, key, raw, read, value, write):
    assert _stored(tmp_path / "before.sqlite", key, raw, read) == (value, raw)
    assert _stored(tmp_path / "after.sqlite", key, None, write) == (None, raw)
