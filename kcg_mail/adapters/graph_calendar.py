"""Invitations through Microsoft Graph: a real calendar event per meeting
(``POST /events``); Exchange sends the request, the updates (``PATCH``) and the
cancellation (``POST /events/{id}/cancel``). Events are found again by our
extended properties (the meeting UID)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..ports import Invitation
from .graph_http import (
    PARTSTAT,
    PROP_KEYS,
    PROP_SEQ,
    PROP_UID,
    WINDOWS_TZ,
    GraphAttachments,
    GraphClient,
    odata,
    prop_filter,
    recipient,
)

log = logging.getLogger(__name__)


class GraphCalendar:
    """The calendar half of ``GraphTransport``: it holds the same ``GraphClient``
    and attachment uploader as the transport."""

    client: GraphClient
    attachments: GraphAttachments

    def __init__(self, client: GraphClient, attachments: GraphAttachments) -> None:
        self.client = client
        self.attachments = attachments

    @staticmethod
    def _when(dt: datetime, tzid: str) -> dict[str, str]:
        try:
            zone = ZoneInfo(tzid)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        win = WINDOWS_TZ.get(tzid)
        if zone is not None and win:
            local = dt.astimezone(zone) if dt.tzinfo else dt
            return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": win}
        aware = dt if dt.tzinfo else dt.replace(tzinfo=zone or UTC)
        utc = aware.astimezone(UTC).replace(tzinfo=None)
        return {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": "UTC"}

    def _event_fields(self, inv: Invitation) -> dict[str, Any]:
        m = inv.message
        return {
            "subject": inv.summary or m.subject,
            "body": (
                {"contentType": "HTML", "content": m.html}
                if m.html
                else {"contentType": "Text", "content": m.text or inv.description}
            ),
            "start": self._when(inv.start, inv.tzid),
            "end": self._when(inv.end, inv.tzid),
            "location": {"displayName": inv.location},
            "responseRequested": True,
        }

    @staticmethod
    def _attendees(inv: Invitation) -> list[dict[str, Any]]:
        return [dict(recipient(a), type="required") for a in inv.message.to] + [
            dict(recipient(a), type="optional") for a in inv.message.cc
        ]

    def _find_event(self, uid: str) -> dict[str, Any] | None:
        expand = (
            "singleValueExtendedProperties($filter=id eq "
            f"{odata(PROP_SEQ)} or id eq {odata(PROP_KEYS)})"
        )
        found = self.client.get_json(
            self.client.query("/events", filter=prop_filter(PROP_UID, uid), select="id,subject", expand=expand)
        ).get("value", [])
        if len(found) > 1:
            log.warning("Graph: %d events carry uid %s; using the first", len(found), uid)
        return found[0] if found else None

    def send_invitation(self, invitation: Invitation) -> None:
        inv = invitation
        key = inv.message.key
        event = self._find_event(inv.uid)
        if inv.method == "CANCEL":
            if event is None:
                log.info("Graph: no event for %s; nothing to cancel (already cancelled?)", inv.uid)
                return
            self.client.call(
                "POST",
                f"{self.client.user}/events/{quote(event['id'], safe='')}/cancel",
                json_body={"Comment": inv.message.text or inv.description},
                ok=(202,),
                allow=(404,),
                what=f"cancel {key}",
            )
            log.info("Graph: cancelled meeting %s", inv.uid)
            return

        if event is None:
            self._create_event(inv)
            return
        props = {p["id"]: p.get("value", "") for p in event.get("singleValueExtendedProperties", [])}
        try:
            applied = int(props.get(PROP_SEQ, "-1"))
        except ValueError:
            applied = -1
        if applied >= inv.sequence:
            log.info("Graph: meeting %s already at sequence %d; nothing to do", inv.uid, applied)
            return
        keys = props.get(PROP_KEYS, "|") or "|"
        if f"|{key}|" not in keys:
            keys = keys + f"{key}|"
        event_url = f"{self.client.user}/events/{quote(event['id'], safe='')}"
        self.attachments.add(event_url, inv.message.attachments)
        body = self._event_fields(inv)
        body["attendees"] = self._attendees(inv)
        body["singleValueExtendedProperties"] = [
            {"id": PROP_SEQ, "value": str(inv.sequence)},
            {"id": PROP_KEYS, "value": keys},
        ]
        # Graph/Exchange sends the update to the attendees.
        self.client.call("PATCH", event_url, json_body=body, ok=(200,), what=f"update {key}")
        log.info("Graph: updated meeting %s to sequence %d", inv.uid, inv.sequence)

    def _create_event(self, inv: Invitation) -> None:
        key = inv.message.key
        body = self._event_fields(inv)
        body["transactionId"] = inv.uid  # Graph ignores a repeated create with the same id
        props = [
            {"id": PROP_UID, "value": inv.uid},
            {"id": PROP_KEYS, "value": f"|{key}|"},
        ]
        if not inv.message.attachments:
            body["attendees"] = self._attendees(inv)
            props.append({"id": PROP_SEQ, "value": str(inv.sequence)})
            body["singleValueExtendedProperties"] = props
            self.client.call("POST", f"{self.client.user}/events", json_body=body, ok=(201,), what=f"create {key}")
            log.info("Graph: created meeting %s with %d attendees", inv.uid, len(body["attendees"]))
            return
        # With attachments: create without attendees (nothing is sent yet), attach,
        # then add the attendees, which sends the request with the files. No
        # sequence is stored until then, so a crash in between is resumed as an
        # update on the next run.
        body["singleValueExtendedProperties"] = props
        event = self.client.call("POST", f"{self.client.user}/events", json_body=body, ok=(201,), what=f"create {key}").json()
        event_url = f"{self.client.user}/events/{quote(event['id'], safe='')}"
        self.attachments.add(event_url, inv.message.attachments)
        self.client.call(
            "PATCH",
            event_url,
            json_body={
                "attendees": self._attendees(inv),
                "singleValueExtendedProperties": [{"id": PROP_SEQ, "value": str(inv.sequence)}],
            },
            ok=(200,),
            what=f"invite {key}",
        )
        log.info("Graph: created meeting %s with attachments", inv.uid)

    def event_responses(self, uid: str) -> dict[str, str] | None:
        """Attendees' answers to the meeting with our ``uid``, as PARTSTAT
        values (ACCEPTED, DECLINED, TENTATIVE, NEEDS-ACTION), read from the
        event; None when there is no such event. Exchange records the replies
        on the event itself, so this needs no reply mail at all."""
        found = self.client.get_json(
            self.client.query("/events", filter=prop_filter(PROP_UID, uid), select="id,attendees")
        ).get("value", [])
        if not found:
            return None
        out: dict[str, str] = {}
        for a in found[0].get("attendees", []):
            email = a.get("emailAddress", {}).get("address", "").lower()
            response = (a.get("status") or {}).get("response", "none")
            if email:
                out[email] = PARTSTAT.get(response, "NEEDS-ACTION")
        return out

    def event_ical_uid(self, uid: str) -> str | None:
        """The iCalendar UID Exchange gave the event for our ``uid``. Graph does
        not let us set the UID, so attendees' reply mails carry this one."""
        found = self.client.get_json(
            self.client.query("/events", filter=prop_filter(PROP_UID, uid), select="id,iCalUId")
        ).get("value", [])
        return found[0].get("iCalUId") if found else None
