"""Dataset versions from read-only external S3 sources, on SeaweedFS playing the data lake.

The lake is read through a SeaweedFS identity that may only read and list the lake
buckets; the tests change the lake with the admin identity behind the platform's
back, and prove that a changed or deleted object is detected and never read.
Two stacks: SQLite with the local object store, PostgreSQL with SeaweedFS as the
project store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from seaweed import LAKE_BUCKETS
from sqlalchemy import select, text
from stack import STACK_API_CONFIG, HubStack, running_stack
from test_datasets import make_team, versions

import animus.datasets as ds
from animus.cli.main import main as cli
from animus.client import Client
from animus_hub import db as dbmod
from animus_hub.hubconfig import source_environment
from animus_hub.orm import OutboxEvent
from animus_hub.services import datasets as svc
from animus_hub.services.external_sources import reference_identity
from animus_hub.storage.external import load_external_sources, parse_s3_uri

LAKE, VLAKE = LAKE_BUCKETS
WRONG_SECRET = "not-the-secret-" + secrets.token_hex(8)


def source_config(seaweedfs, other_project: str) -> dict:
    common = {"endpoint_url": seaweedfs.endpoint_url, "region": seaweedfs.region}
    reader = {"access_key_id_env": "ANIMUS_SOURCE_LAKE_KEY", "secret_access_key_env": "ANIMUS_SOURCE_LAKE_SECRET"}
    return {
        # the lake, read-only, under curated/ only
        "lake": {
            **common,
            **reader,
            "bucket": LAKE,
            "prefixes": ["curated/"],
            "projects": ["*"],
            "description": "the lake",
        },
        # a versioned bucket
        "vlake": {**common, **reader, "bucket": VLAKE, "projects": ["*"]},
        # no bucket restriction: the credentials decide (the reader may read only the lake buckets)
        "anywhere": {**common, **reader, "projects": ["*"]},
        "badcreds": {
            **common,
            "access_key_id_env": "ANIMUS_SOURCE_LAKE_KEY",
            "secret_access_key_env": "ANIMUS_SOURCE_WRONG_SECRET",
            "projects": ["*"],
        },
        "elsewhere": {**common, **reader, "bucket": LAKE, "projects": [other_project]},
    }


@pytest.fixture(scope="module", params=["sqlite-local", "postgresql-s3"])
def lake_stack(request, seaweedfs, tmp_path_factory) -> Iterator[HubStack]:
    admin = seaweedfs.client()
    for bucket in LAKE_BUCKETS:
        try:
            admin.create_bucket(Bucket=bucket)
        except admin.exceptions.ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    admin.put_bucket_versioning(Bucket=VLAKE, VersioningConfiguration={"Status": "Enabled"})
    config = (
        STACK_API_CONFIG
        + f"c.AnimusAPI.external_sources = {source_config(seaweedfs, 'nobody-' + uuid.uuid4().hex[:6])!r}\n"
    )
    if request.param == "postgresql-s3":
        config += f"""
c.AnimusAPI.storage_class = "animus_hub.storage.s3.S3ObjectStore"
c.S3ObjectStore.endpoint_url = {seaweedfs.endpoint_url!r}
c.S3ObjectStore.bucket = {"animus-" + uuid.uuid4().hex[:8]!r}
c.S3ObjectStore.region = {seaweedfs.region!r}
c.S3ObjectStore.access_key_id = {seaweedfs.access_key!r}
c.S3ObjectStore.secret_access_key = {seaweedfs.secret_key!r}
c.S3ObjectStore.create_bucket = True
"""
    env = {
        "ANIMUS_SOURCE_LAKE_KEY": seaweedfs.reader_access_key,
        "ANIMUS_SOURCE_LAKE_SECRET": seaweedfs.reader_secret_key,
        "ANIMUS_SOURCE_WRONG_SECRET": WRONG_SECRET,
    }
    root = tmp_path_factory.mktemp(f"stack-lake-{request.param}")
    with running_stack(root, request.param, api_config=config, env=env) as s:
        yield s


@pytest.fixture(scope="module")
def lake_team(lake_stack, unique) -> dict:
    return make_team(lake_stack, unique)


@pytest.fixture
def lake(seaweedfs):
    """The admin's view of the lake (changes the platform does not know about)."""
    return seaweedfs.client()


def put_tree(lake, bucket: str, prefix: str, files: dict[str, bytes]) -> dict[str, dict]:
    out = {}
    for path, data in files.items():
        r = lake.put_object(Bucket=bucket, Key=prefix + path, Body=data)
        out[path] = {"etag": r["ETag"].strip('"'), "version_id": r.get("VersionId")}
    return out


def new_dataset(stack, team, unique, role="contributor") -> str:
    name = unique("ext")
    r = stack.api("POST", f"/projects/{team['project']}/datasets", team["tokens"][role], json={"name": name})
    assert r.status_code == 201, r.text
    return name


def register(stack, team, name, uri, source="lake", mode="reference", role="contributor") -> requests.Response:
    body = {"source": source, "uri": uri, "mode": mode, "message": f"from {uri}"}
    return stack.api("POST", f"/projects/{team['project']}/datasets/{name}/imports", team["tokens"][role], json=body)


def files_with_urls(stack, team, name, version, role="viewer") -> dict[str, dict]:
    r = stack.api(
        "GET",
        f"/projects/{team['project']}/datasets/{name}/versions/{version}/files",
        team["tokens"][role],
        params={"urls": "true"},
    )
    assert r.status_code == 200, r.text
    return {f["path"]: f for f in r.json()["items"]}


def client_for(stack, team, role="contributor") -> Client:
    return Client(url=stack.api_url, token=team["tokens"][role])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def verify(stack, team, name, version) -> dict:
    r = stack.api(
        "GET", f"/projects/{team['project']}/datasets/{name}/versions/{version}/verify", team["tokens"]["viewer"]
    )
    assert r.status_code == 200, r.text
    return r.json()


def dataset_rows(stack, team, name) -> int:
    """dataset_version rows of any state (pending included) for the dataset."""
    engine = dbmod.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM dataset_version v JOIN dataset d ON d.id = v.dataset_id "
                    "JOIN project p ON p.id = d.project_id WHERE d.name = :n AND p.slug = :p"
                ),
                {"n": name, "p": team["project"]},
            ).scalar_one()
    finally:
        engine.dispose()


# --- by reference ----------------------------------------------------------------------------


def test_a_reference_pins_etags_copies_nothing_and_reads_through_the_source(
    lake_stack, lake_team, unique, lake, tmp_path
):
    prefix = f"curated/{unique('churn')}/"
    files = {
        "train.csv": b"a,b\n1,2\n3,4\n",
        "sub/blob.bin": secrets.token_bytes(5000),
        "notes/ü.txt": "héllo".encode(),
    }
    captured = put_tree(lake, LAKE, prefix, files)
    lake.put_object(Bucket=LAKE, Key=prefix + "empty-folder/", Body=b"")  # a console's folder marker: skipped
    name = new_dataset(lake_stack, lake_team, unique)
    r = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}")
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["version"] == 1 and v["source_type"] == "external_reference"
    assert v["source"] == {"name": "lake", "uri": f"s3://{LAKE}/{prefix}"}
    assert v["file_count"] == 3 and v["total_size"] == sum(map(len, files.values()))
    # the digest: [path, identity, size] lines, identity naming bucket, key, ETag and version id
    assert v["digest"] == svc.manifest_digest(
        (p, reference_identity(LAKE, prefix + p, captured[p]["etag"], None), len(b)) for p, b in files.items()
    )
    listed = files_with_urls(lake_stack, lake_team, name, 1)
    assert set(listed) == set(files)
    for path, f in listed.items():
        assert f["sha256"] is None and f["size"] == len(files[path])
        assert f["source"] == {"key": prefix + path, "etag": captured[path]["etag"], "version_id": None}
        assert requests.get(f["url"], headers=f["headers"], timeout=30).content == files[path]
        # the ETag check is signed into the URL: without it the source refuses
        assert requests.get(f["url"], timeout=30).status_code == 403
    # nothing was copied into the project: no blob for these contents in the project store
    r = lake_stack.api(
        "GET", f"/projects/{lake_team['project']}/datasets/{name}/versions/1/verify", lake_team["tokens"]["viewer"]
    )
    assert r.json()["ok"] == 3 and r.json()["changed"] == [] and r.json()["missing"] == []
    # the SDK reads it like any version: files(), open(), download(), to_pandas()
    client = client_for(lake_stack, lake_team, "viewer")
    got = ds.get(name, 1, lake_team["project"], client=client, record=False)
    assert got.source_type == "external_reference"
    assert {f["path"] for f in got.files()} == set(files)
    with got.open("notes/ü.txt", "r") as fh:
        assert fh.read() == "héllo"
    assert list(got.to_pandas("train.csv")["a"]) == [1, 3]
    got.download(tmp_path / "copy", progress=False)
    assert tree(tmp_path / "copy") == files
    # registering the unchanged prefix again: a new number, the same digest (deterministic)
    again = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix.rstrip('/')}")
    assert again.status_code == 201 and again.json()["version"] == 2 and again.json()["digest"] == v["digest"]
    # audited, and the event is in the outbox
    events = lake_stack.api(
        "GET",
        f"/projects/{lake_team['project']}/audit/events",
        lake_team["tokens"]["owner"],
        params={"action": "dataset.version_create", "limit": 500},
    ).json()["items"]
    mine = [e for e in events if e["resource"].endswith(f"/datasets/{name}/versions/1")]
    assert mine and mine[0]["details"]["source"] == "lake" and mine[0]["details"]["mode"] == "reference"
    engine = dbmod.make_engine(lake_stack.db_url)
    try:
        with engine.connect() as conn:
            payloads = [
                e.payload for e in conn.execute(select(OutboxEvent).where(OutboxEvent.type == "DatasetVersionCreated"))
            ]
    finally:
        engine.dispose()
    assert any(
        p["dataset"] == name and p["source_type"] == "external_reference" and p["digest"] == v["digest"]
        for p in payloads
    )


def test_an_overwritten_or_deleted_source_object_is_detected_and_never_read(
    lake_stack, lake_team, unique, lake, tmp_path, monkeypatch
):
    prefix = f"curated/{unique('drift')}/"
    files = {"a.csv": b"x\n1\n", "b.csv": b"x\n2\n", "c.csv": b"x\n3\n"}
    put_tree(lake, LAKE, prefix, files)
    name = new_dataset(lake_stack, lake_team, unique)
    assert register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}").status_code == 201
    before = files_with_urls(lake_stack, lake_team, name, 1)
    # behind the platform's back: a.csv is overwritten, b.csv deleted
    lake.put_object(Bucket=LAKE, Key=prefix + "a.csv", Body=b"x\n999\n")
    lake.delete_object(Bucket=LAKE, Key=prefix + "b.csv")
    # a URL handed out before the change: the source answers 412, not the new bytes
    r = requests.get(before["a.csv"]["url"], headers=before["a.csv"]["headers"], timeout=30)
    assert r.status_code == 412 and b"999" not in r.content
    # asking for one file now: a clear 409 from the API
    base = f"/projects/{lake_team['project']}/datasets/{name}/versions/1"
    r = lake_stack.api("GET", base + "/download", lake_team["tokens"]["viewer"], params={"path": "a.csv"})
    assert r.status_code == 409 and r.json()["reason"] == "source_changed", r.text
    assert "changed in the source since version 1" in r.json()["message"]
    r = lake_stack.api("GET", base + "/download", lake_team["tokens"]["viewer"], params={"path": "b.csv"})
    assert r.status_code == 409 and r.json()["reason"] == "source_object_missing"
    assert (
        lake_stack.api("GET", base + "/download", lake_team["tokens"]["viewer"], params={"path": "c.csv"}).status_code
        == 200
    )
    # verify names both
    report = verify(lake_stack, lake_team, name, 1)
    assert (report["checked"], report["ok"]) == (3, 1)
    assert [c["path"] for c in report["changed"]] == ["a.csv"] and [m["path"] for m in report["missing"]] == ["b.csv"]
    assert report["changed"][0]["current"]["etag"] != report["changed"][0]["captured"]["etag"]
    # the SDK refuses to read them, and says why
    v = ds.get(name, 1, lake_team["project"], client=client_for(lake_stack, lake_team, "viewer"), record=False)
    with pytest.raises(ds.SourceChangedError, match="changed in their external source"):
        v.download(tmp_path / "pull", progress=False)
    assert not (tmp_path / "pull" / "a.csv").exists()
    assert (tmp_path / "pull" / "c.csv").read_bytes() == files["c.csv"]
    # the CLI: verify exits 1 and lists them
    monkeypatch.setenv("ANIMUS_API_URL", lake_stack.api_url)
    monkeypatch.setenv("ANIMUS_TOKEN", lake_team["tokens"]["viewer"])
    monkeypatch.setenv("ANIMUS_PROJECT", lake_team["project"])
    r = CliRunner().invoke(cli, ["datasets", "verify", f"{name}:1"])
    assert r.exit_code == 1, r.output
    assert "changed  a.csv" in r.output and "missing  b.csv" in r.output and "1 ok" in r.output
    r = CliRunner().invoke(cli, ["datasets", "pull", f"{name}:1", str(tmp_path / "cli-pull"), "--quiet"])
    assert r.exit_code != 0 and "changed in their external source" in r.output
    # a new registration captures the lake as it is now
    r = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}")
    assert r.status_code == 201 and r.json()["file_count"] == 2
    assert verify(lake_stack, lake_team, name, 2)["ok"] == 2


def test_a_versioned_bucket_pins_version_ids(lake_stack, lake_team, unique, lake):
    prefix = f"{unique('v')}/"
    captured = put_tree(lake, VLAKE, prefix, {"a.txt": b"one", "b.txt": b"bee"})
    assert captured["a.txt"]["version_id"]
    name = new_dataset(lake_stack, lake_team, unique)
    r = register(lake_stack, lake_team, name, f"s3://{VLAKE}/{prefix}", source="vlake")
    assert r.status_code == 201, r.text
    listed = files_with_urls(lake_stack, lake_team, name, 1)
    assert listed["a.txt"]["source"]["version_id"] == captured["a.txt"]["version_id"]
    # an overwrite makes a new object version; the pinned one is still exactly what was captured
    lake.put_object(Bucket=VLAKE, Key=prefix + "a.txt", Body=b"two")
    again = files_with_urls(lake_stack, lake_team, name, 1)["a.txt"]
    assert requests.get(again["url"], headers=again["headers"], timeout=30).content == b"one"
    assert verify(lake_stack, lake_team, name, 1)["ok"] == 2
    # the pinned version itself deleted for good: missing
    lake.delete_object(Bucket=VLAKE, Key=prefix + "b.txt", VersionId=captured["b.txt"]["version_id"])
    report = verify(lake_stack, lake_team, name, 1)
    assert [m["path"] for m in report["missing"]] == ["b.txt"] and report["ok"] == 1
    r = lake_stack.api(
        "GET",
        f"/projects/{lake_team['project']}/datasets/{name}/versions/1/download",
        lake_team["tokens"]["viewer"],
        params={"path": "b.txt"},
    )
    assert r.status_code == 409 and r.json()["reason"] == "source_object_missing"


# --- snapshots -----------------------------------------------------------------------------


def test_a_snapshot_copies_the_bytes_and_is_immune_to_later_changes(
    lake_stack, lake_team, unique, lake, tmp_path, monkeypatch
):
    prefix = f"curated/{unique('snap')}/"
    files = {"rows.csv": b"a,b\n1,x\n2,y\n", "deep/er/blob.bin": secrets.token_bytes(70_000), "dup.bin": b"same"}
    files["dup2.bin"] = b"same"
    captured = put_tree(lake, LAKE, prefix, files)
    name = unique("snap")  # created by the import
    monkeypatch.setenv("ANIMUS_API_URL", lake_stack.api_url)
    monkeypatch.setenv("ANIMUS_TOKEN", lake_team["tokens"]["contributor"])
    monkeypatch.setenv("ANIMUS_PROJECT", lake_team["project"])
    r = CliRunner().invoke(
        cli,
        [
            "datasets",
            "import",
            name,
            f"s3://{LAKE}/{prefix}",
            "--source",
            "lake",
            "--snapshot",
            "--quiet",
            "--json",
            "--workdir",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["version"] == 1 and v["source_type"] == "external_snapshot" and v["file_count"] == 4
    assert list(tmp_path.iterdir()) == []  # the working copies are gone
    # an ordinary content-addressed version: its digest is the digest of the bytes
    assert v["digest"] == svc.manifest_digest((p, hashlib.sha256(b).hexdigest(), len(b)) for p, b in files.items())
    listed = files_with_urls(lake_stack, lake_team, name, 1)
    assert listed["rows.csv"]["source"]["etag"] == captured["rows.csv"]["etag"]
    assert listed["rows.csv"]["sha256"] == hashlib.sha256(files["rows.csv"]).hexdigest()
    # tabular files were profiled on the way
    schema = lake_stack.api(
        "GET", f"/projects/{lake_team['project']}/datasets/{name}/versions/1/schema", lake_team["tokens"]["viewer"]
    ).json()
    assert [s["path"] for s in schema["items"]] == ["rows.csv"] and schema["items"][0]["rows"] == 2
    # the lake changes and loses files: the snapshot does not care
    lake.put_object(Bucket=LAKE, Key=prefix + "rows.csv", Body=b"a,b\n9,z\n")
    lake.delete_object(Bucket=LAKE, Key=prefix + "deep/er/blob.bin")
    report = verify(lake_stack, lake_team, name, 1)
    assert report["ok"] == 4 and not report["changed"] and not report["missing"]
    got = ds.get(name, 1, lake_team["project"], client=client_for(lake_stack, lake_team, "viewer"), record=False)
    got.download(tmp_path / "pull", progress=False)
    assert tree(tmp_path / "pull") == files
    # a new snapshot captures the lake as it is now
    again = ds.import_external(
        name,
        f"s3://{LAKE}/{prefix}",
        "lake",
        lake_team["project"],
        snapshot=True,
        client=client_for(lake_stack, lake_team),
        progress=False,
    )
    assert again.version == 2 and again.digest != v["digest"]  # rows.csv changed, blob.bin is gone
    assert again.file_count == 3


def test_a_snapshot_cannot_claim_other_objects_or_commit_before_every_copy(lake_stack, lake_team, unique, lake):
    prefix = f"curated/{unique('claim')}/"
    put_tree(lake, LAKE, prefix, {"a.txt": b"aaa", "b.txt": b"bbb"})
    name = new_dataset(lake_stack, lake_team, unique)
    r = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}", mode="snapshot")
    assert r.status_code == 201 and r.json()["state"] == "pending", r.text
    upload = r.json()["id"]
    base = f"/projects/{lake_team['project']}/datasets/{name}/uploads/{upload}"
    tok = lake_team["tokens"]["contributor"]
    page = lake_stack.api("GET", base + "/sources", tok).json()
    assert page["remaining"] == 2 and sorted(i["path"] for i in page["items"]) == ["a.txt", "b.txt"]
    sha = hashlib.sha256(b"aaa").hexdigest()
    for bad, reason in (
        ({"path": "c.txt", "sha256": sha, "size": 3}, "not_in_snapshot"),
        ({"path": "a.txt", "sha256": sha, "size": 4}, "size_mismatch"),
    ):
        r = lake_stack.api("POST", base + "/files", tok, json={"files": [bad]})
        assert r.status_code == 422 and r.json()["reason"] == reason, r.text
    r = lake_stack.api("POST", base + "/files", tok, json={"files": [{"path": "a.txt", "sha256": sha, "size": 3}]})
    assert r.status_code == 200, r.text
    r = lake_stack.api("POST", base + "/commit", tok)
    assert (
        r.status_code == 409
        and r.json()["reason"] == "snapshot_incomplete"
        and r.json()["details"]["paths"] == ["b.txt"]
    )
    assert versions(lake_stack, lake_team, name) == []
    # another user's snapshot is not yours to complete
    r = lake_stack.api("GET", base + "/sources", lake_team["tokens"]["viewer"])
    assert r.status_code == 403


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, uri, status, reason",
    [
        ("nope", "s3://external-lake/curated/x/", 422, "unknown_source"),
        ("elsewhere", "s3://external-lake/curated/x/", 422, "unknown_source"),  # not configured for this project
        ("lake", "s3://external-lake-v/curated/x/", 422, "source_uri_not_allowed"),  # another bucket
        ("lake", "s3://external-lake/raw/x/", 422, "source_uri_not_allowed"),  # outside the prefix allow-list
        ("lake", "s3://external-lake/curated-not/x/", 422, "source_uri_not_allowed"),
        ("lake", "https://external-lake/curated/x/", 422, "invalid_source_uri"),
        ("lake", "s3://external-lake/curated/../raw/", 422, "invalid_source_uri"),
        ("lake", "s3://Bad_Bucket/curated/", 422, "invalid_source_uri"),
        ("badcreds", "s3://external-lake/curated/{p}/", 422, "source_unreadable"),  # wrong secret
        ("anywhere", "s3://no-such-bucket-here/curated/", 422, "source_unreadable"),  # missing bucket
        ("anywhere", "s3://{store}/x/", 422, "source_unreadable"),  # the reader may not list it
        ("lake", "s3://external-lake/curated/{p}-empty/", 422, "empty_source"),
        ("lake", "s3://external-lake/curated/{p}-tricky/", 422, "invalid_path"),
    ],
)
def test_bad_sources_are_refused_clearly_and_nothing_is_committed(
    lake_stack, lake_team, unique, lake, source, uri, status, reason
):
    p = unique("bad")
    lake.put_object(Bucket=LAKE, Key=f"curated/{p}/ok.txt", Body=b"ok")
    # a control character (SeaweedFS keeps it, as S3 does): not a valid dataset path
    lake.put_object(Bucket=LAKE, Key=f"curated/{p}-tricky/tab\there.txt", Body=b"x")
    lake.create_bucket(Bucket=f"private-{p}")
    lake.put_object(Bucket=f"private-{p}", Key="x/secret.txt", Body=b"s")
    name = new_dataset(lake_stack, lake_team, unique)
    for mode in ("reference", "snapshot"):
        r = register(lake_stack, lake_team, name, uri.format(p=p, store=f"private-{p}"), source=source, mode=mode)
        assert r.status_code == status and r.json()["reason"] == reason, r.text
        assert set(r.json()) == {"status", "reason", "message", "details"} and r.json()["message"]
    assert versions(lake_stack, lake_team, name) == []
    assert dataset_rows(lake_stack, lake_team, name) == 0
    # the refusal is audited as a failed mutation; no secret in it
    events = lake_stack.api(
        "GET",
        f"/projects/{lake_team['project']}/audit/events",
        lake_team["tokens"]["owner"],
        params={"outcome": "failure", "limit": 500},
    ).json()["items"]
    assert any(e["resource"].endswith(f"/datasets/{name}/imports") for e in events)


def test_viewers_cannot_import_and_restricted_datasets_hide_source_urls(lake_stack, lake_team, unique, lake):
    prefix = f"curated/{unique('pii')}/"
    put_tree(lake, LAKE, prefix, {"pii.csv": b"id\n1\n"})
    name = new_dataset(lake_stack, lake_team, unique)
    r = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}", role="viewer")
    assert r.status_code == 403 and r.json()["reason"] == "forbidden"
    assert register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}").status_code == 201
    base = f"/projects/{lake_team['project']}/datasets/{name}"
    r = lake_stack.api(
        "PUT", base + "/access", lake_team["tokens"]["maintainer"], json={"reader_groups": [lake_team["group"]]}
    )
    assert r.status_code == 200
    paths = [
        base + "/versions/1/files?urls=true",
        base + "/versions/1/download?path=pii.csv",
        base + "/versions/1/verify",
    ]
    for path in paths:
        r = lake_stack.api("GET", path, lake_team["tokens"]["viewer"])
        assert r.status_code == 404 and r.json()["reason"] == "dataset_not_found", (path, r.text)
        assert lake_stack.api("GET", path, lake_team["tokens"]["reader"]).status_code == 200, path
    r = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}", role="contributor")
    assert r.status_code == 404  # a contributor outside the reader groups does not see it either


def test_credentials_never_leave_the_service(lake_stack, lake_team, seaweedfs, unique, lake):
    r = lake_stack.api("GET", f"/projects/{lake_team['project']}/external-sources", lake_team["tokens"]["viewer"])
    assert r.status_code == 200
    listed = {s["name"]: s for s in r.json()["items"]}
    assert set(listed) == {"lake", "vlake", "anywhere", "badcreds"}  # not "elsewhere": another project's
    assert listed["lake"] == {"name": "lake", "description": "the lake", "bucket": LAKE, "prefixes": ["curated/"]}
    prefix = f"curated/{unique('sec')}/"
    put_tree(lake, LAKE, prefix, {"a": b"a"})
    name = new_dataset(lake_stack, lake_team, unique)
    register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}")
    register(lake_stack, lake_team, name, f"s3://{LAKE}/curated/x/", source="badcreds")
    seen = json.dumps(r.json()) + json.dumps(files_with_urls(lake_stack, lake_team, name, 1))
    seen += json.dumps(
        lake_stack.api(
            "GET", f"/projects/{lake_team['project']}/audit/events", lake_team["tokens"]["owner"], params={"limit": 500}
        ).json()
    )
    seen += lake_stack.log_path.read_text(errors="replace")
    for secret in (seaweedfs.reader_secret_key, WRONG_SECRET):
        assert secret not in seen


# --- configuration and the database ------------------------------------------------------------


def test_configuration_refuses_literal_credentials_and_unset_variables():
    ok = {"endpoint_url": "http://127.0.0.1:1", "projects": ["*"]}
    with pytest.raises(ValueError, match="never written in configuration"):
        load_external_sources({"lake": {**ok, "secret_access_key": "x"}})
    with pytest.raises(ValueError, match="LAKE_S .*is not set"):
        load_external_sources(
            {"lake": {**ok, "access_key_id_env": "LAKE_K", "secret_access_key_env": "LAKE_S"}}, {"LAKE_K": "k"}
        )
    with pytest.raises(ValueError, match="'projects' must list"):
        load_external_sources({"lake": {"endpoint_url": "http://127.0.0.1:1"}})
    with pytest.raises(ValueError, match="unknown keys"):
        load_external_sources({"lake": {**ok, "bukket": "x"}})
    with pytest.raises(ValueError, match="not a valid bucket"):
        load_external_sources({"lake": {**ok, "bucket": "UPPER"}})
    sources = load_external_sources(
        {"lake": {**ok, "access_key_id_env": "K", "secret_access_key_env": "S", "prefixes": ["a/b"]}},
        {"K": "k", "S": "s3cr3t"},
    )
    assert "s3cr3t" not in repr(sources) and "s3cr3t" not in json.dumps(sources["lake"].describe())
    assert sources["lake"].prefixes == ["a/b/"]
    # the embedded hub passes only ANIMUS_SOURCE_* variables on to animus-api
    assert source_environment({"ANIMUS_SOURCE_K": "1", "AWS_SECRET_ACCESS_KEY": "2", "PATH": "/bin"}) == {
        "ANIMUS_SOURCE_K": "1"
    }
    assert parse_s3_uri("s3://bucket") == ("bucket", "") and parse_s3_uri("s3://bucket/a/b") == ("bucket", "a/b/")


def test_the_source_of_a_committed_version_is_immutable_in_the_database(lake_stack, lake_team, unique, lake):
    prefix = f"curated/{unique('frozen')}/"
    put_tree(lake, LAKE, prefix, {"a": b"a"})
    name = new_dataset(lake_stack, lake_team, unique)
    v = register(lake_stack, lake_team, name, f"s3://{LAKE}/{prefix}").json()
    engine = dbmod.make_engine(lake_stack.db_url)
    try:
        with engine.connect() as conn:
            vid = conn.execute(
                text("SELECT id FROM dataset_version WHERE digest = :d"), {"d": v["digest"]}
            ).scalar_one()
        for sql in (
            "UPDATE dataset_version SET source_uri = 's3://elsewhere/' WHERE id = :v",
            "UPDATE dataset_version SET source_name = 'other' WHERE id = :v",
            "UPDATE dataset_file SET source_etag = 'forged' WHERE version_id = :v",
            "UPDATE dataset_file SET sha256 = 'x' WHERE version_id = :v",
        ):
            with pytest.raises(Exception, match="immutable"), engine.begin() as conn:
                conn.execute(text(sql), {"v": vid})
    finally:
        engine.dispose()
