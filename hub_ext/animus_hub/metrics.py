"""Prometheus metrics of animus-api (the observability wave exposes and scrapes them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from tornado.web import RequestHandler

REQUEST_DURATION = Histogram(
    "animus_api_request_duration_seconds",
    "Time to answer an animus-api request",
    ["method", "handler", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUDIT_REFUSALS = Counter(
    "animus_api_refused_requests_total", "Requests refused by authentication or authorisation", ["code"]
)


def observe_request(handler: RequestHandler) -> None:
    code = handler.get_status()
    REQUEST_DURATION.labels(handler.request.method, type(handler).__name__, str(code)).observe(
        handler.request.request_time()
    )
    if code in (401, 403):
        AUDIT_REFUSALS.labels(str(code)).inc()
