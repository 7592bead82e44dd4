"""The corpus meets the product: every hand-written message of tests/corpus
(Outlook, Gmail, Apple Mail, TNEF, RFC 2231, forwarded, automatic ...) is put
on top of a real run of the shipped plan (tests/support/real_run.py): its
In-Reply-To/References point at the Message-IDs the product really sent, its
Date follows the shipped plan's meeting dates. The intake then runs on the
state and mailbox of that run, on the shipped config as it is (no dates bent
to fit the corpus)."""

from __future__ import annotations

import email
import shutil
from email import policy

import pytest
from support.corpus import CORPUS, MANIFEST
from support.corpus_cycle import CORPUS_NOW, check_corpus_outcomes
from support.helpers import close, make_app
from support.real_run import corpus_id_map, readdress

from kcg_mail.services.intake import msg_key, run_intake

pytestmark = pytest.mark.slow


def readdressed(index) -> dict[str, bytes]:
    ids, shift = corpus_id_map(index)
    return {e["file"]: readdress((CORPUS / e["file"]).read_bytes(), e["meeting_id"], ids, shift) for e in MANIFEST}


def test_replies_refer_to_what_the_product_sent(shipped_year):
    _, index = shipped_year
    real_ids = {s.message_id for s in index.values()}
    raws = readdressed(index)
    referring = 0
    for name, raw in raws.items():
        msg = email.message_from_bytes(raw, policy=policy.default)
        refs = " ".join(str(msg[h] or "") for h in ("In-Reply-To", "References"))
        ours = [r for r in refs.split() if r.endswith("@svenskastadskarnor.example.se>")]
        for r in ours:
            assert r in real_ids, f"{name}: {r} is not a Message-ID the product sent"
        referring += bool(ours)
    assert referring >= 10, "the corpus answers real mails"
    # the hand-made ids are gone: a message answering a template answers the real one
    from support.corpus import DOMAIN
    from support.real_run import message_id_for

    assert not any(message_id_for("2023-02:template:daniel@gavle.example.se", DOMAIN).encode() in r
                   for r in raws.values())


def test_corpus_through_real_intake_on_the_real_run(shipped_year, tmp_path):
    src, index = shipped_year
    work = tmp_path / "work"
    shutil.copytree(src, work)
    app = make_app(work)  # the shipped config, as the real run had it
    sent_before = {p.name for p in (work / "mail" / "sent" / "cur").iterdir()}
    raws = readdressed(index)
    for name, raw in raws.items():
        app.mail.deliver(raw, name)
    report = run_intake(app, CORPUS_NOW)
    mail_root = work / "mail"
    moved = {f: [p.read_bytes() for p in (mail_root / f / "cur").iterdir()] for f in ("processed", "quarantine")}
    inbox_left = len(app.mail.fetch_new(None).messages)
    sent = [p.read_bytes() for p in sorted((mail_root / "sent" / "cur").iterdir()) if p.name not in sent_before]
    check_corpus_outcomes(app, {n: msg_key(r) for n, r in raws.items()}, sent, moved, inbox_left, report)
    # a second intake changes nothing
    again = run_intake(app, CORPUS_NOW)
    assert again.handled == [] and len(list((mail_root / "sent" / "cur").iterdir())) == len(sent) + len(sent_before)
    close(app)
