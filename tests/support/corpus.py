"""The message corpus (tests/corpus/) and the 2023 plan it is matched against."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from kcg_mail.core.inbound import (
    MatchContext,
    MeetingRef,
    subject_token,
)
from kcg_mail.ports import message_id_for

CORPUS = Path(__file__).parents[1] / "corpus"


MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))


DOMAIN = "svenskastadskarnor.example.se"


NETWORK = f"kcg@{DOMAIN}"


COORDINATOR = f"bjorn@{DOMAIN}"


# meeting id: (date, host, backup host) — Handlingsplan 2023, first Monday, holidays moved a week
PLAN = {
    "2023-01": (date(2023, 1, 2), "maria@vasteras.example.se", "monica@stockholm.example.se"),
    "2023-02": (date(2023, 2, 6), "daniel@gavle.example.se", None),
    "2023-03": (date(2023, 3, 6), "david@norrkoping.example.se", None),
    "2023-04": (date(2023, 4, 3), "maria@vasteras.example.se", None),
    "2023-05": (date(2023, 5, 8), "armina@orebro.example.se", None),
    "2023-06": (date(2023, 6, 5), "pia@malmo.example.se", None),
    "2023-08": (date(2023, 8, 7), "monica@stockholm.example.se", None),
    "2023-09": (date(2023, 9, 4), "hanna@helsingborg.example.se", None),
    "2023-10": (date(2023, 10, 2), "lena@goteborg.example.se", "pia@malmo.example.se"),
    "2023-11": (date(2023, 11, 6), "lisa@uppsala.example.se", None),
    "2023-12": (date(2023, 12, 4), "linda@boras.example.se", COORDINATOR),
    "2024-01": (date(2024, 1, 8), "aljosa@sodertalje.example.se", "jessica@linkoping.example.se"),
}


MEMBERS = frozenset(
    {host for _, host, _ in PLAN.values()}
    | {b for _, _, b in PLAN.values() if b}
    | {COORDINATOR, "isabel@lund.example.se"}
)


def invitation_uid(meeting_id: str) -> str:
    return f"kcg-{meeting_id}@{DOMAIN}"


def make_ctx(today: date = date(2024, 2, 1)) -> MatchContext:
    meetings = tuple(
        MeetingRef(
            meeting_id=mid,
            token=subject_token(mid),
            date=d,
            filers=frozenset({host, COORDINATOR} | ({backup} if backup else set())),
            invitation_uid=invitation_uid(mid),
        )
        for mid, (d, host, backup) in PLAN.items()
    )
    sent: dict[str, str] = {}
    for mid, (_, host, _) in PLAN.items():
        sent[message_id_for(f"{mid}:template:{host}", DOMAIN)] = mid
        sent[message_id_for(f"{mid}:invitation", DOMAIN)] = mid
    return MatchContext(meetings, sent, MEMBERS, frozenset({NETWORK}), today)


CTX = make_ctx()
