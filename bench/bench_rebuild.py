"""Benchmark: rebuild (content disarm and reconstruction) of returned protocols.

    python bench/bench_rebuild.py [-r 5] [--no-libreoffice]

What the intake runs on every accepted attachment (``kcg_mail.documents.rebuild.rebuild``):
1. the demo's protocols: the shipped plan's template rendered for each meeting and filled in
   as ``kcg demo``'s hosts do (python-docx);
2. a 20 MB protocol with pictures: the filled template with five camera-sized JPEG photos
   (4000x3000) and a PNG screenshot, as .docx; and, when LibreOffice is installed, the same
   document saved by LibreOffice as .odt and exported as .pdf.

Each file is rebuilt in a fresh process (``--one FILE``), so the peak resident memory
(``ru_maxrss``) is that of one rebuild: Python, the libraries, the input and the rebuild.
Prints the median wall time of the rebuild call and the peak RSS (and its rise over the
process after imports and reading the input). Goal: under 1 s and under 200 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CONFIG_DIR, machine, median, result_line

TARGET = 20 * 1024 * 1024


def _rss_mib() -> float:
    """Peak resident memory of this process (VmHWM: reset by exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(path: Path, repeat: int) -> None:
    """Child process: rebuild ``path`` ``repeat`` times; print a JSON line."""
    from kcg_mail.documents.rebuild import rebuild

    data = path.read_bytes()
    before = _rss_mib()
    runs, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = rebuild(path.name, data)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"s": median(runs), "max_s": max(runs), "cpu_s": median(cpu), "rss": _rss_mib(),
                      "rss_before": before, "in": len(data), "out": len(out.data)}))


def _measure(path: Path, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", str(path), "-r", str(repeat)], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _photo(seed: int, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A camera-like JPEG: smooth gradients with sensor-like noise (about 3 MB)."""
    from PIL import Image, ImageFilter

    rnd = random.Random(seed)
    small = Image.new("RGB", (40, 30))
    small.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(40 * 30)])
    im = small.resize(size, Image.BICUBIC)
    noise = Image.effect_noise(size, 40).convert("RGB").filter(ImageFilter.SMOOTH)
    im = Image.blend(im, noise, 0.35)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=92)
    return out.getvalue()


def _screenshot() -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (1920, 1080), (245, 245, 245))
    d = ImageDraw.Draw(im)
    rnd = random.Random(7)
    for y in range(0, 1080, 18):
        d.text((20, y), " ".join(str(rnd.random()) for _ in range(12)), fill=(20, 20, 20))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def big_protocol(filled: bytes) -> bytes:
    """The filled protocol with photos added until it is about 20 MB."""
    from docx import Document
    from docx.shared import Cm

    doc = Document(io.BytesIO(filled))
    doc.add_paragraph("Bilder från mötet")
    doc.add_picture(io.BytesIO(_screenshot()), width=Cm(16))
    size, seed = 0, 0
    while True:
        photo = _photo(seed)
        if size + len(photo) > TARGET - 1_500_000 and seed:
            break
        doc.add_picture(io.BytesIO(photo), width=Cm(16))
        size += len(photo)
        seed += 1
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _libreoffice(src: Path, fmt: str, outdir: Path) -> Path | None:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if not exe:
        return None
    profile = Path(tempfile.mkdtemp(prefix="kcg-lo-bench-"))
    try:
        subprocess.run([exe, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore", "--convert-to",
                        fmt, "--outdir", str(outdir), str(src)], capture_output=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    out = outdir / (src.stem + "." + fmt.split(":")[0])
    return out if out.exists() and out.stat().st_size else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--repeat", type=int, default=5)
    ap.add_argument("--one", type=Path)
    ap.add_argument("--no-libreoffice", action="store_true")
    args = ap.parse_args()
    if args.one:
        one(args.one, args.repeat)
        return 0
    from _common import filled_minutes

    from kcg_mail.bootstrap import bootstrap

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        app = bootstrap(work / "app", CONFIG_DIR)
        meetings = [m for m in app.meetings if not m.tentative]
        demo_dir = work / "demo"
        demo_dir.mkdir()
        for m in meetings:
            (demo_dir / f"{m.id}.docx").write_bytes(filled_minutes(app, m))
        app.close()
        demo = [_measure(p, args.repeat) for p in sorted(demo_dir.iterdir())]
        results["demo"] = {"n": len(demo), "median_s": median([d["s"] for d in demo]),
                           "max_s": max(d["max_s"] for d in demo), "cpu_s": median([d["cpu_s"] for d in demo]),
                           "rss": max(d["rss"] for d in demo), "in": median([d["in"] for d in demo])}
        big = work / "big" / "protokoll.docx"
        big.parent.mkdir()
        big.write_bytes(big_protocol((demo_dir / f"{meetings[0].id}.docx").read_bytes()))
        results["docx_20mb"] = _measure(big, args.repeat)
        if not args.no_libreoffice:
            for fmt, key in (("odt", "odt_20mb"), ("pdf:writer_pdf_Export", "pdf_20mb")):
                path = _libreoffice(big, fmt, work / "lo")
                if path is not None:
                    results[key] = _measure(path, args.repeat)
    print(machine())
    d = results["demo"]
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"demo protocols: {d['n']} files of ~{d['in'] / 1024:.0f} kB, median {d['median_s'] * 1e3:.1f} ms wall "
          f"(CPU {d['cpu_s'] * 1e3:.1f} ms), max {d['max_s'] * 1e3:.1f} ms, peak RSS {d['rss']:.0f} MiB")
    for key in ("docx_20mb", "odt_20mb", "pdf_20mb"):
        if key in results:
            r = results[key]
            print(f"{key}: {r['in'] / 2**20:.1f} MiB in -> {r['out'] / 2**20:.1f} MiB out, median {r['s'] * 1e3:.0f} ms "
                  f"wall (CPU {r['cpu_s'] * 1e3:.0f} ms, max wall {r['max_s'] * 1e3:.0f} ms), peak RSS {r['rss']:.0f} MiB ({r['rss_before']:.0f} MiB before "
                  f"the rebuild)")
    result_line("rebuild", {"repeat": args.repeat, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
