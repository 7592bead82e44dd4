"""``kcg adopt``: take over an archive that already holds protocols.

Reads the convention's archive folders (local folder or Dropbox, through the
Archive port) for every plan year and a few years before, places each file
with ``kcg_mail.core.adopt.place``, and for each placed protocol:

- records it as filed (same filing record as the intake writes, source
  ``adopt:<path>``), so the cycle neither sends its template, nor chases or
  escalates, and the intake treats the same file mailed again as a duplicate;
- records its distribution as done (it went out before kcg-mail), so nothing
  is mailed again;
- reads its decisions (``.docx``, ``.pdf``, ``.odt``) into the state record and
  rebuilds the year's decision log in the archive.

Nothing is moved, renamed or sent. Running it again adds only what is new.
Files it cannot place are reported with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kcg_mail.core.adopt import PlannedRef, place
from kcg_mail.core.plan import Meeting, archive_folder
from kcg_mail.ports import FilingRecord, StoredFile
from kcg_mail.services.app import App

log = logging.getLogger(__name__)

#: years before the first plan year whose folders are also read (reported: no plan)
EARLIER_YEARS = 3


@dataclass
class Adopted:
    path: str
    meeting_id: str
    version: int
    how: str
    decisions: int | None  # None: could not be read


@dataclass
class AdoptReport:
    adopted: list[Adopted] = field(default_factory=list)
    already: list[Adopted] = field(default_factory=list)
    unplaced: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unread: list[tuple[str, str]] = field(default_factory=list)  # (path, why the decisions were not read)
    folders: list[str] = field(default_factory=list)


def _folders(app: App) -> list[str]:
    """The convention's folder for each year with meetings, and a few years before."""
    by_year: dict[int, Meeting] = {}
    for m in app.meetings:
        by_year.setdefault(m.date.year, m)
    if not by_year:
        return []
    out = [archive_folder(app.cfg, m) for _, m in sorted(by_year.items())]
    first = min(by_year)
    sample = by_year[first]
    for year in range(first - EARLIER_YEARS, first):
        shifted = archive_folder(app.cfg, _in_year(sample, year))
        if shifted not in out:
            out.insert(0, shifted)
    return list(dict.fromkeys(out))


def _in_year(m: Meeting, year: int) -> Meeting:
    from dataclasses import replace

    return replace(m, date=m.date.replace(year=year), start=m.start.replace(year=year), end=m.end.replace(year=year))


def adopt(app: App, *, dry_run: bool = False) -> AdoptReport:
    from kcg_mail.documents.minutes import read_minutes
    from kcg_mail.documents.ooxml import MinutesRejected
    from kcg_mail.services.filing import update_decision_log

    report = AdoptReport()
    refs = [PlannedRef(m.id, m.date) for m in app.meetings]
    doc_word = app.cfg.meetings.naming.get("doc", "Beslutsprotokoll")
    placed: dict[str, list[tuple[int, str, StoredFile, str]]] = {}
    for folder in _folders(app):
        report.folders.append(folder)
        for f in app.archive.list(folder):
            name = f.path.rpartition("/")[2]
            p = place(name, refs, doc_word)
            if p is None:
                continue
            if p.meeting_id is None:
                report.unplaced.append((f.path, p.reason))
                continue
            placed.setdefault(p.meeting_id, []).append((p.version, f.path, f, p.how))
    years: set[int] = set()
    for mid, files in sorted(placed.items()):
        m = app.meeting(mid)
        assert m is not None
        known = {r.content_hash: r for r in app.state.filings(mid)}
        versions = len(known)
        latest_decisions: list[dict[str, str]] | None = None
        for _version, path, stored, how in sorted(files, key=lambda t: (t[0], t[1])):
            if stored.content_hash in known:
                rec = known[stored.content_hash]
                report.already.append(Adopted(path, mid, rec.version, how, None))
                continue
            data = app.archive.read(path)
            decisions: list[dict[str, str]] | None
            try:
                minutes = read_minutes(path.rpartition("/")[2], data)
                decisions = [{"decision": d.decision, "owner": d.owner, "due": d.due} for d in minutes.decisions]
            except MinutesRejected as rej:
                decisions = None
                report.unread.append((path, rej.detail))
            versions += 1
            report.adopted.append(Adopted(path, mid, versions, how, None if decisions is None else len(decisions)))
            if dry_run:
                continue
            filing = FilingRecord(meeting_id=mid, version=versions, path=path, rev=stored.rev,
                                  content_hash=stored.content_hash, link=None,
                                  source_msg_key=f"adopt:{path}")
            app.state.record_filing(filing)
            app.state.record_action(f"{mid}:distribute:members:v{versions}", mid, "distribute", "done",
                                    {"adopted": path, "note": "fanns i arkivet före kcg-mail; skickas inte igen"})
            known[filing.content_hash] = filing
            if decisions is not None:
                latest_decisions = decisions
        if latest_decisions is not None and not dry_run:
            app.state.replace_decisions(mid, latest_decisions)
            years.add(m.date.year)
    for year in sorted(years):
        update_decision_log(app, year)
    log.info("adopt: %d adopted, %d already known, %d not placed", len(report.adopted), len(report.already),
             len(report.unplaced))
    return report
