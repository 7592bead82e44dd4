"""Benchmark: parse and classify every message of the test corpus (tests/corpus/).

    python bench/bench_parse.py [-r 5]

Prints the median time per pass over the corpus and per message. (This was a
wall-clock assertion in tests/core/test_inbound.py; speed lives here, not in tests.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import TESTS, machine, median, result_line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))
    from support.corpus import CTX  # the corpus' match context

    from kcg_mail.core.inbound import classify, parse

    corpus = TESTS / "corpus"
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    raws = [(corpus / e["file"]).read_bytes() for e in manifest]
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for raw in raws:
            classify(parse(raw), CTX)
        runs.append(time.perf_counter() - t0)
    med = median(runs)
    print(machine())
    print(f"{len(raws)} messages, median of {args.repeat}: {med * 1e3:.1f} ms per pass, "
          f"{med / len(raws) * 1e3:.2f} ms per message")
    result_line("parse", {"messages": len(raws), "pass_s": med})
    return 0


if __name__ == "__main__":
    sys.exit(main())
