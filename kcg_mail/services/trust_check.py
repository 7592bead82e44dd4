"""``kcg check --connect``: which receiving servers write Authentication-Results
on the mail that reaches the network's mailbox, so the coordinator can set
``inbound.trusted_authserv_ids`` (see SECURITY.md)."""

from __future__ import annotations

from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import compat32

from kcg_mail.core.inbound.authres import authserv_ids
from kcg_mail.ports import Check, MailTransport


def authserv_checks(mail: MailTransport, trusted: list[str], limit: int = 20) -> list[Check]:
    try:
        heads = mail.recent_headers(limit)
    except Exception as exc:  # a check never fails the whole command
        return [Check("authserv-ids", False, f"could not read recent mail: {type(exc).__name__}: {exc}")]
    if heads is None:
        return [Check("authserv-ids", True,
                      "this mail system cannot list them here: open a reply from a member in the mail program, "
                      "show its headers (Outlook: File > Properties) and read the name after "
                      "'Authentication-Results:' of the topmost one")]
    if not heads:
        return [Check("authserv-ids", True, "no mail in the inbox, processed or quarantine folders yet")]
    topmost: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    parser = BytesHeaderParser(policy=compat32)
    for raw in heads:
        fields = [str(v) for v in (parser.parsebytes(raw).get_all("Authentication-Results") or [])]
        ids = authserv_ids(fields)
        if ids:
            topmost[ids[0]] += 1
        anywhere.update(set(ids))
    seen = ", ".join(f"{i} (topmost on {topmost[i]}, on {n} of {len(heads)})" for i, n in anywhere.most_common())
    detail = f"seen on the {len(heads)} most recent mails: {seen or 'none (no Authentication-Results at all)'}"
    trusted_set = {t.lower() for t in trusted}
    if not trusted_set:
        return [Check("authserv-ids", False, detail + "; inbound.trusted_authserv_ids is empty, so every reply waits "
                      "for approval (fix: set it in config/transport.yaml to your own server's id, see SECURITY.md)")]
    hits = {i for i in topmost if i in trusted_set or (i.startswith("(none") and "exchange-online" in trusted_set)}
    if not hits:
        return [Check("authserv-ids", False, detail + f"; none is a trusted id ({', '.join(sorted(trusted_set))}): "
                      "replies will wait for approval (fix: check inbound.trusted_authserv_ids, see SECURITY.md)")]
    return [Check("authserv-ids", True, detail + f"; trusted: {', '.join(sorted(trusted_set))}")]
