"""Which attachments may be the minutes: document types by name and content."""

from __future__ import annotations

from kcg_mail.ports import Attachment

DOCUMENT_EXTENSIONS = (".docx", ".docm", ".doc", ".pdf", ".odt")


DOC_TYPES = {
    "application/pdf": ".pdf",
    "application/x-pdf": ".pdf",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.ms-word.document.macroenabled.12": ".docm",
    "application/vnd.oasis.opendocument.text": ".odt",
}


EXT_TYPES = {ext: ct for ct, ext in DOC_TYPES.items() if ct != "application/x-pdf"}


EXT_TYPES.update(
    {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".txt": "text/plain",
        ".ics": "text/calendar",
        ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ".rtf": "application/rtf",
        ".eml": "message/rfc822",
    }
)


def file_ext(filename: str) -> str:
    name = (filename or "").strip().lower()
    i = name.rfind(".")
    return name[i:] if i >= 0 else ""


def sniff(data: bytes) -> str | None:
    """The document extension the content looks like, or None."""
    head = data[:1024]
    if b"%PDF-" in head:
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        if b"mimetypeapplication/vnd.oasis.opendocument.text" in data[:200]:
            return ".odt"
        if b"word/" in data:
            return ".docm" if b"vbaProject" in data else ".docx"
        return None
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        # OLE: a .doc, or an encrypted .docx/.docm (the shell tells them apart).
        return ".doc"
    if data.startswith(b"{\\rtf"):
        return None
    return None


_NOT_DOCUMENTS = {
    ".xls", ".xlsx", ".xlsm", ".ppt", ".pptx", ".pptm", ".msg", ".zip", ".ics", ".vcs", ".vcf",
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".emz", ".wmz", ".txt", ".html", ".htm",
}


def is_document_candidate(att: Attachment) -> bool:
    """Could this attachment be the minutes? By name, declared type or content.
    Images (signature logos) and files named as another kind (.xlsx, .msg,
    .ics ...) never are. Validation is the shell's job."""
    ct = (att.content_type or "").lower()
    if ct.startswith("image/"):
        return False
    ext = file_ext(att.filename)
    if ext in DOCUMENT_EXTENSIONS:
        return True
    if ext in _NOT_DOCUMENTS:
        return False
    if ct in DOC_TYPES:
        return True
    return sniff(att.data or b"") is not None
