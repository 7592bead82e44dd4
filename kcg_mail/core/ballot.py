"""Reading a member's votes in the planning round, pure.

Members answer the numbered list the way people write: ``3:4, 12:3``,
``3 fyra röster``, ``3: fyra``, ``4 röster på 3``, one entry per line, with
Swedish number words up to ten, or in the Word ballot (read in
``kcg_mail.documents.round_forms`` into the same ``ParsedBallot``). What we
cannot read for certain is never guessed: such a line is kept as *unclear*
and ``validate_ballot`` turns it into a short Swedish sentence saying what to
fix. ``read_correction`` reads the coordinator's correction of a member's
ballot ("Lena: 3:4, 12:3").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["NUMBER_WORDS", "BallotCheck", "BallotLine", "Correction", "ParsedBallot", "Topic", "about_member",
           "ballot_lines", "examples", "number_text", "own_lines", "parse_ballot_text", "read_correction",
           "validate_ballot", "vote_count"]

#: Swedish number words a member may write instead of digits (up to ten)
NUMBER_WORDS: dict[str, int] = {"noll": 0, "en": 1, "ett": 1, "två": 2, "tre": 3, "fyra": 4, "fem": 5, "sex": 6,
                                "sju": 7, "åtta": 8, "nio": 9, "tio": 10}
_WORDS_OUT = ["noll", "en", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio", "tio"]


def number_text(n: int) -> str:
    """A count as a Swedish writer puts it in prose: words up to ten, digits above."""
    return _WORDS_OUT[n] if 0 <= n <= 10 else str(n)


class Topic(NamedTuple):
    """One line of the numbered ballot list; the round's state keeps it as this
    very row (``[number, area, text]``)."""

    number: int
    area: str
    text: str


@dataclass(frozen=True)
class BallotLine:
    number: int
    votes: str  # as written: validated later ("3", "2,5", "två", "4 röster")


@dataclass(frozen=True)
class ParsedBallot:
    lines: tuple[BallotLine, ...]
    ignored: tuple[str, ...] = ()  # lines with digits that are plainly not votes (a date, a phone number)
    unclear: tuple[str, ...] = ()  # lines that look like votes but cannot be read for certain


# ------------------------------------------------------------------ the grammar

_WORD = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
#: a vote count: digits (a decimal or a negative is read, to be refused with a reason) or a number word
_VAL = rf"(?:-?\d+(?:[.,]\d+(?!\d|\s*[:=]))?|(?:{_WORD})\b)"
_PFX = r"(?:#\s*|(?:nr\.?|nummer|punkt)\s*)?"
_SFX = r"(?:\s*(?:röster|röst|st|poäng|p)\b)?\.?"
#: "3: 4", "3=4", "3 4", "#3 x4", "3 fyra röster", "nr 3: fyra"
_E1 = rf"{_PFX}(?P<n1>\d{{1,3}})\s*(?:[:=]\s*|[x×*]\s*|\s+(?:x\s*)?)(?P<v1>{_VAL}){_SFX}"
#: "4 röster på 3", "fyra röster till nummer 3", "en röst på 12"
_E2 = rf"(?P<v2>{_VAL})\s*(?:röster|röst)\s+(?:på|till|för|åt)\s+{_PFX}(?P<n2>\d{{1,3}})\b"
_ENTRY = rf"(?:{_E2}|{_E1})"
_ENTRY_PLAIN = _ENTRY.replace("?P<n1>", "").replace("?P<v1>", "").replace("?P<n2>", "").replace("?P<v2>", "")
#: between entries: a comma or semicolon, "och", or a space before an entry written with a colon
_SEP = r"(?:\s*[,;]\s*(?:och\s+)?|\s+och\s+|\s+(?=" + _PFX + r"\d{1,3}\s*[:=]))"
_LEAD = r"(?:[-*•–]\s+)?(?:(?:jag\s+)?(?:ger|lägger|sätter)\s+)?"
_LABEL = r"(?:(?P<label>[^\d:]{1,60}):\s*)?"
_LINE_RE = re.compile(rf"^\s*{_LABEL}{_LEAD}(?P<entries>{_ENTRY_PLAIN}(?:{_SEP}{_ENTRY_PLAIN})*)\s*[,;.!]?\s*$",
                      re.IGNORECASE)
_ENTRY_RE = re.compile(_ENTRY, re.IGNORECASE)
#: words that carry no meaning of their own in a vote line
_VOCAB = {"röster", "röst", "st", "p", "poäng", "på", "till", "för", "åt", "nr", "nummer", "punkt", "och", "x",
          "jag", "ger", "lägger", "sätter", *NUMBER_WORDS}
_CLOSINGS = ("hälsningar", "mvh", "vänliga hälsningar", "med vänlig hälsning", "hälsning", "/hälsningar")

_QUOTE_HEAD = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprungligt meddelande|originalmeddelande|forwarded message|"
    r"vidarebefordrat meddelande)\s*-{2,}|_{10,}|"
    r"(?:från|from|skickat|sent)\s*:|on .{0,200} wrote\s*:|den .{0,200} skrev .{0,120}:)",
    re.IGNORECASE)


def own_lines(text: str, *, closing: bool = False) -> list[str]:
    """The lines the sender wrote: without quoted text, the quoted original and the
    signature; with ``closing``, also without what follows a closing greeting."""
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.rstrip() in ("--", "-- ") or _QUOTE_HEAD.match(line):
            break
        low = line.casefold().strip(" ,.!")
        if closing and (low in _CLOSINGS or low.startswith(("hälsningar", "vänliga hälsningar", "mvh", "med vänlig"))):
            break
        if line.lstrip().startswith(">"):
            continue
        out.append(line.rstrip())
    return out


def _looks_like_votes(line: str) -> bool:
    """A line that tries to give votes but is not one we can read for certain:
    nothing but numbers, number words and vote words ("3 4 5", "3, 12, 20",
    "3 - 4"), a label with a lone count ("Studieresa: 4"), or a line that talks
    about votes and names small numbers ("Jag röstar på 3 och 12").
    A phone number (leading 0, "+") or a date (four digits, "/") is not."""
    s = line.strip()
    if re.search(r"(?<!\d)0\d|\+|/|\d{4}", s):
        return False
    words = re.findall(r"[^\W\d_]+", s.casefold())
    numbers = re.findall(r"\d+", s)
    counts = numbers + [w for w in words if w in NUMBER_WORDS]
    if not counts:
        return False
    if all(w in _VOCAB for w in words) and re.fullmatch(r"[\w\s,;:.=×*#–-]+", s):
        return True
    if re.fullmatch(r"[^\d:]{1,60}:\s*" + _VAL + _SFX + r"\s*", s, re.IGNORECASE):
        return True
    return "röst" in s.casefold() and any(len(n) <= 2 for n in numbers) and not s.endswith(":")


def ballot_lines(text: str) -> ParsedBallot:
    """Votes in lines already stripped of quotes and signature (see ``parse_ballot_text``)."""
    found: list[BallotLine] = []
    ignored: list[str] = []
    unclear: list[str] = []
    for line in text.split("\n"):
        s = " ".join(line.split())
        if not s:
            continue
        m = _LINE_RE.match(s)
        if m:
            for e in _ENTRY_RE.finditer(m.group("entries")):
                n, v = (e.group("n1"), e.group("v1")) if e.group("n1") else (e.group("n2"), e.group("v2"))
                found.append(BallotLine(int(n), v.replace(" ", "")))
        elif _looks_like_votes(s):
            unclear.append(s[:120])
        elif any(ch.isdigit() for ch in s):
            ignored.append(s[:120])
    return ParsedBallot(tuple(found), tuple(ignored), tuple(unclear))


def parse_ballot_text(text: str) -> ParsedBallot:
    """Votes as people write them in a mail: ``3: 4, 12: 3``, ``3 fyra röster``,
    ``3: fyra``, ``4 röster på 3``, ``#3 x4``, one per line or several on a line,
    a label in front ("Mina röster: 3: 4, 12: 3"). Quoted text and what follows
    the greeting at the end are not read. Lines that look like votes but are not
    read for certain come back as ``unclear``; other lines with digits as ``ignored``."""
    return ballot_lines("\n".join(own_lines(text, closing=True)))


def vote_count(raw: str) -> int | None:
    """The number of votes a member wrote ("4", "fyra", "4 röster", "4 st"), or None."""
    s = re.sub(r"\s*(?:röster|röst|st|poäng|p)\.?$", "", " ".join(raw.casefold().split())).strip(" .")
    if re.fullmatch(r"\d{1,3}", s):
        return int(s)
    return NUMBER_WORDS.get(s)


# ------------------------------------------------------------------ checking


@dataclass(frozen=True)
class BallotCheck:
    votes: dict[int, int]  # number -> votes (only positive): what we understood
    problems: tuple[str, ...]  # Swedish, for the reply

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_ballot(ballot: ParsedBallot, topics: Sequence[Topic], max_votes: int) -> BallotCheck:
    """What the member gave, and what stops us from counting it (short Swedish
    sentences, each saying what to fix). Nothing is guessed: an unclear line,
    an unknown number or more votes than a member has leaves the ballot uncounted."""
    known = {t.number for t in topics}
    problems: list[str] = []
    votes: dict[int, int] = {}
    first, last = (min(known), max(known)) if known else (0, 0)
    for row in ballot.unclear:
        problems.append(f"Raden ”{row}” kunde vi inte läsa säkert. Skriv numret och antalet röster, "
                        f"t.ex. ”3: 4” eller ”3 fyra röster”.")
    if not ballot.lines and not ballot.unclear:
        problems.append("Vi hittade inga röster i ditt svar.")
    seen: set[int] = set()
    for line in ballot.lines:
        if line.number not in known:
            problems.append(f"Nummer {line.number} finns inte på listan, som går från {first} till {last}.")
            continue
        n = vote_count(line.votes)
        if n is None:
            problems.append(f"Vid nummer {line.number} står ”{line.votes}”. Skriv antalet röster som ett helt tal, "
                            f"t.ex. ”{line.number}: 2”.")
            continue
        if line.number in seen:
            problems.append(f"Nummer {line.number} står mer än en gång. Skriv varje nummer en gång.")
            continue
        seen.add(line.number)
        if n > 0:
            votes[line.number] = n
    given = sum(votes.values())
    if given > max_votes:
        problems.append(f"Vi fick {number_text(given)} röster från dig, men var och en har {number_text(max_votes)}.")
    if ballot.lines and not votes and not problems:
        problems.append("Alla nummer har noll röster; dela ut minst en röst.")
    return BallotCheck(votes, tuple(problems))


def about_member(problem: str, first_name: str) -> str:
    """A problem as the coordinator reads it: about the member, without the advice to her."""
    text = problem.replace("från dig", f"från {first_name}").replace("i ditt svar", f"i {first_name}s svar")
    return re.sub(r"\s+Skriv (?:numret|antalet|varje|hela).*$", "", text)


def examples(numbers: Sequence[int]) -> tuple[str, str]:
    """Two example answers made of numbers that are on the list ("3: 4, 12: 3", "3 fyra röster")."""
    ns = sorted(numbers) or [1]
    a = ns[min(2, len(ns) - 1)]
    b = ns[min(len(ns) - 1, max(len(ns) * 2 // 3, ns.index(a) + 1))]
    both = f"{a}: 4, {b}: 3" if b != a else f"{a}: 4"
    return both, f"{a} fyra röster"


# ------------------------------------------------------------------ the coordinator's correction


@dataclass(frozen=True)
class Correction:
    """The coordinator's correction of a member's ballot: whose, and the votes as written."""

    person: str | None  # person id
    ballot: ParsedBallot
    problem: str = ""  # Swedish, one line, when we cannot tell whose ballot it is


def _fold(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", s.casefold()).split())


def _member_named(name: str, members: Sequence[tuple[str, str]]) -> list[str]:
    key = _fold(name)
    full = [pid for pid, full_name in members if key == _fold(full_name)]
    if full:
        return full
    return [pid for pid, full_name in members if _fold(full_name).split()[:1] == [key] or key == pid.casefold()]


def read_correction(text: str, members: Sequence[tuple[str, str]], expected: str | None) -> Correction:
    """"Lena: 3:4, 12:3" (or only "3:4, 12:3" when the question was about one
    member, ``expected``). ``members`` are (id, full name). A name that fits
    several members, or a name other than the one asked about, is not guessed."""
    lines = own_lines(text, closing=True)
    person = expected
    named: str | None = None
    out: list[str] = []
    for line in lines:
        m = re.match(r"^\s*([^\d:]{2,60}):\s*(.*)$", line)
        if named is None and m and _fold(m.group(1)) not in ("", "röster", "mina röster", "rättat", "rättad röst"):
            who = _member_named(m.group(1), members)
            if len(who) > 1:
                return Correction(None, ParsedBallot(()), f"Flera medlemmar heter {m.group(1).strip()}; "
                                  f"skriv för- och efternamn, t.ex. ”{_example(who, members)}: 3: 4, 12: 3”.")
            if who:
                named = who[0]
                out.append(m.group(2))
                continue
        out.append(line)
    if named is not None:
        if expected is not None and named != expected:
            asked = dict(members).get(expected, expected)
            return Correction(None, ParsedBallot(()), f"Frågan gällde {asked}s röst, men du skrev "
                              f"{dict(members).get(named, named)}. Svara med {asked}s röster, t.ex. ”3: 4, 12: 3”.")
        person = named
    if person is None:
        return Correction(None, ParsedBallot(()), "Skriv vems röst det gäller först på raden, "
                          "t.ex. ”Lena Dalerup: 3: 4, 12: 3”.")
    return Correction(person, ballot_lines("\n".join(out)))


def _example(ids: list[str], members: Sequence[tuple[str, str]]) -> str:
    return dict(members).get(ids[0], ids[0])
