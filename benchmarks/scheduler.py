"""The batch-run scheduler: submit-to-start latency, scheduler CPU per run, priority and fair share.

    python benchmarks/scheduler.py [--runs 1000] [--free-runs 40] [--slots 8] [--db sqlite|postgresql]

Starts a real embedded stack (tests/stack.py) with LocalExecutor slots, a git
repository served by `git daemon` on 127.0.0.1 (one commit), and three projects
whose environment has a pinned image and a lock file of comments only (nothing to
install: the runner reuses one cached virtualenv). Every run's command is `true`.

1. Free capacity: `--free-runs` runs submitted one at a time, 0.4 s apart, fewer
   than the slots ever busy: submit→dispatch (the scheduler) and submit→running
   (dispatch plus the runner's process start and first report) p50/p99.
2. Backlog: the other runs submitted as fast as the API takes them, across the
   three projects (50/30/20 %) with priorities 0, 5 and 10 at random; then the
   queue drains. From the database: whether, inside a project, a run was ever
   dispatched while a higher-priority run of that project had been waiting
   longer (priority inversions), and the projects' shares of the dispatches
   while all three had runs waiting (fair share: about a third each, whatever
   their size). animus-api's CPU seconds ÷ runs is printed: it includes serving
   the runners (job reads, reports, heartbeats, logs) and the submissions.
3. The queue step alone: on the same database after the stack stopped, the runs
   are queued again and the scheduler's queue step (pick, claim with run token
   and audit event, release) is driven in this process with an executor that
   starts nothing; its CPU time ÷ runs is the scheduler's own cost per run.

Goals (printed as information, never asserted): p50 ≤ 1 s while capacity is free,
≤ 5 ms scheduler CPU per run. Results go to benchmarks/results/ as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
RESULTS_DIR = HERE / "results"
IMAGE = "registry.example.com/bench/noop:1@sha256:" + "0" * 64
LOCK = "# nothing to install: the platform's own packages suffice\n"
PROJECTS = (("bench-a", 0.5), ("bench-b", 0.3), ("bench-c", 0.2))
PRIORITIES = (0, 5, 10)
GOAL_P50_S = 1.0
GOAL_CPU_MS = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com"}
    env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def serve_repo(root: Path) -> tuple[subprocess.Popen, str, str]:
    work = root / "work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("a no-op job\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "noop", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    served = root / "served"
    served.mkdir()
    git("clone", "-q", "--bare", str(work), str(served / "repo.git"), cwd=root)
    git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=served / "repo.git")
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}", "--listen=127.0.0.1",
         f"--port={port}", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}/repo.git"
    deadline = time.monotonic() + 10
    while subprocess.run(["git", "ls-remote", url], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("git daemon did not start")
        time.sleep(0.1)
    return proc, url, sha


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def api_process(stack) -> Any:
    import psutil

    for child in psutil.Process(stack.proc.pid).children(recursive=True):
        try:
            if "animus_hub.app" in " ".join(child.cmdline()) or "animus-api" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise RuntimeError("animus-api process not found")


def cpu_seconds(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


_FACTORIES: dict[str, Any] = {}


def _factory(db_url: str):
    from animus_hub import db as dbmod

    if db_url not in _FACTORIES:
        _FACTORIES[db_url] = dbmod.make_session_factory(dbmod.make_engine(db_url))
    return _FACTORIES[db_url]


def rows(db_url: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from animus_hub.orm import Project, Run, RunJob

    factory = _factory(db_url)
    out = {}
    with factory() as s:
        q = (
            select(Run.id, Run.status, Run.created_at, RunJob.dispatched_at, RunJob.started_at, RunJob.priority,
                   RunJob.attempt, Project.slug)
            .join(RunJob, RunJob.run_id == Run.id)
            .join(Project, Project.id == RunJob.project_id)
        )  # fmt: skip
        for r in s.execute(q).all():
            if r.id in run_ids:
                out[r.id] = r._asdict()
    return out


def wait_done(client, project_of: dict[str, str], db_url: str, timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    ids = list(project_of)
    while True:
        got = rows(db_url, ids)
        done = [r for r in got.values() if r["status"] in ("succeeded", "failed", "cancelled")]
        if len(done) == len(ids):
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(done)} of {len(ids)} runs finished in {timeout:.0f} s")
        time.sleep(1.0)


def inversions(backlog: list[dict[str, Any]]) -> tuple[int, int]:
    """(inversions, pairs checked): b dispatched while a higher-priority a of its project waited longer."""
    bad = checked = 0
    by_project: dict[str, list[dict[str, Any]]] = {}
    for r in backlog:
        by_project.setdefault(r["slug"], []).append(r)
    for runs in by_project.values():
        for a in runs:
            for b in runs:
                if a["priority"] > b["priority"] and a["created_at"] <= b["created_at"]:
                    checked += 1
                    if b["dispatched_at"] < a["dispatched_at"]:
                        bad += 1
    return bad, checked


def fair_shares(backlog: list[dict[str, Any]]) -> dict[str, float]:
    """Each project's share of the dispatches until the first project's queue ran dry."""
    last = {}
    for r in backlog:
        last[r["slug"]] = max(last.get(r["slug"], r["dispatched_at"]), r["dispatched_at"])
    until = min(last.values())
    window = [r for r in backlog if r["dispatched_at"] <= until]
    return {p: sum(1 for r in window if r["slug"] == p) / max(1, len(window)) for p, _ in PROJECTS}


# --- phase 3: the queue step alone ----------------------------------------------------------


def queue_step_cpu(db_url: str, slots: int, quota: int) -> dict[str, Any]:
    from sqlalchemy import update

    from animus_hub.executors.base import Executor, LaunchSpec
    from animus_hub.orm import Run, RunJob, utcnow
    from animus_hub.runqueue import RunQueue, RunQueueStep

    class StartsNothing(Executor):
        """Measures the scheduler only: launching is free and every attempt ends at once."""

        name = "local"

        async def launch(self, spec: LaunchSpec) -> str:
            return f"bench:{spec.run_id}"

        async def stop(self, handle: str, grace: float = 0.0) -> None:
            return None

    factory = _factory(db_url)
    with factory() as s:
        now = utcnow()
        n = s.execute(update(RunJob).values(state="queued", released=True, next_attempt_at=now, handle=None)).rowcount
        s.execute(update(Run).where(Run.kind == "batch").values(status="queued"))
        s.commit()
    settings = RunQueue(project_concurrency=quota)
    step = RunQueueStep(factory, settings, StartsNothing(slots=slots), "http://127.0.0.1:9")

    def finish_active() -> None:
        # what the runners' reports would do: the dispatched attempts end
        with factory() as s:
            ids = [
                r
                for (r,) in s.execute(
                    RunJob.__table__.select().with_only_columns(RunJob.run_id).where(RunJob.state == "starting")
                )
            ]
            s.execute(update(RunJob).where(RunJob.run_id.in_(ids)).values(state="succeeded"))
            s.execute(update(Run).where(Run.id.in_(ids)).values(status="succeeded"))
            s.commit()

    async def drain() -> tuple[float, float, int]:
        step_cpu = finish_cpu = 0.0
        started = 0
        while True:
            t0 = time.process_time()
            await step.run(None)
            step_cpu += time.process_time() - t0
            t0 = time.process_time()
            with factory() as s:
                left = s.query(RunJob).filter(RunJob.state.in_(("queued", "starting"))).count()
                started = s.query(RunJob).filter(RunJob.state == "succeeded").count()
            finish_active()
            finish_cpu += time.process_time() - t0
            if left == 0:
                # one more round releases the last attempts
                t0 = time.process_time()
                await step.run(None)
                step_cpu += time.process_time() - t0
                return step_cpu, finish_cpu, started

    step_cpu, _, started = asyncio.run(drain())
    return {"runs": n, "dispatched": started, "cpu_s": step_cpu, "cpu_ms_per_run": 1000 * step_cpu / max(1, started)}


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs in all (default 1000)")
    ap.add_argument("--free-runs", type=int, default=40, help="of which submitted one by one while capacity is free")
    ap.add_argument("--slots", type=int, default=8, help="LocalExecutor slots (runs active at once)")
    ap.add_argument("--quota", type=int, default=4, help="RunQueue.project_concurrency")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds the backlog may take to drain")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from stack import HubStack

    from animus.client import Client

    root = Path(
        tempfile.mkdtemp(prefix="animus-bench-sched-", dir=REPO / ".cache" if (REPO / ".cache").is_dir() else None)
    )
    pg_name = None
    db_url = ""
    if args.db == "postgresql":
        from pgdb import create_pg_database

        pg_name, db_url = create_pg_database()
    git_proc, repo_url, sha = serve_repo(root / "git")
    config = f"""
c.LocalExecutor.slots = {args.slots}
c.LocalExecutor.work_dir = {str(root / "runs")!r}
c.RunQueue.project_concurrency = {args.quota}
c.RunQueue.verify_commits = False
c.RunQueue.heartbeat_interval = 5
c.Scheduler.interval = 1.0
"""
    stack = HubStack(root / "stack", db_url=db_url, api_config=config)
    result: dict[str, Any] = {"args": vars(args), "machine": platform.platform(), "cpus": os.cpu_count()}
    try:
        stack.start()
        token = stack.user_token("bench")
        client = Client(url=stack.api_url, token=token)
        for project, _ in PROJECTS:
            assert stack.api("POST", "/projects", token, json={"slug": project}).status_code == 201
            client.create_environment(project, "noop")
            client.add_environment_version(project, "noop", IMAGE, LOCK, {"cpu": 1, "memory_mb": 512})
        api = api_process(stack)
        project_of: dict[str, str] = {}

        def submit(project: str, priority: int) -> str:
            r = client.submit_run(project, repo_url, sha, ["true"], environment="noop:1", priority=priority)
            project_of[r["id"]] = project
            return r["id"]

        # warm-up: the first run builds the cached virtualenv of the lock
        warm = submit("bench-a", 0)
        wait_done(client, {warm: "bench-a"}, stack.db_url, 300)
        project_of.clear()

        print(f"phase 1: {args.free_runs} runs one at a time while capacity is free …", flush=True)
        free_ids = []
        for i in range(args.free_runs):
            free_ids.append(submit(PROJECTS[i % 3][0], random.choice(PRIORITIES)))  # noqa: S311
            time.sleep(0.4)
        free = wait_done(client, dict.fromkeys(free_ids, ""), stack.db_url, 600)

        n_backlog = args.runs - args.free_runs
        print(f"phase 2: {n_backlog} runs submitted at once …", flush=True)
        rng = random.Random(7)
        plan = [
            (rng.choices([p for p, _ in PROJECTS], [w for _, w in PROJECTS])[0], rng.choice(PRIORITIES))
            for _ in range(n_backlog)
        ]
        cpu0, t0 = cpu_seconds(api), time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            backlog_ids = list(pool.map(lambda a: submit(*a), plan))
        submitted = time.monotonic() - t0
        backlog = wait_done(client, dict.fromkeys(backlog_ids, ""), stack.db_url, args.timeout)
        wall = time.monotonic() - t0
        api_cpu = cpu_seconds(api) - cpu0
    finally:
        stack.stop()
        git_proc.terminate()

    def lat(rs, field):
        return [(r[field] - r["created_at"]).total_seconds() for r in rs if r[field] is not None]

    free_rows = list(free.values())
    back_rows = [r for r in backlog.values() if r["dispatched_at"] is not None and r["attempt"] == 1]
    bad, checked = inversions(back_rows)
    shares = fair_shares(back_rows)
    print("phase 3: the queue step alone on the same database …", flush=True)
    alone = queue_step_cpu(stack.db_url, args.slots, args.quota)

    result.update(
        free={
            "runs": len(free_rows),
            "dispatch_p50_s": pct(lat(free_rows, "dispatched_at"), 50),
            "dispatch_p99_s": pct(lat(free_rows, "dispatched_at"), 99),
            "running_p50_s": pct(lat(free_rows, "started_at"), 50),
            "running_p99_s": pct(lat(free_rows, "started_at"), 99),
            "failed": sum(1 for r in free_rows if r["status"] != "succeeded"),
        },
        backlog={
            "runs": len(backlog),
            "submit_seconds": submitted,
            "drain_seconds": wall,
            "runs_per_second": len(backlog) / wall,
            "api_cpu_s": api_cpu,
            "api_cpu_ms_per_run": 1000 * api_cpu / max(1, len(backlog)),
            "priority_inversions": bad,
            "priority_pairs_checked": checked,
            "fair_shares": shares,
            "failed": sum(1 for r in backlog.values() if r["status"] != "succeeded"),
        },
        queue_step=alone,
    )
    f, b = result["free"], result["backlog"]
    print()
    print(f"free capacity ({f['runs']} runs): submit→dispatch p50 {f['dispatch_p50_s'] * 1000:.0f} ms, "
          f"p99 {f['dispatch_p99_s'] * 1000:.0f} ms; submit→running p50 {f['running_p50_s'] * 1000:.0f} ms, "
          f"p99 {f['running_p99_s'] * 1000:.0f} ms; failed {f['failed']}")  # fmt: skip
    print(f"backlog ({b['runs']} runs): submitted in {b['submit_seconds']:.1f} s, drained in {b['drain_seconds']:.1f} s "
          f"({b['runs_per_second']:.1f} runs/s); failed {b['failed']}")  # fmt: skip
    print(f"  animus-api CPU {b['api_cpu_s']:.1f} s = {b['api_cpu_ms_per_run']:.1f} ms/run "
          "(scheduler + submissions + serving the runners)")  # fmt: skip
    print(f"  priority: {bad} inversions in {checked} same-project pairs "
          f"({'respected' if bad == 0 else 'NOT respected'})")  # fmt: skip
    share_txt = ", ".join(f"{p} {100 * s:.0f} %" for p, s in shares.items())
    fair = max(shares.values()) - min(shares.values()) <= 0.10
    print(f"  fair share while all had runs waiting (sizes 50/30/20 %): {share_txt} "
          f"({'respected' if fair else 'NOT respected'})")  # fmt: skip
    print(f"queue step alone: {alone['cpu_s']:.2f} s CPU for {alone['dispatched']} runs = "
          f"{alone['cpu_ms_per_run']:.2f} ms/run")  # fmt: skip
    print()
    print(f"goal: p50 ≤ {GOAL_P50_S:.0f} s while capacity is free — submit→dispatch {f['dispatch_p50_s']:.2f} s, "
          f"submit→running {f['running_p50_s']:.2f} s")  # fmt: skip
    print(f"goal: ≤ {GOAL_CPU_MS:.0f} ms scheduler CPU per run — queue step {alone['cpu_ms_per_run']:.2f} ms")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"scheduler-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"results: {out}")
    if pg_name:
        from pgdb import drop_pg_database

        drop_pg_database(pg_name)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
