"""Run every benchmark and print one table:  python -m bench [--quick]

Each benchmark runs as its own process (``python bench/bench_X.py``) so its
memory and start-up do not affect the next one; each prints its own figures
and a ``RESULT`` line collected here. ``--quick`` uses fewer replies/repeats
(a smoke run, not figures to publish). Needs root and the Debian Dovecot and
Postfix packages for the serve and intake benchmarks (.ci/install-mail.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = {"bench_serve.py": ["-n", "50"], "bench_intake.py": ["-r", "5"], "bench_core.py": ["-r", "5"],
        "bench_demo.py": ["-r", "3"], "bench_parse.py": ["-r", "5"], "bench_rebuild.py": ["-r", "5"],
        "bench_cost.py": ["--idle", "60", "--days", "30"]}
QUICK = {"bench_serve.py": ["-n", "10", "--faults", "1", "--restarts", "1", "--shortcut-n", "10", "--poll-n", "5"],
         "bench_intake.py": ["-r", "1", "--old", "10", "1000"],
         "bench_core.py": ["-r", "1"], "bench_demo.py": ["-r", "1"], "bench_parse.py": ["-r", "1"],
         "bench_rebuild.py": ["-r", "1", "--no-libreoffice"], "bench_cost.py": ["--idle", "20", "--days", "8"]}


def main() -> int:
    plan = QUICK if "--quick" in sys.argv else FULL
    results, failed = {}, []
    for script, args in plan.items():
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        proc = subprocess.Popen([sys.executable, str(HERE / script), *args], cwd=HERE, stdout=subprocess.PIPE,
                                text=True)
        for line in proc.stdout:
            if line.startswith("RESULT "):
                r = json.loads(line[7:])
                results[r["bench"]] = r
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0:
            failed.append(script)
    sys.path.insert(0, str(HERE))
    from _common import machine

    print("\n=== summary  (" + machine() + ")")
    print("| benchmark | figure | goal |\n|---|---|---|")
    if "serve" in results:
        r = results["serve"]
        rows = (("push_lmtp", "reply delivered (LMTP) -> distribution in a member's INBOX, `kcg serve` push", "p95 < 2 s"),
                ("shortcut_lmtp", "same, intake called in-process (shortcut: no Prefect, not what users run)", "-"),
                ("poll_lmtp", "same, `kcg serve` with a 60 s poll and no listener", "-"))
        for key, label, goal in rows:
            if key in r:
                p50, p95, mx, n = r[key]
                print(f"| {label}, {n} replies | p50 {p50:.2f} s, p95 {p95:.2f} s, max {mx:.2f} s | {goal} |")
        for key, label in (("fault_after", "mail server down 5 s: back -> distribution of a reply sent after"),
                           ("fault_before", "mail server down 5 s: back -> distribution of a reply from before"),
                           ("restart", "`kcg serve` restarted: start command -> distribution of a reply from meanwhile"),
                           ("restart_stop", "`kcg serve` restarted: SIGTERM -> exited")):
            if key in r:
                p50, p95, mx, n = r[key]
                print(f"| {label}, {n} restarts | p50 {p50:.2f} s, max {mx:.2f} s | seconds |")
    if "intake" in results:
        r = results["intake"]
        for s in ("imap", "maildir"):
            v = r[s]
            print(f"| intake run, {r['new']} new replies, {r['old'][0]} vs {r['old'][1]} old ({s}), median of "
                  f"{r['repeat']} | {v['small']:.2f} s vs {v['big']:.2f} s, ratio {v['ratio']:.2f} | < 1.5 |")
    if "core" in results:
        for n, v in results["core"].items():
            if n == "bench":
                continue
            print(f"| core: {n} network(s), {v['meetings']} meetings: resolve + decide (year simulation) | "
                  f"{(v['resolve'] + v['decide']) * 1e3:.0f} ms ({v['year'] * 1e3:.0f} ms, {v['year_calls']} decide "
                  f"calls) | 1,000 < 2 s |")
    if "demo" in results:
        r = results["demo"]
        for w in ("fresh", "second"):
            print(f"| kcg demo, {w} run, median of {r['repeat']} | {r[w]['wall']:.1f} s, {r[w]['rss_mib']:.0f} MiB "
                  f"peak RSS | – |")
    if "cost" in results:
        r = results["cost"]
        for when, key in (("idle", "idle"), ("idle after a month", "idle_after")):
            v = r[key]
            rss = sum(x["rss_mib"] for x in v.values())
            cpu = sum(x["cpu_pct"] for x in v.values())
            parts = ", ".join(f"{k} {x['rss_mib']:.0f} MiB {x['cpu_pct']:.2f} %" for k, x in v.items())
            print(f"| real install {when} ({r['idle_s']:.0f} s window): {parts} | {rss:.0f} MiB RSS, {cpu:.2f} % of "
                  f"one core | < 600 MB, < 2 % |")
        print(f"| disk growth per year, housekeeping keep_days={r['keep_days']} ({r['days']} simulated days x "
              f"{365 / r['days']:.1f}) | {r['year_mib']:.1f} MiB ({r['year_mib_unpruned']:.1f} MiB without pruning) "
              f"| < 50 MB |")
    if "rebuild" in results:
        r = results["rebuild"]
        d = r["demo"]
        print(f"| rebuild (CDR) of the demo's {d['n']} filled protocols (.docx, ~{d['in'] / 1024:.0f} kB), median of "
              f"{r['repeat']} | {d['median_s'] * 1e3:.0f} ms wall (CPU {d['cpu_s'] * 1e3:.0f} ms), peak RSS "
              f"{d['rss']:.0f} MiB | < 1 s, < 200 MB |")
        for key, label in (("docx_20mb", ".docx"), ("odt_20mb", ".odt (saved by LibreOffice)"),
                           ("pdf_20mb", ".pdf (exported by LibreOffice)")):
            if key in r:
                v = r[key]
                print(f"| rebuild of a protocol with 6 pictures, {v['in'] / 2**20:.1f} MiB {label} | {v['s'] * 1e3:.0f} ms "
                      f"wall (CPU {v['cpu_s'] * 1e3:.0f} ms), peak RSS {v['rss']:.0f} MiB | < 1 s, < 200 MB |")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
