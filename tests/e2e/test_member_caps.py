"""Fair and quiet over a whole demo year: what reaches each member's mailbox.

Runs what ``kcg demo`` runs on the embedded defaults (the real Prefect flows: the
2023 year with hosts replying, then the 2024 planning round in November and
December), then reads every mail in the Maildir Sent folder, as each recipient
gets it (To and Cc, the day of its Date in Stockholm), and counts per member and
day and per calendar week. The kind of each mail comes from the state record
(the Outbox's record under the mail's key); which kinds count is the rule of
``kcg_mail.core.pacing`` (answers to a member's own mail and the coordinator's
questions do not). Checked: at most one counted mail a day and four a week per
member, and nothing but the invitation and the minutes on a meeting's day.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from email.utils import getaddresses, parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from support.basics import shipped_config
from support.demo_year import play_demo_year
from support.helpers import CONFIG_DIR, sent_mails

from kcg_mail.core.pacing import ALWAYS, Pace, pace_of
from kcg_mail.ports import MARKER_HEADER

CFG = shipped_config()
TZ = ZoneInfo(CFG.meetings.timezone)
COORD = CFG.network.coordinator.email


def members_and_meetings(workdir) -> tuple[set[str], set]:
    """The members after the demo (the coordinator adds one in November) and every
    meeting day (2024's plan is adopted in January)."""
    from kcg_mail.bootstrap import bootstrap

    with bootstrap(workdir, CONFIG_DIR) as app:
        # the days as held: with the dates the coordinator set by reply
        return {p.email.lower() for p in app.cfg.network.active_members}, {m.date for m in app.meetings}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_year(prefect_api, tmp_path_factory):
    return play_demo_year(tmp_path_factory.mktemp("caps"))


def marker(msg) -> str:
    return "".join(str(msg[MARKER_HEADER]).split())  # a long key is folded


def mailboxes(workdir, members: set[str]):
    """Per member: (day, key, kind) of every mail that reached them."""
    from kcg_mail.adapters.sqlite_state import SqliteState

    state = SqliteState(workdir / "state.sqlite")
    try:
        kinds = {r.key: r.action for r in state.actions() if ":step:" not in r.key}
    finally:
        state.close()
    out: dict[str, list[tuple]] = defaultdict(list)
    for msg in sent_mails(workdir):
        key = marker(msg)
        day = parsedate_to_datetime(str(msg["Date"])).astimezone(TZ).date()
        to = {a.lower() for _, a in getaddresses([str(v) for v in (msg.get_all("To", []) or []) + (msg.get_all("Cc", []) or [])])}
        for person in to & members:
            out[person].append((day, key, kinds[key], tuple(sorted(to))))
    return out


def test_no_member_gets_more_than_the_caps_and_nothing_but_invitation_and_minutes_on_a_meeting_day(demo_year):
    members, meeting_days = members_and_meetings(demo_year)
    assert len(members) >= 14 and len(meeting_days) > 10
    boxes = mailboxes(demo_year, members)
    assert set(boxes) == members
    caps = CFG.meetings.member_caps
    over, on_meeting_days, counted_total = [], [], 0
    most_day = most_week = 0
    for person, mails in boxes.items():
        per_day: Counter = Counter()
        per_week: Counter = Counter()
        for day, key, kind, to in mails:
            pace = pace_of(kind, to, COORD)
            if pace is Pace.FREE:
                continue
            counted_total += 1
            per_day[day] += 1
            per_week[day - timedelta(days=day.weekday())] += 1
            if day in meeting_days and kind not in ALWAYS:
                on_meeting_days.append((person, day, key))
        over += [(person, d, n) for d, n in per_day.items() if n > caps.per_day]
        over += [(person, f"week of {w}", n) for w, n in per_week.items() if n > caps.per_week]
        most_day, most_week = max(most_day, *per_day.values()), max(most_week, *per_week.values())
    assert not over, over
    assert not on_meeting_days, on_meeting_days
    # the caps are met, not avoided: the year is full (November's round) and the limits are reached
    assert counted_total > 15 * len(members) and most_day == caps.per_day and most_week >= 3


def test_the_mails_that_waited_went_out_once_and_the_round_was_played_whole(demo_year):
    from kcg_mail.adapters.sqlite_state import SqliteState
    from kcg_mail.services.ledger import Ledger

    state = SqliteState(demo_year / "state.sqlite")
    try:
        waited = Ledger(state).waiting_mails()
        needs_answers = Ledger(state).planning_values.get(2024, "needs") or {}
        ballots = Ledger(state).planning_values.get(2024, "ballots") or {}
    finally:
        state.close()
    assert {w["state"] for w in waited} <= {"sent", "dropped"}  # nothing is left waiting
    kinds = Counter(w["kind"] for w in waited)
    assert kinds["planning_needs"] >= 14  # the round starts on the November meeting's day
    sent = Counter(marker(m) for m in sent_mails(demo_year))
    for w in waited:
        assert sent[w["key"]] == (1 if w["state"] == "sent" else 0), w["key"]
        if w["state"] == "sent":
            assert w["since"] < w["settled"], w["key"]
    # every member still answered the needs and the ballot
    assert len(needs_answers) == len(ballots) == len(members_and_meetings(demo_year)[0])


def test_the_demo_figures_say_the_caps_held(demo_year):
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.cli_preview import caps_line
    from kcg_mail.services.preview import cap_check, read_maildir

    with bootstrap(demo_year, CONFIG_DIR) as app:
        check = cap_check(app, read_maildir(app.cfg, app.meetings, demo_year / "mail" / "sent"))
    assert check.held and check.max_day == 1 and check.max_week <= 4
    day, week = check.most("2023-11")
    assert day == 1 and 1 <= week <= 4
    assert caps_line(check).endswith("Taket höll, och på mötesdagar gick bara inbjudan och protokoll ut.")
