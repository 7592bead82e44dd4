"""The mailboxes of an ``SmtpImapTransport``: the server's namespace, the
configured folder names, creating a folder on first use, selecting."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re

from kcg_mail.ports import (
    TransportError,
)

from .imap_wire import _LIST_RE, _encode_mutf7, _quote, _unquote

log = logging.getLogger(__name__)





class ImapFolders:
    """Folder names and selection of an ``SmtpImapTransport``."""

    def _discover_namespace(self, conn: imaplib.IMAP4) -> None:
        if self._delim is not None:
            return
        prefix, delim = "", None
        if "NAMESPACE" in conn.capabilities:
            typ, data = conn.namespace()
            if typ == "OK" and data and data[0]:
                m = re.match(rb'\(\("((?:[^"\\]|\\.)*)" (?:"((?:[^"\\]|\\.)*)"|NIL)', data[0])
                if m:
                    prefix = _unquote(b'"' + m.group(1) + b'"')
                    if m.group(2) is not None:
                        delim = m.group(2).decode().replace("\\\\", "\\")
        if delim is None:
            typ, data = conn.list('""', '""')
            if typ == "OK" and data and data[0]:
                m = _LIST_RE.match(data[0])
                if m and m.group("delim") != b"NIL":
                    delim = m.group("delim")[1:-1].decode().replace("\\\\", "\\")
        self._prefix, self._delim = prefix, delim or "/"

    def _mailbox(self, name: str) -> str:
        """Server mailbox name for a configured ``/``-separated folder name."""
        self._imap()
        if name.upper() == "INBOX":
            return "INBOX"
        if self._prefix and (name.startswith(self._prefix) or name.upper().startswith(self._prefix.upper())):
            return name
        return self._prefix + name.replace("/", self._delim or "/")

    def _folder(self, which: str) -> str:
        if which not in self._resolved:
            self._resolved[which] = self._mailbox(self.folder_names[which])
        return self._resolved[which]

    def _exists(self, conn: imaplib.IMAP4, mailbox: str) -> bool:
        if mailbox in self._known_folders:
            return True
        typ, data = conn.list('""', _quote(_encode_mutf7(mailbox)))
        found = typ == "OK" and any(
            isinstance(d, bytes) and b"\\NonExistent" not in d and b"\\Noselect" not in d for d in data if d
        )
        if found:
            self._known_folders.add(mailbox)
        return found

    def _ensure_folder(self, conn: imaplib.IMAP4, mailbox: str) -> bool:
        """Create ``mailbox`` when missing. True when it was created."""
        if self._exists(conn, mailbox):
            return False
        typ, data = conn.create(_quote(_encode_mutf7(mailbox)))
        if typ != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            if "ALREADYEXISTS" not in text.upper() and not self._exists(conn, mailbox):
                raise TransportError(
                    f"cannot create IMAP folder {mailbox!r} for {self.username}: {text} "
                    "(create it by hand or ask the mail admin for permission)"
                )
        with contextlib.suppress(Exception):
            conn.subscribe(_quote(_encode_mutf7(mailbox)))
        self._known_folders.add(mailbox)
        log.info("created IMAP folder %s", mailbox)
        return True

    def _select(self, conn: imaplib.IMAP4, mailbox: str, *, readonly: bool = False, force: bool = False) -> None:
        if self._selected == (mailbox, readonly) and not force:
            return
        typ, data = conn.select(_quote(_encode_mutf7(mailbox)), readonly=readonly)
        self._ok(f"select {mailbox}", typ, data)
        self._selected = (mailbox, readonly)  # type: ignore[assignment]
