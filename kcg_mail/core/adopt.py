"""Adopting an archive that already exists: which meeting is this protocol?

Pure. ``kcg adopt`` lists the archive folders of the naming convention and
asks ``place`` about each file name. A name made by the convention
(``2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1.docx``)
is placed by its date; close variants are placed too: another date
spelling (``20230206``, ``2023_02_06``, ``2023.02.06``, ``6 feb 2023``), underscores or
dashes for spaces, other case, another document word (protokoll,
minnesanteckningar), a version suffix (``(v2)``, ``_v2``, ``v2``), and a date a
few days off the planned one (the meeting moved) or only the month when the
month had exactly one meeting. What cannot be placed comes back with the
reason, for the coordinator's report.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

DOCUMENT_EXTENSIONS = (".docx", ".pdf", ".odt", ".doc")
#: files the archive holds that are ours and not protocols
OWN_FILES = re.compile(r"beslutslogg\.csv$|^\.kcg|\.members\.json$", re.IGNORECASE)
#: how far a protocol's date may be from the planned meeting date (the meeting moved)
NEAR_DAYS = 7

MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "maj": 5, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
          "okt": 10, "oct": 10, "nov": 11, "dec": 12}
_ISO = re.compile(r"(?<!\d)(20\d\d)[-_. ]?(0[1-9]|1[0-2])[-_. ]?(0[1-9]|[12]\d|3[01])(?!\d)")
_TEXT_DATE = re.compile(r"(?<!\d)([12]?\d|3[01])\s*(jan|feb|mar|apr|maj|may|jun|jul|aug|sep|okt|oct|nov|dec)[a-zåäö]*"
                        r"\.?\s*(20\d\d)(?!\d)")
_MONTH_ONLY = re.compile(r"(?<!\d)(20\d\d)[-_. ](0[1-9]|1[0-2])(?![-_. ]?\d)")
_VERSION = re.compile(r"(?:\(v(\d+)\)|[ _-]v(\d+))\s*$", re.IGNORECASE)
_PROTOCOL_WORDS = ("protokoll", "minnesanteckning", "minutes", "anteckningar")


@dataclass(frozen=True)
class PlannedRef:
    """What the recogniser needs to know about one planned meeting."""

    meeting_id: str
    date: date


@dataclass(frozen=True)
class Placement:
    name: str
    meeting_id: str | None
    version: int = 1
    how: str = ""  # exact | near | month | "" when not placed
    reason: str = ""  # why it could not be placed (Swedish, for the coordinator)


def _normal(name: str) -> str:
    name = unicodedata.normalize("NFC", name).lower()
    return re.sub(r"[_\s]+", " ", name).strip()


def file_date(name: str) -> tuple[date | None, tuple[int, int] | None]:
    """(full date, or None; (year, month) when only the month is written)."""
    text = _normal(name)
    for m in _ISO.finditer(text):
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3))), None
        except ValueError:
            continue
    m2 = _TEXT_DATE.search(text)
    if m2:
        try:
            return date(int(m2.group(3)), MONTHS[m2.group(2)], int(m2.group(1))), None
        except ValueError:
            pass
    m3 = _MONTH_ONLY.search(text)
    if m3:
        return None, (int(m3.group(1)), int(m3.group(2)))
    return None, None


def file_version(name: str) -> int:
    stem = name.rsplit(".", 1)[0]
    m = _VERSION.search(stem)
    return int(m.group(1) or m.group(2)) if m else 1


def is_document(name: str) -> bool:
    return name.lower().endswith(DOCUMENT_EXTENSIONS)


def looks_like_protocol(name: str, doc_word: str) -> bool:
    text = _normal(name)
    return doc_word.lower() in text or any(w in text for w in _PROTOCOL_WORDS)


def place(name: str, meetings: Sequence[PlannedRef], doc_word: str = "Beslutsprotokoll") -> Placement | None:
    """Which meeting the file ``name`` is the protocol of. None: a file that
    is not a protocol and needs no report (our own decision log)."""
    if OWN_FILES.search(name):
        return None
    if not is_document(name):
        return Placement(name, None, reason="inte ett dokument (.docx, .pdf, .odt)")
    version = file_version(name)
    day, month = file_date(name)
    if day is None and month is None:
        return Placement(name, None, version, reason="inget datum i filnamnet (t.ex. 2023-02-06)")
    if not looks_like_protocol(name, doc_word) and day is None:
        return Placement(name, None, version, reason="varken protokoll i namnet eller ett fullständigt datum")
    if day is not None:
        exact = [m for m in meetings if m.date == day]
        if len(exact) == 1:
            return Placement(name, exact[0].meeting_id, version, "exact")
        near = sorted((abs((m.date - day).days), m.meeting_id) for m in meetings if abs((m.date - day).days) <= NEAR_DAYS)
        if len(near) == 1 or (len(near) > 1 and near[0][0] < near[1][0]):
            return Placement(name, near[0][1], version, "near")
        if near:
            return Placement(name, None, version, reason=f"datumet {day.isoformat()} passar flera möten")
        year = day.year
        if not any(m.date.year == year for m in meetings):
            return Placement(name, None, version, reason=f"det finns ingen årsplan för {year} än")
        return Placement(name, None, version, reason=f"inget planerat möte nära {day.isoformat()}")
    assert month is not None
    same = [m for m in meetings if (m.date.year, m.date.month) == month]
    if len(same) == 1:
        return Placement(name, same[0].meeting_id, version, "month")
    if not any(m.date.year == month[0] for m in meetings):
        return Placement(name, None, version, reason=f"det finns ingen årsplan för {month[0]} än")
    return Placement(name, None, version, reason=f"bara månaden {month[0]}-{month[1]:02d} i namnet och "
                                                 f"{'inget' if not same else 'flera'} möte den månaden")
