"""Webhooks: outbox events fanned out to 3 signed-webhook receivers, throughput and delivery lag.

    python benchmarks/webhooks.py [--events 10000] [--rate 1000] [--db sqlite|postgresql] [--keep]

Starts a real embedded stack (tests/stack.py: JupyterHub, proxy, animus-api with its
scheduler, as shipped: `c.Scheduler.interval` and `c.WebhookDelivery.*` at their defaults
unless given), a project `bench` with 3 webhooks subscribed to DatasetVersionCreated, and 3
receivers on 127.0.0.1, each an aiohttp server in its own process that verifies every
signature (HMAC-SHA256 over timestamp and body, as docs/how-to/webhooks.md tells receivers
to), dedupes by event id and records arrival times. Then two phases:

  (a) burst: N events (default 10,000) committed in one transaction; events/s = N divided
      by the time from the commit to the arrival of the last of the 3·N deliveries;
  (b) steady: N events produced at --rate events/s (in batches every 20 ms) for N/rate
      seconds; the delivery lag of each delivery is its arrival time minus the time its
      event's transaction began (so it errs high by the batch's own insert and commit):
      p50, p99 and max.

The events are written by this process straight into the outbox with
`events.record_event` (the function every API path calls inside its transaction), in bulk,
through the stack's own database: no API path produces 10,000 events fast enough to
measure delivery rather than production (a dataset push is ~10 ms each). Everything after
the commit — fan-out, claims, signing, HTTP, recording each attempt — is the real scheduler.
Prints the figures and the issue's goals (≥ 1,000 events/s, p99 ≤ 2 s) as information
(never an assertion) and writes the results as JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from api_throughput import BenchDatabase, free_port, log, run_and_save  # noqa: E402

PROJECT = "bench"
RECEIVERS = 3
EVENT_TYPE = "DatasetVersionCreated"


# =============================================================================
# The receiver (its own process: --receiver PORT; the signing secret in $BENCH_WEBHOOK_SECRET)
# =============================================================================


def receiver_main(port: int) -> None:
    """Verify, dedupe by event id, record (event id, arrival time, commit time); GET /stats reports."""
    from aiohttp import web

    secret = os.environ["BENCH_WEBHOOK_SECRET"].encode()
    seen: set[str] = set()
    arrivals: list[tuple[float, float]] = []  # (arrival, event's created_wall) of first deliveries
    counts = {"requests": 0, "duplicates": 0, "bad_signatures": 0}

    def signature_ok(timestamp: str, body: bytes, header: str) -> bool:
        try:
            sent = int(timestamp)
        except ValueError:
            return False
        if abs(time.time() - sent) > 300:
            return False
        mac = hmac.new(secret, f"{sent}.".encode() + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(f"v1={mac}", part.strip()) for part in header.split(","))

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        counts["requests"] += 1
        h = request.headers
        if not signature_ok(h.get("Animus-Timestamp", ""), body, h.get("Animus-Signature", "")):
            counts["bad_signatures"] += 1
            return web.Response(status=401, text="bad signature")
        event_id = h.get("Animus-Event-Id", "")
        if event_id in seen:
            counts["duplicates"] += 1
            return web.Response(status=200, text="duplicate")
        seen.add(event_id)
        arrivals.append((now, float(json.loads(body)["data"]["created_wall"])))
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        body: dict[str, Any] = {**counts, "unique": len(seen)}
        if request.query.get("arrivals"):
            body["arrivals"] = arrivals
        return web.json_response(body)

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes([web.post("/hook", hook), web.get("/stats", stats), web.post("/reset", reset)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)


# =============================================================================
# The benchmark
# =============================================================================


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp: Path | None = None
        self.stack: Any = None
        self.receivers: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.database = BenchDatabase(args.pg_admin_dsn)
        self.engine: Any = None

    # --- setup ---------------------------------------------------------------

    def api_config(self) -> str:
        lines = []
        if self.args.interval is not None:
            lines.append(f"c.Scheduler.interval = {self.args.interval!r}")
        if self.args.concurrency is not None:
            lines.append(f"c.WebhookDelivery.max_concurrency = {self.args.concurrency!r}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from stack import HubStack

        from animus_hub import db as dbmod

        db_url = self.database.create() if self.args.db == "postgresql" else ""
        self.stack = HubStack(self.tmp / "stack", db_url=db_url, api_config=self.api_config())
        log(f"starting the Animus stack ({self.args.db}) in {self.tmp} ...")
        self.stack.start()
        token = self.stack.user_token("bench")
        r = self.stack.api("POST", "/projects", token, json={"slug": PROJECT})
        if r.status_code != 201:
            raise RuntimeError(f"could not create the project: {r.status_code} {r.text}")
        for i in range(RECEIVERS):
            port = free_port()
            r = self.stack.api(
                "POST",
                f"/projects/{PROJECT}/webhooks",
                token,
                json={"url": f"http://127.0.0.1:{port}/hook", "event_types": [EVENT_TYPE], "description": f"r{i}"},
            )
            if r.status_code != 201:
                raise RuntimeError(f"could not create a webhook: {r.status_code} {r.text}")
            proc = subprocess.Popen(
                [sys.executable, __file__, "--receiver", str(port)],
                env={**os.environ, "BENCH_WEBHOOK_SECRET": r.json()["secret"]},
                stdout=subprocess.DEVNULL,
                stderr=open(self.tmp / f"receiver-{i}.log", "ab"),
                start_new_session=True,
            )
            self.receivers.append(proc)
            self.ports.append(port)
        import requests

        deadline = time.monotonic() + 30
        for port in self.ports:
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/stats", timeout=1)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a receiver did not come up") from None
                    time.sleep(0.1)
        self.engine = dbmod.make_engine(self.stack.db_url)
        self.session_factory = dbmod.make_session_factory(self.engine)
        with self.session_factory() as s:
            from sqlalchemy import select

            from animus_hub.orm import Project

            self.project = s.scalar(select(Project).where(Project.slug == PROJECT))
            s.expunge(self.project)

    # --- producing events ------------------------------------------------------------

    def produce(self, n: int, start_seq: int) -> float:
        """Record `n` events in one transaction (record_event, as the API paths do); returns when it committed.

        Each event carries the time just before its transaction began (``created_wall``):
        the lag measured from it includes the batch's own insert and commit, so it errs high.
        """
        from animus_hub.events import record_event

        stamp = time.time()
        with self.session_factory() as s:
            project = s.merge(self.project, load=False)
            for i in range(n):
                seq = start_seq + i
                record_event(
                    s,
                    EVENT_TYPE,
                    {
                        "dataset": "bench",
                        "version": seq,
                        "digest": "sha256:" + hashlib.sha256(str(seq).encode()).hexdigest(),
                        "files": 1,
                        "bytes": 1024,
                        "by": "bench",
                        "created_wall": stamp,
                    },
                    project,
                )
            s.commit()
        return time.time()

    # --- measuring ------------------------------------------------------------------

    def stats(self, arrivals: bool = False) -> list[dict[str, Any]]:
        import requests

        q = "?arrivals=1" if arrivals else ""
        return [requests.get(f"http://127.0.0.1:{p}/stats{q}", timeout=30).json() for p in self.ports]

    def wait_for(self, unique_each: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s["unique"] >= unique_each for s in self.stats()):
                return True
            time.sleep(0.05)
        return False

    def reset(self) -> None:
        import requests

        for p in self.ports:
            requests.post(f"http://127.0.0.1:{p}/reset", timeout=10)

    def burst(self, n: int) -> dict[str, Any]:
        log(f"(a) burst: {n:,} events in one transaction, fanned out to {RECEIVERS} receivers ...")
        t0 = time.time()
        committed = self.produce(n, 0)
        produce_s = time.time() - t0
        ok = self.wait_for(n, self.args.timeout)
        stats = self.stats(arrivals=True)
        last = max((a for s in stats for a, _ in s["arrivals"]), default=committed)
        elapsed = last - committed
        return {
            "events": n,
            "deliveries": sum(len(s["arrivals"]) for s in stats),
            "complete": ok,
            "produce_seconds": produce_s,
            "seconds": elapsed,
            "events_per_s": n / elapsed if ok and elapsed > 0 else None,
            "deliveries_per_s": sum(len(s["arrivals"]) for s in stats) / elapsed if elapsed > 0 else None,
            "lag_p50_s": pct([a - c for s in stats for a, c in s["arrivals"]], 0.50),
            "lag_p99_s": pct([a - c for s in stats for a, c in s["arrivals"]], 0.99),
        }

    def steady(self, n: int, rate: float) -> dict[str, Any]:
        log(f"(b) steady: {n:,} events at {rate:g} events/s ...")
        self.reset()
        before = [s["unique"] for s in self.stats()]
        tick = 0.02
        per_tick = max(1, round(rate * tick))
        produced = 0
        t_start = time.monotonic()
        while produced < n:
            batch = min(per_tick, n - produced)
            self.produce(batch, 1_000_000 + produced)
            produced += batch
            # keep to the schedule (a slow commit is caught up, never skipped)
            wait = t_start + produced / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        produce_s = time.monotonic() - t_start
        ok = self.wait_for(before[0] + n, self.args.timeout)
        stats = self.stats(arrivals=True)
        lags = [a - c for s in stats for a, c in s["arrivals"]]
        return {
            "events": n,
            "rate_asked": rate,
            "rate_produced": n / produce_s if produce_s > 0 else None,
            "deliveries": len(lags),
            "complete": ok,
            "lag_p50_s": pct(lags, 0.50),
            "lag_p99_s": pct(lags, 0.99),
            "lag_max_s": max(lags) if lags else None,
        }

    def run(self) -> dict[str, Any]:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-", dir=REPO / ".cache"))
        self.start()
        burst = self.burst(self.args.events)
        steady = self.steady(self.args.events, self.args.rate)
        final = self.stats()
        with self.session_factory() as s:
            from sqlalchemy import func, select

            from animus_hub.orm import Delivery, DeliveryAttempt

            states = dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
            attempts = s.scalar(select(func.count()).select_from(DeliveryAttempt))
        checks = {
            "bad_signatures": sum(x["bad_signatures"] for x in final),
            "duplicates": sum(x["duplicates"] for x in final),
            "requests": sum(x["requests"] for x in final),
            "delivery_states": states,
            "attempts_recorded": attempts,
        }
        return self.report(burst, steady, checks)

    def report(self, burst: dict[str, Any], steady: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
        def f(v: float | None, fmt: str) -> str:
            return "—" if v is None else format(v, fmt)

        print()
        print(
            f"Webhooks: {RECEIVERS} receivers (aiohttp, separate processes, signatures verified) on 127.0.0.1; "
            f"{self.args.db}; scheduler interval {self.args.interval if self.args.interval is not None else 'default'}"
        )
        print(
            f"(a) burst of {burst['events']:,} events: {f(burst['events_per_s'], ',.0f')} events/s "
            f"({f(burst['deliveries_per_s'], ',.0f')} deliveries/s), all delivered in {burst['seconds']:.2f} s "
            f"after the commit{'' if burst['complete'] else ' — INCOMPLETE (timeout)'}; "
            f"committing them took {burst['produce_seconds']:.2f} s"
        )
        print(
            f"(b) steady {steady['events']:,} events at {f(steady['rate_produced'], ',.0f')} events/s: delivery lag "
            f"p50 {f(steady['lag_p50_s'], '.3f')} s, p99 {f(steady['lag_p99_s'], '.3f')} s, "
            f"max {f(steady['lag_max_s'], '.3f')} s{'' if steady['complete'] else ' — INCOMPLETE (timeout)'}"
        )
        print(
            f"checks: {checks['bad_signatures']} bad signatures, {checks['duplicates']} duplicate deliveries, "
            f"{checks['requests']:,} requests, delivery states {checks['delivery_states']}, "
            f"{checks['attempts_recorded']:,} attempts in the delivery log"
        )
        print("goals (information): ≥ 1,000 events/s on (a); p99 delivery lag ≤ 2 s on (b)")
        return {
            "benchmark": "webhooks",
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "args": vars(self.args),
            "burst": burst,
            "steady": steady,
            "checks": checks,
        }

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc in self.receivers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.engine is not None:
            self.engine.dispose()
        if self.stack is not None:
            try:
                self.stack.stop()
            except Exception as e:  # noqa: BLE001
                print(f"warning: stopping the stack: {e}", file=sys.stderr)
        self.database.drop()
        if self.tmp is not None:
            if self.args.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000, help="events per phase (default 10,000)")
    p.add_argument("--rate", type=float, default=1000.0, help="events/s produced in the steady phase (default 1,000)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--pg-admin-dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where --db postgresql creates (and drops) a fresh database",
    )
    p.add_argument("--interval", type=float, help="c.Scheduler.interval for the stack (default: the shipped default)")
    p.add_argument("--concurrency", type=int, help="c.WebhookDelivery.max_concurrency (default: the shipped default)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a phase's deliveries")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (stack and receiver logs)")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.receiver:
        receiver_main(args.receiver)
        return 0
    (REPO / ".cache").mkdir(exist_ok=True)
    return run_and_save(Bench(args), "webhooks")


if __name__ == "__main__":
    sys.exit(main())
