#!/usr/bin/python3
"""Play a host in LibreOffice, through UNO (no macros, no python-docx).

Run with the system Python that has Debian's ``python3-uno``
(``/usr/bin/python3 tests/support/lo_host.py JOBS.json``); tests/e2e/test_libreoffice_hosts.py
does. One headless LibreOffice (private profile, a named pipe) opens each
job's protocol as the host received it, writes the decisions into the
decisions table (header ``Beslut | Ansvarig | Klart till``; rows added when
needed) and stores the document with LibreOffice's own filters: .docx
("MS Word 2007 XML", Word 2007-365), .odt ("writer8"), .pdf
("writer_pdf_Export").

JOBS.json: ``[{"src": path, "decisions": [[text, owner, due], ...],
"out": {"docx": path, "odt": path, "pdf": path}}]`` (any subset of formats).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import uno
from com.sun.star.beans import PropertyValue
from com.sun.star.connection import NoConnectException

FILTERS = {"docx": "MS Word 2007 XML", "odt": "writer8", "pdf": "writer_pdf_Export"}


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def decisions_table(doc):
    tables = doc.getTextTables()
    for i in range(tables.getCount()):
        t = tables.getByIndex(i)
        head = [t.getCellByName(c).getString().strip().lower() for c in ("A1", "B1", "C1")
                if t.getCellByName(c) is not None]
        if head[:3] == ["beslut", "ansvarig", "klart till"]:
            return t
    raise SystemExit("no decisions table (Beslut | Ansvarig | Klart till) in the document")


def fill(table, decisions):
    rows = table.getRows()
    for n, values in enumerate(decisions, start=2):
        if n > rows.getCount():
            rows.insertByIndex(rows.getCount(), 1)
        for col, value in zip("ABC", values):
            table.getCellByName(f"{col}{n}").setString(value)


def main(jobs_path):
    jobs = json.load(open(jobs_path, encoding="utf-8"))
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    profile = f"/tmp/kcg-lo-uno-{uuid.uuid4().hex}"
    pipe = f"kcg-{uuid.uuid4().hex}"
    proc = subprocess.Popen([exe, f"-env:UserInstallation=file://{profile}", "--headless", "--invisible",
                             "--norestore", "--nologo", "--nodefault", f"--accept=pipe,name={pipe};urp;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    desktop = None
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        deadline = time.monotonic() + 120
        while True:
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except NoConnectException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("LibreOffice did not come up")
                time.sleep(0.2)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        for job in jobs:
            doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(os.path.abspath(job["src"])), "_blank", 0,
                                               (prop("Hidden", True),))
            try:
                fill(decisions_table(doc), job["decisions"])
                for fmt, out in job["out"].items():
                    doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(out)), (prop("FilterName", FILTERS[fmt]),))
                    if not os.path.getsize(out):
                        raise SystemExit(f"LibreOffice wrote an empty {out}")
            finally:
                doc.close(True)
        print(json.dumps({"done": len(jobs)}))
    finally:
        if desktop is not None:
            try:
                desktop.terminate()
            except Exception:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])
