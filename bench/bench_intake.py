"""Benchmark: one intake run with 10 new replies, in a mailbox of 10 vs 10,000 old messages.

    python bench/bench_intake.py [--old 10 10000] [--new 10] [-r 5]

Both transports, real storage, the real run_intake:

* IMAP (real Dovecot + Postfix from tests/support/mailserver.py): the old messages sit
  in INBOX *below the cursor UID* (the state record's ``mail:cursor`` says
  they were read); they are written into the mailbox's Maildir and indexed by
  Dovecot before timing. Each mailbox size has its own mail user, and the
  repetitions alternate between the two sizes.
* Maildir (the embedded default): the old messages sit in ``processed/``.

Each repetition: a fresh work directory (state + local archive), 10 new
replies delivered (LMTP / file into inbox), then ONE timed ``run_intake``: log
in, fetch, classify, file each reply as a new version, distribute it (SMTP
accepted by Postfix / written to sent), move it. Medians over ``-r`` runs.
"""

from __future__ import annotations

import argparse
import os
import pwd
import tempfile
import time
from pathlib import Path

from _common import (
    CONFIG_DIR,
    MAILBOX,
    first_meeting,
    intake_time,
    machine,
    median,
    replies,
    result_line,
    server_config,
    start_server,
)

OLD = (b"From: someone@outside.test\r\nTo: kcg@kcg.test\r\nSubject: old message %d\r\n"
       b"Message-ID: <old%d@outside.test>\r\nDate: Mon, 2 Jan 2023 10:00:00 +0100\r\n\r\n" + b"x" * 900 + b"\r\n")


def fill_maildir(cur: Path, n: int, uid: int | None = None, gid: int | None = None) -> None:
    cur.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = cur / f"1672650000.M{i}P1.bench:2,S"
        p.write_bytes(OLD % (i, i))
        if uid is not None:
            os.chown(p, uid, gid)


def imap_side(server, user: str, cfg_dir: Path, old: int, new: int, rep: int, tmp: Path, prime: bool) -> float:
    from kcg_mail.adapters.smtp_imap import SmtpImapTransport
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.intake import run_intake

    if prime:
        server.reset(user)
        local, _, dom = user.partition("@")
        maildir = server.root / "mail" / dom / local / "Maildir"
        mail = pwd.getpwnam("mail")
        fill_maildir(maildir / "cur", old, mail.pw_uid, mail.pw_gid)
        for d in (maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            d.mkdir(exist_ok=True)
            os.chown(d, mail.pw_uid, mail.pw_gid)
        server.doveadm("force-resync", "-u", user, "INBOX")
        server.doveadm("mailbox", "status", "-u", user, "messages", "INBOX")  # index it before timing
    status = server.doveadm("-f", "flow", "mailbox", "status", "-u", user, "uidvalidity uidnext messages", "INBOX")
    vals = dict(kv.split("=", 1) for kv in status.split() if "=" in kv)
    assert int(vals["messages"]) == old, vals
    work = tmp / f"imap-{old}-{rep}"
    app = bootstrap(work, cfg_dir, mail=SmtpImapTransport(**server.transport_kwargs(user)))
    app.ledger.intake_cursor.put(f"{vals['uidvalidity']}:{int(vals['uidnext']) - 1}")
    m = first_meeting(app)
    for _, raw in replies(app, m, new, f"i{old}r{rep}x"):
        server.deliver(raw, user)
    t0 = time.perf_counter()
    report = run_intake(app, intake_time(m))
    dt = time.perf_counter() - t0
    assert report.count("minutes") == new and not report.errors, (report.errors, [h.outcome for h in report.handled])
    app.mail.close()
    app.state.close()
    return dt


def maildir_side(root: Path, old: int, new: int, rep: int, tmp: Path) -> float:
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.services.intake import run_intake

    if rep == 0:
        fill_maildir(root / "processed" / "cur", old)
    transport = MaildirTransport(root)
    app = bootstrap(tmp / f"md-{old}-{rep}", CONFIG_DIR, mail=transport)
    m = first_meeting(app)
    for i, (_, raw) in enumerate(replies(app, m, new, f"m{old}r{rep}x")):
        transport.deliver(raw, f"r{rep}-{i}.eml")
    t0 = time.perf_counter()
    report = run_intake(app, intake_time(m))
    dt = time.perf_counter() - t0
    assert report.count("minutes") == new and not report.errors, report.errors
    app.state.close()
    return dt


def main() -> int:
    from _common import lift_distribution_limit

    lift_distribution_limit()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=int, nargs=2, default=[10, 10_000])
    ap.add_argument("--new", type=int, default=10)
    ap.add_argument("-r", "--repeat", type=int, default=5)
    args = ap.parse_args()
    small, big = args.old
    tmp = Path(tempfile.mkdtemp(prefix="kcg-bench-intake-"))
    os.chmod(tmp, 0o755)
    print(machine())
    times: dict[tuple[str, int], list[float]] = {(s, o): [] for s in ("imap", "maildir") for o in (small, big)}

    # Maildir
    roots = {o: tmp / f"maildir-{o}" for o in (small, big)}
    for rep in range(args.repeat):
        for o in (small, big):
            times[("maildir", o)].append(maildir_side(roots[o], o, args.new, rep, tmp))

    # IMAP
    cfg_dir, users = server_config(tmp / "config")
    boxes = {small: MAILBOX, big: "kcg-big@kcg.test"}
    users[boxes[big]] = "big-secret"
    with start_server(users) as server:
        for rep in range(args.repeat):
            for o in (small, big):
                times[("imap", o)].append(imap_side(server, boxes[o], cfg_dir, o, args.new, rep, tmp, prime=rep == 0))

    print(f"\nintake run, {args.new} new replies (each filed + distributed), median of {args.repeat} runs")
    print(f"{'transport':10}{f'{small} old':>12}{f'{big} old':>12}{'ratio':>8}   all runs (s)")
    out = {}
    for s in ("imap", "maildir"):
        a, b = median(times[(s, small)]), median(times[(s, big)])
        out[s] = {"small": a, "big": b, "ratio": b / a}
        runs = " | ".join(" ".join(f"{x:.2f}" for x in times[(s, o)]) for o in (small, big))
        print(f"{s:10}{a:11.2f}s{b:11.2f}s{b / a:8.2f}   {runs}")
    ok = all(v["ratio"] < 1.5 for v in out.values())
    print(f"goal ratio < 1.5: {'met' if ok else 'NOT met'}")
    result_line("intake", {"new": args.new, "old": [small, big], "repeat": args.repeat, **out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
