"""Benchmark: a host's reply -> the distribution in a member's INBOX, on the path users run.

    python bench/bench_serve.py [-n 50] [--poll-n 30] [--shortcut-n 50] [--faults 3] [--seed 1]

One run, one set of real servers (tests/support/serve_harness.py): a private Dovecot +
Postfix, a real ``prefect server``, and ``kcg serve`` as a subprocess with the
SMTP/IMAP transport and Prefect's default runner settings. Each reply is a new
version of one meeting's minutes, submitted by the host through SMTP
submission (Postfix, STARTTLS, SASL) and delivered by Postfix to the network
mailbox over LMTP. The clock stops when Dovecot writes the distribution into
a member's Maildir. Times are Dovecot's own (the Maildir file names carry its
delivery time), so polling for the file adds nothing:

    lmtp     the reply lands in the network mailbox (Dovecot's LMTP delivery)
    member   the distribution lands in a member's INBOX

Rounds, in this order:

1. push: ``kcg serve`` (listener + in-process intake flow run), ``n`` replies
   one at a time (the next 0.2-0.6 s after the previous distribution);
2. faults: ``--faults`` times Dovecot is stopped for 5 s and started again;
   (a) a reply submitted right after its return, (b) a reply delivered just
   before it went down: time from the server's return to the distribution;
3. restarts: ``--restarts`` times ``kcg serve`` is stopped with SIGTERM, a
   reply arrives, and ``kcg serve`` is started again: seconds from the start
   command to the distribution (the process start, Prefect's imports and the
   start-up intake run included), and how long SIGTERM took;
4. shortcut: the intake called in-process by a listener in this process
   (``bench_latency.py``'s path, no Prefect), the same replies and clock: a
   floor, not what users run;
5. poll: ``kcg serve`` without the listener and the intake scheduled every
   minute (Prefect's runner polls, starts a subprocess per run): ``--poll-n``
   replies at random moments (1-11 s apart), handled by whichever minute's run
   comes next.

Prints a table and a ``RESULT`` line for ``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from _common import MAILBOX, machine, pct, replies  # noqa: E402

POLL_SERVE = ("import sys; sys.path.insert(0, '.'); from flows.serve import build_runner, run_runner; "
              "run_runner(*build_runner(sys.argv[1], sys.argv[2], 'KCG', '* * * * *'))")


class Watcher:
    """Finds each tagged distribution in ``member``'s INBOX as Dovecot writes it."""

    def __init__(self, stack, member: str):
        self.stack, self.member = stack, member
        self.seen: set[str] = set()
        self.found: dict[str, float] = {}

    def scan(self) -> None:
        for p in self.stack.inbox(self.member):
            if p.name in self.seen:
                continue
            try:
                raw = p.read_bytes()
            except FileNotFoundError:
                continue
            self.seen.add(p.name)
            if b":distribute:members:" not in raw:
                continue
            from support.serve_harness import Delivered, delivered_at

            text = Delivered(p, 0.0, raw).text()
            for line in text.splitlines():
                if line.startswith("- Beslut ") and ":" in line:
                    self.found.setdefault(line[len("- Beslut "):line.index(":")], delivered_at(p))

    def wait(self, key: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            if key in self.found:
                return self.found[key]
            if time.monotonic() > deadline:
                raise SystemExit(f"distribution of {key} not in {self.member}'s INBOX after {timeout} s:\n"
                                 f"{self.stack.log()[-3000:]}")
            time.sleep(0.01)


def key_of(i: int, prefix: str) -> str:
    return f"{prefix}{i}"


def lmtp_time(stack, tag: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = stack.delivery_of(MAILBOX, tag.encode())
        if t is not None:
            return t
        time.sleep(0.02)
    raise SystemExit(f"{tag} never reached {MAILBOX}")


def push_round(stack, app, m, host, watcher, n: int, rng: random.Random) -> list[tuple[float, float]]:
    rows = []
    for i, (tag, raw) in enumerate(replies(app, m, n, "push")):
        t_submit = stack.submit(raw, host)
        t_member = watcher.wait(key_of(i, "push"), 120)
        t_lmtp = lmtp_time(stack, tag)
        rows.append((t_member - t_lmtp, t_member - t_submit, t_lmtp, t_member))
        print(f"  push {i + 1:3d}/{n}: {t_member - t_lmtp:6.2f} s from LMTP, {t_member - t_submit:6.2f} s "
              f"from submission", flush=True)
        time.sleep(rng.uniform(0.2, 0.6))
    return rows


def breakdown(stack, rows) -> tuple[list[float], list[float]]:
    """Split each push latency at the start of the flow run that handled it
    (the first run started after the LMTP delivery): wake-up + trigger, then the run."""
    from datetime import datetime

    starts = sorted(datetime.fromisoformat(r["start_time"].replace("Z", "+00:00")).timestamp()
                    for r in stack.intake_runs() if r.get("start_time") and "listener" in r["tags"])
    wake, run = [], []
    for _, _, t_lmtp, t_member in rows:
        s = next((t for t in starts if t_lmtp < t < t_member), None)
        if s is not None:
            wake.append(s - t_lmtp)
            run.append(t_member - s)
    return wake, run


def fault_round(stack, app, m, host, watcher, k: int) -> tuple[list[float], list[float]]:
    after, before = [], []
    msgs = replies(app, m, 2 * k, "fault")
    for r in range(k):
        # (a) down 5 s; a reply right after the server's return
        stack.mail.restart_dovecot(down_for=5.0)
        t_back = time.time()
        stack.submit(msgs[2 * r][1], host)
        after.append(watcher.wait(key_of(2 * r, "fault"), 300) - t_back)
        # (b) a reply that landed just before the server went down
        tag, raw = msgs[2 * r + 1]
        stack.submit(raw, host)
        lmtp_time(stack, tag)
        stack.mail.stop_dovecot()
        time.sleep(5.0)
        stack.mail.start_dovecot()
        t_back = time.time()
        before.append(watcher.wait(key_of(2 * r + 1, "fault"), 300) - t_back)
        print(f"  fault {r + 1}/{k}: reply after return {after[-1]:.2f} s, reply from before the outage "
              f"{before[-1]:.2f} s after return", flush=True)
        time.sleep(1.0)
    return after, before


def restart_round(stack, app, m, host, watcher, k: int) -> tuple[list[float], list[float]]:
    """``kcg serve`` stopped (SIGTERM), a reply arrives, ``kcg serve`` started again:
    seconds from the start command to the distribution, and SIGTERM's stop times."""
    took, stops = [], []
    for r, (tag, raw) in enumerate(replies(app, m, k, "restart")):
        stops.append(stack.stop_serve())
        stack.submit(raw, host)
        lmtp_time(stack, tag)
        t0 = time.time()
        stack.start_serve()
        took.append(watcher.wait(key_of(r, "restart"), 180) - t0)
        stack.wait_ready(runs_before=len([x for x in stack.intake_runs() if x["state_type"] == "COMPLETED"]) - 1)
        print(f"  restart {r + 1}/{k}: stopped in {stops[-1]:.2f} s; the reply from meanwhile distributed "
              f"{took[-1]:.2f} s after the start command", flush=True)
    return took, stops


def shortcut_round(stack, app, m, host, watcher, n: int, rng: random.Random) -> list[tuple[float, float]]:
    """The intake in this process (no Prefect, no kcg serve): bench_latency.py's path."""
    from kcg_mail.adapters.smtp_imap import SmtpImapTransport
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.listener import Listener, locked_intake

    workdir = stack.tmp / "work-shortcut"
    kw = stack.mail.transport_kwargs(MAILBOX)
    sapp = bootstrap(workdir, stack.config_dir, mail=SmtpImapTransport(**kw))
    now = None
    from kcg_mail.services.app import now_local

    now = now_local(sapp.cfg)
    listener = Listener(SmtpImapTransport(**kw).mail_source(), lambda: locked_intake(sapp, now, workdir),
                        wait_timeout=300).start()
    time.sleep(1.0)
    rows = []
    try:
        for i, (tag, raw) in enumerate(replies(app, m, n, "short")):
            t_submit = stack.submit(raw, host)
            t_member = watcher.wait(key_of(i, "short"), 120)
            t_lmtp = lmtp_time(stack, tag)
            rows.append((t_member - t_lmtp, t_member - t_submit))
            time.sleep(rng.uniform(0.2, 0.6))
    finally:
        listener.stop()
        sapp.mail.close()
        sapp.state.close()
    return rows


def poll_round(stack, app, m, host, watcher, n: int, rng: random.Random) -> list[tuple[float, float]]:
    stack.start_serve(cmd=[sys.executable, "-c", POLL_SERVE, str(stack.workdir), str(stack.config_dir)])
    time.sleep(5.0)  # serving; the first minute's run comes when it comes
    sent = []
    for i, (tag, raw) in enumerate(replies(app, m, n, "poll")):
        sent.append((i, tag, stack.submit(raw, host)))
        time.sleep(rng.uniform(1.0, 11.0))
    rows = []
    for i, tag, t_submit in sent:
        t_member = watcher.wait(key_of(i, "poll"), 240)
        rows.append((t_member - lmtp_time(stack, tag), t_member - t_submit))
    # SIGTERM cancels a scheduled run that is working (Prefect's runner kills its
    # subprocess): stop between two minutes' runs, as the push round's stop does
    stack.wait_no_run_working()
    stack.stop_serve()
    return rows


def stats(values: list[float]) -> tuple[float, float, float]:
    return pct(values, 50), pct(values, 95), max(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="push replies through kcg serve")
    ap.add_argument("--faults", type=int, default=3, help="mail server restarts")
    ap.add_argument("--restarts", type=int, default=3, help="kcg serve stopped and started again")
    ap.add_argument("--shortcut-n", type=int, default=50, help="in-process intake replies (0: skip)")
    ap.add_argument("--poll-n", type=int, default=30, help="replies with a 60 s poll (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from support.serve_harness import host_and_member, serve_stack

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kcg-bench-serve-"))
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict = {}
    with serve_stack(tmp) as stack:
        print(f"Dovecot + Postfix up in {stack.mail.startup_seconds:.1f} s, Prefect server in "
              f"{stack.prefect.startup_seconds:.1f} s")
        app, m, host, member = host_and_member(stack.config_dir)
        watcher = Watcher(stack, member)
        t0 = time.monotonic()
        stack.start_serve()
        stack.wait_ready()
        print(f"kcg serve ready (start-up intake run completed) in {time.monotonic() - t0:.1f} s")

        print(f"\n1. push through kcg serve, {args.n} replies")
        results["push"] = push_round(stack, app, m, host, watcher, args.n, rng)
        results["push_wake"], results["push_run"] = breakdown(stack, results["push"])
        if args.faults:
            print(f"\n2. faults: Dovecot down 5 s, {args.faults} times")
            results["fault_after"], results["fault_before"] = fault_round(stack, app, m, host, watcher, args.faults)
        if args.restarts:
            print(f"\n3. restarts: kcg serve stopped, a reply, kcg serve started, {args.restarts} times")
            results["restart"], results["restart_stop"] = restart_round(stack, app, m, host, watcher, args.restarts)
        t_stop = stack.stop_serve()
        print(f"kcg serve stopped (SIGTERM) in {t_stop:.2f} s; runs: "
              f"{sorted({r['state_type'] for r in stack.intake_runs()})}")
        if args.shortcut_n:
            print(f"\n4. shortcut: in-process intake, {args.shortcut_n} replies")
            results["shortcut"] = shortcut_round(stack, app, m, host, watcher, args.shortcut_n, rng)
        if args.poll_n:
            print(f"\n5. 60 s poll (kcg serve without listener, intake every minute), {args.poll_n} replies")
            results["poll"] = poll_round(stack, app, m, host, watcher, args.poll_n, rng)
        bad = [r for r in stack.intake_runs() if r["state_type"] in ("CANCELLED", "CRASHED")]
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print(f"\n{'':58}{'n':>4}{'p50':>8}{'p95':>8}{'max':>8}")
    out: dict = {"n": args.n}
    labels = {"push": "kcg serve, push (what users run)", "shortcut": "in-process intake (shortcut, not kcg serve)",
              "poll": "kcg serve, 60 s poll, no listener"}
    for key in ("push", "shortcut", "poll"):
        if key not in results:
            continue
        rows = results[key]
        for j, what in ((0, "LMTP delivery"), (1, "SMTP submission")):
            p50, p95, mx = stats([r[j] for r in rows])
            print(f"{labels[key] + ': ' + what + ' -> member INBOX':58}{len(rows):4d}{p50:8.2f}{p95:8.2f}{mx:8.2f}")
            out[f"{key}_{'lmtp' if j == 0 else 'submit'}"] = [p50, p95, mx, len(rows)]
    for key, what in (("push_wake", "  of which LMTP -> flow run started (IDLE 0.5 s + trigger)"),
                      ("push_run", "  of which flow run started -> member INBOX")):
        if results.get(key):
            p50, p95, mx = stats(results[key])
            print(f"{what:58}{len(results[key]):4d}{p50:8.2f}{p95:8.2f}{mx:8.2f}")
            out[key] = [p50, p95, mx, len(results[key])]
    for key, what in (("fault_after", "fault: server back -> reply sent after return distributed"),
                      ("fault_before", "fault: server back -> reply from before outage distributed"),
                      ("restart", "restart: start -> reply from while stopped distributed"),
                      ("restart_stop", "restart: SIGTERM -> kcg serve exited")):
        if key in results:
            p50, p95, mx = stats(results[key])
            print(f"{what:58}{len(results[key]):4d}{p50:8.2f}{p95:8.2f}{mx:8.2f}")
            out[key] = [p50, p95, mx, len(results[key])]
    p95 = out["push_lmtp"][1]
    print(f"goal p95 < 2 s (LMTP delivery -> member INBOX, kcg serve): {'met' if p95 < 2 else 'NOT met'}")
    if bad:
        print("cancelled/crashed intake runs:")
        for r in bad:
            print(f"  {r['name']} {r['state_type']} ({r['state_name']}): tags {r['tags']}, expected "
                  f"{r['expected_start_time']}, started {r['start_time']}, ended {r['end_time']}, "
                  f"{(r.get('state') or {}).get('message')}")
    out["ok"] = not bad
    out["machine"] = machine()
    print("RESULT " + __import__("json").dumps({"bench": "serve", **out}), flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
