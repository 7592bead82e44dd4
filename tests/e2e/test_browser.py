"""The cockpit seen in a real browser: a Prefect server with its UI, a network
with a few weeks of content, one daily run through Prefect, and the
coordinator's overview opened in headless Chromium (Playwright from PyPI
driving Debian's /usr/bin/chromium, installed by .ci/install-browser.sh) at
1,400 × 1,000: every column of the table is on screen without scrolling
sideways, and the "behöver en människa" list is there below it. And one decision
of the coordinator taken in the browser: held minutes approved in the kcg-approve
form of the Prefect UI.

``KCG_UPDATE_SCREENSHOT=1`` also writes the screenshot the README shows
(docs/ui-overview.png)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cockpit_seed import TODAY, seed  # noqa: E402

from kcg_mail.config_loader import DEFAULT_CONFIG_DIR

pytestmark = [pytest.mark.server, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1400, 1000
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "ui-overview.png"


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    """A page of headless Chromium at 1,400 × 1,000, Swedish."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, locale="sv-SE")
        finally:
            browser.close()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    from support.prefect_server import prefect_server

    try:
        with prefect_server(tmp_path_factory.mktemp("prefect-ui-home"), ui=True, timeout=90) as s:
            yield s
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:  # pragma: no cover - no server possible
        pytest.skip(f"cannot start a Prefect server: {exc}")


def test_overview_in_the_prefect_ui_at_1400px(ui_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (run .ci/install-browser.sh)")
    from prefect import tags
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.daily import daily_flow
    from kcg_mail.core.overview import COLUMNS
    from kcg_mail.entrypoints import prefect_env
    from kcg_mail.services.status import overview_needs

    cfgdir = Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))
    work = tmp_path / "work"
    app = seed(work, cfgdir)
    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url, PREFECT_LOGGING_TO_API_ENABLED: False}):
        with prefect_env.without_heartbeats(), tags("kcg", "KCG", "daily"):
            state = daily_flow(date=TODAY, workdir=str(work), config_dir=str(cfgdir), return_state=True)
    assert state.is_completed(), state
    from support.cockpit_seed import at

    needs = overview_needs(app, at(TODAY))
    assert len(needs) >= 3

    from prefect.client.orchestration import get_client

    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        with get_client(sync_client=True) as client:
            latest = client.read_latest_artifacts()
    (art,) = [a for a in latest if a.key == "kcg-oversikt"]
    ui = ui_server.api_url.removesuffix("/api")
    with browser_page() as page:
        # what the coordinator opens: Artifacts -> kcg-oversikt -> the newest version
        page.goto(f"{ui}/artifacts/artifact/{art.latest_id}", wait_until="networkidle")
        try:
            page.get_by_role("heading", name="Behöver en människa").wait_for(timeout=30_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise AssertionError(f"the overview did not render; see {tmp_path / 'failure.png'}:\n"
                                 f"{page.inner_text('body')[:2000]}") from None
        page.wait_for_timeout(1500)  # let the layout settle
        shot = tmp_path / "overview.png"
        page.screenshot(path=str(shot))
        table = page.locator("table").filter(has_text="Protokoll").first
        box = table.bounding_box()
        assert box is not None
        # every column header is on screen, none scrolled out to the right
        for col in COLUMNS:
            th = table.locator("th", has_text=col.capitalize()).first
            b = th.bounding_box()
            assert b is not None and th.is_visible(), col
            assert 0 <= b["x"] and b["x"] + b["width"] <= WIDTH, (col, b)
        overflow = table.evaluate("t => { const p = t.parentElement; return [t.scrollWidth, p.clientWidth]; }")
        assert overflow[0] <= overflow[1] + 1, f"the table scrolls sideways: {overflow}"
        assert table.locator("tbody tr").count() == len(app.meetings)
        assert table.locator("tr", has_text="2023-02").first.inner_text().count("klart") == 1
        # the list below it: every item, in the same width
        heading = page.get_by_role("heading", name="Behöver en människa")
        assert heading.bounding_box()["y"] > box["y"] + box["height"] - 1
        items = page.locator("li").filter(has_text="Gör:")
        assert items.count() == len(needs)
        for i in range(items.count()):
            ib = items.nth(i).bounding_box()
            assert ib is not None and ib["x"] + ib["width"] <= WIDTH
        assert "karantän" in page.locator("li").filter(has_text="okand@example.com").first.inner_text()
        assert shot.stat().st_size > 10_000
        if os.environ.get("KCG_UPDATE_SCREENSHOT") == "1":
            # the README's picture: 1,400 px wide and tall enough for the whole list
            # (the UI scrolls an inner pane, so a "full page" shot would stop at the fold)
            page.set_viewport_size({"width": WIDTH, "height": 1280})
            page.wait_for_timeout(500)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))


def test_the_coordinator_approves_held_minutes_in_the_prefect_form(ui_server, tmp_path):
    """One coordinator decision taken in the browser: held minutes waiting for his
    yes (he also got the question by mail), approved through the kcg-approve form
    of the Prefect UI ("Kör" -> the form -> Referens -> Skicka); the run the form
    created is executed as a worker does (``python -m prefect.engine``), and the
    minutes are filed and sent out once, the run named after what it did."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (run .ci/install-browser.sh)")
    import re
    import subprocess
    import sys
    from email import message_from_bytes, policy

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from support.cockpit_seed import at
    from support.helpers import sent_by_key

    from flows.manual import approve_reply
    from kcg_mail.bootstrap import bootstrap
    from kcg_mail.entrypoints.demo_hosts import host_reply
    from kcg_mail.services.approval import pending
    from kcg_mail.services.intake import run_intake

    root = Path(__file__).resolve().parents[2]
    cfgdir = Path(shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config"))
    work = tmp_path / "work"
    app = seed(work, cfgdir)
    feb = app.meeting("2023-02")
    # a second version of February's minutes that our receiving server could not confirm: held
    raw = host_reply(app, feb, at("2023-02-08", 11), extra=(("Beslut i formuläret", feb.host.name, "2023-03-01"),))
    msg = message_from_bytes(raw, policy=policy.SMTP)
    del msg["Authentication-Results"]
    app.mail.deliver(msg.as_bytes(), "feb-unconfirmed.eml")
    run_intake(app, at("2023-02-08", 12))
    (held,) = pending(app)
    ref = held.msg_key[:12]
    # (a sender that could not be confirmed is not mailed about: it waits on the list and in the form)
    before = {k: n for k, n in sent_by_key(work).items() if ":distribute:" in k}
    app.close()

    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        dep_id = approve_reply.to_deployment(name="KCG").apply()
    ui = ui_server.api_url.removesuffix("/api")
    with browser_page() as page:
        page.goto(f"{ui}/deployments/deployment/{dep_id}/run", wait_until="networkidle")
        try:
            # the form's field for the "Referens" parameter (its title): a text area under its label
            field = page.locator(".schema-form-property").filter(has_text="Referens").locator("textarea")
            field.wait_for(timeout=30_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "form-failure.png"))
            raise AssertionError(f"the form did not render; see {tmp_path / 'form-failure.png'}:\n"
                                 f"{page.inner_text('body')[:2000]}") from None
        field.fill(ref)
        page.get_by_role("button", name="Submit").click()
        # the UI goes back to the deployment, its runs listed
        page.wait_for_url(re.compile(rf"/deployments/deployment/{dep_id}(\?.*)?$"), timeout=30_000)

    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        with get_client(sync_client=True) as client:
            (run,) = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])))
    assert run.parameters == {"ref": ref}
    run_id = str(run.id)
    env = ui_server.env() | {"PREFECT__FLOW_RUN_ID": run_id, "KCG_WORKDIR": str(work), "KCG_CONFIG_DIR": str(cfgdir),
                             "KCG_TODAY": "2023-02-08", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "prefect.engine"], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run.id)
    assert run.state.is_completed(), run.state
    assert run.name == f"godkände svar {ref}"
    app = bootstrap(work, cfgdir)
    try:
        assert not pending(app)
        after = {k: n for k, n in sent_by_key(work).items() if ":distribute:" in k}
        new = {k: n for k, n in after.items() if k not in before}
        assert len(new) == 1 and set(new.values()) == {1}, new  # the held version, sent out once
    finally:
        app.close()
