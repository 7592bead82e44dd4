"""Exchange Web Services transport (exchangelib).

For Exchange Server on-premises (NTLM or basic auth, DELEGATE access) and, until
Microsoft switches EWS off, Exchange Online (OAuth2 client credentials,
IMPERSONATION via the ``full_access_as_app`` application permission).

Exchange Online: EWS is blocked by default from 2026-10-01 unless the tenant
allows this app (``EWSEnabled`` + ``EwsAllowedAppIDs``) and is switched off for
good on 2027-04-01 (Microsoft message centre MC1227454). Use the Graph
transport for Microsoft 365 after that; EWS stays in Exchange Server.

What this adapter does on the wire (and what the tests assert):

* ``send``: CreateItem ``MessageDisposition="SendAndSaveCopy"`` with our marker
  header, ``Auto-Submitted`` and ``X-Auto-Response-Suppress`` as extended
  properties in the ``InternetHeaders`` property set, and the Message-ID from
  the idempotency key (dropped and retried once if the server refuses to let us
  set ``InternetMessageId``; the marker still identifies the sent copy).
* ``send_invitation``: a real calendar item (CreateItem
  ``SendMeetingInvitations="SendToAllAndSaveCopy"``), updates with UpdateItem
  ``SendToChangedAndSaveCopy`` (only affected attendees get the update, a copy
  is kept in Sent Items) and cancellations with CancelCalendarItem. The
  calendar item carries the marker plus two private named properties (the
  iCalendar UID and the sequence number) so the item is found again by UID in
  a later run, and a repeated REQUEST or CANCEL is a no-op.
* ``fetch_new``: SyncFolderItems on the inbox (the sync state is the cursor,
  ``item:Size`` comes with each item), then GetItem for the MIME content of
  every created item up to the size cap, and for only the headers
  (``InternetMessageHeaders``) of bigger ones: those reach the intake as
  headers marked ``X-KCG-Oversize``.
* ``move``: MoveItem to a sub-folder of the inbox (FindFolder/CreateFolder).
* Throttling (``ErrorServerBusy`` with ``BackOffMilliseconds``, HTTP 503,
  ``Retry-After``) is waited out through the injected ``sleep`` up to
  ``max_wait`` seconds in total per operation, then ``TransientError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib import (
    Account,
    Attendee,
    Body,
    CalendarItem,
    EWSDateTime,
    FileAttachment,
    Folder,
    HTMLBody,
    Mailbox,
    Message,
)
from exchangelib import errors as ews_errors
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_CHANGED_AND_SAVE_COPY
from exchangelib.services import CreateFolder

from ..ports import (
    Address,
    Check,
    FetchResult,
    IncomingMessage,
    Invitation,
    MailTransport,
    OutgoingMessage,
    TransportError,
)
from ..ports import (
    Folder as FolderName,
)
from .exchange_ews import EwsSession, register_extended_properties
from .headers import with_server_auth_results
from .maildir import incoming_limit, oversize_from_fields

log = logging.getLogger(__name__)


class ExchangeTransport(MailTransport):
    """MailTransport over EWS. Nothing is sent over the network until the first
    operation (or ``check()``). Works through the ``EwsSession`` it is given
    (``ExchangeTransport(EwsSession(mailbox, auth, endpoint, ...))``: account,
    credentials, retry policy, error translation)."""

    mailbox: str
    session: EwsSession
    folder_names: dict[str, str]
    _folders: dict[str, Folder]

    #: size cap for incoming mail in bytes (``item:Size``); None: ``MAX_INCOMING``.
    #: Bigger items are read as their headers only (``oversize_from_fields``).
    max_incoming: int | None = None

    def __init__(
        self, session: EwsSession, *, processed_folder: str = "processed", quarantine_folder: str = "quarantine"
    ):
        self.mailbox = session.mailbox
        self.session = session
        self.folder_names = {"processed": processed_folder, "quarantine": quarantine_folder}
        self._folders = {}
        register_extended_properties()

    @property
    def account(self) -> Account:
        return self.session.account

    # ----------------------------------------------------------------- connection

    def close(self) -> None:
        self.session.close()
        self._folders.clear()



    # ----------------------------------------------------------------------- send

    @staticmethod
    def _mailbox(a: Address) -> Mailbox:
        return Mailbox(name=a.name or None, email_address=a.email)

    def _message(self, message: OutgoingMessage, *, with_message_id: bool) -> Message:
        acc = self.account
        extra = {}
        if message.auto_submitted:
            extra = {"kcg_auto_submitted": "auto-generated", "kcg_auto_response_suppress": "All"}
        m = Message(
            account=acc,
            folder=acc.sent,
            subject=message.subject,
            body=HTMLBody(message.html) if message.html else Body(message.text),
            to_recipients=[self._mailbox(a) for a in message.to],
            cc_recipients=[self._mailbox(a) for a in message.cc] or None,
            reply_to=[self._mailbox(message.reply_to)] if message.reply_to else None,
            in_reply_to=message.in_reply_to,
            references=" ".join(message.references) or None,
            message_id=message.message_id if with_message_id else None,
            kcg_marker=message.key,
            **extra,
        )
        if message.sender.email.lower() == self.mailbox.lower() and message.sender.name:
            m.author = Mailbox(name=message.sender.name, email_address=self.mailbox)
        for att in message.attachments:
            m.attach(FileAttachment(name=att.filename, content=att.data, content_type=att.content_type))
        return m

    def send(self, message: OutgoingMessage) -> None:
        def run() -> None:
            try:
                self._message(message, with_message_id=True).send_and_save()
            except (ews_errors.ErrorInvalidPropertySet, ews_errors.ErrorInvalidPropertyRequest) as e:
                if "InternetMessageId" not in str(e):
                    raise
                # Some servers do not let clients set the Message-ID (exchangelib #619). The
                # CreateItem was refused, so nothing went out; send without it. The marker
                # header still identifies the sent copy.
                log.warning("Exchange refused our Message-ID for %s; sending with a server one", message.key)
                self._message(message, with_message_id=False).send_and_save()

        self.session.call(f"send {message.key}", run)

    # ---------------------------------------------------------------- invitations

    def _find_meeting(self, uid: str) -> CalendarItem | None:
        found = list(self.account.calendar.filter(kcg_uid=uid))
        found = [f for f in found if not isinstance(f, Exception)]
        if len(found) > 1:
            log.warning("%d calendar items carry UID %s; using the newest", len(found), uid)
            found.sort(key=lambda i: i.datetime_created or datetime.min.replace(tzinfo=UTC))
        return found[-1] if found else None

    @staticmethod
    def _ews_datetime(value: datetime, tzid: str) -> EWSDateTime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(tzid))
        return EWSDateTime.from_datetime(value)

    def _meeting_fields(self, inv: Invitation) -> dict[str, Any]:
        msg = inv.message
        return {
            "subject": inv.summary or msg.subject,
            "body": HTMLBody(msg.html) if msg.html else Body(inv.description or msg.text),
            "start": self._ews_datetime(inv.start, inv.tzid),
            "end": self._ews_datetime(inv.end, inv.tzid),
            "location": inv.location or None,
            "required_attendees": [Attendee(mailbox=self._mailbox(a), response_type="Unknown") for a in msg.to]
            or None,
            "optional_attendees": [Attendee(mailbox=self._mailbox(a), response_type="Unknown") for a in msg.cc]
            or None,
        }

    @staticmethod
    def _same(field: str, old: Any, new: Any) -> bool:
        if field.endswith("attendees"):

            def emails(v: Any) -> list[str]:
                return sorted((a.mailbox.email_address or "").lower() for a in (v or []))

            return emails(old) == emails(new)
        if field == "body":
            return str(old or "") == str(new or "") and type(old) is type(new)
        if field in ("start", "end"):
            return old is not None and new is not None and old == new
        return (old or None) == (new or None)

    def send_invitation(self, invitation: Invitation) -> None:
        inv = invitation
        def run() -> None:
            existing = self._find_meeting(inv.uid)
            if inv.method == "CANCEL":
                if existing is None:
                    log.info("meeting %s not in the calendar (never sent or already cancelled)", inv.uid)
                    return
                if existing.is_cancelled:
                    return
                existing.cancel(body=Body(inv.description or inv.message.text))
                return
            fields = self._meeting_fields(inv)
            if existing is None:
                item = CalendarItem(
                    account=self.account,
                    folder=self.account.calendar,
                    uid=inv.uid,
                    kcg_marker=inv.message.key,
                    kcg_uid=inv.uid,
                    kcg_sequence=inv.sequence,
                    **fields,
                )
                item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
                return
            if existing.kcg_sequence is not None and existing.kcg_sequence >= inv.sequence:
                log.info("meeting %s already at sequence %s; nothing to send", inv.uid, existing.kcg_sequence)
                return
            changed = [name for name, value in fields.items() if not self._same(name, getattr(existing, name), value)]
            for name in changed:
                setattr(existing, name, fields[name])
            existing.kcg_marker = inv.message.key
            existing.kcg_sequence = inv.sequence
            existing.save(
                update_fields=changed + ["kcg_marker", "kcg_sequence"],
                send_meeting_invitations=SEND_TO_CHANGED_AND_SAVE_COPY,
            )

        self.session.call(f"{inv.method} invitation {inv.uid} (sequence {inv.sequence})", run)

    # ---------------------------------------------------------------------- inbox

    def recent_headers(self, limit: int = 20) -> list[bytes]:
        """Authentication-Results of the newest inbox mails (``kcg check --connect``):
        FindItem for the ids, GetItem for InternetMessageHeaders (FindItem cannot return them)."""
        def run() -> list[bytes]:
            inbox = self.account.inbox
            ids = list(inbox.all().order_by("-datetime_received").values_list("id", "changekey")[:limit])
            out = []
            if ids:
                for item in self.account.fetch(ids=ids, folder=inbox, only_fields=["headers"]):
                    if isinstance(item, Exception) or not item.headers:
                        continue
                    fields = [h for h in item.headers if (h.name or "").lower() in ("authentication-results", "from")]
                    out.append("".join(f"{h.name}: {h.value}\r\n" for h in fields).encode("utf-8", "replace"))
            return out

        return self.session.call("read recent headers", run)

    def fetch_new(self, cursor: str | None) -> FetchResult:
        def run() -> FetchResult:
            inbox = self.account.inbox
            # The folder object is cached by exchangelib and remembers the last sync state;
            # start from exactly the cursor we were given (None = everything in the inbox).
            inbox.item_sync_state = cursor
            created = [
                item
                for change, item in inbox.sync_items(sync_state=cursor, only_fields=["datetime_received", "size"])
                if change == "create"
            ]
            new_cursor = inbox.item_sync_state
            # Over the cap (item:Size from the sync): the headers only, never the MIME content,
            # so a few 150 MB mails cannot exhaust the memory (unknown size: read as before).
            limit = incoming_limit(self.max_incoming)
            big = [i.size is not None and i.size > limit for i in created]

            def read(over: bool) -> Iterator[Any]:
                ids = [(i.id, i.changekey) for i, b in zip(created, big, strict=True) if b is over]
                fields = ["headers", "datetime_received"] if over else ["mime_content", "headers", "datetime_received"]
                return iter(self.account.fetch(ids=ids, folder=inbox, only_fields=fields) if ids else ())

            got = {False: read(False), True: read(True)}
            messages: list[IncomingMessage] = []
            for over in big:  # fetch answers in the order of the ids asked for: keep the sync's order
                item = next(got[over])
                if isinstance(item, ews_errors.ErrorItemNotFound):
                    continue  # moved or deleted since the sync: someone else handled it
                if isinstance(item, Exception):
                    raise item
                message = self._incoming(item, over)
                if message is not None:
                    messages.append(message)
            return FetchResult(messages=messages, cursor=new_cursor)

        return self.session.call("fetch new messages", run)

    @staticmethod
    def _incoming(item: Message, oversize: bool) -> IncomingMessage | None:
        pairs = [(h.name, h.value) for h in item.headers or []]
        if oversize:
            log.warning("item %s is over the incoming size cap; reading its headers only", item.id)
            raw = oversize_from_fields(pairs)
        elif not item.mime_content:
            log.warning("item %s has no MIME content; skipped", item.id)
            return None
        else:
            raw = bytes(item.mime_content)
            if item.headers is not None:  # the store's own list: Authentication-Results as received
                raw = with_server_auth_results(raw, pairs)
        received = item.datetime_received
        return IncomingMessage(
            ref=f"{item.id}|{item.changekey}",
            raw=raw,
            received_at=datetime.fromtimestamp(received.timestamp(), tz=UTC) if received else None,
        )

    def _subfolder(self, name: str) -> Folder:
        if name in self._folders:
            return self._folders[name]
        inbox = self.account.inbox
        try:
            folder = inbox // name
        except ews_errors.ErrorFolderNotFound:
            try:
                new = Folder(parent=inbox, name=name)
                created = CreateFolder(account=self.account).get(parent_folder=inbox, folders=[new])
                new._id = new.ID_ELEMENT_CLS(created.id, created.changekey)
                folder = new
            except ews_errors.ErrorFolderExists:
                folder = inbox // name  # created meanwhile by another run
        self._folders[name] = folder
        return folder

    def move(self, ref: str, folder: FolderName) -> None:
        item_id, _, _changekey = ref.partition("|")
        if not item_id:
            raise ValueError(f"not an Exchange item reference: {ref!r}")
        name = self.folder_names[folder]
        def run() -> None:
            target = self._subfolder(name)
            # No changekey: a read flag set in Outlook meanwhile must not make the move fail.
            (result,) = self.account.bulk_move(ids=[(item_id, None)], to_folder=target)
            if isinstance(result, ews_errors.ErrorItemNotFound):
                log.info("item already gone from the inbox (moved before): %s", ref[:16])
                return
            if isinstance(result, Exception):
                raise result

        self.session.call(f"move {ref[:16]}… to {name}", run)

    # ------------------------------------------------------------------ was_sent

    def sent_copies(self) -> Iterator[tuple[str, bytes]]:
        """Every item in Sent Items and the calendar with our marker (``kcg state rebuild``).
        An invitation's calendar item carries the key of its newest version only."""
        out: list[tuple[str, bytes]] = []

        def run() -> None:
            out.clear()  # a repeat after a refreshed token starts over
            for folder in (self.account.sent, self.account.calendar):
                for item in folder.filter(kcg_marker__exists=True).only("kcg_marker", "mime_content"):
                    if item.kcg_marker:
                        out.append((str(item.kcg_marker).strip(), bytes(item.mime_content or b"")))

        self.session.call("list Sent Items and the calendar for a rebuild", run)
        return iter(out)

    def was_sent(self, key: str) -> bool:
        def run() -> bool:
            if self.account.sent.filter(kcg_marker=key).exists():
                return True
            return bool(self.account.calendar.filter(kcg_marker=key).exists())

        return self.session.call(f"look up sent copy of {key}", run)

    # --------------------------------------------------------------------- check

    def check(self) -> list[Check]:
        name = f"exchange {self.mailbox}"
        checks: list[Check] = []
        try:
            with self.session.translating("connect"):
                inbox = self.account.inbox  # GetFolder
                detail = (
                    f"EWS at {self.account.protocol.service_endpoint} ({self.session.auth}, "
                    f"{'impersonation' if self.session.auth == 'oauth' else 'delegate'}); inbox holds "
                    f"{inbox.total_count} message(s)"
                )
            checks.append(Check(name, True, detail))
        except TransportError as e:
            checks.append(Check(name, False, str(e)))
            return checks
        try:
            with self.session.translating("open the calendar and Sent Items"):
                self.account.calendar  # noqa: B018 - GetFolder
                self.account.sent  # noqa: B018
            checks.append(Check(f"{name} calendar", True, "calendar and Sent Items reachable"))
        except TransportError as e:
            checks.append(Check(f"{name} calendar", False, str(e)))
        if "office365.com" in (self.session.service_endpoint or "") or self.session.auth == "oauth":
            checks.append(
                Check(
                    f"{name} EWS retirement",
                    True,
                    "Exchange Online blocks EWS by default from 2026-10-01 unless this app is in EwsAllowedAppIDs, "
                    "and switches EWS off on 2027-04-01 (MC1227454): move this mailbox to the Graph transport.",
                )
            )
        return checks
