"""The coordinator asks for a member to be added or removed, by a mail to the network. Pure.

Björn writes from his phone to the network's mailbox, in the subject or on the
first lines he writes himself (the quoted text and his signature are not read):

    Ny medlem: Anna Andersson, anna@vasterascity.se, Västerås City
    Ny medlem: Anna Andersson, anna@vasterascity.se, Västerås City, Västerås
    Ta bort medlem: Anna Andersson        (or her address)

``read_request`` says what he asked for (:class:`MemberRequest`), or None when
the mail is no such request. A request that says "Ny medlem" but lacks a name
or an address is *unclear*: ``problem`` says in one Swedish line what is
missing, and nothing is done. The product answers every clear request with what
it understood and asks for a "ja" before anything changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from kcg_mail.core.config_model import EMAIL_RE, Person
from kcg_mail.core.inbound.answer import own_words

#: the words that start a request (lower case, without the colon)
ADD_WORDS = ("ny medlem", "nya medlem", "lägg till medlem", "lägg till ny medlem", "ny medlemsorganisation")
REMOVE_WORDS = ("ta bort medlem", "ta bort medlemmen", "avsluta medlem", "medlem slutar", "utträde")

_START = re.compile(
    r"^\s*(?:(?:sv|re|vb|fwd?)\s*:\s*)*(?P<op>" + "|".join(re.escape(w) for w in ADD_WORDS + REMOVE_WORDS)
    + r")\s*(?::|-|–)?\s*(?P<rest>.*)$", re.IGNORECASE)

#: words an organisation's name ends with that are not the city ("Västerås City" -> "Västerås")
_ORG_SUFFIXES = ("city", "citysamverkan", "cityförening", "cityföreningen", "centrum", "centrumförening",
                 "stadskärna", "stadskärnan", "innerstad", "i centrum", "city ab", "centrum ab")

_GREETING = re.compile(r"^\s*(hej|hejsan|hallå|tjena|god morgon)\b[\w\s]{0,30}[!,.]?\s*$", re.IGNORECASE)

#: the usage line the coordinator gets back when a request is unclear
USAGE = "Skriv till exempel: Ny medlem: Anna Andersson, anna@exempel.se, Västerås City"


@dataclass(frozen=True)
class MemberRequest:
    op: Literal["add", "remove"]
    name: str = ""
    email: str = ""
    organisation: str = ""
    city: str = ""
    #: for a removal: the name or address as he wrote it
    who: str = ""
    #: "" when clear; else one Swedish line saying what is missing
    problem: str = ""
    #: the line that was read (for the receipt and the log)
    text: str = ""

    @property
    def clear(self) -> bool:
        return not self.problem


def city_of(organisation: str) -> str:
    """The city an organisation's name begins with: "Västerås City" -> "Västerås"."""
    org = organisation.strip()
    low = org.lower()
    for suffix in sorted(_ORG_SUFFIXES, key=len, reverse=True):
        if low.endswith(" " + suffix):
            return org[: -len(suffix) - 1].strip()
    return ""


def _lines(subject: str, body: str) -> list[str]:
    return [subject or ""] + [x for x in own_words(body or "").split("\n")]


def read_request(subject: str, body: str) -> MemberRequest | None:
    """The member request in a mail (subject first, then his own lines), or None."""
    lines = _lines(subject, body)
    found = [(i, m) for i, m in enumerate(_START.match(x) for x in lines) if m is not None]
    if not found:
        return None
    # "Ny medlem" in the subject and "Ny medlem: Anna ..." in the body: the line with the details
    i, m = next(((i, m) for i, m in found if m.group("rest").strip()), found[0])
    op: Literal["add", "remove"] = "add" if m.group("op").lower() in ADD_WORDS else "remove"
    rest = m.group("rest").strip()
    if not rest:  # the details on the first line of the body he wrote (a greeting is skipped)
        rest = next((x.strip() for x in lines[max(i + 1, 1):]
                     if x.strip() and not _START.match(x) and not _GREETING.match(x)), "")
    return _add(rest, lines[i].strip()) if op == "add" else _remove(rest, lines[i].strip())


def _add(rest: str, text: str) -> MemberRequest:
    parts = [p.strip() for p in re.split(r"[,;\t]|\s+-\s+", rest) if p.strip()]
    emails = [p for p in parts if EMAIL_RE.match(p.strip("<>"))]
    if not emails:
        inline = re.search(r"<?([^\s<>,;]+@[^\s<>,;]+)>?", rest)
        if inline and EMAIL_RE.match(inline.group(1)):
            emails = [inline.group(0)]
            parts = [p.replace(inline.group(0), "").strip() for p in parts]
            parts = [p for p in parts if p] + [inline.group(0)]
    if len(emails) != 1:
        why = "jag hittade ingen e-postadress" if not emails else "jag hittade mer än en e-postadress"
        return MemberRequest("add", problem=f"{why} i beskedet om den nya medlemmen. {USAGE}", text=text)
    email = emails[0].strip("<>").lower()
    others = [p for p in parts if p != emails[0]]
    if not others:
        return MemberRequest("add", email=email, problem=f"jag hittade inget namn på den nya medlemmen. {USAGE}",
                             text=text)
    name, organisation = others[0], (others[1] if len(others) > 1 else "")
    city = others[2] if len(others) > 2 else city_of(organisation)
    return MemberRequest("add", name=name, email=email, organisation=organisation, city=city, text=text)


def _remove(rest: str, text: str) -> MemberRequest:
    who = rest.strip().strip(" .").strip("<>").strip()
    if not who:
        return MemberRequest("remove", problem="jag såg inte vem som ska tas bort. "
                             "Skriv till exempel: Ta bort medlem: Anna Andersson", text=text)
    return MemberRequest("remove", who=who, text=text)


def find_member(who: str, members: Iterable[Person]) -> list[Person]:
    """The active members ``who`` names: by address, else by full name, else by the organisation."""
    active = [p for p in members if p.active]
    key = who.strip().lower()
    for field in ("email", "name", "organisation"):
        hits = [p for p in active if getattr(p, field).lower() == key]
        if hits:
            return hits
    return [p for p in active if key and key in p.name.lower()]
