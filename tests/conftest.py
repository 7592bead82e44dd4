"""Suite-wide settings. Fixtures live next to the tests that use them
(tests/helpers.py, tests/mailserver.py, tests/prefect_server.py, fakes)."""

import os
import tempfile

# Keep Prefect's state out of the developer's home and quiet its telemetry.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="kcg-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)


import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (KCG_REQUIRE_SERVERS=1) a real-server test may not skip itself:
    a missing Dovecot, Postfix, LibreOffice or Prefect server is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("KCG_REQUIRE_SERVERS") == "1" and item.get_closest_marker("server"):
        report.outcome = "failed"
        report.longrepr = f"server test skipped in CI: {report.longrepr}"


#: The pure core and its pure neighbours: ``./scripts/test.sh -m core`` runs in seconds.
CORE_MODULES = {"test_cycle", "test_calendar", "test_config", "test_naming", "test_inbound", "test_golive",
                "test_mail_output", "test_protocol"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in CORE_MODULES:
            item.add_marker(pytest.mark.core)
