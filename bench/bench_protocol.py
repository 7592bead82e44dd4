"""Benchmark: protocols rendered per second, ProtocolRenderer vs plain docxtpl.

    python bench/bench_protocol.py [-n 200] [--template templates/protocol.docx]

Both render the same template with the same context into memory (autoescape on) and the
same number of documents, in one run; the output is checked to be a readable docx. This
is a benchmark, not a test: it prints figures and does not assert a threshold.
"""

from __future__ import annotations

import argparse
import copy
import io
import time
import zipfile
from pathlib import Path

from docxtpl import DocxTemplate

from kcg_mail.documents.context import SAMPLE_CONTEXT
from kcg_mail.documents.render import ProtocolRenderer

ROOT = Path(__file__).resolve().parents[1]


def contexts(n: int) -> list[dict]:
    out = []
    for i in range(n):
        ctx = copy.deepcopy(SAMPLE_CONTEXT)
        ctx["meeting"]["id"] = f"2023-{i:04d}"
        ctx["meeting"]["theme"] = f"Tema {i} & <test>"
        out.append(ctx)
    return out


def bench_renderer(template: Path, ctxs: list[dict]) -> tuple[float, float, bytes]:
    t0 = time.perf_counter()
    renderer = ProtocolRenderer(template)
    t1 = time.perf_counter()
    last = b""
    for ctx in ctxs:
        last = renderer.render(ctx)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, last


def bench_docxtpl(template: Path, ctxs: list[dict]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    last = b""
    for ctx in ctxs:
        tpl = DocxTemplate(template)
        tpl.render(ctx, autoescape=True)
        buf = io.BytesIO()
        tpl.save(buf)
        last = buf.getvalue()
    return time.perf_counter() - t0, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="documents per contender (default 200)")
    ap.add_argument("--template", type=Path, default=ROOT / "templates" / "protocol.docx")
    args = ap.parse_args()
    ctxs = contexts(args.n)

    # Warm up both (imports, regex caches) so neither pays one-off costs in the timing.
    bench_renderer(args.template, ctxs[:3])
    bench_docxtpl(args.template, ctxs[:3])

    setup, fast, fast_doc = bench_renderer(args.template, ctxs)
    plain, plain_doc = bench_docxtpl(args.template, ctxs)
    for doc in (fast_doc, plain_doc):
        with zipfile.ZipFile(io.BytesIO(doc)) as zf:
            assert "word/document.xml" in zf.namelist()

    fast_rate = args.n / fast
    plain_rate = args.n / plain
    print(f"template: {args.template}  documents: {args.n} each")
    print(f"ProtocolRenderer : {fast_rate:8.1f} protocols/s  ({1000 * fast / args.n:6.2f} ms each, one-off parse {1000 * setup:.1f} ms)")
    print(f"docxtpl per doc  : {plain_rate:8.1f} protocols/s  ({1000 * plain / args.n:6.2f} ms each)")
    print(f"ratio            : {fast_rate / plain_rate:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
