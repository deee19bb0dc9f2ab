"""The model registry and MLflow: versions straight from `mlflow.autolog()` output, and the export
of an approved version into a real MLflow Model Registry.

The MLflow client programs run in their own processes (this venv's `mlflow-skinny`) against
Animus's MLflow endpoint, as a user would run them. The MLflow server is the real one (MLflow
3.17, SQLite backend, its artifact proxy), started from its own venv under
.cache/bench/mlflow-venv; that venv is created here on first use (a few minutes), as
benchmarks/tracking.py does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.tracking import MlflowClient

import animus.models as am
from animus.client import Client

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO / "benchmarks"))
from api_throughput import free_port  # noqa: E402
from tracking import MLFLOW_VENV, QUIET_ENV, ensure_mlflow_venv  # noqa: E402

AUTOLOG = """
import hashlib, json, os, pathlib
import mlflow
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

mlflow.autolog()
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
pathlib.Path("notes.txt").write_text("trained on synthetic data\\n")
with mlflow.start_run() as run:
    RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    mlflow.log_artifact("notes.txt", "extras")
model = mlflow.last_logged_model()
local = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path="downloaded")
digests = {
    str(p.relative_to(local)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in pathlib.Path(local).rglob("*") if p.is_file()
}
print("RESULT " + json.dumps({"run_id": run.info.run_id, "model_id": model.model_id, "digests": digests}))
"""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server with a Model Registry (SQLite) on 127.0.0.1; its URL."""
    ensure_mlflow_venv()  # creates the venv on first use: minutes, once
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen(
        [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env={**os.environ, **QUIET_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (
                "the MLflow server did not come up: " + (root / "server.log").read_text()[-3000:]
            )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def team(stack, unique) -> dict[str, Any]:
    project = unique("mlreg")
    names = {r: unique(r[:3]) for r in ("owner", "contributor")}
    tokens = {r: stack.user_token(n) for r, n in names.items()}
    assert stack.api("POST", "/projects", tokens["owner"], json={"slug": project}).status_code == 201
    r = stack.api(
        "POST",
        f"/projects/{project}/members",
        tokens["owner"],
        json={"kind": "user", "name": names["contributor"], "role": "contributor"},
    )
    assert r.status_code == 201, r.text
    return {
        "project": project,
        "tokens": tokens,
        "clients": {r: Client(url=stack.api_url, token=t) for r, t in tokens.items()},
    }


def _client_env(extra: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JUPYTERHUB_", "ANIMUS_"))}
    return {**env, **QUIET_ENV, "HOME": str(home), **extra}


def autolog_run(stack, team, tmp_path: Path) -> dict[str, Any]:
    """sklearn autolog inside a run that also logs a file with mlflow.log_artifact."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(AUTOLOG))
    env = _client_env(
        {
            "MLFLOW_TRACKING_URI": f"{stack.url}/services/animus/mlflow/projects/{team['project']}",
            "MLFLOW_TRACKING_TOKEN": team["tokens"]["contributor"],
        },
        tmp_path,
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_autologged_model_is_registered_promoted_and_exported_to_an_mlflow_registry(
    stack, team, mlflow_server, tmp_path
):
    project, c, owner = team["project"], team["clients"]["contributor"], team["clients"]["owner"]
    out = autolog_run(stack, team, tmp_path)
    am.create_model("forest", project, "autologged random forest", client=c)

    # the MLflow 3 logged model, by the path the run's artifact listing shows: no re-logging
    v = am.register("forest", out["run_id"], f"logged-models/{out['model_id']}", project, client=c)
    assert (v["status"], v["source"]["kind"], v["framework"]) == ("draft", "mlflow_model", "sklearn")
    assert {f["path"]: f["sha256"] for f in v["files"]} == out["digests"]
    assert "python_function" in v["flavors"] and v["signature"]["inputs"]
    assert v["metrics"]["training_accuracy_score"]["value"] > 0.5  # autolog's metrics, snapshotted

    # a file (and a directory) MLflow logged into the run itself
    notes = hashlib.sha256(b"trained on synthetic data\n").hexdigest()
    single = am.register("forest", out["run_id"], "extras/notes.txt", project, client=c)
    assert single["source"]["kind"] == "file" and single["files"] == [
        {"path": "notes.txt", "sha256": notes, "size": 26}
    ]
    folder = am.register("forest", out["run_id"], "extras", project, client=c)
    assert folder["source"]["kind"] == "directory" and [f["path"] for f in folder["files"]] == ["notes.txt"]
    missing = stack.api(
        "POST",
        f"/projects/{project}/models/forest/versions",
        team["tokens"]["contributor"],
        json={"run_id": out["run_id"], "path": "logged-models/m-nope"},
    )
    assert missing.status_code == 404 and missing.json()["reason"] == "artifact_not_found"

    # promoted under the built-in policy: validated, requested, approved by someone else
    am.transition("forest", 1, "validated", "autolog output", project, client=c)
    assert am.transition("forest", 1, "approved", "ship it", project, client=c)["outcome"] == "pending"
    assert am.approve("forest", 1, "ok", project, client=owner)["version"]["status"] == "approved"

    # the versions' bytes are in the project's blob space: an OCI export verifies every digest
    tar = am.export_oci("forest", 1, tmp_path / "forest.tar", project, client=c)
    assert tar.stat().st_size > sum(f["size"] for f in v["files"])

    # exported with the CLI to the real MLflow server
    env = _client_env(
        {
            "ANIMUS_API_URL": stack.api_url,
            "ANIMUS_TOKEN": team["tokens"]["contributor"],
            "ANIMUS_CONFIG_DIR": str(tmp_path),
        },
        tmp_path,
    )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "animus.cli.main",
            "models",
            "export",
            "forest",
            "1",
            "-p",
            project,
            "--mlflow",
            mlflow_server,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    registered = re.search(r"registered forest version (\d+) ", cli.stdout)
    assert registered, cli.stdout  # version 1 of "forest" there, or the next one (one server, both backends)

    # what the MLflow registry now holds, read back with MlflowClient
    ml = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    mv = ml.get_model_version("forest", registered.group(1))
    assert mv.tags["animus.project"] == project and mv.tags["animus.model"] == "forest"
    assert mv.tags["animus.version"] == "1" and mv.tags["animus.status"] == "approved"
    assert mv.tags["animus.digest"] == v["digest"]
    assert mv.description == f"Exported from Animus {project}/forest v1 (approved)"
    dst = tmp_path / "from-mlflow"
    dst.mkdir()
    local = Path(ml.download_artifacts(mv.run_id, "model", str(dst)))
    got = {
        str(p.relative_to(local)): hashlib.sha256(p.read_bytes()).hexdigest() for p in local.rglob("*") if p.is_file()
    }
    assert got == {f["path"]: f["sha256"] for f in v["files"]}
    manifest = json.loads(Path(ml.download_artifacts(mv.run_id, "animus-manifest.json", str(dst))).read_text())
    assert manifest["digest"] == v["digest"] and manifest["status"] == "approved"
    assert manifest["export"]["format"] == "mlflow"
    history = am.history("forest", 1, project, client=c)
    assert history[-1]["kind"] == "export" and history[-1]["evidence"]["target"]["format"] == "mlflow"
