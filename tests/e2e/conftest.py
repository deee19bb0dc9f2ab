"""Fixtures of the end-to-end tests: the `animus up` runs of a test, and Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, AnimusUp


@pytest.fixture
def animus_runs() -> Iterator[list[AnimusUp]]:
    """Collects the `animus up` runs of a test and cleans up after them, whatever happened."""
    runs: list[AnimusUp] = []
    yield runs
    for run in runs:
        run.cleanup()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browser(tmp_path) -> Iterator:
    """A Chromium context with a fresh profile; HOME and XDG directories in tmp."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Python package `playwright` is not installed (pip install playwright)",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    home = tmp_path / "chromium-home"
    env = dict(os.environ)
    for var, sub in {
        "HOME": "",
        "XDG_CONFIG_HOME": ".config",
        "XDG_CACHE_HOME": ".cache",
        "XDG_DATA_HOME": ".local/share",
    }.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            env=env,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
