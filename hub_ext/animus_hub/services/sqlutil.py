"""Small SQL helpers shared by the domain services."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: IN (...) lists are chunked to stay under every backend's bound-parameter limit
IN_CHUNK = 500


def chunks(items: Sequence[T], n: int = IN_CHUNK) -> Iterable[Sequence[T]]:
    """`items` in consecutive slices of at most `n`."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


