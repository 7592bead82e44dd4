"""Bounded mail-outs: which new version of a meeting's minutes may go out.

- A version is dated by the earlier of its Date header and our receipt time
  (a sender cannot make a copy newer by writing a future Date). A version
  dated before the newest filed one is a *late copy*: filed, but neither
  distributed nor allowed to replace the decisions.
- At most ``max_per_day`` distributions per meeting and day; a further
  version is filed but held for the coordinator's approval.

Pure: the caller passes the dates and counts from the state record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime


def effective_date(header_date: datetime | None, received: datetime) -> datetime:
    received = received if received.tzinfo else received.replace(tzinfo=UTC)
    if header_date is None:
        return received
    header_date = header_date if header_date.tzinfo else header_date.replace(tzinfo=UTC)
    return min(header_date, received)


def is_late_copy(candidate: datetime, filed: Iterable[datetime]) -> bool:
    """True when a filed version is newer than ``candidate``."""
    return any(f > candidate for f in filed)


def over_daily_limit(distributed_today: Iterable[int], version: int, max_per_day: int) -> bool:
    """True when distributing ``version`` would exceed the day's allowance
    (a version already distributed today does not count twice)."""
    done = set(distributed_today)
    return version not in done and len(done) >= max_per_day
