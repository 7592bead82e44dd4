"""Benchmark: what a real install costs, idle and after a month of activity.

    python bench/bench_cost.py [--idle 60] [--days 30] [--keep-days 60]

The install as the README runs it (tests/support/serve_harness.py): ``prefect server
start --host 127.0.0.1`` with the retention settings the README gives
(``PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,orphans``, events kept 7
days), ``kcg serve`` with the SMTP/IMAP transport on a private Dovecot +
Postfix (the stand-in for the network's mail server), Prefect's default
runner settings.

1. idle: once ``kcg serve`` is ready, ``--idle`` seconds of nothing: RSS
   (sum over each process and its children, from /proc) and CPU (user +
   system over the window, as % of one core) of the Prefect server and of
   ``kcg serve``;
2. a month in simulated time (November 2023): every day the daily flow and
   the planning round's daily step as deployment runs (what the schedule
   starts: the runner polls, a subprocess per run) with that day's date; on
   the round's start day ``kcg-planning-start``; two days later the 14
   members answer the needs mail through SMTP (each a real reply from their
   own address, the push listener starts the intake);
3. idle again, the same figures;
4. disk: the Prefect database (with WAL), the state record, the work
   directory, before and after, and the rows Prefect keeps;
5. housekeeping: ``kcg-housekeeping`` as a deployment run with ``now`` set
   ``--keep-days + 1`` days ahead (simulated: as when the month is that old):
   the month's runs and artifact versions are deleted; rows and sizes again.

Growth per year: the month's growth of the state record and the work
directory times 12, plus the Prefect database's: with retention it holds at
most ``keep_days`` of runs (SQLite reuses the pages freed by deletions, so
the file stops growing once that window is full).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import machine, result_line  # noqa: E402

#: the Prefect server settings the README gives for a real install: the history it keeps, and
#: slower loops of its background services (the defaults look every 5-20 s) for a light idle load
RETENTION_ENV = {"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,orphans",
                 "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P7D",
                 **{f"PREFECT_SERVER_SERVICES_{name}_LOOP_SECONDS": str(seconds) for name, seconds in (
                     ("LATE_RUNS", 30), ("PAUSE_EXPIRATIONS", 60), ("CLEANUP_RECONCILER", 60),
                     ("SCHEDULER_RECENT_DEPLOYMENTS", 30), ("CANCELLATION_CLEANUP", 60), ("FOREMAN", 60),
                     ("REPOSSESSOR", 60))}}
MONTH_START = date(2023, 11, 1)
ROUND_YEAR = 2024


# ------------------------------------------------------------------ processes (from /proc)

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick  # own + waited-for children
        except (OSError, ValueError, IndexError):
            pass
    return total


def idle_window(procs: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU % of one core over ``seconds`` and RSS at the end, per process tree."""
    t0 = time.monotonic()
    c0 = {k: cpu_seconds(tree(p)) for k, p in procs.items()}
    time.sleep(seconds)
    dt = time.monotonic() - t0
    out = {}
    for k, p in procs.items():
        pids = tree(p)
        out[k] = {"cpu_pct": 100 * (cpu_seconds(pids) - c0[k]) / dt, "rss_mib": rss_mib(pids), "procs": len(pids)}
    return out


# ------------------------------------------------------------------ disk

def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def prefect_db(home: Path) -> dict[str, float]:
    db = home / "prefect.db"
    out = {"db_mib": sum(size_mib(home / n) for n in ("prefect.db", "prefect.db-wal", "prefect.db-shm"))}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        for table in ("flow_run", "task_run", "flow_run_state", "task_run_state", "log", "artifact", "events",
                      "event_resources"):
            out[table] = con.execute(f"select count(*) from {table}").fetchone()[0]
        page = con.execute("pragma page_size").fetchone()[0]
        out["free_mib"] = con.execute("pragma freelist_count").fetchone()[0] * page / 2**20
    finally:
        con.close()
    return out


def disk(stack) -> dict[str, float]:
    return {**prefect_db(stack.prefect.home), "state_mib": size_mib(stack.workdir / "state.sqlite"),
            "workdir_mib": size_mib(stack.workdir), "mail_server_mib": size_mib(stack.mail.root / "mail")}


# ------------------------------------------------------------------ runs through the deployments

def call(method: str, url: str, **kw) -> httpx.Response:
    """One API call, retried while a busy Prefect server on SQLite answers 503 (as Prefect's client does)."""
    for attempt in range(12):
        try:
            r = httpx.request(method, url, timeout=60, **kw)
            if r.status_code not in (429, 503):
                r.raise_for_status()
                return r
        except httpx.TransportError:
            if attempt == 11:
                raise
        time.sleep(min(10.0, 0.5 * 2 ** attempt))
    r.raise_for_status()
    return r


class Deployments:
    def __init__(self, api: str):
        self.api = api
        self.ids: dict[str, str] = {}

    def run(self, name: str, params: dict) -> str:
        if name not in self.ids:
            self.ids[name] = call("GET", f"{self.api}/deployments/name/{name}").json()["id"]
        return call("POST", f"{self.api}/deployments/{self.ids[name]}/create_flow_run",
                    json={"parameters": params}).json()["id"]

    def wait(self, run_ids: list[str], timeout: float = 300) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            runs = [call("GET", f"{self.api}/flow_runs/{i}").json() for i in run_ids]
            if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise SystemExit(f"runs not finished after {timeout} s: {[(r['name'], r['state_type']) for r in runs]}")
            time.sleep(0.5)


def wait_ready(stack, timeout: float = 180) -> None:
    """``kcg serve`` is ready: its start-up intake run completed and every deployment is registered."""
    stack.wait_ready(timeout)
    deadline = time.monotonic() + timeout
    api = stack.prefect.api_url
    while time.monotonic() < deadline:
        flows = {f["id"]: f["name"] for f in call("POST", f"{api}/flows/filter", json={}).json()}
        deps = {flows.get(d["flow_id"]) for d in call("POST", f"{api}/deployments/filter", json={}).json()}
        if {"kcg-daily", "kcg-planning-tick", "kcg-planning-start", "kcg-housekeeping"} <= deps:
            return
        time.sleep(1.0)
    raise SystemExit(f"deployments not registered:\n{stack.log()[-3000:]}")


def answer_needs(stack, config_dir: Path, day: date) -> int:
    """The members answer the needs mail in their INBOX, each from their own address (SMTP submission)."""
    from email import message_from_bytes, policy

    from support.helpers import trusted_authserv_id

    from kcg_mail.config_loader import load_config
    from kcg_mail.entrypoints.demo_hosts import stamp_authentication
    from kcg_mail.entrypoints.demo_round import at, needs_text, reply_to, suggestions_of

    cfg = load_config(config_dir)
    sent = 0
    for i, p in enumerate(cfg.network.active_members):
        needle = f"plan-{ROUND_YEAR}:needs:{p.email}".encode()
        mail = next((f for f in stack.inbox(p.email) if needle in f.read_bytes()), None)
        if mail is None:
            continue
        original = message_from_bytes(mail.read_bytes(), policy=policy.default)
        raw = reply_to(original, p, needs_text(suggestions_of(i)), at(day, 10))
        # as our receiving server hands it over (bench/_common.py's replies do the same)
        stack.submit(stamp_authentication(raw, trusted_authserv_id()), p.email)
        sent += 1
    return sent


def wait_intake(stack, replies: int, timeout: float = 300) -> None:
    """Until the intake runs have handled ``replies`` needs answers (the state record says)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            con = sqlite3.connect(f"file:{stack.workdir / 'state.sqlite'}?mode=ro", uri=True, timeout=10)
            try:
                raw = con.execute("select value from kv where key = ?", (f"planning:{ROUND_YEAR}:needs",)).fetchone()
            finally:
                con.close()
            if raw and len(json.loads(raw[0])) >= replies:
                return
        except sqlite3.Error:
            pass
        time.sleep(1.0)
    print(f"  (not all {replies} needs answers recorded after {timeout} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of each idle window")
    ap.add_argument("--days", type=int, default=30, help="simulated days of activity")
    ap.add_argument("--keep-days", type=int, default=60, help="housekeeping's keep_days")
    args = ap.parse_args()

    from support.prefect_server import prefect_server
    from support.serve_harness import serve_stack

    tmp = Path(tempfile.mkdtemp(prefix="kcg-bench-cost-"))
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: dict = {"idle_s": args.idle, "days": args.days, "keep_days": args.keep_days}
    with prefect_server(tmp / "prefect", extra_env=RETENTION_ENV) as prefect, serve_stack(tmp, prefect) as stack:
        print(f"Prefect server up in {prefect.startup_seconds:.1f} s")
        stack.start_serve()
        wait_ready(stack)
        time.sleep(30)  # the start-up settles (the server's services run their first rounds)
        procs = {"prefect server": prefect.process.pid, "kcg serve": stack.proc.pid}
        before = disk(stack)
        print(f"\n1. idle {args.idle:.0f} s")
        out["idle"] = idle_window(procs, args.idle)
        show(out["idle"])

        print(f"\n2. a month in simulated time: {args.days} days from {MONTH_START}")
        deps = Deployments(prefect.api_url)
        t0 = time.monotonic()
        wd, cd = str(stack.workdir), str(stack.config_dir)
        runs, replies = 0, 0
        for n in range(args.days):
            day = MONTH_START + timedelta(days=n)
            ids = [deps.run("kcg-daily/KCG", {"date": day.isoformat(), "workdir": wd, "config_dir": cd})]
            if day == date(2023, 11, 6):
                deps.wait([deps.run("kcg-planning-start/KCG", {"year": ROUND_YEAR, "date": day.isoformat(),
                                                               "workdir": wd, "config_dir": cd})])
                runs += 1
            ids.append(deps.run("kcg-planning-tick/KCG", {"date": day.isoformat(), "workdir": wd, "config_dir": cd}))
            done = deps.wait(ids)
            runs += len(ids)
            bad = [r["name"] for r in done if r["state_type"] != "COMPLETED"]
            if bad:
                print(f"  {day}: not completed: {bad}")
            if day == date(2023, 11, 8):
                replies = answer_needs(stack, stack.config_dir, day)
                wait_intake(stack, replies)
            print(f"  {day}: {', '.join(r['name'] for r in done)}", flush=True)
        intake_runs = len(stack.intake_runs())
        out["month"] = {"seconds": time.monotonic() - t0, "deployment_runs": runs, "replies": replies,
                        "intake_runs": intake_runs}
        print(f"  {runs} deployment runs and {intake_runs} intake runs (push) for {replies} replies in "
              f"{out['month']['seconds']:.0f} s")
        time.sleep(10)
        after = disk(stack)
        print(f"\n3. idle {args.idle:.0f} s after the month")
        out["idle_after"] = idle_window(procs, args.idle)
        show(out["idle_after"])

        print(f"\n5. housekeeping with keep_days={args.keep_days}, as {args.keep_days + 1} days later (simulated)")
        later = (datetime.now(UTC) + timedelta(days=args.keep_days + 1)).isoformat()
        (hk,) = deps.wait([deps.run("kcg-housekeeping/KCG", {"keep_days": args.keep_days, "now": later,
                                                             "workdir": wd, "config_dir": cd})])
        print(f"  {hk['name']} ({hk['state_type']})")
        time.sleep(5)
        pruned = disk(stack)
    print(f"\n4. disk (MiB) and rows{'':20}{'before':>12}{'after month':>14}{'after pruning':>16}")
    for k in before:
        fmt = (lambda v: f"{v:.2f}") if k.endswith("_mib") else (lambda v: f"{int(v)}")
        print(f"  {k:40}{fmt(before[k]):>12}{fmt(after[k]):>14}{fmt(pruned[k]):>16}")
    month_prefect = after["db_mib"] - before["db_mib"]
    month_ours = (after["state_mib"] - before["state_mib"]) + (after["workdir_mib"] - before["workdir_mib"])
    window = min(args.keep_days, 365) / 30
    year = 12 * month_ours + window * month_prefect
    print(f"\ngrowth per year: kcg-mail's work directory (state record, backups, archive) {12 * month_ours:.1f} MiB "
          f"(12 x {month_ours:.2f}); Prefect database at most {window * month_prefect:.1f} MiB "
          f"({args.keep_days} days of runs kept, then flat) -> {year:.1f} MiB in the first year (goal < 50 MB); "
          f"without pruning the Prefect database would grow {12 * month_prefect:.1f} MiB a year")
    idle = out["idle"]
    total_rss = sum(v["rss_mib"] for v in idle.values())
    total_cpu = sum(v["cpu_pct"] for v in idle.values())
    print(f"idle: {total_rss:.0f} MiB RSS, {total_cpu:.2f} % of one core together (goal < 600 MB, < 2 %)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out.update({"disk_before": before, "disk_after": after, "disk_pruned": pruned, "year_mib": year,
                "year_mib_unpruned": 12 * (month_prefect + month_ours), "machine": machine()})
    result_line("cost", out)
    return 0


def show(figures: dict[str, dict[str, float]]) -> None:
    for k, v in figures.items():
        print(f"  {k:16} {v['rss_mib']:7.0f} MiB RSS  {v['cpu_pct']:6.2f} % CPU  ({v['procs']} processes)")


if __name__ == "__main__":
    raise SystemExit(main())
