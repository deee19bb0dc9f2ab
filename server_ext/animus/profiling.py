"""Schema and statistics of tabular files (CSV/TSV, JSON lines, Parquet), computed by the client.

``animus.datasets.push`` profiles each tabular file while it hashes it: CSV and JSON
lines are parsed from the same single read that feeds sha256 (the standard library
only); Parquet needs random access to its footer, so it is read a second time, batch
by batch, with pyarrow (optional: ``pip install pyarrow``). Memory stays bounded:
rows are never kept, each column keeps counters, its min/max and a 4 KiB
HyperLogLog sketch (plus an exact set while it holds at most ``EXACT_LIMIT``
distinct values), and a line longer than ``MAX_LINE`` counts as one broken row.

A profile (the shape the server validates, ``animus_hub.services.dataset_profiles``)::

    {"format": "csv", "rows": 3, "bad_rows": 1,
     "bad_row_samples": [{"line": 4, "reason": "3 fields, the header has 2"}],
     "columns_truncated": false,
     "columns": [{"name": "age", "type": "integer", "nulls": 1, "min": 3, "max": 9,
                  "mean": 6.0, "distinct": 2}, ...]}

``rows`` counts the good rows (a header is not a row); ``nulls`` are empty, NA-like
or missing values; ``distinct`` is exact up to ``EXACT_LIMIT`` distinct values and a
HyperLogLog estimate above (relative standard error 1.04/√4096 ≈ 1.6 %).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

#: the profile format (bump when the shape changes)
PROFILE_VERSION = 1
#: columns profiled per file; later columns are left out and ``columns_truncated`` set
MAX_COLUMNS = 1000
#: string min/max are cut to this many characters
STRING_STAT_MAX = 64
#: column names are cut to this many characters
NAME_MAX = 256
#: a longer line is one broken row (its rest is skipped, never held in memory)
MAX_LINE = 1 << 20
#: broken rows reported by line number (all are counted)
BAD_ROW_SAMPLES = 10
#: distinct values counted exactly before switching to the sketch
EXACT_LIMIT = 2048
HLL_P = 12
HLL_M = 1 << HLL_P
#: the sketch's relative standard error
DISTINCT_ERROR = 1.04 / math.sqrt(HLL_M)
CSV_NULLS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "none"})
READ_CHUNK = 4 * 1024 * 1024


class ProfileError(Exception):
    """A file that cannot be profiled at all (e.g. Parquet without pyarrow)."""


def table_format(path: str) -> str | None:
    """'csv', 'tsv', 'jsonl' or 'parquet' by the file's extension; None for other files."""
    name = path.lower()
    for ext, kind in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".parquet", "parquet"),
    ):
        if name.endswith(ext):
            return kind
    return None


# --- distinct counts -------------------------------------------------------------------


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class HyperLogLog:
    """A HyperLogLog sketch (Flajolet et al. 2007) with 2**12 one-byte registers.

    Exact while it has seen at most ``EXACT_LIMIT`` distinct values (it keeps their
    64-bit hashes), then the classic estimator with linear counting for small ranges.
    """

    __slots__ = ("_exact", "_registers")

    def __init__(self) -> None:
        self._exact: set[int] | None = set()
        self._registers = bytearray(HLL_M)

    def add(self, data: bytes) -> None:
        x = _hash64(data)
        if self._exact is not None:
            self._exact.add(x)
            if len(self._exact) > EXACT_LIMIT:
                self._exact = None
        idx = x & (HLL_M - 1)
        w = x >> HLL_P
        rank = (64 - HLL_P) - w.bit_length() + 1
        if rank > self._registers[idx]:
            self._registers[idx] = rank

    def estimate(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        m = HLL_M
        alpha = 0.7213 / (1 + 1.079 / m)
        z = sum(2.0**-r for r in self._registers)
        e = alpha * m * m / z
        zeros = self._registers.count(0)
        if e <= 2.5 * m and zeros:
            e = m * math.log(m / zeros)
        return int(round(e))


# --- columns ---------------------------------------------------------------------------


def _cut(s: str) -> str:
    return s if len(s) <= STRING_STAT_MAX else s[:STRING_STAT_MAX]


class _Column:
    __slots__ = ("name", "kinds", "nonnull", "nmin", "nmax", "nsum", "ncount", "smin", "smax", "trues", "sketch")

    def __init__(self, name: str):
        self.name = name[:NAME_MAX]
        self.kinds: set[str] = set()
        self.nonnull = 0
        self.nmin: float | int | None = None
        self.nmax: float | int | None = None
        self.nsum = 0.0
        self.ncount = 0
        self.smin: str | None = None
        self.smax: str | None = None
        self.trues = 0
        self.sketch = HyperLogLog()

    def number(self, v: int | float) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            return
        if self.nmin is None or v < self.nmin:
            self.nmin = v
        if self.nmax is None or v > self.nmax:
            self.nmax = v
        self.nsum += v
        self.ncount += 1

    def text(self, s: str) -> None:
        if self.smin is None or s < self.smin:
            self.smin = s
        if self.smax is None or s > self.smax:
            self.smax = s

    def csv_value(self, raw: str) -> None:
        if raw in CSV_NULLS:
            return
        self.nonnull += 1
        self.sketch.add(raw.encode("utf-8", "surrogatepass"))
        self.text(raw)
        low = raw.lower()
        if low in ("true", "false"):
            self.kinds.add("boolean")
            self.trues += low == "true"
            return
        try:
            self.number(int(raw))
            self.kinds.add("integer")
            return
        except ValueError:
            pass
        try:
            f = float(raw)
        except ValueError:
            self.kinds.add("string")
            return
        self.kinds.add("float")
        self.number(f)

    def json_value(self, v: Any) -> None:
        if v is None:
            return
        self.nonnull += 1
        if isinstance(v, bool):
            self.kinds.add("boolean")
            self.trues += v
            self.sketch.add(b"b1" if v else b"b0")
        elif isinstance(v, int):
            self.kinds.add("integer")
            self.number(v)
            self.sketch.add(b"n" + repr(float(v) if abs(v) < 2**53 else v).encode())
        elif isinstance(v, float):
            self.kinds.add("float")
            self.number(v)
            self.sketch.add(b"n" + repr(v).encode())
        elif isinstance(v, str):
            self.kinds.add("string")
            self.text(v)
            self.sketch.add(b"s" + v.encode("utf-8", "surrogatepass"))
        else:
            self.kinds.add("object" if isinstance(v, dict) else "array")
            self.sketch.add(b"j" + json.dumps(v, sort_keys=True, separators=(",", ":")).encode())

    def resolve(self, text_source: bool) -> str:
        kinds = self.kinds
        if not kinds:
            return "null"
        if len(kinds) == 1:
            return next(iter(kinds))
        if kinds <= {"integer", "float"}:
            return "float"
        # every CSV value is text: a column with words and numbers is a string column
        return "string" if text_source else "mixed"

    def result(self, rows: int, text_source: bool) -> dict[str, Any]:
        kind = self.resolve(text_source)
        out: dict[str, Any] = {"name": self.name, "type": kind, "nulls": rows - self.nonnull}
        if kind in ("integer", "float"):
            out["min"], out["max"] = self.nmin, self.nmax
            out["mean"] = self.nsum / self.ncount if self.ncount else None
            if kind == "float":
                out["min"] = None if self.nmin is None else float(self.nmin)
                out["max"] = None if self.nmax is None else float(self.nmax)
        elif kind == "boolean":
            out["min"], out["max"] = self.trues == self.nonnull, self.trues > 0
            out["mean"] = self.trues / self.nonnull
        elif kind == "string":
            out["min"] = None if self.smin is None else _cut(self.smin)
            out["max"] = None if self.smax is None else _cut(self.smax)
            out["mean"] = None
        else:
            out["min"] = out["max"] = out["mean"] = None
        for key in ("min", "max", "mean"):
            v = out[key]
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None  # JSON has no NaN or infinity
        out["distinct"] = self.sketch.estimate()
        return out


class _Table:
    def __init__(self, fmt: str):
        self.fmt = fmt
        self.columns: list[_Column] = []
        self.by_name: dict[str, _Column] = {}
        self.rows = 0
        self.bad_rows = 0
        self.samples: list[dict[str, Any]] = []
        self.truncated = False

    def bad(self, line: int, reason: str) -> None:
        self.bad_rows += 1
        if len(self.samples) < BAD_ROW_SAMPLES:
            self.samples.append({"line": line, "reason": reason[:200]})

    def column(self, name: str) -> _Column | None:
        col = self.by_name.get(name)
        if col is None:
            if len(self.columns) >= MAX_COLUMNS:
                self.truncated = True
                return None
            col = self.by_name[name] = _Column(name)
            self.columns.append(col)
        return col

    def result(self) -> dict[str, Any]:
        text_source = self.fmt in ("csv", "tsv")
        return {
            "profile_version": PROFILE_VERSION,
            "format": self.fmt,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_row_samples": self.samples,
            "columns_truncated": self.truncated,
            "distinct_error": round(DISTINCT_ERROR, 4),
            "columns": [c.result(self.rows, text_source) for c in self.columns],
        }


# --- reading while hashing ---------------------------------------------------------------


class HashingReader(io.RawIOBase):
    """A binary file that updates a sha256 (and a progress callback) with every byte read."""

    def __init__(self, f: IO[bytes], on_bytes: Callable[[int], None] | None = None):
        self._f = f
        self.sha256 = hashlib.sha256()
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        if n:
            self.sha256.update(memoryview(b)[:n])
            if self._on_bytes is not None:
                self._on_bytes(n)
        return n or 0

    def drain(self) -> None:
        buf = bytearray(READ_CHUNK)
        while self.readinto(buf):
            pass


def _lines(stream: IO[bytes], table: _Table) -> Iterator[tuple[int, bytes]]:
    """(line number, line) with lines over MAX_LINE counted as broken and skipped, never held whole."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            table.bad(number, f"line longer than {MAX_LINE} bytes")
            continue
        yield number, line


def _profile_csv(stream: IO[bytes], fmt: str) -> dict[str, Any]:
    table = _Table(fmt)
    delimiter = "\t" if fmt == "tsv" else ","
    current = [0]

    def text_lines() -> Iterator[str]:
        for number, line in _lines(stream, table):
            current[0] = number
            yield line.decode("utf-8", "replace")

    reader = csv.reader(text_lines(), delimiter=delimiter, strict=True)
    header: list[_Column | None] | None = None
    width = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            table.bad(current[0], f"malformed CSV: {e}")
            continue
        if header is None:
            if current[0] == 1 and row and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]
            names: list[str] = []
            seen: dict[str, int] = {}
            for i, raw in enumerate(row):
                name = raw or f"Unnamed: {i}"
                if name in seen:
                    seen[name] += 1
                    name = f"{name}.{seen[name]}"
                seen.setdefault(name, 0)
                names.append(name)
            header = [table.column(n) for n in names]
            width = len(header)
            continue
        if not row:
            continue  # blank line
        if len(row) != width:
            table.bad(current[0], f"{len(row)} fields, the header has {width}")
            continue
        table.rows += 1
        for col, raw in zip(header, row, strict=True):
            if col is not None:
                col.csv_value(raw)
    return table.result()


def _profile_jsonl(stream: IO[bytes]) -> dict[str, Any]:
    table = _Table("jsonl")
    for number, line in _lines(stream, table):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            table.bad(number, f"not JSON: {e}")
            continue
        if not isinstance(obj, dict):
            table.bad(number, f"a JSON {type(obj).__name__}, not an object")
            continue
        table.rows += 1
        for key, value in obj.items():
            col = table.column(str(key))
            if col is not None:
                col.json_value(value)
    return table.result()


def hash_and_profile(
    path: Path, fmt: str | None, on_bytes: Callable[[int], None] | None = None
) -> tuple[str, dict[str, Any] | None]:
    """(sha256 hex, profile or None) of `path` with one read for CSV and JSON lines."""
    with path.open("rb", buffering=0) as raw:
        reader = HashingReader(raw, on_bytes)
        profile = None
        if fmt in ("csv", "tsv", "jsonl"):
            buffered = io.BufferedReader(reader, READ_CHUNK)
            profile = _profile_jsonl(buffered) if fmt == "jsonl" else _profile_csv(buffered, fmt)
            while buffered.read(READ_CHUNK):  # the parser stops at the end; the hash must too
                pass
        else:
            reader.drain()
        digest = reader.sha256.hexdigest()
    if fmt == "parquet":
        profile = profile_parquet(path)
    return digest, profile


# --- Parquet ---------------------------------------------------------------------------


def parquet_supported() -> bool:
    """Whether pyarrow, which Parquet profiles need, is installed."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _arrow_kind(t: Any) -> str:
    import pyarrow.types as pat

    if pat.is_boolean(t):
        return "boolean"
    if pat.is_integer(t):
        return "integer"
    if pat.is_floating(t) or pat.is_decimal(t):
        return "float"
    if pat.is_string(t) or pat.is_large_string(t):
        return "string"
    if pat.is_timestamp(t):
        return "timestamp"
    if pat.is_date(t):
        return "date"
    if pat.is_null(t):
        return "null"
    return str(t)[:64]


def profile_parquet(path: Path, batch_rows: int = 65536) -> dict[str, Any]:
    """A Parquet file's profile, read batch by batch with pyarrow (``pip install pyarrow``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ProfileError("profiling Parquet needs pyarrow: pip install pyarrow") from None
    table = _Table("parquet")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises several kinds for a broken file)
        raise ProfileError(f"{path.name}: not a readable Parquet file ({e})") from None
    fields = list(pf.schema_arrow)[:MAX_COLUMNS]
    table.truncated = len(pf.schema_arrow) > MAX_COLUMNS
    cols = [(f.name, _arrow_kind(f.type), table.column(f.name)) for f in fields]
    try:
        _scan_parquet(pf, fields, cols, table, batch_rows)
    except Exception as e:  # noqa: BLE001 (a corrupt row group, an unsupported type)
        raise ProfileError(f"{path.name}: cannot read the Parquet data ({e})") from None
    return table.result()


def _scan_parquet(pf: Any, fields: list[Any], cols: list[Any], table: _Table, batch_rows: int) -> None:
    import pyarrow.compute as pc

    for batch in pf.iter_batches(batch_size=batch_rows, columns=[f.name for f in fields]):
        table.rows += batch.num_rows
        for i, (_, kind, col) in enumerate(cols):
            if col is None:
                continue
            arr = batch.column(i)
            col.nonnull += len(arr) - arr.null_count
            if kind in ("integer", "float", "boolean"):
                col.kinds.add(kind)
                valid = len(arr) - arr.null_count
                if valid:
                    if kind == "boolean":
                        col.trues += int(pc.sum(pc.cast(arr, "int64")).as_py() or 0)
                    else:
                        mm = pc.min_max(arr).as_py()
                        lo, hi = mm["min"], mm["max"]
                        if kind == "float":
                            lo, hi = float(lo), float(hi)
                        col.nmin = lo if col.nmin is None else min(col.nmin, lo)
                        col.nmax = hi if col.nmax is None else max(col.nmax, hi)
                        col.nsum += float(pc.sum(arr).as_py())
                        col.ncount += valid
            elif kind == "string":
                col.kinds.add(kind)
                if len(arr) - arr.null_count:
                    mm = pc.min_max(arr).as_py()
                    col.text(mm["min"])
                    col.text(mm["max"])
            else:
                col.kinds.add(kind)
            for v in arr.to_pylist():
                if v is not None:
                    col.sketch.add(repr(v).encode("utf-8", "surrogatepass"))


__all__ = [
    "DISTINCT_ERROR",
    "HyperLogLog",
    "ProfileError",
    "hash_and_profile",
    "parquet_supported",
    "profile_parquet",
    "table_format",
]
