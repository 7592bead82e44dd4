"""The suite's own rules (tests/conftest.py), checked on small suites run by
pytester with the real conftest: what CI may not get away with."""

from __future__ import annotations

from pathlib import Path

import conftest
import pytest

CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text(encoding="utf-8")

MODULE_SKIP = """
import pytest
pytest.skip("LibreOffice (soffice) not installed", allow_module_level=True)

def test_never_runs():
    assert False
"""

FIXTURE_SKIP = """
import pytest

@pytest.fixture
def server():
    pytest.skip("Dovecot not installed")

@pytest.mark.server
def test_needs_server(server):
    assert True

@pytest.mark.server
@pytest.mark.skipif(True, reason="no Postfix")
def test_skipif_server():
    assert True
"""

UNMARKED_SERVER = """
import contextlib
import pytest

@contextlib.contextmanager
def mail_server():
    pytest.skip("Dovecot not installed")
    yield

@pytest.fixture
def server():
    with mail_server() as s:
        yield s

def test_forgot_the_marker(server):
    assert True
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    monkeypatch.delenv("KCG_REQUIRE_SERVERS", raising=False)
    return pytester


@pytest.mark.parametrize("source", [MODULE_SKIP, FIXTURE_SKIP, UNMARKED_SERVER],
                         ids=["module-level-skip", "fixture-and-skipif", "unmarked-server-fixture"])
def test_a_skipping_server_module_fails_in_ci(suite, monkeypatch, source):
    suite.makepyfile(test_mod=source)
    local = suite.runpytest("-p", "no:cacheprovider")
    assert local.ret in (0, 5), local.stdout.str()  # a developer without the servers: skipped
    assert local.parseoutcomes().get("skipped", 0) >= 1
    monkeypatch.setenv("KCG_REQUIRE_SERVERS", "1")
    ci = suite.runpytest("-p", "no:cacheprovider")
    assert ci.ret != 0, ci.stdout.str()
    outcomes = ci.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0 and (outcomes.get("failed", 0) + outcomes.get("errors", 0)) >= 1
    assert "KCG_REQUIRE_SERVERS=1" in ci.stdout.str()


def test_the_server_marker_comes_from_the_fixture(suite):
    suite.makepyfile(test_mod=UNMARKED_SERVER)
    res = suite.runpytest("-p", "no:cacheprovider", "-m", "not server")
    assert res.parseoutcomes().get("deselected") == 1, res.stdout.str()


def test_the_core_marker_comes_from_the_imports():
    tests = Path(conftest.__file__).parent
    core = {p.stem for p in tests.rglob("test_*.py") if conftest.module_is_core(str(p))}
    # the pure core and the documents: in
    assert {"test_cycle", "test_inbound", "test_protocol", "test_naming"} <= core
    # anything that reaches adapters, services, entrypoints, flows or prefect: out,
    # also through a helper module (support/helpers.py imports the adapters)
    assert not core & {"test_crash", "test_embedded", "test_flows", "test_smtp_imap", "test_graph",
                       "test_mail_output", "test_cli"}
    assert conftest._walk("support.helpers", frozenset()) is not None
    assert conftest._walk("support.basics", frozenset()) is None
    assert conftest._walk("kcg_mail.core.cycle", frozenset()) is None
    assert conftest._walk("kcg_mail.services.app", frozenset()) is not None


def test_core_tests_need_no_server(request):
    for item in request.session.items:
        if item.get_closest_marker("core"):
            assert not item.get_closest_marker("server"), item.nodeid
