"""Checking what the real intake made of the whole corpus, on any transport."""

from __future__ import annotations

import email
import re
from collections import Counter
from datetime import date
from email import policy

from kcg_mail.core import inbound
from kcg_mail.core.plan import archive_folder, protocol_filename
from kcg_mail.services.intake import msg_key
from support.corpus import CORPUS, MANIFEST
from support.cycle_driver import (
    at,
    network_emails,
    out_from_mime,
)
from support.helpers import authenticated

KCG_TEST = "kcg@kcg.test"


CORPUS_NOW = at(date(2024, 2, 1), 12)  # test_inbound's MatchContext.today


def check_corpus_outcomes(app, keys: dict[str, str], sent: list[bytes], moved: dict[str, list[bytes]],
                          inbox_left: int, report) -> None:
    """``keys``: corpus file -> msg_key of the message as the transport delivered
    it; ``sent``: raw copies of what went out; ``moved``: folder -> raw messages."""
    assert report.errors == []
    assert inbox_left == 0, "every message left the inbox"
    assert sum(len(v) for v in moved.values()) == len(MANIFEST), {k: len(v) for k, v in moved.items()}
    folder_of = {msg_key(r): f for f, raws in moved.items() for r in raws}
    # the incoming messages (a guest's invitation waiting for the coordinator is a record too)
    records = {r.msg_key: r for r in app.state.messages() if not r.ref.startswith("guest_invitation:")}
    assert len(records) == len(MANIFEST) and all(r.status == "done" for r in records.values())

    outs = [(out_from_mime(r), _parse(r)) for r in sent]
    allowed = network_emails(app)
    for o, _ in outs:
        assert o.to and o.to <= allowed, f"{o.key} went to {sorted(o.to - allowed)}"
    replies = [(o, msg) for o, msg in outs if o.action == "reply_problem"]
    # at most one answer per meeting + sender + day
    per = Counter((o.meeting_id, tuple(sorted(o.to)), o.key.rsplit(":", 1)[1]) for o, _ in replies)
    assert all(n == 1 for n in per.values()), per
    answered = {str(msg["In-Reply-To"]) for _, msg in replies}

    seen_outcomes = Counter()
    for e in MANIFEST:
        raw = (CORPUS / e["file"]).read_bytes()
        rec = records[keys[e["file"]]]
        kind, mid = e["kind"], e["meeting_id"]
        seen_outcomes[rec.outcome] += 1
        where = f"{e['file']}: {rec.outcome} ({rec.reason})"
        if kind == "not_allowed" and rec.outcome == "held":
            # a file from someone who may not file: waits for the coordinator's approval
            assert rec.meeting_id == mid and app.state.get(f"held:{rec.msg_key}"), where
        elif kind == "minutes":
            assert rec.outcome in ("minutes", "duplicate", "bad_minutes"), where
            assert rec.meeting_id == mid, where
            if rec.outcome == "minutes":
                assert any(f.source_msg_key == rec.msg_key for f in app.state.filings(mid)), where
        elif kind == "calendar_response" and mid is None:
            assert rec.outcome == "unmatched", where  # a reply to an invitation we do not know
        else:
            assert rec.outcome == kind, where
            assert rec.meeting_id == mid, where
        if kind == "calendar_response" and mid is not None:
            who, _, partstat = rec.reason.partition(": ")
            assert partstat in ("ACCEPTED", "DECLINED", "TENTATIVE"), where
            assert app.state.attendance(mid).get(who) in ("ACCEPTED", "DECLINED", "TENTATIVE"), where
        expect_folder = "processed" if rec.outcome in PROCESSED else "quarantine"
        assert folder_of[keys[e["file"]]] == expect_folder, where
        msgid = str(_parse(raw)["Message-ID"] or "")
        if kind in ("not_allowed", "unmatched", "automatic", "own", "calendar_response"):
            assert msgid not in answered, f"{where}: was answered"
        if rec.outcome in ("bad_minutes", "no_minutes") and rec.sender in {p.email for p in app.cfg.network.members}:
            # answered (or covered by the one answer of that day for this meeting and sender)
            assert "svar: sent" in rec.reason or "svar: already" in rec.reason, where

    # specific outcomes the manifest notes promise
    by_file = {e["file"]: records[keys[e["file"]]] for e in MANIFEST}
    assert by_file["09_docm_minutes.eml"].outcome == "bad_minutes"
    assert by_file["01_outlook_win_docx_sv.eml"].outcome == "minutes"
    assert seen_outcomes["minutes"] >= 10, seen_outcomes

    # the archive: only names from the naming convention, never from an attachment
    root_files = [f for folder in {archive_folder(app.cfg, m) for m in app.meetings}
                  for f in app.archive.list(folder)]
    assert root_files
    allowed_names = {protocol_filename(app.cfg, m).removesuffix(".docx") for m in app.meetings}
    att_names = set()
    for raw in corpus_raws().values():
        for a in inbound.parse(raw).attachments:
            if a.filename:
                att_names |= {a.filename.lower(), a.filename.rsplit(".", 1)[0].strip().lower()}
    filed = {f.path for m in app.meetings for f in app.state.filings(m.id)}
    for f in root_files:
        name = f.path.rpartition("/")[2]
        stem = re.sub(r"( \(v\d+\))?\.(docx|pdf|odt)$", "", name)
        assert stem in allowed_names or re.fullmatch(r"\d{4} KCG Beslutslogg\.csv", name), f.path
        assert name.lower() not in att_names and stem.lower() not in att_names, f.path
    assert filed <= {f.path for f in root_files}


def accept_domains(server, domains: set[str]) -> None:
    """Let the private test Postfix deliver these domains to Dovecot too
    (tests/mailserver.py delivers only @kcg.test) and wait until it does."""
    import smtplib
    import subprocess
    import time

    value = ", ".join(sorted(domains))
    subprocess.run(["/usr/sbin/postconf", "-c", str(server.postfix_dir), "-e", f"virtual_mailbox_domains = {value}"],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["/usr/sbin/postfix", "-c", str(server.postfix_dir), "reload"], check=True, capture_output=True,
                   timeout=30)
    probe = sorted(d for d in domains if d != "kcg.test")[0]
    deadline = time.monotonic() + 15
    while True:
        with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
            smtp.starttls(context=server.ssl_context())
            smtp.login(KCG_TEST, server.users[KCG_TEST])
            smtp.mail(KCG_TEST)
            code, _ = smtp.rcpt(f"probe@{probe}")
            smtp.rset()
        if code == 250 or time.monotonic() > deadline:
            assert code == 250, f"Postfix still refuses @{probe} after reload"
            return
        time.sleep(0.2)


DOMAIN = "svenskastadskarnor.example.se"


PROCESSED = {"minutes", "duplicate", "calendar_response", "automatic", "own"}


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def corpus_raws() -> dict[str, bytes]:
    """The corpus as our receiving server hands it over: genuine mail, so with
    its Authentication-Results (pass for the From domain) on top."""
    return {e["file"]: authenticated((CORPUS / e["file"]).read_bytes()) for e in MANIFEST}
