"""Datasets on the real stack (both DB backends, local store through the object gateway) and on S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select, text
from stack import STACK_API_CONFIG, HubStack

import animus
import animus.datasets as ds
from animus.cli.main import main as cli
from animus.client import Client
from animus_hub import db as dbmod
from animus_hub.orm import OutboxEvent, RunInput
from animus_hub.services import datasets as svc


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(files: dict[str, bytes]) -> list[dict]:
    return [{"path": p, "sha256": sha(b), "size": len(b)} for p, b in files.items()]


class Pusher:
    """The push protocol by hand, so tests can stop it half way."""

    def __init__(self, stack: HubStack, token: str, project: str, name: str):
        self.stack, self.token, self.base = stack, token, f"/projects/{project}/datasets/{name}"
        self.puts = 0

    def api(self, method: str, path: str = "", **kw) -> requests.Response:
        return self.stack.api(method, self.base + path, self.token, **kw)

    def start(self, files: dict[str, bytes], message: str = "") -> str:
        r = self.api("POST", "/uploads", json={"message": message, "files": entries(files)})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def missing(self, upload: str) -> list[dict]:
        out, params = [], {}
        while True:
            r = self.api("GET", f"/uploads/{upload}/missing", params=params)
            assert r.status_code == 200, r.text
            out += r.json()["items"]
            if not r.json()["next_cursor"]:
                return out
            params["cursor"] = r.json()["next_cursor"]

    def upload(self, items: list[dict], files: dict[str, bytes]) -> None:
        by_sha = {sha(b): b for b in files.values()}
        for item in items:
            r = requests.put(item["url"], data=by_sha[item["sha256"]], headers=item["headers"], timeout=30)
            assert r.status_code < 300, r.text
            self.puts += 1

    def commit(self, upload: str) -> requests.Response:
        return self.api("POST", f"/uploads/{upload}/commit")

    def push(self, files: dict[str, bytes], message: str = "") -> dict:
        upload = self.start(files, message)
        self.upload(self.missing(upload), files)
        r = self.commit(upload)
        assert r.status_code == 201, r.text
        return r.json()


def make_team(stack: HubStack, unique) -> dict:
    project = unique("ds")
    names = {role: unique(role[:3]) for role in ("owner", "maintainer", "contributor", "viewer", "reader", "outsider")}
    group = unique("readers")
    tokens = {
        role: stack.user_token(name, groups=[group] if role == "reader" else []) for role, name in names.items()
    }
    assert stack.api("POST", "/projects", tokens["owner"], json={"slug": project}).status_code == 201
    for role in ("maintainer", "contributor", "viewer"):
        r = stack.api("POST", f"/projects/{project}/members", tokens["owner"], json={"kind": "user", "name": names[role], "role": role})
        assert r.status_code == 201, r.text
    r = stack.api("POST", f"/projects/{project}/members", tokens["owner"], json={"kind": "user", "name": names["reader"], "role": "viewer"})
    assert r.status_code == 201, r.text
    return {"project": project, "tokens": tokens, "names": names, "group": group}


@pytest.fixture(scope="module")
def team(stack, unique) -> dict:
    return make_team(stack, unique)


@pytest.fixture(scope="module")
def s3_stack(seaweedfs, tmp_path_factory, unique) -> Iterator[HubStack]:
    """A second stack whose animus-api keeps objects in SeaweedFS; presigned URLs live 5 s."""
    config = STACK_API_CONFIG + f"""
c.AnimusAPI.storage_class = "animus_hub.storage.s3.S3ObjectStore"
c.AnimusAPI.presign_expires = 5
c.S3ObjectStore.endpoint_url = {seaweedfs.endpoint_url!r}
c.S3ObjectStore.bucket = {unique("animus-ds")!r}
c.S3ObjectStore.region = {seaweedfs.region!r}
c.S3ObjectStore.access_key_id = {seaweedfs.access_key!r}
c.S3ObjectStore.secret_access_key = {seaweedfs.secret_key!r}
c.S3ObjectStore.create_bucket = True
"""
    s = HubStack(tmp_path_factory.mktemp("stack-s3"), api_config=config)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def s3_team(s3_stack, unique) -> dict:
    return make_team(s3_stack, unique)


def versions(stack, team, name, role="viewer") -> list[int]:
    r = stack.api("GET", f"/projects/{team['project']}/datasets/{name}/versions", team["tokens"][role])
    assert r.status_code == 200, r.text
    return [v["version"] for v in r.json()["items"]]


def create(stack, team, name, role="contributor", **body) -> dict:
    r = stack.api("POST", f"/projects/{team['project']}/datasets", team["tokens"][role], json={"name": name, **body})
    assert r.status_code == 201, r.text
    return r.json()


# --- the push protocol ----------------------------------------------------------------


def check_dedup_and_versions(stack, team, unique) -> None:
    name = unique("dedup")
    create(stack, team, name, description="churn extract", tags={"domain": "risk"})
    p = Pusher(stack, team["tokens"]["contributor"], team["project"], name)
    v1_files = {"a.csv": b"x,y\n1,2\n", "copy/a.csv": b"x,y\n1,2\n", "b.bin": os.urandom(2048)}
    v1 = p.push(v1_files, "first")
    assert p.puts == 2  # two distinct contents
    assert v1["version"] == 1 and v1["file_count"] == 3 and v1["total_size"] == sum(map(len, v1_files.values()))
    assert v1["digest"] == svc.manifest_digest((e["path"], e["sha256"], e["size"]) for e in entries(v1_files))
    v2_files = {**v1_files, "b.bin": os.urandom(2048)}
    v2 = p.push(v2_files, "one file changed")
    assert p.puts == 3  # one new blob
    assert v2["version"] == 2 and v2["digest"] != v1["digest"]
    assert versions(stack, team, name) == [1, 2]
    # reading it back: the manifest, and bytes straight from storage
    base = f"/projects/{team['project']}/datasets/{name}"
    viewer = team["tokens"]["viewer"]
    got = stack.api("GET", base, viewer).json()
    assert got["latest_version"] == 2 and got["tags"] == {"domain": "risk"}
    files = stack.api("GET", base + "/versions/1/files", viewer, params={"urls": "true"}).json()["items"]
    assert sorted(f["path"] for f in files) == ["a.csv", "b.bin", "copy/a.csv"]
    for f in files:
        assert requests.get(f["url"], timeout=30).content == v1_files[f["path"]]
    one = stack.api("GET", base + "/versions/latest/download", viewer, params={"path": "b.bin"}).json()
    assert one["version"] == 2 and requests.get(one["url"], timeout=30).content == v2_files["b.bin"]
    assert stack.api("GET", base + "/versions/1", viewer).json()["message"] == "first"
    # the event is in the outbox, written with the version
    engine = dbmod.make_engine(stack.db_url)
    with engine.connect() as conn:
        events = [
            e.payload for e in conn.execute(select(OutboxEvent).where(OutboxEvent.type == "DatasetVersionCreated"))
        ]
    assert {(e["dataset"], e["version"], e["digest"]) for e in events} >= {
        (name, 1, v1["digest"]),
        (name, 2, v2["digest"]),
    }
    engine.dispose()


def test_a_new_version_that_changes_one_file_uploads_one_file(stack, team, unique):
    check_dedup_and_versions(stack, team, unique)


def check_interrupted_push_resumes(stack, team, unique) -> None:
    name = unique("resume")
    create(stack, team, name)
    files = {f"part-{i:02d}.bin": os.urandom(1000 + i) for i in range(10)}
    killed = Pusher(stack, team["tokens"]["contributor"], team["project"], name)
    upload = killed.start(files)
    todo = killed.missing(upload)
    assert len(todo) == 10
    killed.upload(todo[:5], files)  # ... and the client dies here
    # nothing is visible: no version, no latest
    assert versions(stack, team, name) == []
    r = stack.api("GET", f"/projects/{team['project']}/datasets/{name}/versions/latest", team["tokens"]["viewer"])
    assert r.status_code == 404 and r.json()["reason"] == "dataset_version_not_found"
    early = killed.commit(upload)
    assert early.status_code == 409 and early.json()["reason"] == "blobs_missing"
    assert early.json()["details"]["missing_count"] == 5
    assert versions(stack, team, name) == []
    # push again from scratch: only the other half is asked for
    again = Pusher(stack, team["tokens"]["contributor"], team["project"], name)
    v = again.push(files)
    assert again.puts == 5 and v["version"] == 1
    assert versions(stack, team, name) == [1]


def test_an_interrupted_push_leaves_nothing_visible_and_resumes(stack, team, unique):
    check_interrupted_push_resumes(stack, team, unique)


def test_the_store_refuses_bytes_that_do_not_match_the_manifest(stack, team, unique):
    name = unique("digest")
    create(stack, team, name)
    p = Pusher(stack, team["tokens"]["contributor"], team["project"], name)
    files = {"a.txt": b"hello"}
    upload = p.start(files)
    (item,) = p.missing(upload)
    bad = requests.put(item["url"], data=b"HELLO", headers=item["headers"], timeout=30)
    assert bad.status_code >= 400
    r = p.commit(upload)
    assert r.status_code == 409 and r.json()["reason"] == "blobs_missing"
    assert versions(stack, team, name) == []


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"path": "../etc/passwd"}, "invalid_path"),
        ({"path": "a/../../b"}, "invalid_path"),
        ({"path": "/abs/path"}, "invalid_path"),
        ({"path": "a//b"}, "invalid_path"),
        ({"path": "nul\x00byte"}, "invalid_path"),
        ({"path": "lone\ud800surrogate"}, "invalid_path"),
        ({"path": "win\\dows"}, "invalid_path"),
        ({"path": "x" * 1025}, "invalid_path"),
        ({"sha256": "ABC"}, "invalid_digest"),
        ({"size": -1}, "validation_failed"),
        ({"size": True}, "validation_failed"),
    ],
)
def test_bad_manifest_entries_are_refused_and_nothing_is_created(stack, team, unique, bad, reason):
    name = unique("bad")
    create(stack, team, name)
    entry = {"path": "ok.txt", "sha256": sha(b"x"), "size": 1, **bad}
    r = stack.api("POST", f"/projects/{team['project']}/datasets/{name}/uploads", team["tokens"]["contributor"], json={"files": [entry]})
    assert r.status_code == 422 and r.json()["reason"] == reason, r.text
    assert versions(stack, team, name) == []


def test_duplicates_empty_datasets_and_malformed_bodies_are_refused(stack, team, unique):
    name = unique("dups")
    create(stack, team, name)
    tok = team["tokens"]["contributor"]
    base = f"/projects/{team['project']}/datasets/{name}"
    e = {"path": "a.txt", "sha256": sha(b"a"), "size": 1}
    r = stack.api("POST", base + "/uploads", tok, json={"files": [e, dict(e)]})
    assert r.status_code == 422 and r.json()["reason"] == "duplicate_path"
    upload = stack.api("POST", base + "/uploads", tok, json={"files": [e]}).json()["id"]
    r = stack.api("POST", f"{base}/uploads/{upload}/files", tok, json={"files": [e]})
    assert r.status_code == 422 and r.json()["reason"] == "duplicate_path"  # across batches too
    # the same content listed with two sizes is refused at commit, before any storage lookup
    r = stack.api("POST", f"{base}/uploads/{upload}/files", tok, json={"files": [{"path": "b", "sha256": sha(b"a"), "size": 2}]})
    assert r.status_code == 200
    r = stack.api("POST", f"{base}/uploads/{upload}/commit", tok)
    assert r.status_code == 422 and r.json()["reason"] == "size_mismatch"
    empty = stack.api("POST", base + "/uploads", tok, json={"message": "nothing"}).json()["id"]
    r = stack.api("POST", f"{base}/uploads/{empty}/commit", tok)
    assert r.status_code == 422 and r.json()["reason"] == "empty_dataset"
    r = stack.api("POST", base + "/uploads", tok, data=b'{"files": [{"path": "\xff"}]}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "invalid_json"
    r = stack.api("POST", base + "/uploads", tok, json={"files": []})
    assert r.status_code == 422
    r = stack.api("POST", f"/projects/{team['project']}/datasets", tok, json={"name": "no:colons"})
    assert r.status_code == 422
    r = stack.api("POST", f"/projects/{team['project']}/datasets", tok, json={"name": name})
    assert r.status_code == 409 and r.json()["reason"] == "dataset_exists"
    # an abandoned upload can be dropped; it never was visible
    assert stack.api("DELETE", f"{base}/uploads/{upload}", tok).status_code == 204
    assert stack.api("GET", f"{base}/uploads/{upload}", tok).status_code == 404
    assert versions(stack, team, name) == []


def test_a_100000_file_manifest_is_accepted_and_urls_come_in_pages_of_1000(stack, team, unique):
    name = unique("huge")
    create(stack, team, name)
    tok = team["tokens"]["contributor"]
    base = f"/projects/{team['project']}/datasets/{name}"
    manifest = [
        {"path": f"shard-{i // 1000:03d}/row-{i:06d}.json", "sha256": hashlib.sha256(b"%d" % i).hexdigest(), "size": i % 97}
        for i in range(100_000)
    ]
    upload = stack.api("POST", base + "/uploads", tok, json={"files": manifest[:2000]}).json()["id"]
    for i in range(2000, len(manifest), 2000):
        r = stack.api("POST", f"{base}/uploads/{upload}/files", tok, json={"files": manifest[i : i + 2000]})
        assert r.status_code == 200, r.text
    assert r.json()["file_count"] == 100_000
    pages, seen, params = 0, 0, {}
    while True:
        page = stack.api("GET", f"{base}/uploads/{upload}/missing", tok, params=params).json()
        assert len(page["items"]) <= 1000
        pages, seen = pages + 1, seen + len(page["items"])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert (pages, seen) == (100, 100_000)
    r = stack.api("POST", f"{base}/uploads/{upload}/commit", tok)
    assert r.status_code == 409 and r.json()["details"]["missing_count"] == 100_000
    assert versions(stack, team, name) == []


# --- immutability ------------------------------------------------------------------------


def test_committed_versions_are_immutable_in_the_api_and_in_the_database(stack, team, unique):
    name = unique("frozen")
    create(stack, team, name)
    v = Pusher(stack, team["tokens"]["contributor"], team["project"], name).push({"a.txt": b"a", "b.txt": b"b"})
    base = f"/projects/{team['project']}/datasets/{name}/versions/{v['version']}"
    for method in ("PATCH", "PUT", "POST"):
        assert stack.api(method, base, team["tokens"]["owner"], json={}).status_code == 405
    engine = dbmod.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            version_id = conn.execute(text("SELECT id FROM dataset_version WHERE digest = :d"), {"d": v["digest"]}).scalar_one()
        for sql in (
            "UPDATE dataset_file SET sha256 = 'x' WHERE version_id = :v",
            "DELETE FROM dataset_file WHERE version_id = :v",
            "INSERT INTO dataset_file (version_id, path, sha256, size, media_type) VALUES (:v, 'c.txt', 'c', 1, '')",
            "UPDATE dataset_version SET digest = 'sha256:forged' WHERE id = :v",
            "UPDATE dataset_version SET state = 'pending' WHERE id = :v",
            "DELETE FROM dataset_version WHERE id = :v",
        ):
            with pytest.raises(Exception, match="immutable|only be added|cannot be deleted"), engine.begin() as conn:
                conn.execute(text(sql), {"v": version_id})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM dataset_file WHERE version_id = :v"), {"v": version_id}).scalar_one() == 2
    finally:
        engine.dispose()
    got = stack.api("GET", base + "/files", team["tokens"]["viewer"]).json()["items"]
    assert sorted(f["path"] for f in got) == ["a.txt", "b.txt"]


# --- access --------------------------------------------------------------------------------


def check_restricted_dataset_is_invisible(stack, team, unique) -> None:
    name = unique("secret")
    create(stack, team, name)
    v = Pusher(stack, team["tokens"]["contributor"], team["project"], name).push({"pii.csv": b"id,ssn\n1,x\n"})
    p = team["project"]
    base = f"/projects/{p}/datasets/{name}"
    # only maintainers and up set the policy
    r = stack.api("PUT", base + "/access", team["tokens"]["contributor"], json={"reader_groups": [team["group"]]})
    assert r.status_code == 403
    r = stack.api("PUT", base + "/access", team["tokens"]["maintainer"], json={"reader_groups": [team["group"]]})
    assert r.status_code == 200 and r.json()["restricted"] is True and r.json()["reader_groups"] == [team["group"]]
    url_paths = [
        base,
        base + "/versions",
        base + f"/versions/{v['version']}",
        base + f"/versions/{v['version']}/files",
        base + "/versions/latest/download?path=pii.csv",
    ]
    for role in ("viewer", "contributor"):
        tok = team["tokens"][role]
        for path in url_paths:
            r = stack.api("GET", path, tok)
            assert r.status_code == 404 and r.json()["reason"] == "dataset_not_found", (role, path, r.text)
        listed = stack.api("GET", f"/projects/{p}/datasets", tok).json()["items"]
        assert name not in {d["name"] for d in listed}
        r = stack.api("POST", base + "/uploads", tok, json={"files": entries({"x": b"x"})})
        assert r.status_code in (403, 404)
    for role in ("reader", "maintainer", "owner"):
        tok = team["tokens"][role]
        for path in url_paths:
            assert stack.api("GET", path, tok).status_code == 200, (role, path)
        assert name in {d["name"] for d in stack.api("GET", f"/projects/{p}/datasets", tok).json()["items"]}
    dl = stack.api("GET", base + "/versions/latest/download", team["tokens"]["reader"], params={"path": "pii.csv"}).json()
    assert requests.get(dl["url"], timeout=30).content == b"id,ssn\n1,x\n"
    # hidden reads are audited as denials
    events = stack.api("GET", f"/projects/{p}/audit/events", team["tokens"]["owner"], params={"outcome": "denied", "limit": 500}).json()["items"]
    assert any(e["resource"].endswith(f"/datasets/{name}/versions") and e["actor"] == team["names"]["viewer"] for e in events)
    # lifting the restriction makes it visible again
    r = stack.api("PUT", base + "/access", team["tokens"]["maintainer"], json={"reader_groups": []})
    assert r.json()["restricted"] is False
    assert stack.api("GET", base, team["tokens"]["viewer"]).status_code == 200


def test_a_restricted_dataset_is_invisible_to_non_readers(stack, team, unique):
    check_restricted_dataset_is_invisible(stack, team, unique)


def test_viewers_cannot_push_and_outsiders_cannot_see_and_both_are_audited(stack, team, unique):
    name = unique("rbac")
    create(stack, team, name)
    p = team["project"]
    body = {"files": entries({"a": b"a"})}
    r = stack.api("POST", f"/projects/{p}/datasets/{name}/uploads", team["tokens"]["viewer"], json=body)
    assert r.status_code == 403 and r.json()["reason"] == "forbidden"
    r = stack.api("POST", f"/projects/{p}/datasets/{name}/uploads", team["tokens"]["outsider"], json=body)
    assert r.status_code == 404
    r = stack.api("GET", f"/projects/{p}/datasets", team["tokens"]["outsider"])
    assert r.status_code == 404
    events = stack.api("GET", f"/projects/{p}/audit/events", team["tokens"]["owner"], params={"outcome": "denied", "limit": 500}).json()["items"]
    denied = {(e["actor"], e["action"]) for e in events if f"/datasets/{name}/uploads" in e["resource"]}
    assert (team["names"]["viewer"], "datasets:write") in denied
    assert (team["names"]["outsider"], "datasets:write") in denied
    ok = stack.api("GET", f"/projects/{p}/audit/events", team["tokens"]["owner"], params={"action": "dataset.create", "limit": 500}).json()["items"]
    assert any(e["resource"].endswith(f"/datasets/{name}") for e in ok)


def test_deleting_a_version_is_owner_only_and_refused_while_a_run_uses_it(stack, team, unique):
    name = unique("del")
    create(stack, team, name)
    pusher = Pusher(stack, team["tokens"]["contributor"], team["project"], name)
    v1 = pusher.push({"a": b"1"})
    v2 = pusher.push({"a": b"2"})
    p = team["project"]
    base = f"/projects/{p}/datasets/{name}/versions"
    for role in ("contributor", "maintainer"):
        assert stack.api("DELETE", f"{base}/1", team["tokens"][role]).status_code == 403
    # a run records v1 as an input (as MLflow does: name + digest) → linked → cannot be deleted
    run = stack.api("POST", f"/projects/{p}/runs", team["tokens"]["contributor"], json={}).json()
    r = stack.api("POST", f"/projects/{p}/runs/{run['id']}/inputs", team["tokens"]["contributor"], json={"datasets": [{"name": name, "digest": v1["digest"], "source_type": "animus"}]})
    assert r.status_code == 200, r.text
    assert stack.api("GET", f"{base}/1", team["tokens"]["viewer"]).json()["consumed_by_runs"] == [run["id"]]
    r = stack.api("DELETE", f"{base}/1", team["tokens"]["owner"])
    assert r.status_code == 409 and r.json()["reason"] == "version_in_use" and run["id"] in r.json()["message"]
    assert stack.api("DELETE", f"{base}/2", team["tokens"]["owner"]).status_code == 204
    assert stack.api("GET", f"{base}/2", team["tokens"]["owner"]).status_code == 404
    assert versions(stack, team, name) == [1]
    # numbers are never reused
    assert pusher.push({"a": b"3"})["version"] == 3
    events = stack.api("GET", f"/projects/{p}/audit/events", team["tokens"]["owner"], params={"action": "dataset.version_delete"}).json()["items"]
    assert any(e["details"].get("digest") == v2["digest"] for e in events)


# --- SDK and CLI ------------------------------------------------------------------------------


def write_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "train.csv").write_text("a,b\n1,2\n3,4\n")
    (root / "sub" / "ünïcode name.txt").write_text("héllo\n")
    (root / "sub" / "deeper" / "blob.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "empty").write_bytes(b"")
    (root / "rows.jsonl").write_text('{"a": 1}\n{"a": 2}\n')


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def check_sdk_and_cli_round_trip(stack, team, unique, tmp_path, monkeypatch) -> None:
    name = unique("sdk")
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src)
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    v1 = ds.push(name, src, team["project"], "from the SDK", client=client, progress=False)
    assert v1.version == 1 and v1.file_count == 5
    assert v1.digest == ds.manifest_digest([(e["path"], e["sha256"], e["size"]) for e in v1.files()])
    # unchanged content: no new version
    assert ds.push(name, src, team["project"], client=client, progress=False).version == 1
    # the CLI pulls it into another directory: identical files
    monkeypatch.setenv("ANIMUS_API_URL", stack.api_url)
    monkeypatch.setenv("ANIMUS_TOKEN", team["tokens"]["viewer"])
    monkeypatch.setenv("ANIMUS_PROJECT", team["project"])
    runner = CliRunner()
    r = runner.invoke(cli, ["datasets", "pull", f"{name}:1", str(dst), "--quiet"])
    assert r.exit_code == 0, r.output
    assert tree(dst) == tree(src)
    # one file changes: the CLI pushes version 2, uploading one blob
    monkeypatch.setenv("ANIMUS_TOKEN", team["tokens"]["contributor"])
    (src / "train.csv").write_text("a,b\n5,6\n")
    puts = []
    original = ds._Uploader.put
    monkeypatch.setattr(ds._Uploader, "put", lambda self, item, path, bar: (puts.append(path), original(self, item, path, bar)))
    r = runner.invoke(cli, ["datasets", "push", name, str(src), "-m", "new rows", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 2 and [p.name for p in puts] == ["train.csv"]
    r = runner.invoke(cli, ["datasets", "ls", name, "--json"])
    assert [v["version"] for v in json.loads(r.output)] == [1, 2]
    r = runner.invoke(cli, ["datasets", "ls", "--json"])
    assert name in {d["name"] for d in json.loads(r.output)}
    r = runner.invoke(cli, ["datasets", "show", f"{name}:1", "--files", "--json"])
    assert len(json.loads(r.output)["files"]) == 5
    # pulling again over an older copy refreshes only what changed, and yields the new tree
    r = runner.invoke(cli, ["datasets", "pull", name, str(dst), "--quiet"])
    assert r.exit_code == 0 and tree(dst) == tree(src)
    # reading inside a run records the version as the run's input, linked for lineage
    with animus.start_run(project=team["project"], client=client) as run:
        v2 = ds.get(name, project=team["project"], client=client)
        assert v2.version == 2
        with v2.open("sub/ünïcode name.txt", "r") as f:
            assert f.read() == "héllo\n"
        df = v2.to_pandas("train.csv")
        assert list(df["a"]) == [5]
        assert len(v2.to_pandas("rows.jsonl")) == 2
    engine = dbmod.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            inputs = conn.execute(select(RunInput).where(RunInput.run_id == run.id)).all()
        assert [(i.name, i.digest, i.source_type) for i in inputs] == [(name, v2.digest, "animus")]
        assert inputs[0].dataset_version_id is not None
    finally:
        engine.dispose()


def test_sdk_and_cli_push_pull_round_trip(stack, team, unique, tmp_path, monkeypatch):
    check_sdk_and_cli_round_trip(stack, team, unique, tmp_path, monkeypatch)


def test_the_sdk_digest_is_the_server_digest():
    rows = [("b/ü.txt", "a" * 64, 3), ("a.txt", "b" * 64, 0), ("a b", "c" * 64, 10**12)]
    assert ds.manifest_digest(rows) == svc.manifest_digest(rows)


# --- S3 (SeaweedFS) ---------------------------------------------------------------------------


def test_s3_deduplication(s3_stack, s3_team, unique):
    check_dedup_and_versions(s3_stack, s3_team, unique)


def test_s3_interrupted_push_resumes(s3_stack, s3_team, unique):
    check_interrupted_push_resumes(s3_stack, s3_team, unique)


def test_s3_restricted_dataset_is_invisible(s3_stack, s3_team, unique):
    check_restricted_dataset_is_invisible(s3_stack, s3_team, unique)


def test_s3_sdk_and_cli_round_trip(s3_stack, s3_team, unique, tmp_path, monkeypatch):
    check_sdk_and_cli_round_trip(s3_stack, s3_team, unique, tmp_path, monkeypatch)


def test_s3_presigned_urls_expire(s3_stack, s3_team, unique):
    name = unique("expiry")
    create(s3_stack, s3_team, name)
    p = Pusher(s3_stack, s3_team["tokens"]["contributor"], s3_team["project"], name)
    p.push({"a.txt": b"short-lived"})
    upload = p.start({"b.txt": b"late"})
    (put,) = p.missing(upload)
    dl = s3_stack.api("GET", f"/projects/{s3_team['project']}/datasets/{name}/versions/1/download", s3_team["tokens"]["viewer"], params={"path": "a.txt"}).json()
    assert dl["expires_in"] == 5
    assert requests.get(dl["url"], timeout=30).content == b"short-lived"
    time.sleep(6.5)
    assert requests.get(dl["url"], timeout=30).status_code == 403
    assert requests.put(put["url"], data=b"late", headers=put["headers"], timeout=30).status_code == 403
    # asking again gives fresh URLs: the push resumes
    p.upload(p.missing(upload), {"b.txt": b"late"})
    assert p.commit(upload).status_code == 201
