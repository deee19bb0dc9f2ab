"""Schema and statistics of tabular dataset files: client-side profiles, stored with the version, diffs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from test_datasets import create, entries, make_team

import animus.datasets as ds
from animus import profiling
from animus.cli.main import main as cli
from animus.client import Client
from animus_hub import db as dbmod

N_IDS = 5000  # above the exact limit: the distinct count of `id` comes from the sketch


# --- the profiler, no server ----------------------------------------------------------


def test_hyperloglog_is_exact_when_small_and_within_its_error_bound_when_large():
    small = profiling.HyperLogLog()
    for i in range(profiling.EXACT_LIMIT):
        small.add(str(i % 1500).encode())
    assert small.estimate() == 1500
    for n in (5_000, 50_000, 200_000):
        sketch = profiling.HyperLogLog()
        for _ in range(2):  # duplicates do not count
            for i in range(n):
                sketch.add(f"v{i}-{n}".encode())
        error = abs(sketch.estimate() - n) / n
        # within 4 standard errors (1.6 % each); the hash is fixed, so this is deterministic
        assert error < 4 * profiling.DISTINCT_ERROR, (n, sketch.estimate(), error)


def test_a_broken_csv_is_counted_not_fatal_and_memory_stays_bounded(tmp_path):
    f = tmp_path / "t.csv"
    long_line = "9," + "x" * (profiling.MAX_LINE + 10) + "\n"
    f.write_bytes(
        (
            '\ufeffid,name,score\n1,ann,2.5\n2,,3\n3,bob,"x"y\n4,too,many,fields\n'
            + long_line
            + '5,"multi\nline",1\n6,eve,NA\n\n7,"unterminated\n'
        ).encode()
    )
    sha, p = profiling.hash_and_profile(f, "csv")
    import hashlib

    assert sha == hashlib.sha256(f.read_bytes()).hexdigest()
    assert p["rows"] == 4 and p["bad_rows"] == 4
    assert [s["line"] for s in p["bad_row_samples"]][:3] == [4, 5, 6]
    cols = {c["name"]: c for c in p["columns"]}
    assert list(cols) == ["id", "name", "score"]
    assert cols["id"] | {} == {"name": "id", "type": "integer", "nulls": 0, "min": 1, "max": 6, "mean": 3.5, "distinct": 4}
    assert cols["name"]["nulls"] == 1 and cols["name"]["min"] == "ann" and cols["name"]["type"] == "string"
    assert cols["score"]["type"] == "float" and cols["score"]["nulls"] == 1 and cols["score"]["mean"] == pytest.approx(6.5 / 3)


def test_json_lines_types_nulls_and_bad_lines(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text('{"a": 1, "b": "x", "n": {"k": 1}}\n{"a": 2.5, "c": true}\nnope\n[1]\n{"a": null, "b": 3}\n')
    _, p = profiling.hash_and_profile(f, "jsonl")
    cols = {c["name"]: c for c in p["columns"]}
    assert p["rows"] == 3 and p["bad_rows"] == 2
    assert cols["a"]["type"] == "float" and cols["a"]["nulls"] == 1 and cols["a"]["mean"] == 1.75
    assert cols["b"]["type"] == "mixed" and cols["c"]["type"] == "boolean" and cols["c"]["nulls"] == 2
    assert cols["n"]["type"] == "object"


# --- on the stack ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(stack, unique) -> dict:
    return make_team(stack, unique)


def write_v1(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rows = ["id,city,score,active"]
    for i in range(N_IDS):
        city = "" if i % 10 == 0 else ("paris", "oslo", "lima")[i % 3]
        rows.append(f"{i},{city},{i % 7},{'true' if i % 2 else 'false'}")
    rows.insert(3, "oops,this,row,has,too,many")  # a broken row
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    (root / "events.jsonl").write_text(
        "".join(json.dumps({"t": i, "kind": "click" if i % 2 else "view", "value": i / 2}) + "\n" for i in range(100))
        + "{not json\n"
    )
    table = pa.table({"x": pa.array([1, 2, None, 4], pa.int64()), "label": ["a", "b", "b", None]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    (root / "table.parquet").write_bytes(buf.getvalue())
    (root / "readme.txt").write_text("not a table\n")


def write_v2(root: Path) -> None:
    """v1 with a column added (region) and a type changed (score: integer → float) in data.csv."""
    rows = ["id,city,score,active,region"]
    for i in range(N_IDS + 10):
        city = "" if i % 10 == 0 else ("paris", "oslo", "lima")[i % 3]
        rows.append(f"{i},{city},{i % 7}.5,{'true' if i % 2 else 'false'},eu")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    (root / "readme.txt").unlink()
    (root / "notes.md").write_text("new\n")


def by_path(items: list[dict]) -> dict[str, dict]:
    return {f["path"]: f for f in items}


def test_push_profiles_tabular_files_and_the_schema_endpoint_serves_them(stack, team, unique, tmp_path, monkeypatch):
    name = unique("prof")
    src = tmp_path / "src"
    write_v1(src)
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    v1 = ds.push(name, src, team["project"], "v1", client=client, progress=False)
    assert v1.version == 1 and v1.file_count == 4
    r = stack.api("GET", f"/projects/{team['project']}/datasets/{name}/versions/1/schema", team["tokens"]["viewer"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and body["digest"] == v1.digest and body["next_cursor"] is None
    files = by_path(body["items"])
    assert set(files) == {"data.csv", "events.jsonl", "table.parquet"}  # readme.txt is not tabular
    csv_ = files["data.csv"]
    assert csv_["format"] == "csv" and csv_["rows"] == N_IDS and csv_["bad_rows"] == 1
    assert csv_["bad_row_samples"] == [{"line": 4, "reason": "6 fields, the header has 4"}]
    cols = {c["name"]: c for c in csv_["columns"]}
    assert [c["name"] for c in csv_["columns"]] == ["id", "city", "score", "active"]
    assert cols["id"]["type"] == "integer" and cols["id"]["min"] == 0 and cols["id"]["max"] == N_IDS - 1
    assert cols["id"]["mean"] == pytest.approx((N_IDS - 1) / 2) and cols["id"]["nulls"] == 0
    assert abs(cols["id"]["distinct"] - N_IDS) <= 4 * profiling.DISTINCT_ERROR * N_IDS
    assert cols["city"] | {} == {
        "name": "city", "type": "string", "nulls": N_IDS // 10, "min": "lima", "max": "paris", "mean": None, "distinct": 3,
    }
    assert cols["score"]["type"] == "integer" and (cols["score"]["min"], cols["score"]["max"]) == (0, 6)
    assert cols["active"]["type"] == "boolean" and cols["active"]["mean"] == 0.5 and cols["active"]["distinct"] == 2
    jl = files["events.jsonl"]
    assert jl["rows"] == 100 and jl["bad_rows"] == 1
    jcols = {c["name"]: c for c in jl["columns"]}
    assert jcols["t"]["type"] == "integer" and jcols["value"]["type"] == "float" and jcols["value"]["max"] == 49.5
    assert jcols["kind"]["distinct"] == 2
    pqf = files["table.parquet"]
    pcols = {c["name"]: c for c in pqf["columns"]}
    assert pqf["format"] == "parquet" and pqf["rows"] == 4
    assert pcols["x"] | {} == {"name": "x", "type": "integer", "nulls": 1, "min": 1, "max": 4, "mean": 7 / 3, "distinct": 3}
    assert pcols["label"]["type"] == "string" and pcols["label"]["nulls"] == 1 and pcols["label"]["distinct"] == 2
    # one file, and the SDK
    r = stack.api("GET", f"/projects/{team['project']}/datasets/{name}/versions/1/schema", team["tokens"]["viewer"], params={"path": "table.parquet"})
    assert [f["path"] for f in r.json()["items"]] == ["table.parquet"]
    assert by_path(ds.get(name, 1, team["project"], client=client, record=False).schema()) == files

    # v2: a column added, a type changed, a file removed and one added
    write_v2(src)
    v2 = ds.push(name, src, team["project"], "v2", client=client, progress=False)
    assert v2.version == 2
    d = ds.diff(name, 1, 2, team["project"], client=client)
    assert d["from"]["version"] == 1 and d["to"]["version"] == 2
    f = d["files"]
    assert [x["path"] for x in f["added"]] == ["notes.md"] and [x["path"] for x in f["removed"]] == ["readme.txt"]
    assert [x["path"] for x in f["changed"]] == ["data.csv"]
    assert (f["added_count"], f["removed_count"], f["changed_count"], f["unchanged_count"]) == (1, 1, 1, 2)
    assert d["tables"] == [
        {
            "path": "data.csv",
            "format": {"from": "csv", "to": "csv"},
            "rows": {"from": N_IDS, "to": N_IDS + 10, "change": 10},
            "columns_added": [{"name": "region", "type": "string"}],
            "columns_removed": [],
            "type_changes": [{"name": "score", "from": "integer", "to": "float"}],
        }
    ]
    # the reverse diff, and "latest"
    back = ds.diff(name, "latest", 1, team["project"], client=client)
    assert back["tables"][0]["columns_removed"] == [{"name": "region", "type": "string"}]
    assert back["tables"][0]["type_changes"] == [{"name": "score", "from": "float", "to": "integer"}]

    # the CLI: human tables and --json
    monkeypatch.setenv("ANIMUS_API_URL", stack.api_url)
    monkeypatch.setenv("ANIMUS_TOKEN", team["tokens"]["viewer"])
    monkeypatch.setenv("ANIMUS_PROJECT", team["project"])
    runner = CliRunner()
    r = runner.invoke(cli, ["datasets", "schema", f"{name}:1"])
    assert r.exit_code == 0, r.output
    assert "data.csv (csv, 5000 rows, 1 broken rows skipped)" in r.output
    assert "NAME" in r.output and "DISTINCT" in r.output and "city" in r.output
    r = runner.invoke(cli, ["datasets", "schema", name, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["version"] == 2
    r = runner.invoke(cli, ["datasets", "diff", name, "1", "2"])
    assert r.exit_code == 0, r.output
    assert "1 added, 1 removed, 1 changed, 2 unchanged" in r.output
    assert "+ column region (string)" in r.output and "~ column score: integer → float" in r.output
    r = runner.invoke(cli, ["datasets", "diff", name, "1", "2", "--json"])
    assert json.loads(r.output)["tables"] == d["tables"]
    # errors
    base = f"/projects/{team['project']}/datasets/{name}"
    assert stack.api("GET", base + "/diff", team["tokens"]["viewer"], params={"from": "1"}).status_code == 400
    r = stack.api("GET", base + "/diff", team["tokens"]["viewer"], params={"from": "1", "to": "9"})
    assert r.status_code == 404 and r.json()["reason"] == "dataset_version_not_found"
    assert stack.api("GET", base + "/versions/1/schema", team["tokens"]["outsider"]).status_code == 404


def good_profile() -> dict:
    return {
        "format": "csv",
        "rows": 1,
        "columns": [{"name": "a", "type": "integer", "nulls": 0, "min": 1, "max": 1, "mean": 1.0, "distinct": 1}],
    }


def _with(**changes) -> dict:
    p = good_profile()
    p.update(changes)
    return p


def _col(**changes) -> dict:
    p = good_profile()
    p["columns"] = [{**p["columns"][0], **changes}]
    return p


FORGED = [
    ("not an object", ["columns"], 422, "invalid_profile"),
    ("missing columns", {"format": "csv", "rows": 1}, 422, "invalid_profile"),
    ("unknown format", _with(format="xlsx"), 422, "invalid_profile"),
    ("negative rows", _with(rows=-1), 422, "invalid_profile"),
    ("extra key", _with(owner="mallory"), 422, "invalid_profile"),
    ("string rows", _with(rows="1"), 422, "invalid_profile"),
    ("nulls above rows", _col(nulls=5), 422, "invalid_profile"),
    ("column without a type", {**good_profile(), "columns": [{"name": "a", "nulls": 0, "distinct": 1}]}, 422, "invalid_profile"),
    ("nested min", _col(min={"$gt": 1}), 422, "invalid_profile"),
    ("duplicate column", {**good_profile(), "columns": good_profile()["columns"] * 2}, 422, "invalid_profile"),
    ("too many columns", _with(columns=[{"name": f"c{i}", "type": "string", "nulls": 0, "distinct": 0} for i in range(1001)]), 422, "invalid_profile"),
    (
        "too large",
        _with(rows=0, columns=[{"name": f"{i:04d}" + "n" * 250, "type": "string", "nulls": 0, "distinct": 0} for i in range(1000)]),
        413,
        "profile_too_large",
    ),
]


@pytest.mark.parametrize("label,profile,status,reason", FORGED, ids=[f[0] for f in FORGED])
def test_forged_profiles_are_refused_and_nothing_is_committed(stack, team, unique, label, profile, status, reason):
    name = unique("forged")
    create(stack, team, name)
    base = f"/projects/{team['project']}/datasets/{name}"
    tok = team["tokens"]["contributor"]
    files = entries({"t.csv": b"a\n1\n"})
    files[0]["profile"] = profile
    r = stack.api("POST", base + "/uploads", tok, json={"files": files})
    assert r.status_code == status and r.json()["reason"] == reason, r.text
    # nor in a later batch of the manifest
    r = stack.api("POST", base + "/uploads", tok, json={"files": entries({"u.txt": b"u"})})
    assert r.status_code == 201
    upload = r.json()["id"]
    r = stack.api("POST", base + f"/uploads/{upload}/files", tok, json={"files": files})
    assert r.status_code == status and r.json()["reason"] == reason, r.text
    assert stack.api("GET", base + f"/uploads/{upload}", tok).json()["file_count"] == 1
    assert stack.api("GET", base, tok).json()["latest_version"] is None
    engine = dbmod.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM dataset_file_profile p JOIN dataset_version v ON v.id = p.version_id "
                    "JOIN dataset d ON d.id = v.dataset_id WHERE d.name = :n"
                ),
                {"n": name},
            ).scalar_one()
        assert n == 0
    finally:
        engine.dispose()


def test_a_valid_profile_by_hand_is_stored_and_profiles_are_immutable_in_the_database(stack, team, unique):
    name = unique("frozenprof")
    create(stack, team, name)
    base = f"/projects/{team['project']}/datasets/{name}"
    tok = team["tokens"]["contributor"]
    files = entries({"t.csv": b"a\n1\n"})
    files[0]["profile"] = good_profile()
    r = stack.api("POST", base + "/uploads", tok, json={"files": files})
    assert r.status_code == 201, r.text
    upload = r.json()["id"]
    for item in stack.api("GET", base + f"/uploads/{upload}/missing", tok).json()["items"]:
        import requests

        assert requests.put(item["url"], data=b"a\n1\n", headers=item["headers"], timeout=30).status_code < 300
    assert stack.api("POST", base + f"/uploads/{upload}/commit", tok).status_code == 201
    (got,) = stack.api("GET", base + "/versions/1/schema", tok).json()["items"]
    assert got["path"] == "t.csv" and got["rows"] == 1 and got["columns"][0]["name"] == "a"
    assert got["sha256"] == files[0]["sha256"] and got["bad_rows"] == 0
    engine = dbmod.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            vid = conn.execute(
                text("SELECT v.id FROM dataset_version v JOIN dataset d ON d.id = v.dataset_id WHERE d.name = :n"),
                {"n": name},
            ).scalar_one()
        for sql in (
            "UPDATE dataset_file_profile SET row_count = 99 WHERE version_id = :v",
            "DELETE FROM dataset_file_profile WHERE version_id = :v",
            "INSERT INTO dataset_file_profile (version_id, path, sha256, format, row_count, profile) "
            "VALUES (:v, 'x.csv', 'x', 'csv', 1, '{}')",
        ):
            with pytest.raises(Exception, match="immutable|only be added"), engine.begin() as conn:
                conn.execute(text(sql), {"v": vid})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT row_count FROM dataset_file_profile WHERE version_id = :v"), {"v": vid}).scalar_one() == 1
    finally:
        engine.dispose()


def test_push_without_pyarrow_skips_parquet_with_a_clear_message(stack, team, unique, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ds, "parquet_supported", lambda: False)
    monkeypatch.setattr(ds, "_warned", set())
    src = tmp_path / "p"
    write_v1(src)
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    v = ds.push(unique("nopa"), src, team["project"], client=client, progress=False)
    assert "pip install pyarrow" in capsys.readouterr().err
    assert {f["path"] for f in v.schema()} == {"data.csv", "events.jsonl"}
    v2 = ds.push(unique("noprof"), src, team["project"], client=client, progress=False, profile=False)
    assert v2.schema() == []
