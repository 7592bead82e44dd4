"""What a host does to the protocol in Word, with python-docx: find the
decisions table (header Beslut | Ansvarig | Klart till) and edit it.

Used by ``kcg demo`` to play the hosts, and by the tests (the one copy of
these helpers; the tests also play hosts with LibreOffice).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any


def decisions_table(doc: Any) -> Any:
    """The protocol's decisions table in a python-docx Document."""
    for table in doc.tables:
        head = [c.text.strip().lower() for c in table.rows[0].cells]
        if head[:3] == ["beslut", "ansvarig", "klart till"]:
            return table
    raise LookupError("the protocol has no decisions table (Beslut | Ansvarig | Klart till)")


def edit_decisions(docx_bytes: bytes, edit: Callable[[Any], None]) -> bytes:
    """Open a .docx, let ``edit(table)`` change the decisions table, save."""
    import docx

    doc = docx.Document(io.BytesIO(docx_bytes))
    edit(decisions_table(doc))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
