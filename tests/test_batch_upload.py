"""Batch uploads to the local store: many small blobs in one signed request to the object
gateway (a real gateway process), and the push protocol offering them (a real stack)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from test_storage import GatewayProcess

import animus.datasets as ds
from animus.client import Client
from animus_hub.storage import LocalObjectStore
from animus_hub.storage.local import MAX_BATCH_OBJECTS


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("batch-gateway")).start()
    try:
        yield g
    finally:
        assert g.stop() == 0, g.log_path.read_text()[-3000:]


@pytest.fixture
def store(gateway) -> LocalObjectStore:
    return gateway.store()


def blobs(prefix: str, contents: list[bytes]) -> list[tuple[str, int, str, bytes]]:
    return [(f"{prefix}/{sha(c)}", len(c), sha(c), c) for c in contents]


def presign(store: LocalObjectStore, objs: list[tuple[str, int, str, bytes]], expires: int = 60) -> dict:
    return store.presign_batch([(k, n, s) for k, n, s, _ in objs], expires)


def body_of(signed: dict, contents: list[bytes]) -> bytes:
    return signed["body_prefix"].encode() + b"".join(contents)


def stored(store: LocalObjectStore, key: str) -> bytes | None:
    path = store.object_path(key)
    return path.read_bytes() if path.is_file() else None


def temp_files(store: LocalObjectStore) -> list[Path]:
    return list(store.tmp_dir.iterdir())


def wait_for_no_temp_files(store: LocalObjectStore) -> None:
    deadline = time.monotonic() + 20
    while temp_files(store) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert temp_files(store) == []


def assert_error(r: requests.Response, status: int, reason: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"status", "reason", "message", "details"} and body["reason"] == reason, body
    return body


def unique_prefix() -> str:
    return f"batch-{os.urandom(5).hex()}"


def test_a_batch_stores_every_blob_verified_and_durable(store):
    contents = [os.urandom(100_000), b"", b"small", os.urandom(3 * 1024 * 1024 + 7)]
    objs = blobs(unique_prefix(), contents)
    signed = presign(store, objs)
    assert signed["content_length"] == len(body_of(signed, contents))
    r = requests.post(signed["url"], data=body_of(signed, contents), timeout=60)
    assert r.status_code == 200, r.text
    assert [o["key"] for o in r.json()["stored"]] == [k for k, *_ in objs]
    assert r.json()["rejected"] == []
    for key, _, _, data in objs:
        assert stored(store, key) == data
    assert temp_files(store) == []


def test_a_blob_with_the_wrong_digest_in_the_middle_is_not_stored_and_named(store):
    contents = [b"first blob", b"middle blob", b"last blob"]
    objs = blobs(unique_prefix(), contents)
    signed = presign(store, objs)
    sent = [contents[0], b"MIDDLE BLOB", contents[2]]  # same size, other bytes
    r = requests.post(signed["url"], data=body_of(signed, sent), timeout=60)
    body = assert_error(r, 400, "sha256_mismatch")
    (rejected,) = body["details"]["rejected"]
    assert rejected["key"] == objs[1][0] and rejected["expected"] == objs[1][2]
    assert rejected["actual"] == sha(b"MIDDLE BLOB")
    assert body["details"]["stored"] == [objs[0][0], objs[2][0]]
    assert stored(store, objs[0][0]) == contents[0] and stored(store, objs[2][0]) == contents[2]
    assert stored(store, objs[1][0]) is None
    assert temp_files(store) == []


def test_a_truncated_body_stores_nothing(store, gateway):
    contents = [os.urandom(50_000) for _ in range(4)]
    objs = blobs(unique_prefix(), contents)
    signed = presign(store, objs)
    body = body_of(signed, contents)
    url = urlsplit(signed["url"])
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        head = f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        # the first two blobs complete, the third half sent: then the client dies
        s.sendall(head.encode() + body[: len(signed["body_prefix"]) + 125_000])
        time.sleep(0.5)
    wait_for_no_temp_files(store)
    for key, *_ in objs:
        assert stored(store, key) is None
    # a body shorter than the signed length is refused before anything is read
    r = requests.post(signed["url"], data=body[:-1], timeout=60)
    assert_error(r, 403, "content_length_mismatch")
    assert all(stored(store, key) is None for key, *_ in objs)


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_tampered_list_or_signature_is_refused_and_nothing_stored(store):
    contents = [b"alpha", b"beta", b"gamma"]
    objs = blobs(unique_prefix(), contents)
    signed = presign(store, objs)
    body = body_of(signed, contents)
    # another object list of the same length: another key for the first blob
    other_key = objs[0][0].replace("batch-", "batcH-")
    forged = body.replace(objs[0][0].encode(), other_key.encode())
    assert len(forged) == len(body)
    r = requests.post(signed["url"], data=forged, timeout=60)
    assert_error(r, 403, "signature_invalid")
    # a signature that is not the API's, and a length the signature does not cover
    sig = dict(parse_qsl(urlsplit(signed["url"]).query))["sig"]
    r = requests.post(tamper(signed["url"], sig=sig[:-1] + ("0" if sig[-1] != "0" else "1")), data=body, timeout=60)
    assert_error(r, 403, "signature_invalid")
    r = requests.post(tamper(signed["url"], len=str(len(body) + 1)), data=body + b"x", timeout=60)
    assert_error(r, 403, "signature_invalid")
    # a presigned PUT for one object does not open the batch door
    put = urlsplit(store.presign_put(objs[0][0], 60, content_length=len(body)))
    r = requests.post(signed["url"].split("?")[0] + "?" + put.query, data=body, timeout=60)
    assert_error(r, 403, "signature_invalid")
    for key in [*(k for k, *_ in objs), other_key]:
        assert stored(store, key) is None
    assert temp_files(store) == []


def test_an_expired_batch_url_is_refused(store):
    objs = blobs(unique_prefix(), [b"late"])
    signed = presign(store, objs, expires=1)
    time.sleep(2.1)
    r = requests.post(signed["url"], data=body_of(signed, [b"late"]), timeout=60)
    assert_error(r, 403, "url_expired")
    assert stored(store, objs[0][0]) is None


def test_batches_are_bounded_and_checked_when_signed(store):
    from animus_hub.errors import AnimusError

    with pytest.raises(AnimusError) as e:
        store.presign_batch([], 60)
    assert e.value.status == 400
    too_many = [(f"k/{i}", 1, "0" * 64) for i in range(MAX_BATCH_OBJECTS + 1)]
    with pytest.raises(AnimusError):
        store.presign_batch(too_many, 60)
    with pytest.raises(AnimusError):
        store.presign_batch([("k/../x", 1, "0" * 64)], 60)
    with pytest.raises(AnimusError):
        store.presign_batch([("k/a", 1, "0" * 64), ("k/a", 1, "0" * 64)], 60)


def test_upload_urls_are_direct_only_where_the_store_has_a_direct_url(gateway):
    store = LocalObjectStore(
        root=str(gateway.store_root),
        gateway_url="http://127.0.0.1:9/proxied/services/animus-objects",
        direct_url=gateway.url,
        signing_key_file=str(gateway.signing_key_file),
    )
    assert store.presign_put("k/x", 60).startswith("http://127.0.0.1:9/proxied/")
    direct = store.presign_put("k/x", 60, content_length=3, sha256=sha(b"abc"), local=True)
    assert direct.startswith(gateway.url + "/o/k/x?")
    # the same signature either way: the direct URL is just the shorter road
    assert urlsplit(direct).query == urlsplit(store.presign_put("k/x", 60, 3, sha(b"abc"))).query
    r = requests.put(direct, data=b"abc", headers=store.upload_headers(sha(b"abc")), timeout=30)
    assert r.status_code == 200, r.text
    assert store.presign_batch([("k/y", 1, sha(b"y"))], 60, local=True)["url"].startswith(gateway.url + "/batch?")


# --- through the API: the push protocol offers batches ----------------------------------------------


@pytest.fixture(scope="module")
def team(stack, unique) -> dict:
    owner = unique("own")
    token = stack.user_token(owner)
    project = unique("bp")
    assert stack.api("POST", "/projects", token, json={"slug": project}).status_code == 201
    return {"project": project, "token": token}


def test_missing_pages_offer_batches_of_small_blobs_and_direct_urls(stack, team, unique):
    name = unique("plan")
    base = f"/projects/{team['project']}/datasets/{name}"
    assert (
        stack.api("POST", f"/projects/{team['project']}/datasets", team["token"], json={"name": name}).status_code
        == 201
    )
    small = {f"s{i}.bin": os.urandom(1000 + i) for i in range(5)}
    big = {"big.bin": os.urandom(5 * 1024 * 1024)}
    files = {**small, **big}
    manifest = [{"path": p, "sha256": sha(b), "size": len(b)} for p, b in files.items()]
    r = stack.api("POST", base + "/uploads", team["token"], json={"files": manifest})
    assert r.status_code == 201, r.text
    up = f"{base}/uploads/{r.json()['id']}"
    # an old client (no batch=true) gets one PUT per blob, through the proxy
    plain = stack.api("GET", up + "/missing", team["token"]).json()
    assert len(plain["items"]) == 6 and plain["batches"] == []
    assert all(i["url"].startswith(stack.url + "/services/animus-objects/") for i in plain["items"])
    page = stack.api("GET", up + "/missing", team["token"], params={"batch": "true", "local": "true"}).json()
    assert [i["sha256"] for i in page["items"]] == [sha(big["big.bin"])]
    (batch,) = page["batches"]
    assert sorted(b["sha256"] for b in batch["blobs"]) == sorted(sha(b) for b in small.values())
    direct = f"http://127.0.0.1:{stack.settings.objects_port}/services/animus-objects/"
    assert batch["url"].startswith(direct + "batch?") and page["items"][0]["url"].startswith(direct + "o/")
    by_sha = {sha(b): b for b in files.values()}
    body = batch["body_prefix"].encode() + b"".join(by_sha[b["sha256"]] for b in batch["blobs"])
    assert requests.post(batch["url"], data=body, timeout=60).status_code == 200
    item = page["items"][0]
    assert requests.put(item["url"], data=big["big.bin"], headers=item["headers"], timeout=60).status_code == 200
    assert stack.api("GET", up + "/missing", team["token"], params={"batch": "true"}).json()["batches"] == []
    assert stack.api("POST", up + "/commit", team["token"]).status_code == 201


def test_the_sdk_pushes_small_files_in_batches(stack, team, unique, tmp_path, monkeypatch):
    src = tmp_path / "many"
    for i in range(300):
        (src / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 7}" / f"f{i}.bin").write_bytes(os.urandom(2000 + i))
    (src / "empty").write_bytes(b"")
    singles, batches = [], []
    put, put_batch = ds._Uploader.put, ds._Uploader.put_batch
    monkeypatch.setattr(
        ds._Uploader, "put", lambda self, item, path, bar: (singles.append(path), put(self, item, path, bar))
    )
    monkeypatch.setattr(
        ds._Uploader, "put_batch", lambda self, b, by_sha, bar: (batches.append(b), put_batch(self, b, by_sha, bar))
    )
    client = Client(url=stack.api_url, token=team["token"])
    name = unique("many")
    v = ds.push(name, src, team["project"], client=client, progress=False)
    assert v.version == 1 and v.file_count == 301
    assert singles == [] and sum(len(b["blobs"]) for b in batches) == 301
    # what was stored is what was pushed: pull it back
    dst = tmp_path / "back"
    v.download(dst, progress=False)
    assert {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == {
        p.relative_to(src): p.read_bytes() for p in src.rglob("*") if p.is_file()
    }


def test_a_file_changed_after_hashing_fails_the_push_and_commits_nothing(stack, team, unique, tmp_path, monkeypatch):
    src = tmp_path / "racy"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000))
    original = ds._Uploader.put_batch

    def change_then_send(self, batch, by_sha, bar):
        (src / "f2.bin").write_bytes(os.urandom(1000))  # same size, other bytes
        return original(self, batch, by_sha, bar)

    monkeypatch.setattr(ds._Uploader, "put_batch", change_then_send)
    client = Client(url=stack.api_url, token=team["token"])
    name = unique("racy")
    with pytest.raises(ds.DatasetError, match="f2.bin"):
        ds.push(name, src, team["project"], client=client, progress=False, cache=False)
    r = stack.api("GET", f"/projects/{team['project']}/datasets/{name}/versions", team["token"])
    assert r.json()["items"] == []


def test_gateway_stores_each_blob_once_even_when_sent_twice(store):
    objs = blobs(unique_prefix(), [b"twice"])
    for _ in range(2):
        signed = presign(store, objs)
        r = requests.post(signed["url"], data=body_of(signed, [b"twice"]), timeout=60)
        assert r.status_code == 200, r.text
    assert stored(store, objs[0][0]) == b"twice"
    assert asyncio.run(store.verify_sha256(objs[0][0], objs[0][2]))
