"""Shapes shared by the fake Graph's areas: OData string literals, extended
property ids and ``$filter`` on them, and Graph's error body
(``{"error": {"code": ..., "message": ..., "innerError": ...}}``)."""

from __future__ import annotations

import re
import time
import uuid

import httpx

QUOTED = r"'((?:[^']|'')*)'"
EP_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(ep:\s*ep/id eq " + QUOTED
    + r" and (?:ep/value eq " + QUOTED + r"|contains\(ep/value,\s*" + QUOTED + r"\))\)$",
    re.I,
)
NAME_FILTER = re.compile(r"^displayName eq " + QUOTED + "$")


def unq(s: str) -> str:
    return s.replace("''", "'")


def norm_prop(prop_id: str) -> tuple[str, ...]:
    """Extended property ids: type and GUID case-insensitive, Name case-sensitive."""
    m = re.match(r"^(\w+)\s+(\{[^}]+\}|0x[0-9a-fA-F]+)(?:\s+Name\s+(.+))?$", prop_id.strip())
    if not m:
        return (prop_id,)
    return (m.group(1).lower(), m.group(2).lower(), m.group(3) or "")


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
        }
    }
    return httpx.Response(status, json=body, headers=headers or {})


def match_filter(props: dict[tuple[str, ...], tuple[str, str]], flt: str) -> bool | None:
    """Does an item with extended ``props`` pass an ``$filter`` on one of them (None: a filter Graph refuses)."""
    fm = EP_FILTER.match(flt.strip())
    if not fm:
        return None
    pid, eq_value, contains_value = fm.groups()
    have = props.get(norm_prop(unq(pid)))
    if have is None:
        return False
    value = have[1].lower()
    if eq_value is not None:
        return value == unq(eq_value).lower()  # value comparison is case-insensitive
    return unq(contains_value).lower() in value


def query(items: list[dict], params: dict[str, str]) -> tuple[list[dict], list[str] | None] | httpx.Response:
    """``$filter`` and ``$expand`` of a list request (messages, events): the items kept and
    the extended-property ids to expand (None: no ``$expand``), or Graph's error response."""
    if "$filter" in params:
        keep = []
        for item in items:
            ok = match_filter(item["props"], params["$filter"])
            if ok is None:
                return graph_error(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
            if ok:
                keep.append(item)
        items = keep
    expand_ids = None
    if "$expand" in params:
        em = re.match(r"^singleValueExtendedProperties\(\$filter=(.*)\)$", params["$expand"])
        if not em:
            return graph_error(400, "BadRequest", "Invalid $expand.")
        expand_ids = [unq(x) for x in re.findall(r"id eq " + QUOTED, em.group(1))]
    return items, expand_ids
