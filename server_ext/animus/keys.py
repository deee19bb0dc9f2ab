"""Rules for metric, param, tag and artifact keys, shared by the SDK and the server.

1–250 characters; '/'-separated segments, none empty, '.' or '..'; no leading '/';
no control characters. The SDK checks keys where they are logged, so one bad key
never costs a batch of good points.
"""

from __future__ import annotations

KEY_MAX = 250


def key_problem(key: object) -> str | None:
    """Why `key` is not a valid key, or None if it is."""
    if not isinstance(key, str) or not key:
        return "a key must be a non-empty string"
    if len(key) > KEY_MAX:
        return f"longer than {KEY_MAX} characters"
    if key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        return "no leading '/', no empty, '.' or '..' segments"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "no control characters"
    return None
