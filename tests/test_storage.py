"""Object storage: the same behaviour from the local store (with a real object gateway
process) and from the S3 store (on a real SeaweedFS), seen as clients see it — plain
HTTP with presigned URLs — and as animus-api sees it — the ObjectStore methods."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psutil
import pytest
import requests
from seaweed import free_ports

from animus_hub.embedded import wait_until_up
from animus_hub.errors import AnimusError
from animus_hub.storage import LocalObjectStore, ObjectStore, S3ObjectStore, validate_key
from animus_hub.storage.local import SIGNING_KEY_BYTES

GATEWAY_PREFIX = "/services/animus-objects/"
MB = 1024 * 1024


def run(coro):
    return asyncio.run(coro)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GatewayProcess:
    """`python -m animus_hub.objectgateway` as the hub would start it (a hub-managed service)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        self.store_root = root / "store"
        self.signing_key_file = root / "secrets" / "objects_signing_key"
        self.log_path = root / "gateway.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{GATEWAY_PREFIX.rstrip('/')}"

    def start(self) -> GatewayProcess:
        env = {
            **os.environ,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}",
            "JUPYTERHUB_SERVICE_PREFIX": GATEWAY_PREFIX,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "animus_hub.objectgateway",
                f"--root={self.store_root}",
                f"--signing-key-file={self.signing_key_file}",
                "--max-upload-size=104857600",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until_up(self.url + "/health", self.proc, timeout=30):
            self.stop()
            raise RuntimeError(f"the object gateway did not come up:\n{self.log_path.read_text()}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def store(self) -> LocalObjectStore:
        return LocalObjectStore(
            root=str(self.store_root), gateway_url=self.url, signing_key_file=str(self.signing_key_file)
        )


@pytest.fixture(scope="session")
def object_gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("gateway")).start()
    try:
        yield gateway
    finally:
        returncode = gateway.stop()
        assert returncode == 0, gateway.log_path.read_text()[-3000:]


@pytest.fixture(scope="session")
def s3_bucket(seaweedfs) -> str:  # noqa: F811 (the fixture imported above)
    return f"animus-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["local", "s3"])
def store(request) -> Iterator[ObjectStore]:
    if request.param == "local":
        s: ObjectStore = request.getfixturevalue("object_gateway").store()
    else:
        sw = request.getfixturevalue("seaweedfs")
        s = S3ObjectStore(
            endpoint_url=sw.endpoint_url,
            bucket=request.getfixturevalue("s3_bucket"),
            region=sw.region,
            access_key_id=sw.access_key,
            secret_access_key=sw.secret_key,
            create_bucket=True,
        )
    run(s.setup())
    try:
        yield s
    finally:
        run(s.close())


@pytest.fixture
def prefix() -> str:
    """Each test works under its own key prefix in the shared store."""
    return f"t-{uuid.uuid4().hex[:10]}/"


def upload(store: ObjectStore, key: str, data: bytes, **kwargs) -> requests.Response:
    url = store.presign_put(key, 60, **kwargs)
    return requests.put(url, data=data, headers=store.upload_headers(kwargs.get("sha256")), timeout=60)


def assert_refused(r: requests.Response, store: ObjectStore, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:500])
    if isinstance(store, LocalObjectStore):
        # the gateway answers the JSON error shape of the API, never a traceback
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert set(body) == {"status", "reason", "message", "details"} and body["status"] == status


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    path = changes.pop("path", parts.path)
    for name, value in changes.items():
        # the gateway calls it `sig`, SigV4 `X-Amz-Signature`
        for candidate in (name, "X-Amz-Signature" if name == "sig" else name):
            if candidate in query:
                query[candidate] = value
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def flip_last(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


# --- presigned URLs, as clients use them ---------------------------------------------------


def test_presigned_put_then_get_round_trips_bytes(store, prefix):
    key = prefix + "data/a file ü+%?#&=;,~.bin"
    data = os.urandom(MB + 17)
    r = upload(store, key, data, content_length=len(data))
    assert r.status_code == 200, r.text

    r = requests.get(store.presign_get(key, 60), timeout=60)
    assert r.status_code == 200
    assert r.content == data

    r = requests.get(store.presign_get(key, 60, filename="résumé.bin"), timeout=60)
    assert r.content == data
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "r%C3%A9sum%C3%A9.bin" in disposition

    r = requests.get(store.presign_get(key, 60), headers={"Range": "bytes=10-19"}, timeout=60)
    assert r.status_code == 206
    assert r.content == data[10:20]


def test_expired_urls_are_refused(store, prefix):
    key = prefix + "expiring"
    assert upload(store, key, b"old").status_code == 200
    get_url = store.presign_get(key, expires_in=1)
    put_url = store.presign_put(prefix + "late", expires_in=1)
    time.sleep(2)
    assert_refused(requests.get(get_url, timeout=30), store, 403)
    assert_refused(requests.put(put_url, data=b"late", timeout=30), store, 403)
    assert not run(store.exists(prefix + "late"))


def test_a_url_signed_for_get_cannot_put(store, prefix):
    key = prefix + "readonly"
    assert upload(store, key, b"original").status_code == 200
    assert_refused(requests.put(store.presign_get(key, 60), data=b"overwritten", timeout=30), store, 403)
    assert run(store.get_bytes(key, 100)) == b"original"


def test_a_url_signed_for_put_cannot_get(store, prefix):
    key = prefix + "secret"
    assert upload(store, key, b"not for you").status_code == 200
    assert_refused(requests.get(store.presign_put(key, 60), timeout=30), store, 403)


def test_tampered_signature_or_key_is_refused(store, prefix):
    assert upload(store, prefix + "mine", b"mine").status_code == 200
    assert upload(store, prefix + "theirs", b"theirs").status_code == 200
    url = store.presign_get(prefix + "mine", 60)
    sig = dict(parse_qsl(urlsplit(url).query)).get("sig") or dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]

    assert_refused(requests.get(tamper(url, sig=flip_last(sig)), timeout=30), store, 403)
    other_path = urlsplit(url).path.replace("/mine", "/theirs")
    assert_refused(requests.get(tamper(url, path=other_path), timeout=30), store, 403)
    assert_refused(requests.get(url.split("?")[0], timeout=30), store, 403)

    put_url = store.presign_put(prefix + "mine", 60)
    other_path = urlsplit(put_url).path.replace("/mine", "/theirs")
    assert_refused(requests.put(tamper(put_url, path=other_path), data=b"x", timeout=30), store, 403)
    assert run(store.get_bytes(prefix + "theirs", 100)) == b"theirs"


def test_signed_content_length_is_enforced(store, prefix):
    key = prefix + "sized"
    r = requests.put(store.presign_put(key, 60, content_length=5), data=b"123456", timeout=30)
    assert 400 <= r.status_code < 500
    assert not run(store.exists(key))
    r = requests.put(store.presign_put(key, 60, content_length=5), data=b"12345", timeout=30)
    assert r.status_code == 200
    assert run(store.get_bytes(key, 10)) == b"12345"


def test_a_signed_url_for_a_missing_object_answers_404(store, prefix):
    r = requests.get(store.presign_get(prefix + "nothing-here", 60), timeout=30)
    assert_refused(r, store, 404)


# --- content addressing ------------------------------------------------------------------


def test_upload_with_the_wrong_sha256_is_refused_and_nothing_stored(store, prefix):
    data = b"the real content"
    key = prefix + "blobs/" + sha256(data)
    r = upload(store, key, b"something else", sha256=sha256(data))
    assert_refused(r, store, 400)
    assert not run(store.exists(key))

    r = upload(store, key, data, sha256=sha256(data))
    assert r.status_code == 200, r.text
    assert run(store.verify_sha256(key, sha256(data)))


def test_verify_sha256(store, prefix):
    data = os.urandom(300_000)
    with_checksum, without = prefix + "with-checksum", prefix + "without"
    assert upload(store, with_checksum, data, sha256=sha256(data)).status_code == 200
    assert upload(store, without, data).status_code == 200
    for key in (with_checksum, without):
        assert run(store.verify_sha256(key, sha256(data))) is True
        assert run(store.verify_sha256(key, sha256(b"other"))) is False
    assert run(store.verify_sha256(prefix + "missing", sha256(data))) is False
    with pytest.raises(AnimusError) as e:
        run(store.verify_sha256(with_checksum, "not-a-digest"))
    assert e.value.status == 400


# --- the control-plane methods ---------------------------------------------------------------


def test_head_exists_list_delete_copy(store, prefix):
    data = b"0123456789"
    keys = [prefix + k for k in ("a/1", "a/2", "a-b", "a/sub/3", "b")]
    for key in keys:
        assert upload(store, key, data).status_code == 200

    info = run(store.head(prefix + "a/1"))
    assert info is not None and info.key == prefix + "a/1" and info.size == 10 and info.etag
    assert info.last_modified is not None
    assert run(store.head(prefix + "a/none")) is None
    assert run(store.exists(prefix + "a/1")) and not run(store.exists(prefix + "a"))

    listed = [o.key for o in run(store.list(prefix))]
    assert sorted(listed) == sorted(keys)
    if isinstance(store, LocalObjectStore):
        assert listed == sorted(keys)  # S3's byte order: "a-b" before "a/1"
    assert sorted(o.key for o in run(store.list(prefix + "a/"))) == [prefix + "a/1", prefix + "a/2", prefix + "a/sub/3"]
    assert all(o.size == 10 for o in run(store.list(prefix)))
    # pages of 2, each starting after the previous page's last key, visit every key once
    paged: list[str] = []
    while True:
        page = run(store.list(prefix, limit=2, start_after=paged[-1] if paged else ""))
        assert len(page) <= 2
        if not page:
            break
        paged += [o.key for o in page]
    assert paged == listed

    run(store.copy(prefix + "a/1", prefix + "copies/a1"))
    assert run(store.get_bytes(prefix + "copies/a1", 100)) == data
    with pytest.raises(AnimusError) as e:
        run(store.copy(prefix + "missing", prefix + "copies/x"))
    assert e.value.status == 404

    run(store.delete(prefix + "a/1"))
    run(store.delete(prefix + "a/1"))  # deleting twice is fine, as in S3
    assert not run(store.exists(prefix + "a/1"))
    assert run(store.exists(prefix + "copies/a1"))
    for key in [*keys, prefix + "copies/a1"]:
        run(store.delete(key))
    assert run(store.list(prefix)) == []


def test_put_and_get_small_control_plane_objects(store, prefix):
    manifest = b'{"files": {}}'
    info = run(store.put_bytes(prefix + "manifest.json", manifest))
    assert info.size == len(manifest) and info.sha256 == sha256(manifest)
    assert run(store.get_bytes(prefix + "manifest.json", 1000)) == manifest
    head = run(store.head(prefix + "manifest.json"))
    assert head is not None and head.size == len(manifest)
    with pytest.raises(AnimusError) as e:
        run(store.get_bytes(prefix + "manifest.json", 5))
    assert e.value.status == 413
    with pytest.raises(AnimusError) as e:
        run(store.get_bytes(prefix + "missing.json", 1000))
    assert e.value.status == 404


@pytest.mark.parametrize("key", ["../x", "a/../x", "/abs", "a\x00b", "a//b", "a/", "", "x" * 1025, "é" * 513])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(AnimusError) as e:
        validate_key(key)
    assert e.value.status == 400 and e.value.reason == "invalid_object_key"
    for call in (
        lambda: store.presign_get(key, 60),
        lambda: store.presign_put(key, 60),
        lambda: run(store.head(key)),
        lambda: run(store.put_bytes(key, b"x")),
        lambda: run(store.delete(key)),
    ):
        with pytest.raises(AnimusError):
            call()


def test_reasonable_keys_are_accepted():
    for key in ("a", "projects/p/blobs/sha256/ab/" + "ab" * 32, "dir/file name (1).tar.gz", "ü/ß", "a..b/.c"):
        assert validate_key(key) == key
    assert validate_key("x" * 1024)


def test_only_the_local_store_offers_a_direct_path(store, prefix):
    assert upload(store, prefix + "f", b"direct").status_code == 200
    path = store.local_path(prefix + "f")
    if isinstance(store, LocalObjectStore):
        assert path is not None and path.read_bytes() == b"direct"
    else:
        assert path is None


# --- the object gateway itself ---------------------------------------------------------------


def test_signing_key_file_is_private_and_random(object_gateway):
    st = object_gateway.signing_key_file.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == SIGNING_KEY_BYTES


def test_large_upload_streams_without_buffering_in_the_gateway(object_gateway, tmp_path):
    store = object_gateway.store()
    run(store.setup())
    gateway = psutil.Process(object_gateway.proc.pid)
    assert upload(store, "large/warm-up", b"warm up").status_code == 200

    size = 50 * MB
    source = tmp_path / "large.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as f:
        for _ in range(size // MB):
            chunk = os.urandom(MB)
            digest.update(chunk)
            f.write(chunk)

    baseline = gateway.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, gateway.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        url = store.presign_put("large/blob", 600, content_length=size, sha256=digest.hexdigest())
        with open(source, "rb") as f:
            r = requests.put(url, data=f, headers=store.upload_headers(digest.hexdigest()), timeout=600)
    finally:
        done.set()
        sampler.join()
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == digest.hexdigest()
    # a buffered body would cost at least its 50 MB; streaming costs a few chunks
    assert peak - baseline < 20 * MB, f"gateway RSS grew by {(peak - baseline) / MB:.1f} MB"

    got = hashlib.sha256()
    with requests.get(store.presign_get("large/blob", 600), stream=True, timeout=600) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(MB):
            got.update(chunk)
    assert got.hexdigest() == digest.hexdigest()
    assert run(store.verify_sha256("large/blob", digest.hexdigest()))
    run(store.close())


def test_an_interrupted_upload_leaves_nothing_behind(object_gateway):
    store = object_gateway.store()
    url = urlsplit(store.presign_put("interrupted/blob", 60, content_length=1000))
    with socket.create_connection(("127.0.0.1", object_gateway.port)) as s:
        s.sendall(
            f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n".encode()
            + b"x" * 400
        )
    deadline = time.monotonic() + 20
    while any(store.tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(store.tmp_dir.iterdir())
    assert not run(store.exists("interrupted/blob"))


def test_gateway_refuses_unsigned_and_unknown_requests(object_gateway):
    r = requests.put(object_gateway.url + "/o/some/key", data=b"x", timeout=30)
    assert r.status_code == 403 and r.json()["reason"] == "signature_missing"
    r = requests.get(object_gateway.url + "/nowhere", timeout=30)
    assert r.status_code == 404 and r.json()["reason"] == "not_found"
    r = requests.post(object_gateway.url + "/o/some/key", timeout=30)
    assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/json")


def test_gateway_stops_cleanly_on_sigint(tmp_path):
    gateway = GatewayProcess(tmp_path).start()
    assert gateway.stop(signal.SIGINT) == 0


def test_gateway_never_logs_presigned_credentials(object_gateway):
    store = object_gateway.store()
    assert upload(store, "logged/key", b"x").status_code == 200
    url = store.presign_get("logged/key", 60)
    assert requests.get(url, timeout=30).status_code == 200
    assert requests.put(url, data=b"y", timeout=30).status_code == 403  # a refusal is logged too
    signature = dict(parse_qsl(urlsplit(url).query))["sig"]
    # the server writes its log line after the answer has left: wait for it
    deadline = time.monotonic() + 10
    while "/o/logged/key" not in (log := object_gateway.log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "/o/logged/key" in log
    assert signature not in log and "sig=" not in log
