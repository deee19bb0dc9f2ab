"""Shared fixtures: databases on both backends and a real embedded stack per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import leakscan
import pytest
import requests
from pgdb import BEFORE_DROP, create_pg_database, drop_pg_database
from seaweed import seaweedfs  # noqa: F401  (a session fixture)
from stack import STACK_API_CONFIG, HubStack, running_stack

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True, scope="session")
def _leak_recorder(tmp_path_factory) -> Iterator[None]:
    """Record every HTTP response the tests receive, and dump PostgreSQL databases before they are dropped
    (the leak scanner greps them at the end of the session: tests/leakscan.py)."""
    leakscan.set_dir(tmp_path_factory.getbasetemp() / "leakscan")
    original = requests.Session.request

    def recording(self, method, url, *args, **kwargs):
        r = original(self, method, url, *args, **kwargs)
        if not kwargs.get("stream"):
            leakscan.record_response(method, url, r.status_code, r.content)
        return r

    requests.Session.request = recording
    BEFORE_DROP.append(leakscan.dump_pg)
    yield
    BEFORE_DROP.remove(leakscan.dump_pg)
    requests.Session.request = original


def pytest_sessionfinish(session, exitstatus) -> None:
    """The leak scan: no registered secret value in any database dump, recorded response or log."""
    if not leakscan.values():
        return
    root = session.config._tmp_path_factory.getbasetemp()
    hits = leakscan.scan(root)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if hits:
        if reporter is not None:
            reporter.write_line("LEAK SCAN FAILED: secret values found in:", red=True)
            for h in hits[:50]:
                reporter.write_line("  " + h, red=True)
        session.exitstatus = 1
    elif reporter is not None:
        reporter.write_line(f"leak scan: {len(leakscan.values())} secret values, none found under {root}")


@pytest.fixture(autouse=True, scope="session")
def _private_client_cache(tmp_path_factory) -> Iterator[None]:
    """The SDK's hash cache (``animus.hashcache``) goes to a test directory, not the user's cache."""
    old = os.environ.get("ANIMUS_CACHE_DIR")
    os.environ["ANIMUS_CACHE_DIR"] = str(tmp_path_factory.mktemp("animus-cache"))
    yield
    if old is None:
        os.environ.pop("ANIMUS_CACHE_DIR", None)
    else:
        os.environ["ANIMUS_CACHE_DIR"] = old


@pytest.fixture
def fresh_db_url(backend, tmp_path) -> Iterator[str]:
    """An empty database on each backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'animus.sqlite'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session", params=BACKENDS)
def stack(request, tmp_path_factory) -> Iterator[HubStack]:
    """A running embedded stack (JupyterHub + proxy + animus-api) on each backend."""
    with running_stack(
        tmp_path_factory.mktemp(f"stack-{request.param}"), request.param, api_config=STACK_API_CONFIG
    ) as s:
        yield s


@pytest.fixture(scope="session")
def unique():
    """A factory of short unique slugs: unique('p') -> 'p-3f9a1c'."""

    def make(prefix: str = "p") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make
