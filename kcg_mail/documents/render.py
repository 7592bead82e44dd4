"""Decision protocols ("beslutsprotokoll"): render the Word template.
``ProtocolRenderer(template_path)`` parses the docxtpl template once and renders it many
times with :meth:`ProtocolRenderer.render`, which returns the .docx as bytes. Jinja runs
with autoescape ON (``A & B <c>`` comes out literally in Word) and ``StrictUndefined``
(a missing key raises :class:`jinja2.exceptions.UndefinedError`). The output is what
``DocxTemplate(path).render(context, autoescape=True)`` produces, minus the cost of
re-opening and re-saving the whole package per document: the zip parts that carry no Jinja
are copied as they are, and only the Jinja-bearing parts (``word/document.xml``, headers,
footers, footnotes and, if they carry tags, the core properties) are rendered.

Context keys (the renderer receives exactly these; ``check_template`` rejects any other):

``network``        ``{name, short}`` e.g. ``{"name": "Key Cities Group", "short": "KCG"}``
``meeting``        ``{id, token, date, date_text, start_time, end_time, place, link, kind,
                   kind_label, theme_no, theme, host, backup_host, comment, guests}``

                   - ``date``: ``"YYYY-MM-DD"``; ``date_text``: Swedish, e.g.
                     ``"måndag 6 februari 2023"``; ``start_time``/``end_time``: ``"09:00"``
                   - ``place``/``link``: str, either may be ``""``
                   - ``kind``: machine value (e.g. ``"monthly"``); ``kind_label``: Swedish
                     (e.g. ``"Månadsmöte"``)
                   - ``theme_no``: int or ``None``; ``theme``: str
                   - ``host``: ``{name, organisation, city, email}``;
                     ``backup_host``: same shape or ``None``
                   - ``comment``: str (may be ``""``; ``\\n`` becomes a line break);
                     ``guests``: list of names
``members``        list of ``{name, organisation, city, email, attendance}``, attendance is
                   ``"Ja"``, ``"Nej"`` or ``""`` (unknown); the template sorts by city
``agenda``         list of str, the 7 points of the standing agenda
``next_meeting``   ``{date_text, host_name, theme}`` or ``None``
``rules``          list of str, the game rules ("Spelregler"), shown in the page footer
``values``         list of str ("Vår värdegrund")
``decision_rows``  int, number of empty rows drawn in the decisions table
``followup``       ``{point, decisions, projects}``: under agenda point ``point`` (1-based,
                   0 = none) the open decisions of earlier meetings, each ``{ref, decision,
                   owner, due, meeting}``, and the project groups, each ``{name, lead,
                   status, when}`` (``status``/``when`` may be ``""``)
``plan``           ``{year, focus, rows, tasks}`` or ``None``: the January meeting adopts the
                   year's plan; ``focus``: ``{area, topic, votes}``; ``rows`` (the year plan):
                   ``{month, date, theme, host, backup_host, kind}``; ``tasks``: ``{what, who,
                   when}``. The section's table headers are what the intake reads back
                   (``kcg_mail.core.plan_adoption``)

:data:`SAMPLE_CONTEXT` is a complete example.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import Environment, StrictUndefined, TemplateSyntaxError
from lxml import etree

from kcg_mail.documents.ooxml import (
    REL_FOOTER,
    REL_FOOTNOTES,
    REL_HEADER,
    REL_OFFICE_DOC,
    WP_NS,
    read_rels,
    safe_parse,
)

_JINJA_MARK = re.compile(rb"\{[\{%#]")


_NEEDS_LISTING = re.compile(r"<w:t(?: [^>]*)?>[^<]*[\t\a\n\f]")


def nearest_names(src: str, lineno: int | None) -> str:
    """The visible text around ``lineno`` of a patched part (one line per paragraph)."""
    if not lineno:
        return ""
    lines = src.splitlines()

    def visible(i: int) -> str:
        return " ".join(re.sub(r"<[^>]+>", "", lines[i]).split()) if 0 <= i < len(lines) else ""

    text = visible(lineno - 1)
    if not text:
        text = " ".join(t for t in (visible(lineno - 2), visible(lineno)) if t)
    return text[:160]



class TemplateHelper:
    """Access to docxtpl's own XML preprocessing, so our output matches docxtpl's."""

    def __init__(self) -> None:
        from docxtpl import DocxTemplate

        # DocxTemplate's patch_xml/resolve_listing/fix_tables do not touch the package.
        self.tpl = DocxTemplate(io.BytesIO())

    def patch(self, xml: str) -> str:
        return str(self.tpl.patch_xml(xml))

    def resolve_listing(self, xml: str) -> str:
        if _NEEDS_LISTING.search(xml) is None:
            return xml
        return str(self.tpl.resolve_listing(xml))

    def fix_tables(self, xml: str) -> Any:
        return self.tpl.fix_tables(xml)


def make_env() -> Environment:
    return Environment(autoescape=True, undefined=StrictUndefined)


@dataclass
class _JinjaPart:
    name: str
    kind: str  # "document" | "xml" | "raw"
    template: jinja2.Template
    source: str  # patched source, for error context


class ProtocolRenderer:
    """Render the protocol template many times; the template is parsed once.

    >>> r = ProtocolRenderer(Path("templates/protocol.docx"))
    >>> docx_bytes = r.render(SAMPLE_CONTEXT)
    """

    def __init__(self, template_path: Path) -> None:
        self.template_path = Path(template_path)
        data = self.template_path.read_bytes()
        self._helper = TemplateHelper()
        self._env = make_env()
        self._parts: list[_JinjaPart] = []
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            main = "word/document.xml"
            for typ, target, mode in read_rels(zf, ""):
                if typ == REL_OFFICE_DOC and mode != "External":
                    main = target
            if main not in names:
                raise ValueError(f"{self.template_path}: not a Word document (no {main})")
            jinja_names = [main]
            for typ, target, mode in read_rels(zf, main):
                if mode == "External" or target not in names:
                    continue
                if typ in (REL_HEADER, REL_FOOTER, REL_FOOTNOTES):
                    jinja_names.append(target)
            if "docProps/core.xml" in names and _JINJA_MARK.search(zf.read("docProps/core.xml")):
                jinja_names.append("docProps/core.xml")
            for name in jinja_names:
                raw = zf.read(name)
                if name != main and not _JINJA_MARK.search(raw):
                    continue
                self._parts.append(self._compile_part(name, raw, main))
            dynamic = {p.name for p in self._parts}
            # The static parts, zipped once; render() appends the dynamic parts to a copy.
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
                for info in infos:
                    if info.filename in dynamic:
                        continue
                    out.writestr(self._zinfo(info), zf.read(info.filename))
            self._static_zip = buf.getvalue()
            self._infos = {i.filename: i for i in infos}

    @staticmethod
    def _zinfo(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
        z = zipfile.ZipInfo(info.filename, date_time=info.date_time)
        z.compress_type = zipfile.ZIP_DEFLATED
        z.external_attr = info.external_attr
        z.create_system = info.create_system
        return z

    def _compile_part(self, name: str, raw: bytes, main: str) -> _JinjaPart:
        if name == "docProps/core.xml":
            src = raw.decode("utf-8")
            return _JinjaPart(name, "raw", self._env.from_string(src), src)
        root = safe_parse(raw, name)
        xml = etree.tostring(root, encoding="unicode")
        src = self._helper.patch(xml)
        src = re.sub(r"<w:p([ >])", r"\n<w:p\1", src)
        kind = "document" if name == main else "xml"
        try:
            template = self._env.from_string(src)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxError(
                f"{name}: {exc.message} (near: {nearest_names(src, exc.lineno)!r})",
                exc.lineno,
                exc.name,
                exc.filename,
            ) from exc
        return _JinjaPart(name, kind, template, src)

    def _render_part(self, part: _JinjaPart, context: dict[str, Any]) -> bytes:
        out = part.template.render(context)
        if part.kind == "raw":
            return out.encode("utf-8")
        out = re.sub(r"\n<w:p([ >])", r"<w:p\1", out)
        out = out.replace("{_{", "{{").replace("}_}", "}}").replace("{_%", "{%").replace("%_}", "%}")
        out = self._helper.resolve_listing(out)
        tree = self._helper.fix_tables(out)
        if part.kind == "document":
            # docxtpl renumbers drawing ids so repeated pictures stay unique.
            ids = 1000
            for el in tree.iter(f"{{{WP_NS}}}docPr"):
                ids += 1
                el.set("id", str(ids))
        return bytes(etree.tostring(tree, encoding="UTF-8", xml_declaration=True, standalone=True))

    def render(self, context: dict[str, Any]) -> bytes:
        """Render one protocol; returns the .docx bytes. Raises
        :class:`jinja2.exceptions.UndefinedError` when the context lacks a key."""
        rendered = [(p.name, self._render_part(p, context)) for p in self._parts]
        buf = io.BytesIO(self._static_zip)
        buf.seek(0, io.SEEK_END)
        with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as out:
            for name, data in rendered:
                out.writestr(self._zinfo(self._infos[name]), data)
        return buf.getvalue()
