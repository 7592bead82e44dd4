"""Benchmark: ``kcg demo`` wall time and peak memory, fresh work directory and second run.

    python bench/bench_demo.py [-r 3]

Runs the real command (``kcg demo -w DIR``, the venv's entry point) as a
subprocess, as a user would: no PREFECT_API_URL (Prefect's ephemeral server)
and no PREFECT_HOME, so the fresh run also builds a brand-new Prefect home
under DIR/prefect. The second run uses the same DIR (everything already done,
nothing new sent). Wall time by the clock around the subprocess; peak memory
is ``ru_maxrss`` from ``os.wait4`` for that child: the largest resident set of
the process or of any descendant it waited for (what ``/usr/bin/time -v``
reports as "Maximum resident set size"). Medians over ``-r`` pairs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CONFIG_DIR, machine, median, result_line


def kcg() -> list[str]:
    exe = Path(sys.executable).parent / "kcg"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from kcg_mail.entrypoints.cli import app; app()"]


def one(workdir: Path) -> tuple[float, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["COLUMNS"] = "200"
    t0 = time.perf_counter()
    proc = subprocess.Popen([*kcg(), "demo", "-w", str(workdir), "-c", str(CONFIG_DIR)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"kcg demo failed ({proc.returncode}):\n{out[-3000:]}")
    summary = next((ln for ln in out.splitlines() if "flow runs" in ln), "")
    where = next((ln for ln in out.splitlines() if ln.startswith("Where the time went")), "")
    return wall, ru.ru_maxrss / 1024, (summary.strip() + "\n    " + where.strip()).rstrip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--repeat", type=int, default=3)
    args = ap.parse_args()
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    res = {"fresh": [], "second": []}
    for i in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="kcg-bench-demo-")) / "demo"
        for which in ("fresh", "second"):
            wall, rss, summary = one(work)
            res[which].append((wall, rss))
            print(f"run {i + 1} {which:6}: {wall:6.1f} s wall, {rss:6.0f} MiB peak RSS   [{summary}]", flush=True)
        shutil.rmtree(work.parent, ignore_errors=True)
    print(f"\nkcg demo, median of {args.repeat}")
    out = {}
    for which, rows in res.items():
        w, r = median([x[0] for x in rows]), median([x[1] for x in rows])
        out[which] = {"wall": w, "rss_mib": r}
        print(f"{which:7} {w:6.1f} s wall  {r:6.0f} MiB peak RSS")
    result_line("demo", {"repeat": args.repeat, **out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
