"""The coordinator's answer to a yes/no question, read from a reply mail. Pure.

Björn answers from his phone: "Ja", "ja tack!", "Godkänt", "Nej, vänta",
"Avvisa". Only what he wrote counts: the quoted question below his answer
(">" lines, Outlook's "Från:" block, "Den ... skrev:"), his signature and an
empty line at the top are not read. An answer that says both yes and no, or
neither, is unclear: the product asks again in one line and never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

YES = ("ja", "japp", "jajamen", "ok", "okej", "okay", "yes", "godkänn", "godkänt", "godkänd", "godkänner",
       "skicka", "skicka ut", "kör", "bjud in", "gärna", "absolut", "visst", "självklart", "varför inte")
NO = ("nej", "no", "avvisa", "avvisas", "avböj", "avböjer", "stopp", "stoppa", "vänta", "skicka inte",
      "avslå", "avslås", "nix")

#: where the quoted original begins (Outlook, Gmail, Apple Mail, iOS; Swedish and English)
_QUOTE_START = re.compile(
    r"^\s*(>|-{2,}\s*(ursprungligt meddelande|original message)|_{5,}|från:|from:|skickat:|sent:|"
    r"den .{3,80} skrev\b.*:\s*$|on .{3,80} wrote\b.*:\s*$|.{3,120} skrev:\s*$)", re.IGNORECASE)
_SIGNATURE = re.compile(r"^\s*(--\s*$|hälsningar|mvh|med vänlig hälsning|vänliga hälsningar|/\s*\w)", re.IGNORECASE)
_WORD = re.compile(r"[a-zåäöé]+", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    choice: Literal["yes", "no"] | None  # None: unclear
    text: str  # what was read (for the receipt and the log)

    @property
    def clear(self) -> bool:
        return self.choice is not None


def own_words(body: str) -> str:
    """The lines the replier wrote himself: up to the quoted original or the signature."""
    out: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if _QUOTE_START.match(line) or (_SIGNATURE.match(line) and out):
            break
        out.append(line)
    return "\n".join(out).strip()


def _has(words: list[str], phrases: tuple[str, ...]) -> bool:
    joined = " " + " ".join(words) + " "
    return any(f" {p} " in joined for p in phrases)


def read_yes_no(body: str) -> Answer:
    """Yes or no, from the first line the coordinator wrote (a second line is
    read only when the first has no word at all, e.g. a greeting "Hej!")."""
    mine = own_words(body)
    for line in (x for x in mine.split("\n") if x.strip()):
        words = [w.lower() for w in _WORD.findall(line)]
        if not words:
            continue
        if words[0] in ("hej", "hejsan", "hallå", "tjena") and len(words) == 1:
            continue
        yes, no = _has(words, YES), _has(words, NO)
        if _has(words, ("skicka inte", "inte skicka", "bjud inte", "inte bjuda", "inte godkänt", "inte ok")):
            yes = False
            no = True
        if yes != no:
            return Answer("yes" if yes else "no", line.strip())
        return Answer(None, line.strip())
    return Answer(None, "")
