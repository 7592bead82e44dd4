"""The SOAP side of the fake EWS endpoint: namespaces, the response envelopes
(ServerVersionInfo header, ``m:...ResponseMessages``, SOAP faults with
``e:ResponseCode`` and ``t:MessageXml``/``BackOffMilliseconds`` for throttling)
and the evaluation of FindItem/FindFolder restrictions. The mailbox and its
operations are ``fake_ews.FakeEWS``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from support.fake_ews import FakeFolder, FakeItem

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS = {"s": S, "m": M, "t": T}

TOKEN_URL_RE = re.compile(r"https://login\.microsoftonline\.com/([^/]+)/oauth2/v2\.0/token")


def t_tag(tag: str) -> str:
    return f"{{{T}}}{tag}"


def m_tag(tag: str) -> str:
    return f"{{{M}}}{tag}"


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]



# ---------------------------------------------------------------------- restrictions


def constant(cmp) -> str | None:
    const = cmp.find(f"{t_tag('FieldURIOrConstant')}/{t_tag('Constant')}")
    return None if const is None else const.get("Value")


def matches_item(restriction, item: FakeItem) -> bool:
    cond = restriction[0]
    return evaluate(cond, item)


def evaluate(cond, item: FakeItem) -> bool:
    kind = local_name(cond.tag)
    if kind == "And":
        return all(evaluate(c, item) for c in cond)
    if kind == "Or":
        return any(evaluate(c, item) for c in cond)
    if kind == "Not":
        return not evaluate(cond[0], item)
    if kind == "IsEqualTo":
        uri = cond[0]
        value = constant(cond)
        if local_name(uri.tag) == "ExtendedFieldURI":
            return item.ext(uri.get("PropertyName")) == value
        return item.text(uri.get("FieldURI").partition(":")[2]) == value
    if kind == "Exists":
        uri = cond[0]
        if local_name(uri.tag) == "ExtendedFieldURI":
            return item.ext(uri.get("PropertyName")) is not None
        return item.text(uri.get("FieldURI").partition(":")[2]) is not None
    raise NotImplementedError(f"fake EWS restriction {kind}")


def matches_folder(restriction, folder: FakeFolder) -> bool:
    cond = restriction[0]
    if local_name(cond.tag) != "IsEqualTo" or cond[0].get("FieldURI") != "folder:DisplayName":
        raise NotImplementedError("fake EWS: folder restriction on DisplayName only")
    return folder.name.lower() == (constant(cond) or "").lower()


def emails_in(elem, container: str) -> list[str]:
    box = elem.find(t_tag(container))
    if box is None:
        return []
    return [e.text for e in box.iter(t_tag("EmailAddress"))]


# ---------------------------------------------------------------------- envelopes


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(operation: str, messages: list[str], build=(15, 1, 2507, 6)) -> str:
    major, minor, mbuild, mnbuild = build
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Header>'
        f'<h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" MajorBuildNumber="{mbuild}" '
        f'MinorBuildNumber="{mnbuild}" Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
        "</s:Header>"
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{"".join(messages)}'
        f"</m:ResponseMessages></m:{operation}Response></s:Body></s:Envelope>"
    )


def success(operation: str, inner: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{inner}</m:{operation}ResponseMessage>"
    )


def error_message(operation: str, code: str, text: str, *, items: bool = False) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{esc(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{'<m:Items/>' if items else ''}</m:{operation}ResponseMessage>"
    )


def soap_fault(code: str, text: str, back_off_ms: int | None = None) -> str:
    message_xml = (
        f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>'
        if back_off_ms is not None
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{esc(text)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{esc(text)}</e:Message>{message_xml}</detail>'
        "</s:Fault></s:Body></s:Envelope>"
    )


def server_busy(back_off_ms: int) -> Callable[[Any], str]:
    """Responder: the throttling fault Exchange sends (HTTP 500 + SOAP fault)."""

    def respond(context) -> str:
        context.status_code = 500
        return soap_fault("ErrorServerBusy", "The server cannot service this request right now. Try again later.",
                          back_off_ms)

    return respond


def http_status(status: int, headers: dict[str, str] | None = None) -> Callable[[Any], str]:
    def respond(context) -> str:
        context.status_code = status
        context.headers.update(headers or {})
        return ""

    return respond
