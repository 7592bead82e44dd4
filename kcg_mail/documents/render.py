"""Decision protocols ("beslutsprotokoll"): render the Word template, check an edited
template, and read the minutes a host mails back.

Rendering
=========
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

:data:`SAMPLE_CONTEXT` is a complete example.

Reading returned minutes
========================
``read_minutes(filename, data)`` identifies the file from its CONTENT (never trusting the
name), refuses anything unsafe or unreadable with :class:`MinutesRejected` (``code`` for the
program, ``message_sv`` for the host), and returns the text plus the rows of the decisions
table (header ``Beslut | Ansvarig | Klart till``). Rejection codes, see
:data:`REJECT_CODES`. Nothing in a returned file is ever fetched from outside: external
relationships are not followed and remote ones are refused.
"""

from __future__ import annotations

import copy
import io
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable

import jinja2
from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, meta, nodes
from lxml import etree

__all__ = [
    "ProtocolRenderer",
    "check_template",
    "SAMPLE_CONTEXT",
    "CONTEXT_SCHEMA",
    "Decision",
    "Minutes",
    "MinutesRejected",
    "REJECT_CODES",
    "read_minutes",
]

# =========================================================================== context

_PERSON = {"name": str, "organisation": str, "city": str, "email": str}

#: The documented context, as a schema: dict = mapping with these keys, [x] = list of x,
#: a type = leaf value. ``check_template`` validates every placeholder against it.
CONTEXT_SCHEMA: dict[str, Any] = {
    "network": {"name": str, "short": str},
    "meeting": {
        "id": str,
        "token": str,
        "date": str,
        "date_text": str,
        "start_time": str,
        "end_time": str,
        "place": str,
        "link": str,
        "kind": str,
        "kind_label": str,
        "theme_no": int,
        "theme": str,
        "host": _PERSON,
        "backup_host": _PERSON,
        "comment": str,
        "guests": [str],
    },
    "members": [dict(_PERSON, attendance=str)],
    "agenda": [str],
    "next_meeting": {"date_text": str, "host_name": str, "theme": str},
    "rules": [str],
    "values": [str],
    "decision_rows": int,
}


def _member(name: str, organisation: str, city: str, email: str, attendance: str = "") -> dict:
    return {
        "name": name,
        "organisation": organisation,
        "city": city,
        "email": email,
        "attendance": attendance,
    }


#: A complete example context (February 2023, theme 1, host Daniel Swärd, Gävle City).
SAMPLE_CONTEXT: dict[str, Any] = {
    "network": {"name": "Key Cities Group", "short": "KCG"},
    "meeting": {
        "id": "2023-02",
        "token": "k7q2m9x4",
        "date": "2023-02-06",
        "date_text": "måndag 6 februari 2023",
        "start_time": "09:00",
        "end_time": "10:30",
        "place": "",
        "link": "https://teams.microsoft.com/l/meetup-join/exempel",
        "kind": "monthly",
        "kind_label": "Månadsmöte",
        "theme_no": 1,
        "theme": "Policy & Branschpraxis – del 1",
        "host": {
            "name": "Daniel Swärd",
            "organisation": "Gävle City",
            "city": "Gävle",
            "email": "daniel@gavlecity.example",
        },
        "backup_host": {
            "name": "David Nilsson",
            "organisation": "NKPG City",
            "city": "Norrköping",
            "email": "david@nkpgcity.example",
        },
        "comment": "",
        "guests": [],
    },
    "members": [
        _member("Aljoša Lagumdžija", "Södertälje City", "Södertälje", "aljosa@sodertaljecity.example"),
        _member("Armina Ilijasevic", "City Örebro", "Örebro", "armina@cityorebro.example", "Ja"),
        _member("Björn Bergman", "Svenska Stadskärnor", "Stockholm", "bjorn@svenskastadskarnor.example"),
        _member("Daniel Swärd", "Gävle City", "Gävle", "daniel@gavlecity.example", "Ja"),
        _member("David Nilsson", "NKPG City", "Norrköping", "david@nkpgcity.example", "Nej"),
        _member("Hanna Candell", "Helsingborg City", "Helsingborg", "hanna@helsingborgcity.example"),
        _member("Isabel Gölles", "Lund Citysamverkan", "Lund", "isabel@lundcity.example"),
        _member("Jessica Stille Törnqvist", "Linköpings Innersta", "Linköping", "jessica@innersta.example"),
        _member("Lena Dalerup", "Innerstaden Göteborg", "Göteborg", "lena@innerstaden.example"),
        _member("Lisa Thörn", "Uppsala City", "Uppsala", "lisa@uppsalacity.example"),
        _member("Linda Sjöstrand", "Borås City", "Borås", "linda@borascity.example"),
        _member("Maria Martinsson", "Västerås City", "Västerås", "maria@vasterascity.example"),
        _member("Monica Bruvik", "City i Samverkan Stockholm", "Stockholm", "monica@cityisamverkan.example"),
        _member("Pia Sandin", "Malmö Citysamverkan", "Malmö", "pia@malmocity.example"),
    ],
    "agenda": [
        "Välkomna – från månadens värd",
        "Inledning månadens tema: inledning/inspiration av värden",
        "Runda månadens tema: runda med kunskapsdelning & erfarenhetsutbyte",
        "Återrapportering av ev. projekt",
        "Info från Svenska Stadskärnor",
        "Nästa möte: värd & tema",
        "Övriga frågor",
    ],
    "next_meeting": {
        "date_text": "måndag 6 mars 2023",
        "host_name": "David Nilsson",
        "theme": "Tema 2: Affärsplanering",
    },
    "rules": [
        "Allas åsikter är lika viktiga",
        "Alla funderingar skall upp på bordet",
        "Alla är ansvariga för resultatet",
    ],
    "values": [
        "Samarbete och handlingskraft för resultat",
        "Öppenhet och kreativitet för lärande och utveckling",
        "Ansvarstagande och delaktighet för kvalitet och effektivitet",
        "Respekt och omtanke för de människor vi möter",
        "Lustfyllt och roligt för att ge energi",
    ],
    "decision_rows": 6,
}


def _sparse_context() -> dict[str, Any]:
    """SAMPLE_CONTEXT with every optional value at its emptiest (``None``, ``""``, ``[]``),
    so a trial render also walks the other branch of each ``{% if %}``."""
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    m = ctx["meeting"]
    m.update(place="", link="", theme_no=None, backup_host=None, comment="", guests=[])
    ctx["next_meeting"] = None
    ctx["members"] = [dict(x, attendance="") for x in ctx["members"]]
    ctx["decision_rows"] = 0
    return ctx


def _rich_context() -> dict[str, Any]:
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    m = ctx["meeting"]
    m.update(place="Stadshuset, Gävle", comment="Rad ett\nRad två", guests=["Gäst Gästsson"])
    return ctx


# =========================================================================== rendering

_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_WP_NS = "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
_R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
_REL_OFFICE_DOC = _R_NS + "/officeDocument"
_REL_HEADER = _R_NS + "/header"
_REL_FOOTER = _R_NS + "/footer"
_REL_FOOTNOTES = _R_NS + "/footnotes"
_JINJA_MARK = re.compile(rb"\{[\{%#]")
_NEEDS_LISTING = re.compile(r"<w:t(?: [^>]*)?>[^<]*[\t\a\n\f]")


class _Helper:
    """Access to docxtpl's own XML preprocessing, so our output matches docxtpl's."""

    def __init__(self) -> None:
        from docxtpl import DocxTemplate

        # DocxTemplate's patch_xml/resolve_listing/fix_tables do not touch the package.
        self.tpl = DocxTemplate(io.BytesIO())

    def patch(self, xml: str) -> str:
        return self.tpl.patch_xml(xml)

    def resolve_listing(self, xml: str) -> str:
        if _NEEDS_LISTING.search(xml) is None:
            return xml
        return self.tpl.resolve_listing(xml)

    def fix_tables(self, xml: str):
        return self.tpl.fix_tables(xml)


def _make_env() -> Environment:
    return Environment(autoescape=True, undefined=StrictUndefined)


def _resolve_target(source_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    base = PurePath(source_part).parent
    parts: list[str] = []
    for piece in (base / target).parts:
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in (".", ""):
            parts.append(piece)
    return "/".join(parts)


def _rels_name(part: str) -> str:
    """``word/document.xml`` -> ``word/_rels/document.xml.rels``; ``""`` (package) -> ``_rels/.rels``."""
    folder, _, name = part.rpartition("/")
    return f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"


def _read_rels(zf: zipfile.ZipFile, part: str) -> list[tuple[str, str, str]]:
    """(type, resolved target, target mode) for each relationship of ``part``."""
    name = _rels_name(part)
    try:
        raw = zf.read(name)
    except KeyError:
        return []
    root = _safe_parse(raw, name)
    out = []
    for rel in root.iter(f"{{{_PKG_REL_NS}}}Relationship"):
        mode = rel.get("TargetMode", "Internal")
        target = rel.get("Target", "")
        if mode != "External":
            target = _resolve_target(part, target)
        out.append((rel.get("Type", ""), target, mode))
    return out


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
        self._helper = _Helper()
        self._env = _make_env()
        self._parts: list[_JinjaPart] = []
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            main = "word/document.xml"
            for typ, target, mode in _read_rels(zf, ""):
                if typ == _REL_OFFICE_DOC and mode != "External":
                    main = target
            if main not in names:
                raise ValueError(f"{self.template_path}: not a Word document (no {main})")
            jinja_names = [main]
            for typ, target, mode in _read_rels(zf, main):
                if mode == "External" or target not in names:
                    continue
                if typ in (_REL_HEADER, _REL_FOOTER, _REL_FOOTNOTES):
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
        root = _safe_parse(raw, name)
        xml = etree.tostring(root, encoding="unicode")
        src = self._helper.patch(xml)
        src = re.sub(r"<w:p([ >])", r"\n<w:p\1", src)
        kind = "document" if name == main else "xml"
        try:
            template = self._env.from_string(src)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxError(
                f"{name}: {exc.message} (near: {_near(src, exc.lineno)!r})",
                exc.lineno,
                exc.name,
                exc.filename,
            ) from exc
        return _JinjaPart(name, kind, template, src)

    def _render_part(self, part: _JinjaPart, context: dict) -> bytes:
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
            for el in tree.iter(f"{{{_WP_NS}}}docPr"):
                ids += 1
                el.set("id", str(ids))
        return etree.tostring(tree, encoding="UTF-8", xml_declaration=True, standalone=True)

    def render(self, context: dict) -> bytes:
        """Render one protocol; returns the .docx bytes. Raises
        :class:`jinja2.exceptions.UndefinedError` when the context lacks a key."""
        rendered = [(p.name, self._render_part(p, context)) for p in self._parts]
        buf = io.BytesIO(self._static_zip)
        buf.seek(0, io.SEEK_END)
        with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as out:
            for name, data in rendered:
                out.writestr(self._zinfo(self._infos[name]), data)
        return buf.getvalue()


def _near(src: str, lineno: int | None) -> str:
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


# =========================================================================== check_template

_JINJA_GLOBALS = {"range", "loop", "lipsum", "dict", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None"}
_ANY = object()


class _Checker:
    """Walk a Jinja AST; report every placeholder not in :data:`CONTEXT_SCHEMA`."""

    def __init__(self, part: str, locals_: set[str]) -> None:
        self.part = part
        self.locals = locals_
        self.problems: list[str] = []

    def _report(self, path: str) -> None:
        msg = f"{self.part}: unknown placeholder '{path}' (not a documented context key)"
        if msg not in self.problems:
            self.problems.append(msg)

    @staticmethod
    def _dotted(node: nodes.Node) -> str:
        if isinstance(node, nodes.Name):
            return node.name
        if isinstance(node, nodes.Getattr):
            return f"{_Checker._dotted(node.node)}.{node.attr}"
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            return f"{_Checker._dotted(node.node)}.{node.arg.value}"
        return "…"

    def schema_of(self, node: nodes.Node, scope: dict[str, Any]) -> Any:
        if isinstance(node, nodes.Name):
            if node.ctx != "load":
                return _ANY
            if node.name in scope:
                return scope[node.name]
            if node.name in self.locals or node.name in _JINJA_GLOBALS:
                return _ANY
            if node.name in CONTEXT_SCHEMA:
                return CONTEXT_SCHEMA[node.name]
            self._report(node.name)
            return _ANY
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            base = self.schema_of(node.node, scope)
            if isinstance(node, nodes.Getitem):
                if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    key = node.arg.value
                else:
                    self.visit(node.arg, scope)
                    return base[0] if isinstance(base, list) else _ANY
            else:
                key = node.attr
            if isinstance(base, dict):
                if key in base:
                    return base[key]
                self._report(self._dotted(node))
            return _ANY
        self.visit(node, scope)
        return _ANY

    def visit(self, node: nodes.Node, scope: dict[str, Any]) -> None:
        if isinstance(node, nodes.For):
            iter_schema = self.schema_of(node.iter, scope)
            inner = dict(scope)
            elem = iter_schema[0] if isinstance(iter_schema, list) else _ANY
            if isinstance(node.target, nodes.Name):
                inner[node.target.name] = elem
            else:
                for n in node.target.find_all(nodes.Name):
                    inner[n.name] = _ANY
            inner["loop"] = _ANY
            for child in node.body:
                self.visit(child, inner)
            if node.test is not None:
                self.visit(node.test, inner)
            for child in node.else_:
                self.visit(child, scope)
            return
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Expr):
                self.schema_of(child, scope)
            else:
                self.visit(child, scope)


def _check_ast(part: str, source: str, env: Environment) -> list[str]:
    ast = env.parse(source)
    locals_ = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for m in ast.find_all(nodes.Macro):
        locals_.add(m.name)
    checker = _Checker(part, locals_)
    checker.visit(ast, {})
    # Belt and braces: Jinja's own list of free variables.
    for name in sorted(meta.find_undeclared_variables(ast)):
        if name not in CONTEXT_SCHEMA and name not in _JINJA_GLOBALS:
            checker._report(name)
    return checker.problems


def check_template(path: Path) -> list[str]:
    """Problems with a protocol template, as human-readable English lines (empty = OK).

    Checks that the file opens as a Word document, that every placeholder is a documented
    context key (see the module docstring), that the Jinja syntax is valid, and that trial
    renders with :data:`SAMPLE_CONTEXT` and a sparse variant (``None``/empty optional values)
    succeed under ``StrictUndefined`` and produce well-formed XML.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [f"cannot read {path}: {exc.strerror or exc}"]
    try:
        minutes_kind = _sniff_and_vet(path.name, data, max_bytes=50 * 1024 * 1024)
    except MinutesRejected as exc:
        return [f"{path.name} cannot be used as a template: {exc.detail}"]
    if minutes_kind[0] != "docx":
        return [f"{path.name} is not a Word .docx document (it is {minutes_kind[0]})"]

    problems: list[str] = []
    helper = _Helper()
    env = _make_env()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            main = minutes_kind[1]
            names = [main] + [
                t
                for typ, t, mode in _read_rels(zf, main)
                if mode != "External" and typ in (_REL_HEADER, _REL_FOOTER, _REL_FOOTNOTES)
            ]
            sources = []
            for name in names:
                try:
                    raw = zf.read(name)
                except KeyError:
                    problems.append(f"{name} is referenced but missing from the package")
                    continue
                xml = etree.tostring(_safe_parse(raw, name), encoding="unicode")
                src = re.sub(r"<w:p([ >])", r"\n<w:p\1", helper.patch(xml))
                sources.append((name, src))
    except (zipfile.BadZipFile, MinutesRejected, etree.XMLSyntaxError) as exc:
        return [f"{path.name} cannot be opened: {getattr(exc, 'detail', exc)}"]

    syntax_ok = True
    for name, src in sources:
        try:
            problems.extend(_check_ast(name, src, env))
        except TemplateSyntaxError as exc:
            syntax_ok = False
            problems.append(
                f"{name}: template syntax error: {exc.message} (near: {_near(src, exc.lineno)!r})"
            )
    if not syntax_ok or problems:
        # Trial renders would only repeat these (an unknown key fails under StrictUndefined).
        return problems

    try:
        renderer = ProtocolRenderer(path)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return problems + [f"cannot load the template: {exc}"]
    strict = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    render_failures: dict[tuple[str, str], list[str]] = {}
    for label, ctx in (("sample", SAMPLE_CONTEXT), ("sparse", _sparse_context()), ("rich", _rich_context())):
        failed = False
        for part in renderer._parts:
            try:
                renderer._render_part(part, ctx)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                failed = True
                near = _near(part.source, _template_lineno(exc))
                what = f"{exc.__class__.__name__}: {exc}" + (f" (near: {near!r})" if near else "")
                render_failures.setdefault((part.name, what), []).append(label)
        if failed:
            continue
        out = renderer.render(ctx)
        with zipfile.ZipFile(io.BytesIO(out)) as zf:
            for part in renderer._parts:
                try:
                    etree.fromstring(zf.read(part.name), strict)
                except etree.XMLSyntaxError as exc:
                    problems.append(
                        f"{part.name}: the rendered document is not valid XML with the {label} "
                        f"context ({exc}); a tag probably spans paragraphs or table cells"
                    )
    for (name, what), labels in render_failures.items():
        problems.append(f"{name}: trial render with the {'/'.join(labels)} context failed: {what}")
    return problems


def _template_lineno(exc: BaseException) -> int | None:
    """Line of the Jinja template where a render error happened (Jinja rewrites the
    traceback so template frames carry template line numbers)."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# =========================================================================== reading minutes

#: Every rejection code, with the default Swedish message for the host.
REJECT_CODES: dict[str, str] = {
    "too_large": "Filen är för stor. Ta bort stora bilder eller spara protokollet som PDF och skicka det igen.",
    "empty": "Filen är tom. Spara protokollet på nytt och skicka det igen.",
    "macro": "Filen innehåller makron (.docm). Spara protokollet som vanligt Word-dokument (.docx) eller PDF och skicka det igen.",
    "encrypted": "Filen är lösenordsskyddad och kan inte öppnas. Ta bort lösenordet eller spara protokollet som PDF och skicka det igen.",
    "legacy_doc": "Filen är i det gamla Word-formatet (.doc). Spara protokollet som Word-dokument (.docx) eller PDF och skicka det igen.",
    "wrong_type": "Filen är inte det som filnamnet säger. Spara protokollet som Word-dokument (.docx) eller PDF och skicka det igen.",
    "corrupt": "Filen verkar vara skadad och går inte att öppna. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "zip_bomb": "Filen är packad på ett onormalt sätt och kan inte öppnas säkert. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "unsafe_xml": "Filen innehåller kod som inte kan öppnas säkert. Spara protokollet på nytt som .docx eller PDF och skicka det igen.",
    "external_link": "Dokumentet hämtar innehåll från en extern adress (till exempel en länkad bild). Klistra in bilden i dokumentet eller spara som PDF och skicka det igen.",
    "unsupported": "Filtypen kan inte läsas. Skicka protokollet som Word-dokument (.docx) eller PDF.",
}

MAX_ZIP_ENTRIES = 1000
MAX_TOTAL_UNCOMPRESSED = 200 * 1024 * 1024
MAX_PART_UNCOMPRESSED = 100 * 1024 * 1024
MAX_RATIO = 100  # POI's default minimum inflate ratio is 0.01
RATIO_CHECK_ABOVE = 1024 * 1024
MAX_PDF_PAGES = 500
MAX_TEXT_CHARS = 2_000_000


class MinutesRejected(Exception):
    """A returned protocol we will not read. ``code`` is one of :data:`REJECT_CODES`;
    ``message_sv`` is a short polite Swedish explanation for the host; ``detail`` is an
    English explanation for the log."""

    def __init__(self, code: str, message_sv: str | None = None, detail: str = "") -> None:
        self.code = code
        self.message_sv = message_sv or REJECT_CODES.get(code, REJECT_CODES["unsupported"])
        self.detail = detail or code
        super().__init__(f"{code}: {self.detail}")


@dataclass
class Decision:
    decision: str
    owner: str
    due: str


@dataclass
class Minutes:
    filename: str
    kind: str  # "docx" | "pdf" | "odt"
    text: str
    decisions: list[Decision] = field(default_factory=list)


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXT_KIND = {
    ".docx": "docx", ".docm": "docx", ".dotx": "docx", ".dotm": "docx",
    ".pdf": "pdf",
    ".odt": "odt", ".ott": "odt", ".fodt": "odt",
    ".doc": "doc", ".dot": "doc", ".rtf": "rtf",
    ".xlsx": "xlsx", ".xls": "doc", ".pptx": "pptx", ".ppt": "doc", ".ods": "ods", ".odp": "odp",
    ".txt": "text", ".html": "html", ".htm": "html",
}
_KIND_SV = {
    "docx": "ett Word-dokument (.docx)", "pdf": "en PDF", "odt": "ett OpenDocument-dokument (.odt)",
    "doc": "ett äldre Office-dokument", "rtf": "ett RTF-dokument", "xlsx": "ett Excel-dokument",
    "pptx": "en PowerPoint-presentation", "ods": "ett kalkylark", "odp": "en presentation",
    "text": "en textfil", "html": "en webbsida", "zip": "ett zip-arkiv",
}
_WORD_MAIN_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
}
_ODT_MIMETYPES = {"application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text-template"}
#: An external target Word would fetch from elsewhere: a URL (except file:///C:/...), a
#: UNC path or a protocol-relative //host. Drive-letter and relative paths stay local.
_REMOTE_TARGET = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]+:(?!///[a-z]:)|\\\\|//)", re.I)


def _reject(code: str, detail: str, message_sv: str | None = None) -> MinutesRejected:
    return MinutesRejected(code, message_sv, detail)


def _has_dtd(raw: bytes) -> bool:
    head = raw
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return True
    return b"<!DOCTYPE" in head or b"<!ENTITY" in head


_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def _safe_parse(raw: bytes, name: str):
    """Parse one XML part; refuse DTDs and entity declarations (billion laughs, XXE)."""
    if _has_dtd(raw):
        raise _reject("unsafe_xml", f"{name} contains a DOCTYPE/ENTITY declaration")
    try:
        root = etree.fromstring(raw, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise _reject("corrupt", f"{name} is not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.internalDTD is not None:  # pragma: no cover - caught above
        raise _reject("unsafe_xml", f"{name} declares a DTD")
    return root


def _vet_zip(zf: zipfile.ZipFile, data_len: int) -> list[zipfile.ZipInfo]:
    """Zip-bomb and encryption checks, from the central directory only (nothing inflated)."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise _reject("zip_bomb", f"{len(infos)} zip entries (limit {MAX_ZIP_ENTRIES})")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise _reject("encrypted", f"zip entry {info.filename} is encrypted")
        if info.file_size > MAX_PART_UNCOMPRESSED:
            raise _reject(
                "zip_bomb",
                f"{info.filename} declares {info.file_size} bytes uncompressed (limit {MAX_PART_UNCOMPRESSED})",
            )
        if info.file_size > RATIO_CHECK_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _reject(
                "zip_bomb",
                f"{info.filename} inflates {info.file_size / max(info.compress_size, 1):.0f}:1 (limit {MAX_RATIO}:1)",
            )
        if info.compress_size > data_len:
            raise _reject("corrupt", f"{info.filename} claims to be larger than the file")
        total += info.file_size
        if total > MAX_TOTAL_UNCOMPRESSED:
            raise _reject("zip_bomb", f"more than {MAX_TOTAL_UNCOMPRESSED} bytes uncompressed in total")
    return infos


def _ooxml_main(zf: zipfile.ZipFile, names: set[str]) -> tuple[str, str]:
    """(kind, main part) for an OOXML package; raises for macros and non-Word packages."""
    ct_root = _safe_parse(zf.read("[Content_Types].xml"), "[Content_Types].xml")
    overrides = {
        el.get("PartName", "").lstrip("/"): el.get("ContentType", "")
        for el in ct_root.iter(f"{{{_CT_NS}}}Override")
    }
    all_types = " ".join(el.get("ContentType", "") for el in ct_root)
    lower_names = {n.lower() for n in names}
    if (
        "macroenabled" in all_types.lower()
        or "vbaproject" in all_types.lower()
        or any(n.endswith("vbaproject.bin") or n.endswith("vbadata.xml") for n in lower_names)
        or any(n.startswith("word/activex/") for n in lower_names)
    ):
        raise _reject("macro", "macro-enabled document (macroEnabled content type, vbaProject.bin or ActiveX)")
    main = "word/document.xml"
    if "_rels/.rels" in names:
        for typ, target, mode in _read_rels(zf, ""):
            if typ == _REL_OFFICE_DOC and mode != "External":
                main = target
    if main not in names:
        if "xl/workbook.xml" in names:
            return "xlsx", main
        if "ppt/presentation.xml" in names:
            return "pptx", main
        raise _reject("corrupt", f"OOXML package without a main document ({main})")
    ctype = overrides.get(main, "")
    if ctype and ctype not in _WORD_MAIN_TYPES:
        if "spreadsheetml" in ctype:
            return "xlsx", main
        if "presentationml" in ctype:
            return "pptx", main
        raise _reject("unsupported", f"main part has content type {ctype}")
    return "docx", main


def _vet_external(zf: zipfile.ZipFile, names: set[str]) -> None:
    """Refuse relationships that make Word fetch content from elsewhere (hyperlinks are fine)."""
    for name in names:
        if not name.endswith(".rels"):
            continue
        root = _safe_parse(zf.read(name), name)
        for rel in root.iter(f"{{{_PKG_REL_NS}}}Relationship"):
            if rel.get("TargetMode") != "External":
                continue
            typ = rel.get("Type", "")
            if typ.endswith("/hyperlink"):
                continue
            target = rel.get("Target", "")
            if _REMOTE_TARGET.match(target):
                raise _reject(
                    "external_link",
                    f"{name}: external {typ.rsplit('/', 1)[-1]} relationship to {target[:200]}",
                )


def _vet_ole(data: bytes) -> tuple[str, str]:
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parse failure
        raise _reject("unsupported", f"OLE compound file that cannot be parsed: {exc}", REJECT_CODES["legacy_doc"]) from exc
    try:
        streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=False)}
        if "encryptedpackage" in streams or "encryptioninfo" in streams:
            raise _reject("encrypted", "password-protected Office document (OLE EncryptedPackage)")
        if "worddocument" in streams:
            with ole.openstream("WordDocument") as s:
                fib = s.read(12)
            if len(fib) >= 12 and struct.unpack_from("<H", fib, 10)[0] & 0x0100:
                raise _reject("encrypted", "password-protected Word 97-2003 document")
            raise _reject("legacy_doc", "Word 97-2003 .doc document")
        raise _reject("legacy_doc", "legacy Office (OLE) file that is not a Word document")
    finally:
        ole.close()


def _size_sv(n: int) -> str:
    return f"{round(n / (1024 * 1024))} MB" if n >= 1024 * 1024 else f"{max(n // 1024, 1)} kB"


def _sniff_and_vet(filename: str, data: bytes, *, max_bytes: int) -> tuple[str, str]:
    """Detect the kind from content and run every check that needs no full parse.
    Returns (kind, main part) — main part is only meaningful for docx."""
    if len(data) > max_bytes:
        raise _reject(
            "too_large",
            f"{len(data)} bytes (limit {max_bytes})",
            f"Filen är för stor (över {_size_sv(max_bytes)}). Ta bort stora bilder "
            "eller spara protokollet som PDF och skicka det igen.",
        )
    if not data.strip():
        raise _reject("empty", "empty file")
    ext = PurePath(filename or "").suffix.lower()
    named = _EXT_KIND.get(ext)

    if data.startswith(_OLE_MAGIC):
        kind, main = _vet_ole(data)  # always raises
    elif data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise _reject("corrupt", f"broken zip archive: {exc}") from exc
        with zf:
            infos = _vet_zip(zf, len(data))
            names = {i.filename for i in infos}
            if "mimetype" in names:
                mimetype = zf.read("mimetype").decode("ascii", "replace").strip()
                if mimetype not in _ODT_MIMETYPES:
                    kind = {"application/vnd.oasis.opendocument.spreadsheet": "ods",
                            "application/vnd.oasis.opendocument.presentation": "odp"}.get(mimetype, "zip")
                    main = ""
                else:
                    kind, main = "odt", "content.xml"
                    if any(n.lower().startswith(("basic/", "scripts/")) for n in names):
                        raise _reject(
                            "macro",
                            "OpenDocument with Basic/Scripts macros",
                            "Filen innehåller makron. Spara protokollet utan makron som Word-dokument "
                            "(.docx) eller PDF och skicka det igen.",
                        )
                    if "META-INF/manifest.xml" in names:
                        manifest = _safe_parse(zf.read("META-INF/manifest.xml"), "META-INF/manifest.xml")
                        if any(el.tag.endswith("}encryption-data") for el in manifest.iter()):
                            raise _reject("encrypted", "password-protected OpenDocument")
                    if "content.xml" not in names:
                        raise _reject("corrupt", "OpenDocument without content.xml")
            elif "[Content_Types].xml" in names:
                kind, main = _ooxml_main(zf, names)
                if kind == "docx":
                    _vet_external(zf, names)
            else:
                kind, main = "zip", ""
    elif b"%PDF-" in data[:1024]:
        kind, main = "pdf", ""
    elif data.lstrip()[:5] == b"{\\rtf":
        kind, main = "rtf", ""
    else:
        kind, main = "unknown", ""

    if named is not None and named != kind and kind != "unknown":
        said = ext
        actual = _KIND_SV.get(kind, "en annan filtyp")
        raise _reject(
            "wrong_type",
            f"file is named {filename!r} but its content is {kind}",
            f"Filen heter {said} men är egentligen {actual}. Spara protokollet som Word-dokument "
            "(.docx) eller PDF och skicka det igen.",
        )
    if kind not in ("docx", "pdf", "odt"):
        raise _reject("unsupported", f"unsupported content ({kind}, name {filename!r})")
    return kind, main


# ---------------------------------------------------------------- docx text and tables

_W = f"{{{_W_NS}}}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_SKIP_W = {_W + t for t in ("delText", "instrText", "delInstrText", "moveFrom", "del", "rPr", "pPr", "tblPr", "trPr", "tcPr", "sectPr")}


def _docx_text(el) -> str:
    """Visible text of an element: keeps tracked insertions (w:ins), drops deletions."""
    out: list[str] = []

    def walk(e) -> None:
        tag = e.tag
        if not isinstance(tag, str) or tag in _SKIP_W or tag == _MC_FALLBACK:
            return
        if tag == _W + "tbl":
            for row in _docx_rows(e):
                out.append("\t".join(c.replace("\n", " / ") for c in row).rstrip() + "\n")
            return
        if tag == _W + "t":
            out.append(e.text or "")
        elif tag == _W + "tab":
            out.append("\t")
        elif tag in (_W + "br", _W + "cr"):
            out.append("\n")
        elif tag == _W + "noBreakHyphen":
            out.append("-")
        for child in e:
            walk(child)
        if tag == _W + "p":
            out.append("\n")

    walk(el)
    return "".join(out)


def _own(el, tag: str, owner_tag: str):
    """Descendants ``tag`` of ``el`` whose nearest ``owner_tag`` ancestor is ``el`` itself
    (rows of this table, not of a nested one; cells wrapped in w:sdt still count)."""
    return [x for x in el.iter(tag) if next(x.iterancestors(owner_tag), None) is el]


def _docx_rows(tbl) -> list[list[str]]:
    return [
        [_docx_cell_text(tc) for tc in _own(tr, _W + "tc", _W + "tr")]
        for tr in _own(tbl, _W + "tr", _W + "tbl")
    ]


def _docx_cell_text(tc) -> str:
    paras = [_docx_text(p).strip() for p in tc.iter(_W + "p")]
    return "\n".join(p for p in paras if p).strip()


def _norm(s: str) -> str:
    return re.sub(r"[^a-zåäöéü ]", "", " ".join(s.lower().split())).strip()


def _is_decision_header(cells: list[str]) -> bool:
    if len(cells) < 3:
        return False
    a, b, c = (_norm(x) for x in cells[:3])
    return a.startswith("beslut") and b.startswith("ansvar") and (c.startswith("klart") or "datum" in c or c.startswith("deadline"))


def _decisions_from_rows(rows: list[list[str]]) -> list[Decision] | None:
    for i, cells in enumerate(rows[:3]):
        if _is_decision_header(cells):
            out = []
            for r in rows[i + 1 :]:
                r = (r + ["", "", ""])[:3]
                if not any(x.strip() for x in r):
                    continue
                if _is_decision_header(r):  # repeated header row
                    continue
                out.append(Decision(r[0].strip(), r[1].strip(), r[2].strip()))
            return out
    return None


def _read_docx(zf: zipfile.ZipFile, main: str) -> tuple[str, list[Decision]]:
    root = _safe_parse(zf.read(main), main)
    body = root.find(_W + "body")
    if body is None:
        raise _reject("corrupt", f"{main} has no w:body")
    text = _docx_text(body)
    decisions: list[Decision] = []
    for tbl in body.iter(_W + "tbl"):
        found = _decisions_from_rows(_docx_rows(tbl))
        if found is not None:
            decisions.extend(found)
            break
    # Headers/footers add no decisions, but their text helps a human reader of the log.
    return text, decisions


# ---------------------------------------------------------------- odt

_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_T = f"{{{_TEXT_NS}}}"
_TB = f"{{{_TABLE_NS}}}"
_ODT_SKIP = {_T + "tracked-changes", _T + "note-citation", _T + "sequence-decls"}


def _odt_text(el) -> str:
    out: list[str] = []

    def walk(e) -> None:
        tag = e.tag
        if not isinstance(tag, str) or tag in _ODT_SKIP:
            return
        if tag == _TB + "table":
            for row in _odt_rows(e):
                out.append("\t".join(c.replace("\n", " / ") for c in row).rstrip() + "\n")
            return
        if e.text and tag.startswith(_T):
            out.append(e.text)
        if tag == _T + "s":
            out.append(" " * int(e.get(_T + "c", "1") or 1))
        elif tag == _T + "tab":
            out.append("\t")
        elif tag == _T + "line-break":
            out.append("\n")
        for child in e:
            walk(child)
            if child.tail and tag.startswith(_T):
                out.append(child.tail)
        if tag in (_T + "p", _T + "h"):
            out.append("\n")

    walk(el)
    return "".join(out)


def _odt_rows(tbl) -> list[list[str]]:
    rows = []
    for tr in _own(tbl, _TB + "table-row", _TB + "table"):
        cells = []
        for tc in _own(tr, _TB + "table-cell", _TB + "table-row"):
            paras = [_odt_text(p).strip() for p in tc.iter(_T + "p", _T + "h")]
            cells.append("\n".join(p for p in paras if p))
        rows.append(cells)
    return rows


def _read_odt(zf: zipfile.ZipFile) -> tuple[str, list[Decision]]:
    root = _safe_parse(zf.read("content.xml"), "content.xml")
    text = _odt_text(root)
    decisions: list[Decision] = []
    for tbl in root.iter(_TB + "table"):
        found = _decisions_from_rows(_odt_rows(tbl))
        if found is not None:
            decisions = found
            break
    return text, decisions


# ---------------------------------------------------------------- pdf

_PDF_HEADER = re.compile(r"Beslut\s{2,}Ansvarig\s{2,}Klart till", re.I)


def _join_wrapped(head: str, tail: str) -> str:
    if not tail:
        return head
    if not head:
        return tail
    return head + tail if head.endswith("-") else f"{head} {tail}"


def _pdf_decisions(layout_pages: Iterable[str]) -> list[Decision]:
    """Best effort: find the 'Beslut  Ansvarig  Klart till' header in layout text and cut
    the following lines at the header's column positions. A line with a decision and an
    owner (or a due date) starts a new row; other lines continue the cells of the row above
    (wrapped text). A row with neither owner nor due date is therefore merged upwards."""
    for page in layout_pages:
        lines = page.splitlines()
        for i, line in enumerate(lines):
            m = _PDF_HEADER.search(line)
            if not m:
                continue
            c0 = m.start()
            c1 = line.lower().index("ansvarig", c0)
            c2 = line.lower().index("klart till", c1)
            out: list[Decision] = []
            blank = 0
            for row in lines[i + 1 :]:
                if not row.strip():
                    blank += 1
                    if blank > 8 and out:
                        break
                    continue
                stripped_start = len(row) - len(row.lstrip())
                a, b, c = row[:c1].strip(), row[c1:c2].strip(), row[c2:].strip()
                if stripped_start < c0 - 2 or (a and not b and not c and blank):
                    break  # text outside the table: the next heading
                prev = out[-1] if out and not blank else None
                new_row = prev is None or (a and (b or (c and not prev.due.endswith("-"))))
                if new_row:
                    out.append(Decision(a, b, c))
                else:  # a wrapped line of the previous row's cells
                    prev.decision = _join_wrapped(prev.decision, a)
                    prev.owner = _join_wrapped(prev.owner, b)
                    prev.due = _join_wrapped(prev.due, c)
                blank = 0
            return [d for d in out if d.decision or d.owner or d.due]
    return []


def _read_pdf(data: bytes) -> tuple[str, list[Decision]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:  # noqa: BLE001 - unsupported algorithm, bad data
                ok = 0
            if not ok:
                raise _reject("encrypted", "password-protected PDF")
        n = len(reader.pages)
        if n > MAX_PDF_PAGES:
            raise _reject("too_large", f"{n} pages (limit {MAX_PDF_PAGES})")
        texts, layouts, size = [], [], 0
        for page in reader.pages:
            t = page.extract_text() or ""
            texts.append(t)
            size += len(t)
            if size > MAX_TEXT_CHARS:
                raise _reject("zip_bomb", "PDF text larger than expected for a protocol")
            try:
                layouts.append(page.extract_text(extraction_mode="layout") or "")
            except Exception:  # noqa: BLE001 - layout mode is best effort
                layouts.append("")
    except MinutesRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on broken input
        name = exc.__class__.__name__
        if name == "LimitReachedError":
            raise _reject("zip_bomb", f"PDF decompression limit reached: {exc}") from exc
        if isinstance(exc, (PdfReadError, ValueError, KeyError, TypeError, struct.error, OSError, IndexError, AttributeError, RecursionError)):
            raise _reject("corrupt", f"unreadable PDF: {name}: {exc}") from exc
        raise _reject("corrupt", f"unreadable PDF: {name}: {exc}") from exc
    return "\n".join(texts), _pdf_decisions(layouts)


# ---------------------------------------------------------------- entry point


def read_minutes(filename: str, data: bytes, *, max_bytes: int = 20 * 1024 * 1024) -> Minutes:
    """Read a protocol a host mailed back. Raises :class:`MinutesRejected`.

    The kind is detected from the content; a known document extension that disagrees with
    the content is rejected as ``wrong_type`` (a name without a known extension is judged by
    content alone). All zip checks run on the central directory before anything is inflated.
    """
    kind, main = _sniff_and_vet(filename, data, max_bytes=max_bytes)
    if kind == "pdf":
        text, decisions = _read_pdf(data)
    else:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if kind == "docx":
                    text, decisions = _read_docx(zf, main)
                else:
                    text, decisions = _read_odt(zf)
        except MinutesRejected:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, EOFError, ValueError) as exc:
            raise _reject("corrupt", f"cannot read the {kind} package: {exc}") from exc
    return Minutes(filename=filename, kind=kind, text=text.strip(), decisions=decisions)
