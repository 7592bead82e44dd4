"""Attacks on the intake, each with its expected outcome.

Every case builds one raw mail *as our receiving server hands it over*: the
``Authentication-Results`` fields in ``ar`` are what sits on top of the
header, topmost first (what our own server wrote, and what an attacker
forged below or, for a foreign authserv-id, anywhere). The scenario
(``tests/e2e/test_attacks.py``) is the February 2023 meeting of a four-person
network: host Daniel (gavle.example.se), Lisa a member who is not a filer,
Björn the coordinator; the template mail went to Daniel the day before the
meeting and carries our reply key in its Message-ID and Reply-To.

``outcome`` is the intake's outcome for the mail; no case may file,
distribute, record attendance or answer anybody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
EVIL = "evil.example"


@dataclass(frozen=True)
class Ctx:
    ours: str  # the trusted authserv-id
    mailbox: str
    host: str  # daniel@gavle.example.se
    member: str  # lisa@uppsala.example.se, a member who is not a filer
    coordinator: str
    token: str  # [KCG-2023-02]
    tpl_msgid: str  # our template mail's Message-ID (carries the reply key)
    tpl_reply_to: str  # its Reply-To (kcg+KEY@...)
    tpl_subject: str
    other_msgid: str  # the March template's Message-ID (a key for another meeting and recipient)
    docx: bytes  # the filled minutes of the meeting
    when: datetime  # the day after the meeting, 11:00
    uid: str  # the invitation's iCalendar UID

    @property
    def host_domain(self) -> str:
        return self.host.rpartition("@")[2]


def ar(authserv_id: str, result: str, domain: str, *, dmarc: str | None = None) -> str:
    """One Authentication-Results field body."""
    return (f"{authserv_id}; spf={result} smtp.mailfrom={domain}; dkim={result} header.d={domain}; "
            f"dmarc={dmarc or result} header.from={domain}")


def mail(c: Ctx, *, from_: str | list[str] | None, ar_fields: list[str] = (), subject: str | None = None,
         body: str = "Hej! Här kommer protokollet.\n", attach: bool = True, in_reply_to: str | None = None,
         to: str | None = None, extra: list[tuple[str, str]] = (), date: datetime | None = None,
         ics: str | None = None) -> bytes:
    m = EmailMessage(policy=SMTP)
    froms = [from_] if isinstance(from_, str) else list(from_ or [])
    if froms:
        m["From"] = froms[0]
    m["To"] = to or c.mailbox
    m["Subject"] = subject if subject is not None else f"Protokoll {c.token}"
    m["Date"] = format_datetime(date or c.when)
    m["Message-ID"] = f"<{abs(hash((str(froms), subject, body, str(extra), str(ar_fields))))}@attack.test>"
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    for k, v in extra:
        m[k] = v
    m.set_content(body)
    if ics is not None:
        m.add_attachment(ics.encode(), maintype="text", subtype="calendar", params={"method": "REPLY"},
                         filename="invite.ics")
    elif attach:
        m.add_attachment(c.docx, maintype="application", subtype=DOCX.partition("/")[2], filename="Protokoll.docx")
    raw = m.as_bytes()
    for f in froms[1:]:  # a second From field (EmailMessage refuses to make one)
        raw = f"From: {f}\r\n".encode() + raw
    head = "".join(f"Authentication-Results: {f}\r\n" for f in ar_fields).encode()
    return head + raw


def ics_reply(c: Ctx, attendee: str, partstat: str = "ACCEPTED") -> str:
    return ("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nPRODID:-//Attack//EN\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\n"
            f"UID:{c.uid}\r\nDTSTAMP:20230207T100000Z\r\nDTSTART:20230206T090000Z\r\n"
            f"ATTENDEE;PARTSTAT={partstat}:mailto:{attendee}\r\nORGANIZER:mailto:{c.mailbox}\r\n"
            "SEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Ctx], bytes]
    outcome: str
    why: str  # a word the recorded reason must contain ("" = any)


def _host(c: Ctx) -> str:
    return f"Daniel Värd <{c.host}>"


CASES: list[Case] = [
    # --- forged From: the host's address without our server's say-so
    Case("forged_from_no_authentication_results",
         lambda c: mail(c, from_=_host(c)), "held", "authenticated"),
    Case("forged_from_dmarc_fail",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar(c.ours, "fail", c.host_domain)]), "held", "dmarc=fail"),
    Case("forged_from_dmarc_fail_dkim_pass_other_domain",
         lambda c: mail(c, from_=_host(c), ar_fields=[
             f"{c.ours}; spf=fail smtp.mailfrom={c.host_domain}; dkim=pass header.d={EVIL}; "
             f"dmarc=fail header.from={c.host_domain}"]), "held", "dmarc=fail"),
    Case("foreign_authserv_id_pass_above_ours_fail",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar("mx." + EVIL, "pass", c.host_domain),
                                                       ar(c.ours, "fail", c.host_domain)]), "held", "dmarc=fail"),
    Case("foreign_authserv_id_pass_below_ours_fail",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar(c.ours, "fail", c.host_domain),
                                                       ar("mx." + EVIL, "pass", c.host_domain)]), "held", "dmarc=fail"),
    Case("foreign_authserv_id_only",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar("mx." + EVIL, "pass", c.host_domain)]),
         "held", "no Authentication-Results from our receiving server"),
    Case("our_id_forged_below_our_real_fail",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar(c.ours, "fail", c.host_domain),
                                                       ar(c.ours, "pass", c.host_domain)]), "held", "dmarc=fail"),
    Case("our_id_as_suffix_of_a_foreign_id",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar(c.ours + "." + EVIL, "pass", c.host_domain)]),
         "held", "no Authentication-Results"),
    Case("our_id_only_in_a_comment",
         lambda c: mail(c, from_=_host(c), ar_fields=[f"mx.{EVIL} ({c.ours}); dmarc=pass header.from={c.host_domain}"]),
         "held", "no Authentication-Results"),
    Case("exchange_style_field_without_authserv_id",
         lambda c: mail(c, from_=_host(c), ar_fields=[f"spf=pass (sender IP is 192.0.2.1) smtp.mailfrom={c.host_domain}; "
                                                       f"dkim=pass header.d={c.host_domain};dmarc=pass action=none "
                                                       f"header.from={c.host_domain};compauth=pass reason=100"]),
         "held", "no Authentication-Results"),
    Case("dmarc_pass_for_another_domain",
         lambda c: mail(c, from_=_host(c), ar_fields=[ar(c.ours, "pass", EVIL)]), "held", "not for the From domain"),
    Case("spf_pass_not_aligned",
         lambda c: mail(c, from_=_host(c), ar_fields=[f"{c.ours}; spf=pass smtp.mailfrom=bounce@{EVIL}; dkim=none"]),
         "held", "not authenticated"),
    Case("dkim_pass_not_aligned",
         lambda c: mail(c, from_=_host(c), ar_fields=[f"{c.ours}; dkim=pass header.d={EVIL}; spf=softfail"]),
         "held", "not authenticated"),
    Case("dkim_pass_for_a_bare_tld",
         lambda c: mail(c, from_=_host(c), ar_fields=[f"{c.ours}; dkim=pass header.d=se"]), "held", "not authenticated"),
    Case("dmarc_pass_hidden_in_a_quoted_reason",
         lambda c: mail(c, from_=_host(c), ar_fields=[f'{c.ours}; dmarc=fail reason="dmarc=pass" '
                                                       f'header.from={c.host_domain}']), "held", "dmarc=fail"),
    # --- who is in From
    Case("empty_from_sender_is_host",
         lambda c: mail(c, from_="", extra=[("Sender", c.host)], ar_fields=[ar(c.ours, "pass", c.host_domain)]),
         "held", "From has no address"),
    Case("no_from_field_return_path_host",
         lambda c: mail(c, from_=None, extra=[("Return-Path", f"<{c.host}>")],
                        ar_fields=[ar(c.ours, "pass", c.host_domain)]), "held", "From has no address"),
    Case("addressless_from",
         lambda c: mail(c, from_="Daniel Värd", ar_fields=[ar(c.ours, "pass", c.host_domain)]),
         "held", "From has no address"),
    Case("two_from_mailboxes_host_first",
         lambda c: mail(c, from_=f"{c.host}, boss@{EVIL}", ar_fields=[ar(c.ours, "pass", c.host_domain)]),
         "held", "2 addresses"),
    Case("two_from_fields",
         lambda c: mail(c, from_=[c.host, f"boss@{EVIL}"], ar_fields=[ar(c.ours, "pass", c.host_domain)]),
         "held", "2 addresses"),
    Case("reply_to_is_host",
         lambda c: mail(c, from_=f"boss@{EVIL}", extra=[("Reply-To", c.host)], ar_fields=[ar(c.ours, "pass", EVIL)]),
         "held", "not a member"),
    Case("sender_is_host",
         lambda c: mail(c, from_=f"boss@{EVIL}", extra=[("Sender", c.host)], ar_fields=[ar(c.ours, "pass", EVIL)]),
         "held", "not a member"),
    Case("display_name_is_host_address",
         lambda c: mail(c, from_=f'"{c.host}" <boss@{EVIL}>', ar_fields=[ar(c.ours, "pass", EVIL)]),
         "held", "not a member"),
    Case("encoded_word_display_name_spoof",
         lambda c: mail(c, from_=f"=?utf-8?q?{c.host.replace('@', '=40')}?= <boss@{EVIL}>",
                        ar_fields=[ar(c.ours, "pass", EVIL)]), "held", ""),  # decoded, it names two addresses
    Case("authenticated_stranger_replies_to_our_mail",
         lambda c: mail(c, from_=f"boss@{EVIL}", in_reply_to=c.tpl_msgid, subject="SV: " + c.tpl_subject,
                        ar_fields=[ar(c.ours, "pass", EVIL)]), "held", "not a member"),
    Case("authenticated_member_not_filer",
         lambda c: mail(c, from_=c.member, ar_fields=[ar(c.ours, "pass", c.member.rpartition("@")[2])]),
         "held", "not a filer"),
    Case("no_in_reply_to_right_date_forged",
         lambda c: mail(c, from_=_host(c), subject="Protokollet", ar_fields=[ar(c.ours, "fail", c.host_domain)]),
         "held", "dmarc=fail"),
    Case("stolen_reply_key_forged_from",
         lambda c: mail(c, from_=_host(c), in_reply_to=c.tpl_msgid, to=c.tpl_reply_to, subject="SV: " + c.tpl_subject),
         "held", "authenticated"),
    Case("reply_key_of_host_used_by_member",
         lambda c: mail(c, from_=c.member, in_reply_to=c.tpl_msgid, to=c.tpl_reply_to, subject="SV: " + c.tpl_subject,
                        ar_fields=[ar(c.ours, "pass", c.member.rpartition("@")[2])]), "held", "not a filer"),
    # --- mails we would answer or record, not proven
    Case("forged_no_attachment_gets_no_answer",
         lambda c: mail(c, from_=_host(c), attach=False), "discarded", "authenticated"),
    Case("calendar_response_for_another_member",
         lambda c: mail(c, from_=c.member, subject="Accepterat: " + c.token, attach=False,
                        ics=ics_reply(c, c.coordinator, "DECLINED"),
                        ar_fields=[ar(c.ours, "pass", c.member.rpartition("@")[2])]), "discarded", "response for"),
    Case("calendar_response_from_non_member",
         lambda c: mail(c, from_=f"boss@{EVIL}", subject="Accepterat: " + c.token, attach=False,
                        ics=ics_reply(c, f"boss@{EVIL}"), ar_fields=[ar(c.ours, "pass", EVIL)]),
         "discarded", "not a member"),
    Case("calendar_response_forged_member",
         lambda c: mail(c, from_=c.member, subject="Accepterat: " + c.token, attach=False,
                        ics=ics_reply(c, c.member, "DECLINED")), "discarded", "authenticated"),
    Case("forged_own_address",
         lambda c: mail(c, from_=c.mailbox), "own", ""),
    # our marker header and our address in From, as our own copy of a distribution has them, but not
    # our Message-ID: on IMAP it must not be filed in Sent as a copy of mail we sent (crash recovery
    # and `kcg state rebuild` would take it for sent); it is read as incoming mail from our address
    Case("forged_own_copy_marker",
         lambda c: mail(c, from_=c.mailbox, extra=[("X-KCG-Mail", "2023-02:distribute:members:v1")]), "own", ""),
]
