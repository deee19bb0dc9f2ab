"""The pure parts of benchmarks/spawn.py: its statistics, spawn order and log reading.

The benchmark itself is run by hand (it takes minutes); these check that the figures it
prints are computed as its README says.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "spawn.py"


@pytest.fixture(scope="module")
def spawn():
    spec = importlib.util.spec_from_file_location("bench_spawn", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # it puts benchmarks/ first on sys.path for its own imports
    yield module
    sys.modules.pop(spec.name, None)


def test_summary_has_median_p90_and_min(spawn):
    s = spawn.summarize([5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert s["n"] == 10 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["median"] == 5.5
    assert s["p90"] == pytest.approx(9.1)  # between the 9th and 10th of 10, linearly


def test_summary_of_one_and_of_none(spawn):
    assert spawn.summarize([3.0]) == {"n": 1, "median": 3.0, "p90": 3.0, "min": 3.0, "max": 3.0}
    assert spawn.summarize([])["median"] is None


def test_sides_alternate_in_pairs_and_each_gets_its_runs(spawn):
    order = spawn.spawn_order(4)
    assert order == ["plain", "animus", "animus", "plain", "plain", "animus", "animus", "plain"]
    assert order.count("plain") == order.count("animus") == 4


LOG = """\
[W 2026-11-28 12:35:10.000 JupyterHub base:437] something of the hub
[I 2026-11-28 12:35:23.898 ServerApp] Extension package jupyterlab took 0.1043s to import
[I 2026-11-28 12:35:24,100 animus] 200 GET /services/animus/api/v1/health 1.0ms
[I 2026-11-28 12:35:24.419 ServerApp] jupyter_lsp | extension was successfully linked.
[I 2026-11-28 12:35:24.420 ServerApp] jupyter_server_proxy | extension was successfully linked.
[I 2026-11-28 12:35:25.048 ServerApp] Jupyter Server 2.21.1 is running at:
[I 2026-11-28 12:35:25.048 ServerApp] http://127.0.0.1:52691/user/bench/bench/lab?token=...
[I 2026-11-28 12:35:25.106 ServerApp] 200 GET /user/bench/bench/api (@127.0.0.1) 0.93ms
"""


def ts(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def test_server_phases_are_read_from_the_hub_log(spawn):
    times = spawn.server_log_times(LOG, "/user/bench/bench/")
    assert times == {"first_log": ts("2026-11-28 12:35:24.419"), "listening": ts("2026-11-28 12:35:25.048")}


def test_another_servers_running_line_does_not_count(spawn):
    assert "listening" not in spawn.server_log_times(LOG, "/user/bench/other/")


def test_process_start_is_read_from_proc(spawn):
    boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
    offset = spawn.process_start_offset(os.getpid(), boot_now)
    assert offset is not None and offset <= 0  # this process started before now
    assert spawn.process_start_offset(2**22 + 12345, boot_now) is None  # no such process
