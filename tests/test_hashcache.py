"""The client's hash cache: a re-push reads only files that changed, and any doubt means a re-hash."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import animus.datasets as ds
from animus import hashcache
from animus.cli.main import main as cli
from animus.client import Client
from animus.hashcache import HashCache


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ANIMUS_CACHE_DIR", str(d))
    return d


@pytest.fixture
def no_racy_wait(monkeypatch) -> None:
    """Trust entries of files written a moment ago (the real margin is 2 s; tests would wait)."""
    monkeypatch.setattr(hashcache, "RACY_SECONDS", -1.0)


class Spy:
    """Counts the files push actually reads to hash."""

    def __init__(self, monkeypatch):
        self.read: list[str] = []
        original = ds._hash_file

        def spy(rel, path, bar, profile):
            self.read.append(rel)
            return original(rel, path, bar, profile)

        monkeypatch.setattr(ds, "_hash_file", spy)


def digests(root: Path, cache: bool = True, profile: bool = True) -> dict[str, tuple[str, dict | None]]:
    files = ds._collect(root)
    stats = [p.stat() for _, p in files]
    results = ds._digests("t", files, stats, profile, cache, None, False)
    return {rel: r for (rel, _), r in zip(files, results, strict=True)}


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.bin": os.urandom(5000), "sub/b.bin": os.urandom(7000), "t.csv": b"x,y\n1,2\n3,4\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_unchanged_files_are_not_read_again(tmp_path, cache_dir, no_racy_wait, monkeypatch):
    files = make_tree(tmp_path / "d")
    spy = Spy(monkeypatch)
    first = digests(tmp_path / "d")
    assert sorted(spy.read) == sorted(files)
    assert {rel: d for rel, (d, _) in first.items()} == {rel: sha(b) for rel, b in files.items()}
    assert first["t.csv"][1]["rows"] == 2  # the profile is cached with the digest
    spy.read.clear()
    assert digests(tmp_path / "d") == first and spy.read == []
    assert (cache_dir / "hashes.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_changed_size_mtime_or_inode_means_a_rehash(tmp_path, cache_dir, no_racy_wait, monkeypatch):
    root = tmp_path / "d"
    make_tree(root)
    digests(root)
    spy = Spy(monkeypatch)
    # size
    (root / "a.bin").write_bytes(os.urandom(5001))
    # same size, other bytes, and the old mtime put back (as `touch -d` or `rsync -t` would)
    b = root / "sub" / "b.bin"
    st = b.stat()
    b.write_bytes(os.urandom(7000))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    # replaced by another file (a new inode) of the same size and mtime
    t = root / "t.csv"
    st = t.stat()
    tmp = root / "t.new"
    tmp.write_bytes(b"x,y\n5,6\n7,8\n")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, t)
    now = digests(root)
    assert sorted(spy.read) == ["a.bin", "sub/b.bin", "t.csv"]
    assert now["a.bin"][0] == sha((root / "a.bin").read_bytes())
    assert now["sub/b.bin"][0] == sha(b.read_bytes())
    assert now["t.csv"][0] == sha(t.read_bytes())


def test_each_stat_field_is_part_of_the_key(tmp_path, cache_dir, no_racy_wait):
    path = tmp_path / "f.bin"
    path.write_bytes(b"content")
    st = path.stat()
    cache = HashCache()
    cache.store([(str(path), st, time.time_ns(), sha(b"content"), None, False)])
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")

    def like(**change):
        return SimpleNamespace(**{f: change.get(f, getattr(st, f)) for f in fields})

    assert cache.lookup([(str(path), like())])[str(path)].sha256 == sha(b"content")
    for field in fields:
        assert cache.lookup([(str(path), like(**{field: getattr(st, field) + 1}))]) == {}, field
    cache.close()


def test_files_written_just_before_hashing_are_hashed_again(tmp_path, cache_dir, monkeypatch):
    root = tmp_path / "d"
    make_tree(root)  # mtime and ctime: now, the same tick as the hashing below
    digests(root)
    spy = Spy(monkeypatch)
    digests(root)
    assert sorted(spy.read) == ["a.bin", "sub/b.bin", "t.csv"]


def test_a_profile_is_only_reused_from_a_profiled_hash(tmp_path, cache_dir, no_racy_wait, monkeypatch):
    root = tmp_path / "d"
    make_tree(root)
    digests(root, profile=False)
    spy = Spy(monkeypatch)
    again = digests(root, profile=True)
    assert spy.read == ["t.csv"] and again["t.csv"][1]["rows"] == 2
    spy.read.clear()
    assert digests(root, profile=False)["t.csv"][1] is None and spy.read == []


def test_cache_disabled_hashes_everything_and_writes_nothing(tmp_path, cache_dir, no_racy_wait, monkeypatch):
    root = tmp_path / "d"
    make_tree(root)
    spy = Spy(monkeypatch)
    digests(root, cache=False)
    digests(root, cache=False)
    assert len(spy.read) == 6
    assert not (cache_dir / "hashes.sqlite").exists()


def test_an_unusable_cache_is_ignored_with_a_warning(tmp_path, cache_dir, no_racy_wait, monkeypatch, capsys):
    cache_dir.mkdir()
    (cache_dir / "hashes.sqlite").write_bytes(b"this is not a database" * 100)
    root = tmp_path / "d"
    files = make_tree(root)
    spy = Spy(monkeypatch)
    got = digests(root)
    assert {rel: d for rel, (d, _) in got.items()} == {rel: sha(b) for rel, b in files.items()}
    assert len(spy.read) == 3 and "hash cache" in capsys.readouterr().err


# --- through the stack ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owner(stack, unique) -> dict:
    name = unique("own")
    token = stack.user_token(name)
    project = unique("hc")
    assert stack.api("POST", "/projects", token, json={"slug": project}).status_code == 201
    return {"project": project, "token": token}


def test_a_repush_reads_only_the_changed_file_and_no_cache_reads_all(
    stack, owner, unique, tmp_path, cache_dir, no_racy_wait, monkeypatch
):
    src = tmp_path / "src"
    for i in range(20):
        (src / f"part-{i:02d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"part-{i:02d}.bin").write_bytes(os.urandom(4000))
    client = Client(url=stack.api_url, token=owner["token"])
    name = unique("re")
    v1 = ds.push(name, src, owner["project"], client=client, progress=False)
    spy = Spy(monkeypatch)
    (src / "part-07.bin").write_bytes(os.urandom(4000))
    v2 = ds.push(name, src, owner["project"], client=client, progress=False)
    assert spy.read == ["part-07.bin"]
    assert v2.version == 2 and v2.digest != v1.digest
    assert {f["path"]: f["sha256"] for f in v2.files()}["part-07.bin"] == sha((src / "part-07.bin").read_bytes())
    # the CLI with --no-cache reads every file (and finds nothing new to version)
    monkeypatch.setenv("ANIMUS_API_URL", stack.api_url)
    monkeypatch.setenv("ANIMUS_TOKEN", owner["token"])
    spy.read.clear()
    r = CliRunner().invoke(
        cli, ["datasets", "push", name, str(src), "--project", owner["project"], "--no-cache", "--quiet", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 2 and len(spy.read) == 20
