"""What is this incoming email? The pure core of intake, one question a module:

- ``parse_mail``     raw RFC 822 bytes -> :class:`ParsedMail` (``parse``)
- ``decode``         charsets, RFC 2047 headers, file names, HTML to text
- ``automatic``      is it an automatic mail (RFC 3834, out-of-office, bounces)?
- ``calendar_reply`` is it an answer to an invitation (iTIP REPLY)?
- ``attachments``    which attachments may be the minutes?
- ``tokens``         the meeting token ``[KCG-2023-02]`` in subjects and bodies
- ``outcome``        how a message ends: its folder and its Swedish word (``Outcome``)
- ``verdict``        what is it, and which meeting or round is it about (``classify``)?
- ``authres``        did our own receiving server authenticate the sender (RFC 8601)?
- ``rules``          may the intake act on it: the rule chain per kind (``GATES``: accept / hold / discard)
- ``versions``       may a new version go out (late copies, the daily limit)?

No I/O, no network, no clock: everything a decision needs comes in through the
arguments (``MatchContext.today``). This module re-exports the public names so
callers write ``inbound.parse(raw)`` and ``inbound.classify(mail, ctx)``.
"""

from kcg_mail.core.inbound.attachments import DOCUMENT_EXTENSIONS, is_document_candidate
from kcg_mail.core.inbound.automatic import is_automatic
from kcg_mail.core.inbound.calendar_reply import parse_ics_reply
from kcg_mail.core.inbound.decode import decode_header_text, html_to_text
from kcg_mail.core.inbound.message import CalendarReply, ParsedMail
from kcg_mail.core.inbound.outcome import Outcome
from kcg_mail.core.inbound.parse_mail import parse
from kcg_mail.core.inbound.tokens import find_token, subject_token
from kcg_mail.core.inbound.verdict import (
    KINDS,
    MatchContext,
    MeetingRef,
    QuestionRef,
    RoundReply,
    StatusRequestRef,
    Verdict,
    classify,
)

__all__ = [
    "CalendarReply",
    "ParsedMail",
    "MeetingRef",
    "MatchContext",
    "Verdict",
    "RoundReply",
    "StatusRequestRef",
    "QuestionRef",
    "Outcome",
    "KINDS",
    "DOCUMENT_EXTENSIONS",
    "parse",
    "is_automatic",
    "classify",
    "subject_token",
    "find_token",
    "is_document_candidate",
    "decode_header_text",
    "html_to_text",
    "parse_ics_reply",
]
