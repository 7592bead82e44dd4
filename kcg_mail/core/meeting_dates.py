"""The dates the coordinator decides: reading his answer, and when to ask him. Pure.

Two questions (``Meeting.awaiting``, see ``kcg_mail.core.plan``):

- ``set_meeting``: a kind whose date he decides (physical, study trip, open
  meeting) has none yet. He is asked ``ask_weeks`` weeks before the meeting's
  planned month (early enough for travel), then reminded every ``remind_days``
  days until it is set; ``set_place`` likewise while the place is missing.
- ``confirm_date``: a tentative date in the plan is asked about at each of
  ``confirm_weeks`` (10, 6 and 3 weeks before it): confirm it or move it.

An open question that stays unanswered goes to the alert channel once
(``date_alert_days`` after the last question, once no further question is
planned, or after three reminders).

His answer comes from a phone, in free text: "måndag 15 januari kl 10–16,
Stadshuset, Norrköping", "15/1 10-16 Scandic Norrköping", "2024-01-15
10.00–16.00 Stadshuset", "Ja", "Flytta till 2 oktober". ``read_reply`` reads
date, times and place from what he wrote (the quoted question is not read);
what it cannot read is a one-line question back, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Literal

from kcg_mail.core.config_model import Meetings
from kcg_mail.core.inbound.answer import own_words, read_yes_no
from kcg_mail.core.plan import MONTHS_SV, WEEKDAYS_SV, DateDecision, Meeting, date_text

#: the questions of this module (``QuestionRef.what``)
SET_MEETING = "set_meeting"
CONFIRM_DATE = "confirm_date"
SET_PLACE = "set_place"
#: unanswered questions (reminders) before the alert channel is told
ALERT_AFTER = 3

_MONTHS = {name: i + 1 for i, name in enumerate(MONTHS_SV)}
_MONTHS.update({"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
                "okt": 10, "nov": 11, "dec": 12})
_WEEKDAYS = {name: i for i, name in enumerate(WEEKDAYS_SV)}
_WEEKDAYS.update({"mån": 0, "tis": 1, "ons": 2, "tors": 3, "tor": 3, "fre": 4, "lör": 5, "sön": 6})
_WD = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))

_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NUMERIC = re.compile(r"(?<![\d.:])(\d{1,2})/(\d{1,2})(?:[/-](\d{2}|\d{4}))?(?![\d/])")
_WORDS = re.compile(rf"\b(?:(?P<wd>{_WD})(?:en|dagen)?\.?\s+(?:den\s+)?)?(?P<d>\d{{1,2}})(?:e|:e)?\s+"
                    rf"(?P<m>{_MON})\.?(?:\s+(?P<y>\d{{4}}))?\b", re.IGNORECASE)
_WEEKDAY_ALONE = re.compile(rf"\b(?P<wd>{_WD})(?:en|dagen)?\b", re.IGNORECASE)
_TIMES = re.compile(r"(?:\bkl(?:ockan)?\.?\s*)?\b(\d{1,2})(?:[.:](\d{2}))?\s*(?:-|–|—|till)\s*"
                    r"(?:kl\.?\s*)?(\d{1,2})(?:[.:](\d{2}))?\b", re.IGNORECASE)
_ONE_TIME = re.compile(r"\bkl(?:ockan)?\.?\s*(\d{1,2})(?:[.:](\d{2}))?\b", re.IGNORECASE)
_DANGLING = re.compile(r"(?<![\w.:/])\d{1,2}\s*[-–—]\s*(?=[,\s]|$)|(?<=[-–—])\s*\d{1,2}\b")
_GREETING = re.compile(r"(hej|hejsan|hallå|tjena)( \w+)?[!,. ]*", re.IGNORECASE)
_PHONE_SIGNATURE = re.compile(r"(skickat från|sent from|hämta outlook|get outlook)\b", re.IGNORECASE)
_PLACE_LABEL = re.compile(r"^\s*(?:plats|var|lokal)\s*[:=]\s*", re.IGNORECASE)
#: words around a date that say nothing about the place
_FILLER = re.compile(
    r"\b(?:ja|japp|ok|okej|bra|tack|hej|hejsan|flytta(?:r)?(?:\s+det)?(?:\s+till)?|ändra(?:\s+till)?|nytt\s+datum|"
    r"datum|tid|tiden|plats|platsen|blir|det\s+blir|vi\s+kör|kör|den|mötet|studieresan|bekräftat|bekräftar|"
    r"heldag|mellan|på|i)\b\s*[:=]?", re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    """What the coordinator's answer said: a (new) date and times, a place, his yes
    to the proposed date, or his no; ``question`` is the one line asked back when
    something is unclear (then nothing is changed)."""

    text: str
    date: date | None = None
    start: time | None = None
    end: time | None = None
    place: str = ""
    confirm: bool = False
    declined: bool = False
    question: str = ""

    @property
    def clear(self) -> bool:
        return not self.question

    def decision(self) -> DateDecision:
        return DateDecision(date=self.date, start=self.start, end=self.end, place=self.place, confirmed=self.confirm)


def _year_near(day: int, month: int, ref: date) -> date | None:
    """The day/month nearest to ``ref`` (the meeting's planned date): "15/1" written in
    November means next January (a day that has passed is asked about, not moved a year)."""
    best: date | None = None
    for y in (ref.year - 1, ref.year, ref.year + 1):
        try:
            d = date(y, month, day)
        except ValueError:
            continue
        if best is None or abs((d - ref).days) <= abs((best - ref).days):
            best = d
    return best


def _hm(h: str, m: str | None) -> time | None:
    hour, minute = int(h), int(m or 0)
    return time(hour, minute) if 0 <= hour <= 23 and 0 <= minute <= 59 else None


def _find_date(text: str, ref: date) -> tuple[date | None, str, str]:
    """(date, the text without it, a problem)."""
    m = _ISO.search(text)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3])), text[:m.start()] + " " + text[m.end():], ""
        except ValueError:
            return None, text, f"”{m[0]}” är inget giltigt datum"
    w = _WORDS.search(text)
    if w:
        rest = text[:w.start()] + " " + text[w.end():]
        month = _MONTHS[w["m"].lower()]
        try:
            d = date(int(w["y"]), month, int(w["d"])) if w["y"] else _year_near(int(w["d"]), month, ref)
        except ValueError:
            d = None
        if d is None:
            return None, rest, f"”{w[0].strip()}” är inget giltigt datum"
        if w["wd"] and _WEEKDAYS[w["wd"].lower()] != d.weekday():
            return None, rest, (f"{d.day} {MONTHS_SV[d.month - 1]} {d.year} är en {WEEKDAYS_SV[d.weekday()]}, "
                                f"inte en {w['wd'].lower()}")
        return d, rest, ""
    n = _NUMERIC.search(text)
    if n:
        rest = text[:n.start()] + " " + text[n.end():]
        day, month = int(n[1]), int(n[2])
        try:
            if n[3]:
                year = int(n[3]) + (2000 if len(n[3]) == 2 else 0)
                d = date(year, month, day)
            else:
                d = _year_near(day, month, ref)
        except ValueError:
            d = None
        if d is None:
            return None, rest, f"”{n[0]}” är inget giltigt datum"
        wd = _WEEKDAY_ALONE.search(rest)
        if wd and _WEEKDAYS[wd["wd"].lower()] != d.weekday():
            return None, rest, f"{date_text(d)} är ingen {wd['wd'].lower()}"
        return d, rest, ""
    return None, text, ""


def _find_times(text: str, default: tuple[time, time]) -> tuple[time | None, time | None, str, str]:
    """(start, end, the text without them, a problem)."""
    m = _TIMES.search(text)
    if m:
        start, end = _hm(m[1], m[2]), _hm(m[3], m[4])
        rest = text[:m.start()] + " " + text[m.end():]
        if start is None or end is None:
            return None, None, rest, f"”{m[0].strip()}” är ingen tid jag kan läsa"
        if end <= start:
            return None, None, rest, f"mötet kan inte sluta ({end:%H:%M}) innan det börjar ({start:%H:%M})"
        return start, end, rest, ""
    one = _ONE_TIME.search(text)
    if one:
        start = _hm(one[1], one[2])
        rest = text[:one.start()] + " " + text[one.end():]
        if start is None:
            return None, None, rest, f"”{one[0].strip()}” är ingen tid jag kan läsa"
        length = (default[1].hour * 60 + default[1].minute) - (default[0].hour * 60 + default[0].minute)
        minutes = start.hour * 60 + start.minute + max(length, 60)
        if minutes >= 24 * 60:
            return None, None, rest, f"när slutar mötet som börjar {start:%H:%M}?"
        return start, time(minutes // 60, minutes % 60), rest, ""
    return None, None, text, ""


def _place(rest: str) -> str:
    """What is left once date, times and filler words are taken out: the place."""
    text = _FILLER.sub(" ", rest)
    parts = [p.strip(" .;:–-—") for p in re.split(r"[,\n]", text)]
    parts = [" ".join(p.split()) for p in parts if re.search(r"[A-Za-zÅÄÖåäöÉé]", p)]
    return ", ".join(parts)[:200]


def read_reply(body: str, *, asked: str, ref: date, today: date, default: tuple[time, time]) -> Reading:
    """The coordinator's answer to our question ``asked`` (``set_meeting``,
    ``confirm_date`` or ``set_place``) about a meeting planned on ``ref``."""
    lines = [ln.strip() for ln in own_words(body).split("\n")]
    while lines and (not lines[0] or _GREETING.fullmatch(lines[0])):
        lines = lines[1:]
    # his answer is the first paragraph; a phone's signature is no place
    para = lines[:lines.index("")] if "" in lines else lines
    text = ", ".join(ln for ln in para if not _PHONE_SIGNATURE.match(ln))
    shown = text[:120]
    if not text:
        return Reading("", question="Jag hittade inget svar i ditt mejl. " + _EXAMPLE[asked])
    labelled = _PLACE_LABEL.match(text)
    if labelled:  # "Plats: Stadshuset, Norrköping"
        place = text[labelled.end():].strip(" .")
        return Reading(shown, place=place) if place else Reading(shown, question="Vilken plats? " + _EXAMPLE[SET_PLACE])
    day, rest, problem = _find_date(text, ref)
    if problem:
        return Reading(shown, question=f"{problem[0].upper()}{problem[1:]} – vilket datum menar du?")
    start, end, rest, problem = _find_times(rest, default)
    if problem:
        return Reading(shown, question=f"{problem[0].upper()}{problem[1:]} – skriv tiden som 10–16.")
    dangling = _DANGLING.search(rest)
    if dangling:  # "16-18 mars": a span of days, or a time without its end
        return Reading(shown, question=f"Jag förstod inte ”{dangling[0].strip()}” – skriv ett datum och tiden som 10–16.")
    if day is not None:
        if day < today:
            return Reading(shown, question=f"{date_text(day)} har redan varit – vilket datum menar du?")
        return Reading(shown, date=day, start=start, end=end, place=_place(rest), confirm=True)
    yes_no = read_yes_no(text)
    if asked == CONFIRM_DATE and yes_no.choice == "yes":
        return Reading(shown, start=start, end=end, place=_place(rest), confirm=True)
    if yes_no.choice == "no":
        return Reading(shown, declined=True)
    if start is not None:
        return Reading(shown, question="Vilket datum gäller tiden? " + _EXAMPLE[SET_MEETING])
    if asked == SET_PLACE and yes_no.choice is None:
        place = _place(rest)
        if place:
            return Reading(shown, place=place)
    return Reading(shown, question=f"Jag hittade inget datum i ”{shown[:80]}”. " + _EXAMPLE[asked])


_EXAMPLE = {
    SET_MEETING: "Svara till exempel: måndag 15 januari kl 10–16, Stadshuset, Norrköping.",
    CONFIRM_DATE: "Svara ja om datumet gäller, eller med det nya datumet, till exempel: 26/9 9–17, Göteborg.",
    SET_PLACE: "Svara till exempel: Plats: Stadshuset, Norrköping.",
}


# ------------------------------------------------------------------ when to ask


@dataclass(frozen=True)
class DateStep:
    """Due today: ask the coordinator (the ``n``-th time) or tell the alert channel."""

    meeting_id: str
    action: Literal["ask", "alert"]
    what: str  # set_meeting | confirm_date | set_place
    n: int
    reason: str


def ask_days(m: Meeting, rules: Meetings, asked: Sequence[date], go_live: date | None = None,
             earlier: date | None = None) -> list[date]:
    """The days the coordinator is (to be) asked about ``m``'s open question, from what
    was asked already: the next one last (empty: nothing more to ask). ``earlier``:
    the day an earlier question about the meeting went out (the place is asked for
    ``remind_days`` after the date was, not the next morning)."""
    start = go_live or date.min
    if m.awaiting == CONFIRM_DATE:
        marks = [m.date - timedelta(weeks=w) for w in rules.confirm_weeks]
        last = asked[-1] if asked else None
        later = [d for d in marks if last is None or d > last]
        return list(asked) + ([max(later[0], start)] if later else [])
    if m.awaiting in (SET_MEETING, SET_PLACE):
        kr = rules.kind(m.kind)
        first = max(m.date - timedelta(weeks=kr.ask_weeks), start)
        if earlier is not None:
            first = max(first, earlier + timedelta(days=kr.remind_days))
        nxt = asked[-1] + timedelta(days=kr.remind_days) if asked else first
        return list(asked) + [nxt]
    return list(asked)


def date_steps(meetings: Iterable[Meeting], asked: Mapping[str, Sequence[date]], alerted: frozenset[str],
               today: date, rules: Meetings, go_live: date | None = None,
               earlier: Mapping[str, date] | None = None) -> list[DateStep]:
    """What to ask (or alert) today about the dates the coordinator decides.
    ``asked``: per meeting, the days its current question went out; ``alerted``:
    meetings whose silence the alert channel was told already; ``earlier``: per
    meeting, the last day another question about it went out."""
    out: list[DateStep] = []
    for m in meetings:
        if not m.awaiting or today >= m.date:
            continue  # nothing open, or its (planned) day has come
        done = list(asked.get(m.id, ()))
        days = ask_days(m, rules, done, go_live, (earlier or {}).get(m.id))
        if len(days) > len(done) and today >= days[-1] and (not done or today > done[-1]):
            n = len(done)
            out.append(DateStep(m.id, "ask", m.awaiting, n, "första frågan" if n == 0 else f"påminnelse {n}"))
        if m.id in alerted or not done:
            continue
        waited = today >= done[-1] + timedelta(days=rules.date_alert_days)
        no_more = len(days) == len(done) or len(done) >= ALERT_AFTER
        if waited and no_more:
            out.append(DateStep(m.id, "alert", m.awaiting, len(done), f"obesvarad efter {len(done)} frågor"))
    return out


def next_ask_day(meetings: Iterable[Meeting], asked: Mapping[str, Sequence[date]], alerted: frozenset[str],
                 after: date, rules: Meetings, go_live: date | None = None,
                 earlier: Mapping[str, date] | None = None) -> date | None:
    """The first day after ``after`` on which a question or an alert is due (for simulations)."""
    best: date | None = None
    for m in meetings:
        if not m.awaiting or after >= m.date:
            continue
        done = list(asked.get(m.id, ()))
        days = ask_days(m, rules, done, go_live, (earlier or {}).get(m.id))
        cands = [days[-1]] if len(days) > len(done) else []
        if done and m.id not in alerted and (len(days) == len(done) or len(done) >= ALERT_AFTER):
            cands.append(done[-1] + timedelta(days=rules.date_alert_days))
        for d in cands:
            d = max(d, after + timedelta(days=1))
            if d < m.date and (best is None or d < best):
                best = d
    return best
