"""Experiment tracking through Animus's own API and SDK, on the real stack (both backends)."""

from __future__ import annotations

import math
import socket
import threading
import uuid

import pytest
from sqlalchemy import func, select

import animus
from animus.client import Client
from animus_hub import db as dbmod
from animus_hub.orm import Metric, OutboxEvent


@pytest.fixture(scope="module")
def team(stack, unique):
    """A project with an owner, a contributor, a viewer, and an outsider from another project."""
    project = unique("trk")
    owner, contributor, viewer, outsider = (unique(n) for n in ("own", "con", "vie", "out"))
    tokens = {n: stack.user_token(name) for n, name in
              (("owner", owner), ("contributor", contributor), ("viewer", viewer), ("outsider", outsider))}
    assert stack.api("POST", "/projects", tokens["owner"], json={"slug": project}).status_code == 201
    stack.api("POST", "/projects", tokens["outsider"], json={"slug": unique("elsewhere")})
    for name, role in ((contributor, "contributor"), (viewer, "viewer")):
        stack.api("POST", f"/projects/{project}/members", tokens["owner"], json={"kind": "user", "name": name, "role": role})
    return {"project": project, "tokens": tokens, "names": {"owner": owner, "contributor": contributor}}


def new_run(stack, team, **body):
    r = stack.api("POST", f"/projects/{team['project']}/runs", team["tokens"]["contributor"], json=body)
    assert r.status_code == 201, r.text
    return r.json()


def log(stack, team, run_id, token_of="contributor", **body):
    return stack.api("POST", f"/projects/{team['project']}/runs/{run_id}/log-batch", team["tokens"][token_of], json=body)


def test_experiments_and_runs(stack, team):
    p, tok = team["project"], team["tokens"]["contributor"]
    e = stack.api("POST", f"/projects/{p}/experiments", tok, json={"name": "churn", "tags": {"team": "risk"}})
    assert e.status_code == 201 and e.json()["tags"] == {"team": "risk"}
    dup = stack.api("POST", f"/projects/{p}/experiments", tok, json={"name": "churn"})
    assert dup.status_code == 409 and dup.json()["reason"] == "experiment_exists"
    run = new_run(stack, team, experiment_id=e.json()["id"], name="rf-1", tags={"model": "rf"})
    assert run["status"] == "running" and run["tags"] == {"model": "rf"} and run["user"] == team["names"]["contributor"]
    default = new_run(stack, team)
    experiments = stack.api("GET", f"/projects/{p}/experiments", tok).json()["items"]
    assert {x["name"] for x in experiments} >= {"churn", "Default"}
    assert default["experiment_id"] == next(x["id"] for x in experiments if x["name"] == "Default")
    by_name = new_run(stack, team, experiment="created-on-the-fly")
    assert by_name["experiment_id"] != default["experiment_id"]
    sha = "a" * 40
    coded = new_run(stack, team, code={"repo_url": "https://git.example/x.git", "commit_sha": sha})
    assert coded["code"]["commit_sha"] == sha


def test_log_batch_params_metrics_tags(stack, team):
    run = new_run(stack, team)
    r = log(stack, team, run["id"],
            params=[{"key": "lr", "value": "0.01"}, {"key": "layers", "value": 3}],
            metrics=[{"key": "loss", "value": v, "step": s, "timestamp": 1000 + s} for s, v in enumerate([0.9, 0.5, 0.3])],
            tags=[{"key": "stage", "value": "dev"}])
    assert r.status_code == 200 and r.json() == {"metrics": 3, "params": 2, "tags": 1}
    got = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["viewer"]).json()
    assert got["params"] == {"lr": "0.01", "layers": "3"}
    assert got["metrics"]["loss"] == {"value": 0.3, "step": 2, "timestamp": 1002}
    # the same param value again is fine; a different one is refused
    assert log(stack, team, run["id"], params=[{"key": "lr", "value": "0.01"}]).status_code == 200
    r = log(stack, team, run["id"], params=[{"key": "lr", "value": "0.02"}])
    assert r.status_code == 409 and r.json()["reason"] == "param_conflict"
    # tags are mutable
    log(stack, team, run["id"], tags=[{"key": "stage", "value": "prod"}])
    got = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["viewer"]).json()
    assert got["tags"]["stage"] == "prod"
    # a late point with a lower step does not replace the latest value
    log(stack, team, run["id"], metrics=[{"key": "loss", "value": 7.0, "step": 1, "timestamp": 5000}])
    got = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["viewer"]).json()
    assert got["metrics"]["loss"]["value"] == 0.3


def test_nan_and_infinities_are_stored_and_returned_as_mlflow_does(stack, team):
    run = new_run(stack, team)
    body = '{"metrics": [{"key": "a", "value": NaN, "step": 0}, {"key": "b", "value": "Infinity", "step": 0}, {"key": "c", "value": -Infinity, "step": 0}]}'
    r = stack.api("POST", f"/projects/{team['project']}/runs/{run['id']}/log-batch", team["tokens"]["contributor"],
                  data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    metrics = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["viewer"]).json()["metrics"]
    assert (metrics["a"]["value"], metrics["b"]["value"], metrics["c"]["value"]) == ("NaN", "Infinity", "-Infinity")
    h = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}/metric-history", team["tokens"]["viewer"], params={"key": "a"}).json()
    assert h["points"][0]["value"] == "NaN"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "tab\there", "x" * 251, ""])
def test_bad_metric_keys_are_refused_and_nothing_is_written(stack, team, key):
    run = new_run(stack, team)
    r = log(stack, team, run["id"], metrics=[{"key": "ok", "value": 1}, {"key": key, "value": 1}])
    assert r.status_code == 422, r.text
    got = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["viewer"]).json()
    assert got["metrics"] == {}


def test_oversize_batches_are_refused_with_413(stack, team):
    run = new_run(stack, team)
    r = log(stack, team, run["id"], metrics=[{"key": "m", "value": i, "step": i} for i in range(1001)])
    assert r.status_code == 413 and r.json()["reason"] == "batch_too_large"
    assert r.json()["details"]["max_metrics"] == 1000
    r = log(stack, team, run["id"], params=[{"key": f"p{i}", "value": i} for i in range(101)])
    assert r.status_code == 413


def test_finished_runs_refuse_logging_and_emit_run_finished(stack, team):
    run = new_run(stack, team)
    r = stack.api("PATCH", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["contributor"], json={"status": "succeeded"})
    assert r.status_code == 200 and r.json()["status"] == "succeeded" and r.json()["end_time"]
    r = log(stack, team, run["id"], metrics=[{"key": "late", "value": 1}])
    assert r.status_code == 409 and r.json()["reason"] == "run_finished"
    r = stack.api("PATCH", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["contributor"], json={"status": "failed"})
    assert r.status_code == 409
    engine = dbmod.make_engine(stack.db_url)
    with dbmod.make_session_factory(engine)() as s:
        events = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "RunFinished")).all()
    engine.dispose()
    mine = [e for e in events if e.payload["run_id"] == run["id"]]
    assert len(mine) == 1 and mine[0].payload["status"] == "succeeded" and mine[0].payload["project"] == team["project"]


def test_viewer_cannot_log_and_outsider_sees_nothing_both_audited(stack, team):
    run = new_run(stack, team)
    r = log(stack, team, run["id"], token_of="viewer", metrics=[{"key": "m", "value": 1}])
    assert r.status_code == 403
    r = log(stack, team, run["id"], token_of="outsider", metrics=[{"key": "m", "value": 1}])
    assert r.status_code == 404
    r = stack.api("GET", f"/projects/{team['project']}/runs/{run['id']}", team["tokens"]["outsider"])
    assert r.status_code == 404
    events = stack.api("GET", f"/projects/{team['project']}/audit/events", team["tokens"]["owner"], params={"outcome": "denied"}).json()["items"]
    denied = {(e["action"], e["details"]["status"]) for e in events if run["id"] in e["resource"]}
    assert ("runs:write", 403) in denied and ("runs:write", 404) in denied and ("runs:read", 404) in denied


def test_metric_history_downsampling_keeps_extremes(stack, team):
    run = new_run(stack, team)
    values = [math.sin(i / 50.0) for i in range(5000)]
    values[1234], values[4321] = 99.0, -99.0
    for i in range(0, 5000, 1000):
        r = log(stack, team, run["id"], metrics=[{"key": "wave", "value": values[s], "step": s, "timestamp": s} for s in range(i, i + 1000)])
        assert r.status_code == 200
    url = f"/projects/{team['project']}/runs/{run['id']}/metric-history"
    full = stack.api("GET", url, team["tokens"]["viewer"], params={"key": "wave"}).json()
    assert full["total_points"] == 5000 and not full["downsampled"] and len(full["points"]) == 5000
    small = stack.api("GET", url, team["tokens"]["viewer"], params={"key": "wave", "max_points": 100}).json()
    assert small["downsampled"] and len(small["points"]) <= 100
    steps = [p["step"] for p in small["points"]]
    assert steps == sorted(steps)
    assert {"step": 1234, "value": 99.0, "timestamp": 1234} in small["points"]
    assert {"step": 4321, "value": -99.0, "timestamp": 4321} in small["points"]


def test_compare_aligns_params_and_metrics(stack, team):
    a, b = new_run(stack, team, name="a"), new_run(stack, team, name="b")
    log(stack, team, a["id"], params=[{"key": "lr", "value": "0.1"}, {"key": "seed", "value": "1"}],
        metrics=[{"key": "acc", "value": 0.8, "step": s} for s in range(3)])
    log(stack, team, b["id"], params=[{"key": "lr", "value": "0.2"}, {"key": "seed", "value": "1"}],
        metrics=[{"key": "acc", "value": 0.9, "step": s} for s in range(3)])
    c = stack.api("GET", f"/projects/{team['project']}/runs/compare", team["tokens"]["viewer"],
                  params={"run_id": f"{a['id']},{b['id']}"}).json()
    assert c["params"]["lr"] == {a["id"]: "0.1", b["id"]: "0.2"}
    assert c["params_differ"] == ["lr"]
    assert c["metrics"]["acc"][b["id"]]["value"] == 0.9
    assert len(c["histories"]["acc"][a["id"]]["points"]) == 3
    r = stack.api("GET", f"/projects/{team['project']}/runs/compare", team["tokens"]["viewer"], params={"run_id": "nope"})
    assert r.status_code == 404


def test_search_through_the_api(stack, team):
    p = team["project"]
    exp = stack.api("POST", f"/projects/{p}/experiments", team["tokens"]["contributor"], json={"name": "search-" + uuid.uuid4().hex[:6]}).json()
    ids = []
    for i, model in enumerate(["rf", "rf", "gbm", "lr"]):
        run = new_run(stack, team, experiment_id=exp["id"], name=f"r{i}")
        log(stack, team, run["id"], params=[{"key": "model", "value": model}], metrics=[{"key": "acc", "value": 0.5 + i / 10}])
        ids.append(run["id"])
    q = {"experiment_id": exp["id"], "filter": "params.model = 'rf' or metrics.acc >= 0.8", "order_by": "metrics.acc DESC"}
    items = stack.api("GET", f"/projects/{p}/runs", team["tokens"]["viewer"], params=q).json()["items"]
    assert [r["id"] for r in items] == [ids[3], ids[1], ids[0]]
    bad = stack.api("GET", f"/projects/{p}/runs", team["tokens"]["viewer"], params={"filter": "metrics.acc >"})
    assert bad.status_code == 400 and bad.json()["reason"] == "invalid_filter" and "position" in bad.json()["details"]


# --- the SDK ------------------------------------------------------------------


def test_sdk_run_logs_in_background_and_ends(stack, team):
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    with animus.start_run(experiment="sdk", name="loop", project=team["project"], client=client) as run:
        run.log_params({"lr": 0.01, "epochs": 3})
        for step in range(2500):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.set_tag("framework", "none")
    info = stack.api("GET", f"/projects/{team['project']}/runs/{run.id}", team["tokens"]["viewer"]).json()
    assert info["status"] == "succeeded"
    assert info["params"] == {"lr": "0.01", "epochs": "3"}
    assert info["metrics"]["loss"]["step"] == 2499
    h = stack.api("GET", f"/projects/{team['project']}/runs/{run.id}/metric-history", team["tokens"]["viewer"], params={"key": "loss"}).json()
    assert h["total_points"] == 2500


def test_sdk_failure_marks_the_run_failed(stack, team):
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    with pytest.raises(ZeroDivisionError), animus.start_run(project=team["project"], client=client) as run:
        run.log_metric("x", 1)
        1 / 0  # noqa: B018
    info = stack.api("GET", f"/projects/{team['project']}/runs/{run.id}", team["tokens"]["viewer"]).json()
    assert info["status"] == "failed" and info["metrics"]["x"]["value"] == 1


class DroppingProxy:
    """A TCP proxy that forwards each HTTP request but, for the first log-batch, swallows the
    server's answer and cuts the connection: the client cannot know the batch was stored."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.dropped = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_message(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._forward(conn)
        except OSError:
            conn.close()

    def _forward(self, conn: socket.socket) -> None:
        with conn:
            while True:
                request = self._read_message(conn)
                if not request:
                    return
                with socket.create_connection(("127.0.0.1", self.upstream)) as up:
                    up.sendall(request)
                    response = self._read_message(up)
                if b"/log-batch" in request.split(b"\r\n", 1)[0] and b'"metrics"' in request and self.dropped == 0:
                    self.dropped += 1
                    return  # the batch is committed upstream; the client never hears so
                conn.sendall(response)

    def close(self) -> None:
        self.sock.close()


def test_sdk_retries_a_lost_batch_without_losing_or_duplicating_points(stack, team):
    proxy = DroppingProxy(stack.settings.port)
    try:
        url = stack.api_url.replace(f":{stack.settings.port}", f":{proxy.port}")
        client = Client(url=url, token=team["tokens"]["contributor"])
        with animus.start_run(project=team["project"], client=client) as run:
            for step in range(300):
                run.log_metric("m", step, step=step)
            run.flush()
        assert proxy.dropped == 1
    finally:
        proxy.close()
    engine = dbmod.make_engine(stack.db_url)
    with dbmod.make_session_factory(engine)() as s:
        n = s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run.id))
        distinct = s.scalar(select(func.count(func.distinct(Metric.step))).where(Metric.run_id == run.id))
    engine.dispose()
    assert n == distinct == 300


def test_cli_finds_runs(stack, team, tmp_path):
    import json
    import os
    import subprocess
    import sys

    run = new_run(stack, team, name="cli-visible")
    log(stack, team, run["id"], metrics=[{"key": "auc", "value": 0.77}])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
    env.update(ANIMUS_API_URL=stack.api_url, ANIMUS_TOKEN=team["tokens"]["viewer"], ANIMUS_PROJECT=team["project"],
               ANIMUS_CONFIG_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "animus.cli.main", "runs", "ls", "--json", "-f", "metrics.auc > 0.7"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert run["id"] in [r["id"] for r in json.loads(out.stdout)]
    shown = subprocess.run([sys.executable, "-m", "animus.cli.main", "runs", "show", run["id"]], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(shown.stdout)["metrics"]["auc"]["value"] == 0.77


# --- artifacts ----------------------------------------------------------------


def test_sdk_artifacts_are_content_addressed_and_bytes_bypass_the_api(stack, team, tmp_path):
    import requests

    d = tmp_path / "out"
    (d / "sub").mkdir(parents=True)
    (d / "model.bin").write_bytes(b"weights" * 1000)
    (d / "copy.bin").write_bytes(b"weights" * 1000)  # same content: one blob
    (d / "sub" / "report.txt").write_text("accuracy 0.9\n")
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    seen_urls = []
    original = requests.put

    def spy(url, *a, **kw):
        seen_urls.append(url)
        return original(url, *a, **kw)

    requests.put = spy
    try:
        with animus.start_run(project=team["project"], client=client) as run:
            run.log_artifacts(d, artifact_path="outputs")
    finally:
        requests.put = original
    assert len(seen_urls) == 2  # two distinct contents
    assert all("/services/animus-objects/" in u and "/services/animus/" not in u for u in seen_urls)
    tok = team["tokens"]["viewer"]
    base = f"/projects/{team['project']}/runs/{run.id}/artifacts"
    items = stack.api("GET", base, tok).json()["items"]
    assert sorted(a["path"] for a in items) == ["outputs/copy.bin", "outputs/model.bin", "outputs/sub/report.txt"]
    dl = stack.api("GET", base + "/download", tok, params={"path": "outputs/sub/report.txt"}).json()
    assert requests.get(dl["url"], timeout=30).content == b"accuracy 0.9\n"


def test_artifact_commit_refuses_missing_blobs_and_changed_paths(stack, team):
    run = new_run(stack, team)
    tok = team["tokens"]["contributor"]
    base = f"/projects/{team['project']}/runs/{run['id']}/artifacts"
    import hashlib

    import requests

    data = b"hello"
    sha = hashlib.sha256(data).hexdigest()
    files = [{"path": "a.txt", "sha256": sha, "size": len(data)}]
    r = stack.api("POST", base + "/commit", tok, json={"files": files})
    assert r.status_code == 409 and r.json()["reason"] == "blobs_missing"
    plan = stack.api("POST", base + "/upload", tok, json={"files": files}).json()
    up = plan["uploads"][0]
    # the store refuses bytes that do not match the digest the URL was signed for
    bad = requests.put(up["url"], data=b"HELLO", headers=up["headers"], timeout=30)
    assert bad.status_code >= 400
    assert stack.api("POST", base + "/commit", tok, json={"files": files}).status_code == 409
    assert requests.put(up["url"], data=data, headers=up["headers"], timeout=30).status_code < 300
    assert stack.api("POST", base + "/commit", tok, json={"files": files}).json() == {"committed": 1, "files": 1}
    other = hashlib.sha256(b"other").hexdigest()
    r = stack.api("POST", base + "/upload", tok, json={"files": [{"path": "a.txt", "sha256": other, "size": 5}]})
    assert r.status_code == 409 and r.json()["reason"] == "artifact_exists"
    for path in ("../x", "/abs", "a//b"):
        r = stack.api("POST", base + "/upload", tok, json={"files": [{"path": path, "sha256": sha, "size": 5}]})
        assert r.status_code == 422, path
    r = stack.api("POST", base + "/upload", team["tokens"]["viewer"], json={"files": files})
    assert r.status_code == 403


def test_an_archived_project_refuses_every_change(stack, team, unique):
    owner = team["tokens"]["owner"]
    slug = unique("arch")
    stack.api("POST", "/projects", owner, json={"slug": slug})
    run = stack.api("POST", f"/projects/{slug}/runs", owner, json={}).json()
    assert stack.api("POST", f"/projects/{slug}/archive", owner).status_code == 200
    for method, path, body in (
        ("POST", f"/projects/{slug}/runs/{run['id']}/log-batch", {"metrics": [{"key": "m", "value": 1}]}),
        ("PATCH", f"/projects/{slug}/runs/{run['id']}", {"status": "succeeded"}),
        ("DELETE", f"/projects/{slug}/runs/{run['id']}", None),
        ("POST", f"/projects/{slug}/experiments", {"name": "x"}),
    ):
        r = stack.api(method, path, owner, json=body)
        assert r.status_code == 409 and r.json()["reason"] == "project_archived", (method, path, r.text)
    assert stack.api("GET", f"/projects/{slug}/runs/{run['id']}", owner).json()["status"] == "running"
    assert stack.api("POST", f"/projects/{slug}/unarchive", owner).status_code == 200


def test_sdk_refuses_a_bad_metric_key_where_it_is_logged(stack, team):
    client = Client(url=stack.api_url, token=team["tokens"]["contributor"])
    with animus.start_run(project=team["project"], client=client) as run:
        run.log_metric("good", 1)
        with pytest.raises(ValueError, match="invalid metric key"):
            run.log_metric("../bad", 2)
    info = stack.api("GET", f"/projects/{team['project']}/runs/{run.id}", team["tokens"]["viewer"]).json()
    assert info["metrics"]["good"]["value"] == 1 and info["status"] == "succeeded"


def test_code_reference_never_keeps_credentials_from_the_remote_url(tmp_path, monkeypatch):
    import subprocess

    from animus.tracking import git_code_ref

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "https://bob:s3cr3t@git.example/team/repo.git"], check=True)
    (tmp_path / "dirty.txt").write_text("uncommitted")
    subprocess.run(["git", "-C", str(tmp_path), "add", "dirty.txt"], check=True)
    ref = git_code_ref(str(tmp_path))
    assert ref["repo_url"] == "https://git.example/team/repo.git"
    assert len(ref["commit_sha"]) == 40 and ref["diff_digest"].startswith("sha256:")
