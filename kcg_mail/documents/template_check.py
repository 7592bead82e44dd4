"""Check a protocol template the coordinator edited in Word: every placeholder
known, the Jinja valid, and trial renders with a sparse, a sample and a rich
context produce valid XML. ``check_template(path)`` returns the problems
(empty when the template is good)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, meta, nodes
from lxml import etree

from kcg_mail.documents.context import (
    CONTEXT_SCHEMA,
    SAMPLE_CONTEXT,
    rich_context,
    sparse_context,
)
from kcg_mail.documents.ooxml import (
    REL_FOOTER,
    REL_FOOTNOTES,
    REL_HEADER,
    MinutesRejected,
    read_rels,
    safe_parse,
)
from kcg_mail.documents.render import ProtocolRenderer, TemplateHelper, make_env, nearest_names
from kcg_mail.documents.safety import sniff_and_vet

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
        minutes_kind = sniff_and_vet(path.name, data, max_bytes=50 * 1024 * 1024)
    except MinutesRejected as exc:
        return [f"{path.name} cannot be used as a template: {exc.detail}"]
    if minutes_kind[0] != "docx":
        return [f"{path.name} is not a Word .docx document (it is {minutes_kind[0]})"]

    problems: list[str] = []
    helper = TemplateHelper()
    env = make_env()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            main = minutes_kind[1]
            names = [main] + [
                t
                for typ, t, mode in read_rels(zf, main)
                if mode != "External" and typ in (REL_HEADER, REL_FOOTER, REL_FOOTNOTES)
            ]
            sources = []
            for name in names:
                try:
                    raw = zf.read(name)
                except KeyError:
                    problems.append(f"{name} is referenced but missing from the package")
                    continue
                xml = etree.tostring(safe_parse(raw, name), encoding="unicode")
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
                f"{name}: template syntax error: {exc.message} (near: {nearest_names(src, exc.lineno)!r})"
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
    for label, ctx in (("sample", SAMPLE_CONTEXT), ("sparse", sparse_context()), ("rich", rich_context())):
        failed = False
        for part in renderer._parts:
            try:
                renderer._render_part(part, ctx)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                failed = True
                near = nearest_names(part.source, _template_lineno(exc))
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
