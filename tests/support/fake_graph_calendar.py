"""The calendar area of the fake Graph: events with Exchange's organizer
behaviour (a request to added attendees, an update to the others when the
meeting changes, a cancellation), attendees' answers recorded on the event,
``transactionId`` de-duplication, Graph's time zone and attendee checks.
Every meeting message Exchange would send lands in the shared ``outbox``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from support.fake_graph_odata import graph_error, norm_prop, query

TIME_ZONES = {"UTC", "W. Europe Standard Time", "Romance Standard Time", "FLE Standard Time", "GMT Standard Time"}


class FakeCalendar:
    """The organizer mailbox's calendar. ``outbox`` and ``new_id`` are the
    mailbox's (``FakeGraph``)."""

    def __init__(self, mailbox: str, outbox: list[dict[str, Any]], new_id: Callable[[str], str]) -> None:
        self.mailbox = mailbox
        self.outbox = outbox
        self.new_id = new_id
        self.events: dict[str, dict[str, Any]] = {}

    def respond(self, email: str, response: str) -> None:
        """An attendee answers (accepted, declined, tentativelyAccepted): Exchange
        records it on the organizer's event."""
        for ev in self.events.values():
            for a in ev["json"].get("attendees", []):
                if a["emailAddress"]["address"].lower() == email.lower():
                    a["status"] = {"response": response, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


    def get_calendar(self, request, params, body, *groups):
        return httpx.Response(200, json={"id": "AAMkCALENDAR=", "name": "Calendar"})

    def event_json(self, ev: dict[str, Any], expand_ids: list[str] | None = None) -> dict[str, Any]:
        out = {"id": ev["id"]}
        out.update(json.loads(json.dumps(ev["json"])))
        for a in out.get("attendees", []):
            a.setdefault("status", {"response": "none", "time": "0001-01-01T00:00:00Z"})
        if expand_ids is not None:
            wanted = {norm_prop(i) for i in expand_ids}
            props = [{"id": orig, "value": v} for k, (orig, v) in ev["props"].items() if k in wanted]
            if props:
                out["singleValueExtendedProperties"] = props
        return out

    def validate_event(self, body: dict[str, Any], create: bool) -> httpx.Response | None:
        for key in ("start", "end"):
            if key in body or create:
                v = body.get(key) or {}
                if not v.get("dateTime") or v.get("timeZone") not in TIME_ZONES:
                    return graph_error(
                        400, "TimeZoneNotSupportedException",
                        f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{v.get('timeZone')}'.",
                    )
        for a in body.get("attendees") or []:
            if a.get("type") not in ("required", "optional", "resource") or "@" not in a.get("emailAddress", {}).get("address", ""):
                return graph_error(400, "ErrorInvalidRequest", "Invalid attendee.")
        return None

    def list_events(self, request, params, body, *groups):
        found = query(list(self.events.values()), params)
        if isinstance(found, httpx.Response):
            return found
        evs, expand_ids = found
        top = int(params.get("$top", "10"))
        return httpx.Response(200, json={"value": [self.event_json(e, expand_ids) for e in evs[:top]]})

    def create_event(self, request, params, body, *groups):
        body = body or {}
        if not body.get("subject"):
            return graph_error(400, "ErrorInvalidRequest", "subject is required.")
        bad = self.validate_event(body, create=True)
        if bad is not None:
            return bad
        tx = body.get("transactionId")
        if tx:
            for ev in self.events.values():
                if ev["json"].get("transactionId") == tx:
                    return httpx.Response(201, json=self.event_json(ev))
        eid = self.new_id("EVT")
        js = {k: v for k, v in body.items() if k != "singleValueExtendedProperties"}
        js.setdefault("attendees", [])
        js["iCalUId"] = "040000008200E00074C5B7101A82E008" + uuid.uuid4().hex.upper()
        js["isOrganizer"] = True
        js["organizer"] = {"emailAddress": {"address": self.mailbox}}
        ev = {
            "id": eid,
            "json": js,
            "props": {norm_prop(p["id"]): (p["id"], p["value"]) for p in body.get("singleValueExtendedProperties") or []},
            "attachments": [],
        }
        self.events[eid] = ev
        if js["attendees"]:
            self.notify("request", ev, [a["emailAddress"]["address"] for a in js["attendees"]])
        return httpx.Response(201, json=self.event_json(ev))

    def notify(self, kind: str, ev: dict[str, Any], to: list[str], **extra: Any) -> None:
        self.outbox.append(
            {
                "kind": f"meeting-{kind}",
                "to": to,
                "subject": ev["json"].get("subject"),
                "event": json.loads(json.dumps(ev["json"])),
                "attachments": [(a["name"], a["size"]) for a in ev["attachments"]],
                **extra,
            }
        )

    def patch_event(self, request, params, body, eid):
        ev = self.events.get(eid)
        if ev is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        body = body or {}
        bad = self.validate_event(body, create=False)
        if bad is not None:
            return bad
        before = {a["emailAddress"]["address"].lower() for a in ev["json"].get("attendees", [])}
        changed = [k for k, v in body.items() if k not in ("singleValueExtendedProperties", "attendees") and ev["json"].get(k) != v]
        for k, v in body.items():
            if k != "singleValueExtendedProperties":
                ev["json"][k] = v
        for p in body.get("singleValueExtendedProperties") or []:
            ev["props"][norm_prop(p["id"])] = (p["id"], p["value"])
        after = [a["emailAddress"]["address"] for a in ev["json"].get("attendees", [])]
        new = [a for a in after if a.lower() not in before]
        old = [a for a in after if a.lower() in before]
        # Exchange sends requests to added attendees and updates to the others
        # when the organizer changes the meeting.
        if new:
            self.notify("request", ev, new)
        if old and changed:
            self.notify("update", ev, old, changed=changed)
        return httpx.Response(200, json=self.event_json(ev))

    def cancel_event(self, request, params, body, eid):
        ev = self.events.get(eid)
        if ev is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if not ev["json"].get("isOrganizer"):
            return graph_error(400, "ErrorAccessDenied", "Your request can't be completed. You need to be an organizer to cancel a meeting.")
        comment = (body or {}).get("Comment", "")
        self.notify("cancel", ev, [a["emailAddress"]["address"] for a in ev["json"].get("attendees", [])], comment=comment)
        del self.events[eid]  # the organizer's copy goes to Deleted Items
        return httpx.Response(202)
