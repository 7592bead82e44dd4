"""The ledger owns the key/value state: what it writes is what the services wrote
before it (the same key strings and values), so an existing state file reads the
same through it; and no other module formats a key."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from kcg_mail.adapters.sqlite_state import SqliteState
from kcg_mail.services.ledger import HeldNote, HeldVersion, Ledger

ROOT = Path(__file__).resolve().parents[2]


def test_an_existing_state_file_reads_the_same_through_the_ledger(tmp_path):
    st = SqliteState(tmp_path / "state.sqlite")
    try:
        # written as the services wrote them before the ledger
        st.put("mail:cursor", "7:42")
        st.put("approved:" + "a" * 40, "2023-02")
        st.put("late:2023-02:v2", "2023-02-07T09:00:00+00:00")
        st.put("filed-date:2023-02:v1", "2023-02-07T10:00:00+00:00")
        st.put("held-distribution:2023-02:v3", "held")
        st.put("distributed:2023-02:2023-02-07", "[1, 2]")
        st.put("go_live", "2023-01-16")
        st.put("held:" + "b" * 40, '{"kind": "distribution", "meeting_id": "2023-02", "sender": "d@g.se", '
                                   '"subject": "Protokoll", "files": ["p.docx"], "why": "fler än 2", "version": 3}')
        st.put("health:mail", '{"what": "mail", "detail": "timeout", "since": "2023-02-07T08:00"}')
        led = Ledger(st)
        assert led.intake_cursor.get() == "7:42"
        assert led.approved_for.get("a" * 40) == "2023-02" and led.approved_for.get("c" * 40) is None
        assert led.late_copies.get("2023-02", 2) == datetime(2023, 2, 7, 9, tzinfo=UTC)
        assert led.late_copies.get("2023-02", 1) is None
        assert led.filed_dates.get("2023-02", 1) == datetime(2023, 2, 7, 10, tzinfo=UTC)
        assert led.distribution_holds.get("2023-02", 3) == "held"
        assert led.distributed_on("2023-02", date(2023, 2, 7)) == [1, 2]
        assert led.go_live.get() == date(2023, 1, 16)
        note = led.held_notes.get("b" * 40)
        assert note is not None and (note.kind, note.version, note.cause) == ("distribution", 3, None)
        assert led.health_problems.get("mail") == {"what": "mail", "detail": "timeout", "since": "2023-02-07T08:00"}

        # and the ledger writes the same strings back
        led.mark_distributed("2023-02", date(2023, 2, 7), 3)
        led.mark_distributed("2023-02", date(2023, 2, 7), 3)  # once
        assert st.get("distributed:2023-02:2023-02-07") == "[1, 2, 3]"
        led.distribution_holds.put("2023-02", 3, "approved")
        assert st.get("held-distribution:2023-02:v3") == "approved"
        led.intake_cursor.put("7:43")
        assert st.get("mail:cursor") == "7:43"
        led.health_problems.clear("mail")
        assert st.get("health:mail") == "" and led.health_problems.get("mail") is None
    finally:
        st.close()


def test_held_versions_round_trip_and_are_indexed_once(tmp_path):
    st = SqliteState(tmp_path / "state.sqlite")
    try:
        led = Ledger(st)
        hv = HeldVersion(meeting_id="2023-02", content_hash="f" * 64, kind="docx", filename="f.docx",
                         source_msg_key="a" * 40, cause="safety", why="filen innehåller ett inbäddat objekt",
                         dated="2023-02-07T09:00:00+00:00", decisions=[{"decision": "x", "owner": "y", "due": "z"}],
                         followups=[["2023-01/1", "klart"]])
        led.put_held_version(hv)
        led.put_held_version(HeldVersion(**{**hv.__dict__, "state": "approved"}))
        assert led.held_version("2023-02", "f" * 64) == HeldVersion(**{**hv.__dict__, "state": "approved"})
        assert [h.state for h in led.held_versions()] == ["approved"]
        led.held_notes.put("a" * 40, HeldNote("version", "2023-02", "d@g.se", "Protokoll", ["p.docx"], "why",
                                              cause="safety", content_hash="f" * 64))
        assert led.held_notes.get("a" * 40) == HeldNote("version", "2023-02", "d@g.se", "Protokoll", ["p.docx"], "why",
                                                    cause="safety", content_hash="f" * 64)
    finally:
        st.close()


def test_no_module_but_the_ledger_formats_a_state_key():
    """grep: ``state.get(`` / ``state.put(`` only in the ledger (adapters implement the port)."""
    hits, scanned = [], 0
    for folder in ("kcg_mail", "flows", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            scanned += 1
            rel = path.relative_to(ROOT).as_posix()
            if rel in ("kcg_mail/services/ledger.py",) or rel.startswith("kcg_mail/adapters/"):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\bstate\.(get|put)\(", line):
                    hits.append(f"{rel}:{n}: {line.strip()}")
    assert scanned > 50 and (ROOT / "kcg_mail" / "services" / "intake.py").is_file()  # the real tree was read
    assert hits == []
