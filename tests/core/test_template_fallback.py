"""A broken edited protocol template is reported and the last good one is used."""

import io
import shutil
import zipfile
from pathlib import Path

from kcg_mail.bootstrap import bootstrap
from kcg_mail.services.compose import DEFAULT_TEMPLATES
from kcg_mail.services.status import needs_a_person


def _break(docx: Path) -> None:
    """What a coordinator might do in Word: a placeholder with a typo."""
    src = docx.read_bytes()
    tmp = docx.with_suffix(".tmp")
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "word/document.xml":
                data = data.replace(b"{{ meeting.theme }}", b"{{ meeting.tema }}", 1)
                assert b"meeting.tema" in data
            zout.writestr(info, data)
    tmp.replace(docx)


def test_broken_template_is_reported_and_last_good_is_used(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    work = tmp_path / "work"
    app = bootstrap(work, templates_dir=templates)
    assert app.template_problems == []
    good = (work / "last-good-template" / "protocol.docx").read_bytes()
    assert good == (templates / "protocol.docx").read_bytes()

    _break(templates / "protocol.docx")
    app = bootstrap(work, templates_dir=templates)
    assert any("meeting.tema" in p for p in app.template_problems), app.template_problems
    assert any("meeting.tema" in item for item in needs_a_person(app))
    # the renderer still works, from the last good copy
    from kcg_mail.services.daily import render_protocol

    att = render_protocol(app, app.meetings[1])
    assert att.filename.endswith(".docx") and len(att.data) > 5000
    assert (work / "last-good-template" / "protocol.docx").read_bytes() == good
