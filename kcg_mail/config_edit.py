"""Edit one meeting's date in a ``plan-YYYY.yaml`` text, keeping its comments,
quotes, order and indentation (the coordinator's file, edited by hand too).

A round-trip YAML parser (ruamel.yaml) reads the file into a tree that remembers
its layout, the entry is changed in the tree, and the tree is written back: no
regular expressions over YAML. Text in, text out; the caller writes the file."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent


class PlanEditProblem(ValueError):
    pass


def _round_trip(text: str) -> YAML:
    """A round-trip parser set to write the layout ``text`` has (its list indentation)."""
    _, sequence, offset = load_yaml_guess_indent(text)
    sequence, offset = sequence or 2, offset or 0
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never fold a long Swedish theme onto two lines
    y.indent(mapping=max(sequence - offset, 2), sequence=sequence, offset=offset)
    return y


def confirm_date(text: str, month: str, when: date) -> str:
    """Set ``date: <when>`` and ``tentative: false`` in the meeting entry of
    ``month``; raise PlanEditProblem when the file has no such entry."""
    newline = "\r\n" if "\r\n" in text else "\n"
    text = text.replace("\r\n", "\n")
    try:
        y = _round_trip(text)
        doc = y.load(text)
    except YAMLError as exc:
        raise PlanEditProblem(f"the plan is not valid YAML: {exc}") from None
    meetings: Any = doc.get("meetings") if hasattr(doc, "get") else None
    entry = next((m for m in meetings or [] if hasattr(m, "get") and str(m.get("month")) == month), None)
    if entry is None:
        raise PlanEditProblem(f"no meeting entry with month {month!r}")
    entry["date"] = when
    entry["tentative"] = False
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue().replace("\n", newline)
