"""Scrub secret values out of text: the runner before it ships log chunks, animus-api again on arrival.

A value is replaced by ``[redacted:NAME]``, and so are the forms it commonly takes
when a program prints it indirectly: base64 (standard and URL-safe, with and
without padding), percent-encoding, and each line of a multi-line value. Values
shorter than ``MIN_LENGTH`` are not scrubbed (they would blank out ordinary
words); the docs say to use real secrets.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus

MIN_LENGTH = 4


def _forms(value: str) -> set[str]:
    raw = value.encode("utf-8")
    forms = {value, quote(value, safe=""), quote_plus(value)}
    for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = enc.decode()
        forms.add(text)
        forms.add(text.rstrip("="))
    for line in value.splitlines():
        if len(line.strip()) >= max(MIN_LENGTH, 8):
            forms.add(line.strip())
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Redactor:
    """Replaces every known form of the given values; longest first, so no form leaves a piece of another."""

    def __init__(self, values: dict[str, str]):
        pairs: dict[str, str] = {}
        for name, value in values.items():
            if not isinstance(value, str) or len(value) < MIN_LENGTH:
                continue
            for form in _forms(value):
                pairs.setdefault(form, name)
        self._names = pairs
        ordered = sorted(pairs, key=len, reverse=True)
        self._rx = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._rx is not None

    def __call__(self, text: str) -> str:
        if self._rx is None or not text:
            return text
        return self._rx.sub(lambda m: f"[redacted:{self._names[m.group(0)]}]", text)
