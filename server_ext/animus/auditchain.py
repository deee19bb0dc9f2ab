"""The audit hash chain: canonical serialisation, hashing and verification.

Shared by the control plane (which appends) and the `animus` CLI (which verifies
independently of the server). Each event's ``hash`` is the sha256 of the canonical
JSON of its fields, ``prev_hash`` included, so editing, deleting, inserting or
reordering any event breaks the chain at that event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64

# The fields covered by the hash, in the order they are documented.
CHAINED_FIELDS = (
    "seq",
    "id",
    "time",
    "actor",
    "actor_kind",
    "source",
    "request_id",
    "action",
    "resource",
    "project",
    "outcome",
    "details",
    "prev_hash",
)


def format_time(value: dt.datetime) -> str:
    """UTC, microsecond precision, 'Z' suffix: the one textual form that is hashed."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: dict[str, Any]) -> bytes:
    body = {name: event[name] for name in CHAINED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    bad_id: str | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain BROKEN at event seq={self.bad_seq} id={self.bad_id}: {self.problem}"


def verify(
    events: Iterable[dict[str, Any]],
    *,
    start_seq: int = 1,
    start_prev_hash: str = GENESIS_HASH,
    head: dict[str, Any] | None = None,
) -> VerifyResult:
    """Check events given in stored (seq) order; stop at the first bad one.

    `head`, when given, is the recorded tip of the chain ({"seq", "hash"}): a chain
    cut short at the end is detected against it.
    """
    expected_seq, prev_hash, checked = start_seq, start_prev_hash, 0
    for event in events:
        seq, eid = event.get("seq"), event.get("id")
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                problem = f"events missing before it (expected seq {expected_seq})"
            else:
                problem = f"out of order (expected seq {expected_seq})"
            return VerifyResult(False, checked, seq, eid, problem)
        if event.get("prev_hash") != prev_hash:
            return VerifyResult(False, checked, seq, eid, "prev_hash does not match the previous event's hash")
        try:
            computed = event_hash(event)
        except (KeyError, TypeError, ValueError) as e:
            return VerifyResult(False, checked, seq, eid, f"unreadable event ({e})")
        if computed != event.get("hash"):
            return VerifyResult(False, checked, seq, eid, "content does not match its hash (edited)")
        if head is not None and seq == head.get("seq") and event["hash"] != head.get("hash"):
            return VerifyResult(False, checked, seq, eid, "does not match the recorded chain head")
        prev_hash, expected_seq, checked = event["hash"], expected_seq + 1, checked + 1
    # events appended after the head was read are fine (they chain, checked above);
    # a chain that stops short of the head lost its last events
    if head is not None and expected_seq - 1 < head.get("seq", 0):
        return VerifyResult(
            False,
            checked,
            head.get("seq"),
            None,
            f"the chain ends at seq {expected_seq - 1} but its recorded head is seq {head.get('seq')} "
            "(events deleted at the end)",
        )
    return VerifyResult(True, checked)
