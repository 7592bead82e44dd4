"""Benchmark: the pure core planning 1 and 1,000 networks' years in memory.

    python bench/bench_core.py [--networks 1 1000] [-r 5]

Each network gets its own year plan, varied from the shipped 2023 plan with a
seeded RNG: other hosts, some dates moved by ``date:``, some meetings
tentative or cancelled, and its own state record (steps settled, invitations
sent - some of them now out of date -, minutes filed) and its own "now".
Timed separately (no I/O, everything in memory):

* resolve  - ``plan.resolve_plan``: config -> concrete meetings (calendar
  rules, Swedish holidays, times, people);
* decide   - one ``cycle.decide`` per network over all meetings of its year:
  what is due or skipped now (the daily run's planning step);
* year     - the whole year simulated per network as ``kcg demo`` does it:
  from the first due day, ``decide`` on every day something becomes due
  (``next_due_date``), each due step settled, until nothing is left.

Medians over ``-r`` runs; the goal (< 2 s for 1,000 networks) is checked
against resolve + decide.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from _common import CONFIG_DIR, machine, median, result_line

TZ = ZoneInfo("Europe/Stockholm")


def varied_configs(n: int):
    from kcg_mail.config_loader import load_config

    cfg = load_config(CONFIG_DIR, environ={})
    plan = next(p for p in cfg.plans if p.year == 2023)
    ids = [p.id for p in cfg.network.members]
    out = []
    for i in range(n):
        rng = random.Random(i)
        meetings = []
        for pm in plan.meetings:
            upd: dict = {"host": rng.choice(ids)}
            if rng.random() < 0.3:
                y, mo = (int(x) for x in pm.month.split("-"))
                upd["date"] = date(y, mo, rng.randint(1, 28))
            upd["tentative"] = rng.random() < 0.1
            upd["cancelled"] = rng.random() < 0.05
            meetings.append(pm.model_copy(update=upd))
        out.append(cfg.model_copy(update={"plans": [plan.model_copy(update={"meetings": meetings})]}))
    return cfg, out


def varied_states(rng: random.Random, meetings, attendees):
    from kcg_mail.core.cycle import STEPS, MeetingState, invitation_snapshot

    states = {}
    for m in meetings:
        settled = frozenset(s for s in STEPS if rng.random() < 0.4)
        inv = None
        if rng.random() < 0.5:
            inv = invitation_snapshot(m, attendees[m.id], f"uid-{m.id}", 0)
            if rng.random() < 0.3:  # the plan changed after the invitation went out
                inv = type(inv)(**{**inv.__dict__, "start": (m.start - timedelta(days=7)).isoformat()})
        states[m.id] = MeetingState(settled, inv, rng.random() < 0.3)
    return states


def run(n: int) -> dict[str, float]:
    from kcg_mail.core.cycle import MeetingState, decide, next_due_date
    from kcg_mail.core.plan import resolve_plan

    base, cfgs = varied_configs(n)
    lead = base.meetings.lead_days
    emails = tuple(sorted(p.email for p in base.network.active_members))

    t0 = time.perf_counter()
    plans = [resolve_plan(c) for c in cfgs]
    t_resolve = time.perf_counter() - t0

    inputs = []
    for i, meetings in enumerate(plans):
        rng = random.Random(10_000 + i)
        attendees = {m.id: emails for m in meetings}
        now = datetime.combine(date(2023, 1, 1) + timedelta(days=rng.randrange(365)), dtime(7), TZ)
        inputs.append((meetings, varied_states(rng, meetings, attendees), now, attendees))

    t0 = time.perf_counter()
    due = 0
    for meetings, states, now, attendees in inputs:
        d = decide(meetings, states, now, lead, attendees)
        due += len(d.due) + len(d.skip)
    t_decide = time.perf_counter() - t0

    t0 = time.perf_counter()
    calls = steps = 0
    for meetings, _, _, attendees in inputs:
        states: dict[str, MeetingState] = {}
        day = min(m.date for m in meetings) - timedelta(days=lead.brief_host * 2)  # working days
        while day is not None:
            now = datetime.combine(day, dtime(7), TZ)
            d = decide(meetings, states, now, lead, attendees)
            calls += 1
            for x in list(d.due) + list(d.skip):
                st = states.get(x.meeting_id, MeetingState())
                sent_on = {**st.sent_on, x.action: day} if x in d.due else dict(st.sent_on)  # spacing counts from it
                states[x.meeting_id] = MeetingState(st.settled | {x.action}, st.invitation, st.minutes_filed, sent_on)
                steps += 1
            day = next_due_date(meetings, states, day, lead)
    t_year = time.perf_counter() - t0
    return {"resolve": t_resolve, "decide": t_decide, "year": t_year, "meetings": sum(map(len, plans)),
            "due": due, "year_calls": calls, "year_steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, nargs="+", default=[1, 1000])
    ap.add_argument("-r", "--repeat", type=int, default=5)
    args = ap.parse_args()
    print(machine())
    print(f"\nmedian of {args.repeat} runs (ms)")
    print(f"{'networks':>9}{'meetings':>10}{'resolve':>10}{'decide':>10}{'res+dec':>10}{'year sim':>10}"
          f"{'decide calls':>14}")
    out = {}
    for n in args.networks:
        runs = [run(n) for _ in range(args.repeat)]
        med = {k: median([r[k] for r in runs]) for k in ("resolve", "decide", "year")}
        r0 = runs[0]
        out[n] = {**med, "meetings": r0["meetings"], "year_calls": r0["year_calls"]}
        print(f"{n:9}{r0['meetings']:10}{med['resolve'] * 1e3:10.1f}{med['decide'] * 1e3:10.1f}"
              f"{(med['resolve'] + med['decide']) * 1e3:10.1f}{med['year'] * 1e3:10.1f}{r0['year_calls']:14}")
    big = max(args.networks)
    total = out[big]["resolve"] + out[big]["decide"]
    print(f"goal {big} networks (resolve + decide) < 2 s: {'met' if total < 2 else 'NOT met'} ({total:.3f} s)")
    result_line("core", {str(k): v for k, v in out.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
