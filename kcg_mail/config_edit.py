"""Edit one meeting's date in a ``plan-YYYY.yaml`` text, keeping its comments
and layout (the coordinator's file, edited by hand too). Pure: text in, text out."""

from __future__ import annotations

import re
from datetime import date


class PlanEditProblem(ValueError):
    pass


def confirm_date(text: str, month: str, when: date) -> str:
    """Set ``date: <when>`` and ``tentative: false`` in the meeting entry of
    ``month``; raise PlanEditProblem when the file has no such entry."""
    lines = text.splitlines(keepends=True)
    head = re.compile(r"^(\s*)-\s+month:\s*[\"']?" + re.escape(month) + r"[\"']?\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if head.match(line.rstrip("\r\n"))), None)
    if start is None:
        raise PlanEditProblem(f"no meeting entry with month {month!r}")
    indent = len(head.match(lines[start].rstrip("\r\n")).group(1)) + 2  # type: ignore[union-attr]
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        lead = len(lines[end]) - len(lines[end].lstrip())
        if stripped and not stripped.startswith("#") and lead < indent:
            break
        end += 1
    block = lines[start + 1:end]
    newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
    pad = " " * indent

    def put(field: str, value: str, block: list[str]) -> list[str]:
        pat = re.compile(rf"^\s{{{indent}}}{field}:")
        for i, line in enumerate(block):
            if pat.match(line):
                block[i] = f"{pad}{field}: {value}{newline}"
                return block
        # insert after the last non-blank line of the entry
        last = max((i for i, line in enumerate(block) if line.strip()), default=-1)
        return block[:last + 1] + [f"{pad}{field}: {value}{newline}"] + block[last + 1:]

    block = put("date", when.isoformat(), block)
    block = put("tentative", "false", block)
    return "".join(lines[:start + 1] + block + lines[end:])
