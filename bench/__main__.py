"""Run every benchmark and print one table:  python -m bench [--quick]

Each benchmark runs as its own process (``python bench/bench_X.py``) so its
memory and start-up do not affect the next one; each prints its own figures
and a ``RESULT`` line collected here. ``--quick`` uses fewer replies/repeats
(a smoke run, not figures to publish). Needs root and the Debian Dovecot and
Postfix packages for the latency and intake benchmarks (.ci/install-mail.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = {"bench_latency.py": ["-n", "50"], "bench_intake.py": ["-r", "5"], "bench_core.py": ["-r", "5"],
        "bench_demo.py": ["-r", "3"], "bench_parse.py": ["-r", "5"]}
QUICK = {"bench_latency.py": ["-n", "10"], "bench_intake.py": ["-r", "1", "--old", "10", "1000"],
         "bench_core.py": ["-r", "1"], "bench_demo.py": ["-r", "1"], "bench_parse.py": ["-r", "1"]}


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
    if "latency" in results:
        r = results["latency"]
        print(f"| reply -> filed + distribution accepted, push (IDLE), {r['n']} replies, measured | "
              f"p50 {r['push_p50']:.2f} s, p95 {r['push_p95']:.2f} s | p95 < 5 s |")
        print(f"| same, {r['poll']:.0f} s poll (modelled: U(0,{r['poll']:.0f}) + measured run) | "
              f"p50 {r['poll_p50']:.1f} s, p95 {r['poll_p95']:.1f} s | – |")
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
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
