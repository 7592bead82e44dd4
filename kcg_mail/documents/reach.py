"""Can a returned document reach outside itself? Refuse what Word or LibreOffice would
fetch or run from elsewhere when the file is opened by a member:

- Word fields that fetch or execute: DDE, DDEAUTO, INCLUDEPICTURE, INCLUDETEXT, LINK
  (and their old names IMPORT, INCLUDE), and any other field whose instruction holds a
  URL or a UNC path, in ``w:instrText`` (also split across runs and nested) and
  ``w:fldSimple/@w:instr``, in every part of the package (document, headers, footers,
  footnotes, endnotes, comments, glossary, anything else);
- external relationships of any part, with part names, ``Type`` and ``TargetMode``
  compared case-insensitively, as Office does. A hyperlink (a click target, never
  fetched on open) is the one exception, and only where it is used as a hyperlink;
- a mail-merge main document (its data source is queried on open);
- OpenDocument links that load content (linked images, sections, objects, DDE) and
  script event listeners. Hyperlinks (``text:a``) stay.

Only a HYPERLINK field may carry a URL: it is a click target like a hyperlink
relationship. Everything here reads parts inflated by :mod:`inflate`; nothing is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kcg_mail.documents.inflate import Package
from kcg_mail.documents.ooxml import WORDML_NS, rejection, safe_parse

_W = f"{{{WORDML_NS}}}"

#: Field names that fetch or execute on open or update (Word's field reference; IMPORT and
#: INCLUDE are the old names of INCLUDEPICTURE and INCLUDETEXT, still understood).
FETCHING_FIELDS = frozenset({"DDE", "DDEAUTO", "INCLUDEPICTURE", "INCLUDETEXT", "LINK", "IMPORT", "INCLUDE"})

#: A URL (any scheme of two or more letters, so ``C:`` is a drive) or a UNC path
#: (``\\host``, ``//host``, ``\\?\UNC``) anywhere in a field instruction. Field syntax
#: doubles backslashes, so ``\\\\host`` is matched too.
_URL_OR_UNC = re.compile(
    r"\b[a-z][a-z0-9+.-]+:(?:/|\\)|\b(?:https?|ftps?|file|mhtml|smb|webdavs?|ms-[a-z-]+):"
    r"|(?:^|[\s\"'])(?:\\{2,}|/{2,})[^\s\\/\"']",
    re.I,
)

_HYPERLINK_TYPES = {
    "http://schemas.openxmlformats.org/officedocument/2006/relationships/hyperlink",
    "http://purl.oclc.org/ooxml/officedocument/relationships/hyperlink",
}

_REL_NAMESPACES = {
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://purl.oclc.org/ooxml/officeDocument/relationships",
}

#: Elements whose relationship attribute makes a click target, not a fetch.
_HYPERLINK_USERS = {"hyperlink", "hlinkClick", "hlinkHover", "hlinkMouseOver"}

_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"

#: An external target that leaves this computer: a URL (anything with a scheme of two or
#: more letters, except ``file:///C:/...``) or a UNC path in either slash direction.
_REMOTE_TARGET = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]+:(?!///[a-z]:)|[\\/]{2})", re.I)


def is_remote(target: str) -> bool:
    t = target.strip().replace("&#92;", "\\")
    return bool(_REMOTE_TARGET.match(t))


def _elements(raw: bytes, name: str) -> Iterator[tuple[Any, str]]:
    """Every element of an XML part (safely parsed) with its local name; comments and
    processing instructions are passed over."""
    for el in safe_parse(raw, name).iter():
        if isinstance(el.tag, str):
            yield el, el.tag.rsplit("}", 1)[-1]


# ------------------------------------------------------------------ OOXML


def _source_part(rels_name: str) -> str | None:
    """``word/_rels/document.xml.rels`` -> ``word/document.xml`` (case kept); None when the
    name is not a relationship part."""
    low = rels_name.lower()
    if not low.endswith(".rels"):
        return None
    folder, _, name = rels_name.rpartition("/")
    pfolder, _, rels_dir = folder.rpartition("/") if "/" in folder else ("", "", folder)
    if rels_dir.lower() != "_rels":
        return None
    src = name[: -len(".rels")]
    return f"{pfolder}/{src}" if pfolder else src


def _field_problem(instr: str) -> str | None:
    words = instr.strip().split(None, 1)
    if not words:
        return None
    name = words[0].lstrip("\\").upper()
    if name in FETCHING_FIELDS:
        return f"{name} field"
    if name != "HYPERLINK" and _URL_OR_UNC.search(instr):
        return f"{name} field with a URL or UNC path"
    return None


def _field_instructions(root: Any) -> Iterable[str]:
    """Every field instruction of a part: fldSimple/@instr, and complex fields assembled
    from their instrText runs (split across runs and nested fields kept apart)."""
    for el in root.iter(_W + "fldSimple"):
        yield el.get(_W + "instr", "")
    stack: list[list[str]] = []
    for el in root.iter(_W + "fldChar", _W + "instrText", _W + "delInstrText"):
        if el.tag == _W + "fldChar":
            kind = el.get(_W + "fldCharType", "")
            if kind == "begin":
                stack.append([])
            elif kind in ("separate", "end") and stack:
                yield "".join(stack[-1])
                stack[-1] = []  # the result part of a field holds no instruction
                if kind == "end":
                    stack.pop()
        elif stack:
            stack[-1].append(el.text or "")
        else:  # instruction text outside any begin/end pair: judge it on its own
            yield el.text or ""
    for rest in stack:  # a field left open at the end of the part
        yield "".join(rest)


def _vet_mail_merge(name: str, root: Any) -> None:
    """A mail-merge main document queries its data source when Word opens it."""
    for mm in root.iter(_W + "mailMerge"):
        for tag in ("connectString", "query", "dataSource", "headerSource"):
            if mm.find(_W + tag) is not None:
                raise rejection("active_field", f"{name}: mail merge with a data source ({tag})")


def vet_word_fields(pkg: Package) -> None:
    for name in pkg.parts:
        low = name.lower()
        if not low.endswith(".xml") or low.startswith(("customxml/", "docprops/")):
            continue
        raw = pkg.parts[name]
        if b"mailMerge" in raw:
            _vet_mail_merge(name, safe_parse(raw, name))
        if b"instr" not in raw:
            continue
        root = safe_parse(raw, name)
        for instr in _field_instructions(root):
            problem = _field_problem(instr)
            if problem:
                raise rejection("active_field", f"{name}: {problem}: {' '.join(instr.split())[:200]}")


def vet_relationships(pkg: Package) -> None:
    """Refuse external relationships of every part (except hyperlinks used as hyperlinks)."""
    for rels_name in list(pkg.parts):
        src = _source_part(rels_name)
        if src is None:
            continue
        root = safe_parse(pkg.parts[rels_name], rels_name)
        hyperlink_ids: set[str] = set()
        for rel in root.iter(_PKG_REL):
            typ = (rel.get("Type") or "").strip()
            target = rel.get("Target") or ""
            if (rel.get("TargetMode") or "").strip().lower() != "external":
                if is_remote(target):  # an "internal" part named by a URL or UNC path
                    raise rejection("external_link", f"{rels_name}: internal relationship to {target[:200]}")
                continue
            if typ.lower() in _HYPERLINK_TYPES:
                hyperlink_ids.add(rel.get("Id") or "")
                continue
            if is_remote(target):
                raise rejection(
                    "external_link",
                    f"{rels_name}: external {typ.rsplit('/', 1)[-1]} relationship to {target[:200]}",
                )
        if hyperlink_ids:
            _vet_hyperlink_use(pkg, src, rels_name, hyperlink_ids)


def _vet_hyperlink_use(pkg: Package, src: str, rels_name: str, ids: set[str]) -> None:
    """A hyperlink relationship referenced as a picture or an included file would be
    fetched: refuse any use of its id outside a hyperlink element."""
    raw = pkg.get(src)
    if raw is None:
        return
    for el, local in _elements(raw, src):
        for attr, value in el.attrib.items():
            if value in ids and attr.startswith("{") and attr[1:].split("}", 1)[0] in _REL_NAMESPACES:
                if local not in _HYPERLINK_USERS:
                    raise rejection("external_link", f"{src}: hyperlink {value} of {rels_name} used by <{local}>")


def vet_alt_chunks(pkg: Package) -> None:
    """An imported HTML/MHT chunk (altChunk) is rendered by Word on open, with its
    ``src`` attributes: refuse one that points outside."""
    for name, raw in pkg.parts.items():
        low = name.lower()
        if low.endswith((".htm", ".html", ".mht", ".mhtml")) or (low.endswith(".txt") and b"<" in raw[:4096]):
            text = raw.decode("utf-8", "replace")
            for m in re.finditer(r"""\b(?:src|href|background|data|srcset|action)\s*=\s*["']?\s*([^"'\s>]+)""", text, re.I):
                if is_remote(m.group(1)) and not m.group(0).lower().startswith("href"):
                    raise rejection("external_link", f"{name}: imported HTML loads {m.group(1)[:200]}")
            if re.search(r"url\(\s*['\"]?\s*(?:[a-z][a-z0-9+.-]+:|[\\/]{2})", text, re.I):
                raise rejection("external_link", f"{name}: imported HTML loads a stylesheet URL")


_AFCHUNK = "/afchunk"
_RTF_ACTIVE = re.compile(rb"\\(objautlink|objupdate|objlink|objhtml|objocx)\b")
_RTF_FLDINST = re.compile(rb"\\fldinst\s*((?:[^{}]|\{[^{}]*\})*)")


def _vet_rtf(name: str, raw: bytes) -> None:
    m = _RTF_ACTIVE.search(raw)
    if m:
        raise rejection("active_field", f"{name}: RTF object that updates itself (\\{m.group(1).decode()})")
    for f in _RTF_FLDINST.finditer(raw):
        text = re.sub(r"(?<!\\)\\[a-zA-Z]+-?\d* ?", " ", f.group(1).decode("latin-1"))  # control words
        instr = re.sub(r"\\\*|[{}]", " ", text)
        problem = _field_problem(instr)
        if problem:
            raise rejection("active_field", f"{name}: RTF {problem}: {' '.join(instr.split())[:200]}")


def vet_imported_chunks(pkg: Package, depth: int = 0, vet_file: Callable[..., object] | None = None) -> None:
    """Content Word imports when it opens the document (altChunk): an RTF chunk is judged
    like fields, a Word chunk like a returned file of its own (``vet_file``, passed in by
    ``safety`` so the two modules do not import each other); anything else is refused."""
    for rels_name in list(pkg.parts):
        src = _source_part(rels_name)
        if src is None:
            continue
        root = safe_parse(pkg.parts[rels_name], rels_name)
        for rel in root.iter(_PKG_REL):
            if not (rel.get("Type") or "").strip().lower().endswith(_AFCHUNK):
                continue
            if (rel.get("TargetMode") or "").strip().lower() == "external":
                continue  # judged (remote or not) by vet_relationships
            from kcg_mail.documents.ooxml import resolve_target

            target = resolve_target(src, rel.get("Target") or "")
            raw = pkg.get(target)
            if raw is None:
                if pkg.has(target):
                    raise rejection("active_field", f"{rels_name}: imported chunk {target} of an unknown type")
                continue  # a dangling relationship imports nothing
            head = raw.lstrip()[:16]
            if head.startswith(b"{\\rtf"):
                _vet_rtf(target, raw)
            elif raw.startswith(b"PK\x03\x04"):
                if depth >= 1:
                    raise rejection("active_field", f"{target}: imported Word chunk nested in another one")
                if vet_file is None:
                    raise rejection("active_field", f"{target}: imported Word chunk cannot be judged here")
                vet_file(target.rsplit("/", 1)[-1], raw, max_bytes=len(raw), _depth=depth + 1)
            elif target.lower().endswith((".htm", ".html", ".mht", ".mhtml", ".txt", ".xml")):
                continue  # HTML/MHT: vet_alt_chunks; plain text and XML import nothing
            else:
                raise rejection("active_field", f"{rels_name}: imported chunk {target} of an unknown type")


def vet_ooxml(pkg: Package, depth: int = 0, vet_file: Callable[..., object] | None = None) -> None:
    vet_relationships(pkg)
    vet_word_fields(pkg)
    vet_alt_chunks(pkg)
    vet_imported_chunks(pkg, depth, vet_file)


# ------------------------------------------------------------------ OpenDocument

_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_DRAW_NS = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_OFFICE_NS = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_SCRIPT_NS = "urn:oasis:names:tc:opendocument:xmlns:script:1.0"

#: Elements whose xlink:href is a click target, never loaded on open.
_ODF_CLICK = {f"{{{_TEXT_NS}}}a", f"{{{_DRAW_NS}}}a", f"{{{_TEXT_NS}}}bookmark-ref",
              f"{{{_TEXT_NS}}}alphabetical-index-auto-mark-file"}


def vet_odf(pkg: Package) -> None:
    for name, raw in pkg.parts.items():
        if not name.lower().endswith(".xml") or name.lower().startswith("meta-inf/"):
            continue
        if b"href" not in raw and b"dde" not in raw and b"event-listener" not in raw:
            continue
        for el, local in _elements(raw, name):
            if local.startswith("dde-") or local == "dde-source":
                raise rejection("active_field", f"{name}: DDE link <{local}>")
            if local == "event-listener":
                raise rejection("macro", f"{name}: script event listener")
            href = el.get(_XLINK_HREF)
            if href is None or el.tag in _ODF_CLICK:
                continue
            if is_remote(href) or href.strip().startswith("../"):
                raise rejection("external_link", f"{name}: <{local}> loads {href[:200]}")
