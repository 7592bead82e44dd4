"""Suite-wide settings and the rules no test can dodge. Fixtures live next to
the tests that use them and in tests/support/ (helpers, mailserver,
prefect_server, the protocol fakes). The tests are in folders by kind:
tests/core (the pure core and documents), tests/adapters (each adapter
against its fake or real server), tests/e2e (the app, the flows, kcg serve,
the browser, LibreOffice hosts).

Rules (derived from the code, not from hand-kept lists):

* ``core``: a test module whose imports (its own and those of the local test
  helpers it imports, at any depth, module level or inside functions) reach
  into ``kcg_mail`` only through modules whose own imports, transitively, stay
  in ``kcg_mail.core``, ``kcg_mail.documents``, ``kcg_mail.ports`` (and the
  config loader ``kcg_mail.config_loader``, which imports only the core) and that
  import neither ``prefect`` nor ``flows``. ``./scripts/test.sh -m core`` runs
  in seconds.
* ``server``: a test that uses a fixture which starts a real server (Dovecot /
  Postfix through ``mail_server``, a Prefect server, LibreOffice) is marked
  ``server`` even if its author forgot the marker.
* ``KCG_REQUIRE_SERVERS=1`` (CI): a ``server`` test that skips, however it
  skips (skip marker, ``pytest.skip`` in a fixture or the test), fails; and a
  test module that skips at collection (``pytest.skip(allow_module_level=True)``,
  ``pytest.importorskip``) fails too.
"""

import ast
import inspect
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

# Keep Prefect's state out of the developer's home and quiet its telemetry. Each
# process has its own Prefect home: under pytest-xdist the workers inherit the
# controller's environment, and a home made by another process (the marker names
# its pid) is never shared; a PREFECT_HOME the developer set is kept.
_owner = os.environ.get("KCG_TEST_PREFECT_HOME_PID")
if "PREFECT_HOME" not in os.environ or (_owner is not None and _owner != str(os.getpid())):
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix=f"kcg-prefect-home-{_worker}-")
    os.environ["KCG_TEST_PREFECT_HOME_PID"] = str(os.getpid())
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)


import pytest  # noqa: E402  (after the environment above)

pytest_plugins = ["pytester", "support.attacks.world"]  # the attack world's fixtures (prepared, feb)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

#: kcg_mail packages a core test may reach (with everything they import).
CORE_PACKAGES = ("kcg_mail.core", "kcg_mail.documents", "kcg_mail.ports", "kcg_mail.config_loader")
#: Names that are never core, wherever they are imported from.
NOT_CORE_TOP = {"prefect", "flows"}

#: Source text in a fixture that means "this starts a real server".
SERVER_FIXTURE_SIGNS = ("mail_server(", "prefect_test_harness", "PrefectServer", "prefect_server.",
                        "soffice", "libreoffice")


def _require_servers() -> bool:
    return os.environ.get("KCG_REQUIRE_SERVERS") == "1"


# ------------------------------------------------------------------ skips in CI


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (KCG_REQUIRE_SERVERS=1) a real-server test may not skip itself:
    a missing Dovecot, Postfix, LibreOffice or Prefect server is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _require_servers() and item.get_closest_marker("server"):
        report.outcome = "failed"
        report.longrepr = f"server test skipped in CI (KCG_REQUIRE_SERVERS=1): {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A test module that skips itself at collection is invisible to the hook
    above: under KCG_REQUIRE_SERVERS=1 that is a failure as well."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _require_servers() and isinstance(collector, pytest.Module):
        report.outcome = "failed"
        report.longrepr = f"test module skipped at collection in CI (KCG_REQUIRE_SERVERS=1): {report.longrepr}"


# ------------------------------------------------------------------ the core marker


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement in ``path`` (anywhere in it)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return set()
    pkg = _module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import inside kcg_mail
                parts = pkg.split(".")
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join(p for p in (*parts, base) if p)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    return out


def _module_name(path: Path) -> str:
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        return path.stem
    parts = list(rel.with_suffix("").parts)
    if parts and parts[0] == "tests":  # tests/support/x.py is ``support.x``; a test module is its stem
        return ".".join(parts[1:]) if parts[1:2] == ["support"] else parts[-1]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _source_of(name: str) -> Path | None:
    """The file of a kcg_mail module, a flows module or a local test helper."""
    top = name.split(".")[0]
    if top in ("kcg_mail", "flows"):
        base = ROOT.joinpath(*name.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                return cand
        return None
    if top == "support":  # the suite's shared helpers (tests/support/)
        base = TESTS.joinpath(*name.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                return cand
    return None


@cache
def _reaches_outside_core(name: str) -> str | None:
    """Why module ``name`` is not core (the first import found that leaves
    the core packages), or None."""
    return _walk(name, frozenset())


def _walk(name: str, seen: frozenset) -> str | None:
    if name in seen:
        return None
    seen = seen | {name}
    top = name.split(".")[0]
    if top in NOT_CORE_TOP:
        return name
    if top == "kcg_mail" and name != "kcg_mail" and not name.startswith(CORE_PACKAGES):
        return name
    path = _source_of(name)
    if path is None:
        return None  # third-party or stdlib, or a name inside a module
    for imported in sorted(_imports(path)):
        why = _walk(imported, seen)
        if why is not None:
            return f"{name} -> {why}"
    return None


def _touches_product(names: set[str], seen: frozenset) -> bool:
    for n in names:
        if n.split(".")[0] == "kcg_mail":
            return True
        local = _source_of(n)
        if local is not None and n not in seen and _touches_product(_imports(local), seen | {n}):
            return True
    return False


@cache
def module_is_core(path_str: str) -> bool:
    path = Path(path_str)
    names = _imports(path)
    if not _touches_product(names, frozenset()):
        return False  # tests nothing of the product (e.g. the suite's own rules)
    return all(_walk(n, frozenset({_module_name(path)})) is None for n in names)


# ------------------------------------------------------------------ the server marker


@cache
def _fixture_starts_server(func) -> bool:
    try:
        src = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return any(sign in src for sign in SERVER_FIXTURE_SIGNS)


def _uses_server_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name in info.names_closure:
        for fdef in info.name2fixturedefs.get(name, ()):
            if _fixture_starts_server(fdef.func):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        path = getattr(module, "__file__", None)
        if not item.get_closest_marker("server") and _uses_server_fixture(item):
            item.add_marker(pytest.mark.server)
        if path and module_is_core(path) and not item.get_closest_marker("server"):
            item.add_marker(pytest.mark.core)


# ------------------------------------------------------------------ shared fixtures


@pytest.fixture(scope="session")
def shipped_year(tmp_path_factory):
    """A real run of the shipped plan on the embedded defaults (tests/support/real_run.py):
    (workdir, {key: SentMail}) read from the Maildir sent folder. Copy the
    workdir before changing it."""
    from support.real_run import index_sent, run_shipped_year

    work = tmp_path_factory.mktemp("shipped-year") / "work"
    run_shipped_year(work)
    return work, index_sent(work)


if __name__ == "__main__":  # python tests/conftest.py: which modules are core, and why not
    for p in sorted(TESTS.rglob("test_*.py")):
        why = next((w for n in sorted(_imports(p)) if (w := _walk(n, frozenset({p.stem}))) is not None), None)
        print(f"{p.stem:32} {'core' if module_is_core(str(p)) else 'not core: ' + str(why)}")
    sys.exit(0)


# ------------------------------------------------------------------ one Prefect test server


@pytest.fixture(scope="session")
def prefect_api():
    """One real Prefect server (``prefect_test_harness``) for every test that runs
    flows in-process. Its teardown drains Prefect's log and event workers, which can
    wait for ever on a server an earlier test pointed them at and then stopped (the
    "Prefect server does not answer" CLI test); it gets 15 s (a healthy exit takes
    under 2), then the harness's server is stopped directly so the session ends."""
    import contextlib
    import threading

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    from kcg_mail.entrypoints.prefect_env import without_heartbeats

    harness = prefect_test_harness(server_startup_timeout=90)
    harness.__enter__()
    server = SubprocessASGIServer._instances.get(None)
    try:
        with without_heartbeats():
            yield
    finally:
        _drop_prefect_queues()

        def leave() -> None:
            # In another thread (bounded by the join below), the settings context the harness
            # entered in this one cannot be reset ("created in a different Context"); at the
            # session's end that does not matter, and the server is stopped below either way.
            try:
                harness.__exit__(None, None, None)
            except ValueError as exc:
                if "different Context" not in str(exc):
                    raise

        done = threading.Thread(target=leave, daemon=True)
        done.start()
        done.join(15)
        if server is not None:  # the harness's own stop may not have run (or not in this thread's context)
            with contextlib.suppress(Exception):
                server.stop()



def _drop_prefect_queues() -> None:
    """Drop what Prefect's event and log workers still hold. Some tests stop the
    servers those items were meant for; a drain (the harness's teardown, and the
    workers' own at-exit drain) would try to deliver every one of them to a dead
    address ("Still processing items: 822 items remaining...") and the test
    process would not end."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
    except ImportError:  # pragma: no cover
        return
    import queue as _queue

    for cls in (EventsWorker, APILogWorker):
        for worker in list(getattr(cls, "_instances", {}).values()):
            q = getattr(worker, "_queue", None)
            while q is not None:
                try:
                    q.get_nowait()
                    q.task_done()
                except (_queue.Empty, ValueError):
                    break


def pytest_unconfigure(config):
    _drop_prefect_queues()
