"""Shortcut benchmark (not the path users run): reply delivered -> filed and distribution accepted, in-process.

The figures users see come from ``bench_serve.py`` (``kcg serve`` end to end);
this one calls the intake in-process with no Prefect at all: a floor.

    python bench/bench_latency.py [-n 50] [--poll 60] [--seed 1]

Real servers: a private Dovecot (IMAP, LMTP) and Postfix (submission) from
tests/support/mailserver.py; a network config whose addresses all live on that server.
The push side is MEASURED end to end: the listener (kcg_mail.entrypoints.listener, IMAP
IDLE on its own connection) runs the real intake (run_intake under the intake
lock) in-process for each wake-up. For each of ``n`` replies (each a new
version of one meeting's minutes):

    t0   just before the LMTP delivery of the reply to Dovecot starts
    t1   the listener's intake run starts (IDLE woke it)
    t2   that intake run returned: minutes filed in the archive, the state
         recorded, the distribution mail accepted by Postfix (SMTP 250) and
         saved to Sent, the reply moved to "processed"

latency = t2 - t0. Replies are sent one at a time (the next after the
previous one is handled plus a random 0.2-0.6 s), so they do not queue.

The 60 s poll side is MODELLED, not measured (50 x 60 s would take an hour):
a reply arrives at a uniformly random moment within the poll interval, so it
waits U(0, poll) for the next scheduled run, then takes the intake processing
time t2 - t1 measured above for that same reply. (A scheduled Prefect run
would add flow-run start-up on top; the model leaves that out, in favour of
polling.) After the run the benchmark checks: n filings, n distributions
recorded done, n distribution mails in Sent, and each member's INBOX holding
the n distribution mails Postfix delivered.
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import threading
import time
from pathlib import Path

from _common import MAILBOX, first_meeting, intake_time, machine, pct, replies, result_line, server_config, start_server


def main() -> int:
    from _common import lift_distribution_limit

    lift_distribution_limit()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--poll", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from kcg_mail.adapters.smtp_imap import SmtpImapTransport
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.listener import Listener, locked_intake

    tmp = Path(tempfile.mkdtemp(prefix="kcg-bench-latency-"))
    cfg_dir, users = server_config(tmp / "config")
    print(machine())
    with start_server(users) as server:
        print(f"Dovecot + Postfix up in {server.startup_seconds:.1f} s")
        workdir = tmp / "work"
        app = bootstrap(workdir, cfg_dir, mail=SmtpImapTransport(**server.transport_kwargs(MAILBOX)))
        m = first_meeting(app)
        now = intake_time(m)
        msgs = replies(app, m, args.n, "lat")
        done: dict[str, tuple[float, float, str]] = {}
        errors: list[str] = []
        cond = threading.Condition()

        def on_mail() -> None:
            t1 = time.monotonic()
            report = locked_intake(app, now, workdir)
            t2 = time.monotonic()
            errors.extend(report.errors)
            with cond:
                for h in report.handled:
                    tag = re.search(r"#lat\d+", h.subject or "")
                    if tag:
                        done[tag.group(0)] = (t1, t2, h.outcome)
                cond.notify_all()

        source = SmtpImapTransport(**server.transport_kwargs(MAILBOX)).mail_source()
        listener = Listener(source, on_mail, wait_timeout=300).start()
        time.sleep(1.0)  # start-up catch-up run done, IDLE entered
        rng = random.Random(args.seed)
        rows = []
        try:
            for _i, (tag, raw) in enumerate(msgs):
                t0 = time.monotonic()
                server.deliver(raw, MAILBOX)
                with cond:
                    if not cond.wait_for(lambda: tag in done, timeout=60):
                        raise SystemExit(f"{tag} not handled within 60 s; errors {errors}\n{server.logs()}")
                t1, t2, outcome = done[tag]
                rows.append((t2 - t0, t1 - t0, t2 - t1, outcome))
                time.sleep(rng.uniform(0.2, 0.6))
        finally:
            listener.stop()

        filings = app.state.filings(m.id)
        dist = [r for r in app.state.actions(m.id) if r.action == "distribute" and r.status == "done"]
        sent = [r for r in server.messages(MAILBOX, "Sent") if b":distribute:members:" in r]
        member = app.cfg.network.active_members[0].email
        delivered = len(server.wait_for(member, "INBOX", count=args.n, timeout=60))
        outcomes = {o for *_, o in rows}
        ok = (len(filings) == args.n and len(dist) == args.n and len(sent) == args.n and outcomes == {"minutes"}
              and not errors)
        print(f"checks: {len(filings)} filings, {len(dist)} distributions done, {len(sent)} distribution mails "
              f"in Sent, {delivered} delivered by Postfix to {member}, outcomes {sorted(outcomes)}, "
              f"errors {len(errors)} -> {'OK' if ok else 'FAILED'}")
        app.mail.close()
        app.state.close()

    lat = [r[0] for r in rows]
    wake = [r[1] for r in rows]
    proc = [r[2] for r in rows]
    poll = [rng.uniform(0, args.poll) + p for p in proc]
    print(f"\n{args.n} replies, push = measured (IMAP IDLE listener), poll = modelled (U(0,{args.poll:.0f}) s + "
          f"measured processing)")
    print(f"{'':28}{'p50':>9}{'p95':>9}{'max':>9}")
    print(f"{'push: delivered -> done':28}{pct(lat, 50):9.2f}{pct(lat, 95):9.2f}{max(lat):9.2f}  s (measured)")
    print(f"{'  of which wake-up (IDLE)':28}{pct(wake, 50):9.2f}{pct(wake, 95):9.2f}{max(wake):9.2f}  s")
    print(f"{'  of which intake run':28}{pct(proc, 50):9.2f}{pct(proc, 95):9.2f}{max(proc):9.2f}  s")
    print(f"{f'poll {args.poll:.0f} s: delivered -> done':28}{pct(poll, 50):9.2f}{pct(poll, 95):9.2f}"
          f"{max(poll):9.2f}  s (modelled)")
    print(f"goal p95 < 5 s with push: {'met' if pct(lat, 95) < 5 else 'NOT met'}")
    result_line("latency", {"n": args.n, "push_p50": pct(lat, 50), "push_p95": pct(lat, 95),
                            "wake_p50": pct(wake, 50), "wake_p95": pct(wake, 95),
                            "proc_p50": pct(proc, 50), "proc_p95": pct(proc, 95),
                            "poll": args.poll, "poll_p50": pct(poll, 50), "poll_p95": pct(poll, 95), "ok": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
