"""Pipelines end to end: a real stack, a real git server (git daemon on 127.0.0.1), real runners.

A two-step pipeline over a dataset version in an environment with a lock file: the
first step fails once and succeeds on retry, the second consumes its output. Metrics
and artifacts recorded, RunFinished in the outbox, `reproduce` gives identical
artifact digests, the step cache serves a second identical pipeline, and the control
plane SIGKILLed mid-pipeline loses nothing and runs no successful step twice. Plus
the refusals of bad specs, each a 422 pointing at line and column.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import gitdaemon
import psutil
import pytest
import requests
from gitdaemon import git
from sqlalchemy import select
from stack import HubStack, run_queue_config, running_stack
from test_batch_runs import PINNED, db_session, wait_released

from animus import datasets as sdk_datasets
from animus.client import Client
from animus_hub.orm import Artifact, OutboxEvent, PipelineStep

SCRIPTS = {
    "prep.py": """
import os, sys, time
import animus
marker, log, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
attempt = os.environ["ANIMUS_RUN_ATTEMPT"]
with open(log, "a") as f:
    f.write(f"prep {os.environ['ANIMUS_RUN_ID']} {attempt}\\n")
if not os.path.exists(marker):
    open(marker, "w").write("failed once")
    print("prep: first attempt fails", flush=True)
    sys.exit(3)
rows = open(os.path.join(os.environ["ANIMUS_INPUT_DATA"], "data.csv")).read().splitlines()[1:]
time.sleep(pause)
os.makedirs("out/features", exist_ok=True)
with open("out/features/features.csv", "w") as f:
    f.write("x\\n" + "".join(f"{int(r.split(',')[0]) * 10}\\n" for r in rows))
with open("out/features/meta.txt", "w") as f:
    f.write(f"rows={len(rows)}\\n")
animus.log_metric("rows", len(rows))
print("prep: done", flush=True)
""",
    "train.py": """
import os, random, sys, time
import animus
log, pause = sys.argv[1], float(sys.argv[2])
with open(log, "a") as f:
    f.write(f"train {os.environ['ANIMUS_RUN_ID']} {os.environ['ANIMUS_RUN_ATTEMPT']}\\n")
features = os.environ["ANIMUS_INPUT_FEATURES"]
values = [int(v) for v in open(os.path.join(features, "features.csv")).read().split()[1:]]
time.sleep(pause)
random.seed(int(os.environ["ANIMUS_SEED"]))
noise = random.random()
os.makedirs("out", exist_ok=True)
with open("out/model.txt", "w") as f:
    f.write(f"weights={sum(values)} noise={noise:.12f}\\n")
animus.log_metric("loss", 1.0 / (1 + sum(values)))
print("train: done", sum(values), flush=True)
""",
}


def spec_yaml(marker: Path, log: Path, pause: float = 0.0, cache: bool = False) -> str:
    return f"""
version: 1
name: churn-features
defaults:
  environment: locked:1
  cache: {"true" if cache else "false"}
steps:
  prep:
    command: [python, prep.py, "{marker}", "{log}", "{pause}"]
    inputs:
      data: "churn:1"
    outputs:
      features: out/features
    retries: 1
    resources: {{cpu: 1, memory_mb: 2048}}
  train:
    command: [python, train.py, "{log}", "{pause}"]
    params: {{lr: 0.01}}
    inputs:
      features: steps.prep.outputs.features
    outputs:
      model: out/model.txt
    timeout: 600
"""


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    """A repository with the pipeline's scripts served by `git daemon` on 127.0.0.1: (url, head sha)."""
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for name, text in SCRIPTS.items():
        (work / name).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "pipeline scripts", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    with gitdaemon.serve(work, root) as url:
        yield url, head


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pipe_stack(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"pipelines-{request.param}")
    config = run_queue_config(root / "runs", RunQueue__heartbeat_timeout=5, Scheduler__lease_seconds=3)
    with running_stack(root, request.param, api_config=config) as s:
        yield s


@pytest.fixture(scope="module")
def ctx(pipe_stack, tmp_path_factory):
    """A project with dataset churn:1 and an environment locked:1 (pinned image, a lock file)."""
    s = pipe_stack
    project = f"pipe-{uuid.uuid4().hex[:6]}"
    owner = s.user_token(f"owner-{uuid.uuid4().hex[:6]}")
    assert s.api("POST", "/projects", owner, json={"slug": project}).status_code == 201
    client = Client(url=s.api_url, token=owner)
    data = tmp_path_factory.mktemp("data")
    (data / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    sdk_datasets.push("churn", data, project=project, client=client, progress=False)
    client.create_environment(project, "locked")
    client.add_environment_version(
        project, "locked", PINNED, "# no third-party packages: the platform's own suffice\n", {"cpu": 1}
    )
    return {"stack": s, "project": project, "client": client, "token": owner}


def wait_pipeline(client: Client, project: str, pipeline_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            p = client.get_pipeline(project, pipeline_id)
        except Exception:  # the API may be restarting
            p = {"status": "unknown"}
        if p["status"] in ("succeeded", "failed", "cancelled"):
            return p
        assert time.monotonic() < deadline, f"pipeline {pipeline_id} still {p['status']}: {p}"
        time.sleep(0.3)


def wait_runs(client: Client, project: str, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.run_job(project, run_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"run {run_id} still {job['status']}"
        time.sleep(0.3)


def attempts(log: Path) -> list[tuple[str, str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []


def artifacts(stack: HubStack, run_id: str) -> dict[str, str]:
    with db_session(stack) as s:
        return dict(s.execute(select(Artifact.path, Artifact.digest).where(Artifact.run_id == run_id)).all())


# --- the done-when test --------------------------------------------------------------------------


def test_two_step_pipeline_retries_passes_outputs_records_everything_and_reproduces(ctx, git_server, tmp_path):
    s, client, project = ctx["stack"], ctx["client"], ctx["project"]
    url, head = git_server
    marker, log = tmp_path / "marker", tmp_path / "attempts.log"
    p = client.submit_pipeline(project, spec_yaml(marker, log), url, "main")
    assert p["code"]["commit_sha"] == head and p["code"]["ref"] == "main"
    assert [(st["name"], st["needs"]) for st in p["steps"]] == [("prep", []), ("train", ["prep"])]
    assert p["spec_digest"].startswith("sha256:")
    p = wait_pipeline(client, project, p["id"])
    prep, train = p["steps"]
    assert p["status"] == "succeeded", p
    # the first step failed once (user code) and succeeded on its retry; the second ran once
    prep_job = client.run_job(project, prep["run_id"])
    assert prep_job["attempt"] == 2 and prep_job["user_failures"] == 1 and prep_job["exit_code"] == 0
    assert prep_job["resources"] == {"cpu": 1, "memory_mb": 2048}
    assert client.run_job(project, train["run_id"])["attempt"] == 1
    assert [a[0] for a in attempts(log)] == ["prep", "prep", "train"]
    # outputs uploaded as artifacts, content-addressed; the second step got exactly those files
    prep_files = artifacts(s, prep["run_id"])
    assert set(prep_files) == {"outputs/features/features.csv", "outputs/features/meta.txt"}
    assert prep["outputs"]["features"].startswith("sha256:")
    train_job = client.run_job(project, train["run_id"])
    upstream = [i for i in train_job["inputs"] if i.get("kind") == "artifact"][0]
    assert upstream["run_id"] == prep["run_id"] and upstream["digest"] == prep["outputs"]["features"]
    assert {f["artifact"]: f["digest"] for f in upstream["files"]} == prep_files
    assert "url" not in upstream["files"][0]  # presigned URLs only for the run's own runner
    model = artifacts(s, train["run_id"])
    assert list(model) == ["outputs/model/model.txt"]
    # metrics and params on the step runs
    assert client.get_run(project, prep["run_id"])["metrics"]["rows"]["value"] == 3
    full = client.get_run(project, train["run_id"])
    assert full["metrics"]["loss"]["value"] == pytest.approx(1 / 91)
    assert full["params"]["lr"] == "0.01"
    assert full["tags"]["animus.pipeline_run"] == p["id"]
    with db_session(s) as db:
        events = db.scalars(select(OutboxEvent).where(OutboxEvent.type == "RunFinished")).all()
        finished = {e.payload["run_id"]: e.payload["status"] for e in events}
        assert finished[prep["run_id"]] == "succeeded" and finished[train["run_id"]] == "succeeded"

    # reproduce the second step: the same commit, environment, inputs, params, command and seed
    again = client.reproduce_run(project, train["run_id"])
    assert again["reproduces"] == train["run_id"]
    assert again["job"]["seed"] == train_job["seed"] and again["job"]["command"] == train_job["command"]
    assert wait_runs(client, project, again["id"])["status"] == "succeeded"
    diff = client.artifact_diff(project, train["run_id"], again["id"])
    assert diff["identical"] and diff["same"] == ["outputs/model/model.txt"], diff
    assert artifacts(s, again["id"]) == model
    assert client.get_run(project, again["id"])["tags"]["animus.reproduces"] == train["run_id"]

    # the CLI does the same and prints the comparison
    env = {**os.environ, "ANIMUS_API_URL": s.api_url, "ANIMUS_TOKEN": ctx["token"], "ANIMUS_CONFIG_DIR": str(tmp_path)}
    cli = subprocess.run(
        [sys.executable, "-m", "animus.cli.main", "runs", "reproduce", "-p", project, prep["run_id"], "--timeout", "120"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "same       outputs/features/features.csv" in cli.stdout and "identical artifacts" in cli.stdout


def test_an_identical_pipeline_with_cache_is_served_from_the_earlier_steps(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    url, head = git_server
    marker, log = tmp_path / "marker", tmp_path / "attempts.log"
    marker.write_text("do not fail")
    first = wait_pipeline(
        client, project, client.submit_pipeline(project, spec_yaml(marker, log, cache=True), url, head)["id"]
    )
    assert first["status"] == "succeeded" and not any(st["cached"] for st in first["steps"])
    ran = len(attempts(log))
    second = client.submit_pipeline(project, spec_yaml(marker, log, cache=True), url, head)
    second = wait_pipeline(client, project, second["id"])
    assert second["status"] == "succeeded"
    assert [st["cached"] for st in second["steps"]] == [True, True]
    assert [st["cached_from_run_id"] for st in second["steps"]] == [st["run_id"] for st in first["steps"]]
    assert [st["outputs"] for st in second["steps"]] == [st["outputs"] for st in first["steps"]]
    assert len(attempts(log)) == ran  # nothing ran again


def test_cancel_stops_the_running_step_and_skips_the_rest(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    url, head = git_server
    marker, log = tmp_path / "marker", tmp_path / "attempts.log"
    marker.write_text("do not fail")
    p = client.submit_pipeline(project, spec_yaml(marker, log, pause=60), url, head)
    deadline = time.monotonic() + 60
    while client.get_pipeline(project, p["id"])["steps"][0]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = client.cancel_pipeline(project, p["id"])
    assert done["status"] == "cancelled"
    assert [st["status"] for st in done["steps"]] == ["cancelled", "skipped"]
    r = ctx["stack"].api("POST", f"/projects/{project}/pipelines/{p['id']}/cancel", ctx["token"])
    assert r.status_code == 409 and r.json()["reason"] == "pipeline_finished"


def test_a_step_that_fails_for_good_fails_the_pipeline(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    url, head = git_server
    log = tmp_path / "attempts.log"
    # no marker yet: the first step exits 3, and with no retries that is final
    spec = spec_yaml(tmp_path / "marker", log).replace("retries: 1", "retries: 0")
    p = wait_pipeline(client, project, client.submit_pipeline(project, spec, url, head)["id"])
    assert p["status"] == "failed" and "prep (failed)" in p["message"]
    assert [st["status"] for st in p["steps"]] == ["failed", "skipped"]


# --- the control plane killed mid-pipeline ----------------------------------------------------------


def _animus_api_process(stack: HubStack) -> psutil.Process:
    for child in psutil.Process(stack.proc.pid).children(recursive=True):
        try:
            if "animus_hub.app" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("animus-api is not running")


def test_sigkilled_control_plane_restarts_and_the_pipeline_completes_without_repeating_steps(ctx, git_server, tmp_path):
    s, client, project = ctx["stack"], ctx["client"], ctx["project"]
    url, head = git_server
    marker, log = tmp_path / "marker", tmp_path / "attempts.log"
    p = client.submit_pipeline(project, spec_yaml(marker, log, pause=4), url, head)
    # kill while the first step's successful attempt runs
    deadline = time.monotonic() + 90
    while len(attempts(log)) < 2:
        assert time.monotonic() < deadline, attempts(log)
        time.sleep(0.1)
    api = _animus_api_process(s)
    os.kill(api.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while api.is_running() and api.status() != psutil.STATUS_ZOMBIE:  # the hub reaps it when it polls
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with pytest.raises(requests.RequestException):
        requests.get(s.api_url + "/health", timeout=2).raise_for_status()
    # JupyterHub notices its managed service died and starts it again
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(s.api_url + "/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "animus-api did not come back"
        time.sleep(0.5)
    assert _animus_api_process(s).pid != api.pid
    p = wait_pipeline(client, project, p["id"], timeout=240)
    assert p["status"] == "succeeded", p
    prep, train = p["steps"]
    # no successful step ran twice: prep failed once then succeeded once; train ran once
    assert [a[0] for a in attempts(log)] == ["prep", "prep", "train"]
    prep_job, train_job = client.run_job(project, prep["run_id"]), client.run_job(project, train["run_id"])
    assert (prep_job["attempt"], prep_job["infra_failures"]) == (2, 0), prep_job
    assert (train_job["attempt"], train_job["infra_failures"]) == (1, 0), train_job
    # nothing lost: outputs, metrics, logs and the outbox events are all there
    assert set(artifacts(s, prep["run_id"])) == {"outputs/features/features.csv", "outputs/features/meta.txt"}
    assert list(artifacts(s, train["run_id"])) == ["outputs/model/model.txt"]
    assert client.get_run(project, train["run_id"])["metrics"]["loss"]["value"] == pytest.approx(1 / 91)
    text = "".join(i["text"] for i in client.run_logs(project, prep["run_id"])["items"])
    assert "prep: first attempt fails" in text and "prep: done" in text
    with db_session(s) as db:
        events = db.scalars(select(OutboxEvent).where(OutboxEvent.type == "RunFinished")).all()
        mine = [e.payload["status"] for e in events if e.payload["run_id"] in (prep["run_id"], train["run_id"])]
        assert mine == ["succeeded", "succeeded"]
        steps = db.scalars(select(PipelineStep).where(PipelineStep.pipeline_run_id == p["id"])).all()
        assert {st.status for st in steps} == {"succeeded"}
    assert wait_released(s, [st.run_id for st in steps])


# --- bad input ------------------------------------------------------------------------------------


BAD_SPECS = [
    (
        "cycle",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    inputs: {i: steps.b.outputs.o}\n    outputs: {o: x}\n"
        "  b:\n    command: [x]\n    inputs: {i: steps.a.outputs.o}\n    outputs: {o: x}\n",
        "pipeline_cycle",
        (3, 3),
        "a → b → a",
    ),
    (
        "unknown step",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    inputs: {i: steps.zz.outputs.o}\n",
        "pipeline_unknown_reference",
        (5, 17),
        "no step 'zz'",
    ),
    (
        "unknown output",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    outputs: {o: x}\n  b:\n    command: [x]\n"
        "    inputs: {i: steps.a.outputs.nope}\n",
        "pipeline_unknown_reference",
        (8, 17),
        "declares no output 'nope'",
    ),
    ("invalid yaml", "version: 1\nsteps:\n  a:\n    command: [x\n", "pipeline_unparsable", (5, 1), "not valid YAML"),
    (
        "unknown key",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    colour: red\n",
        "pipeline_invalid",
        (5, 5),
        "unknown key 'colour'",
    ),
    (
        "unknown top-level key",
        "version: 1\nstages: {}\nsteps:\n  a:\n    command: [x]\n",
        "pipeline_invalid",
        (2, 1),
        "unknown key 'stages'",
    ),
    (
        "negative resources",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    resources: {cpu: -1}\n",
        "pipeline_invalid",
        (5, 22),
        "resources/cpu",
    ),
    (
        "negative memory",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    resources:\n      memory_mb: -5\n",
        "pipeline_invalid",
        (6, 18),
        "resources/memory_mb",
    ),
    (
        "absurd gpus",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    resources: {gpu_count: 1000}\n",
        "pipeline_invalid",
        (5, 28),
        "gpu_count",
    ),
    (
        "output outside the code",
        "version: 1\nsteps:\n  a:\n    command: [x]\n    outputs: {o: ../etc}\n",
        "pipeline_invalid",
        (5, 18),
        "outputs/o",
    ),
    (
        "duplicate step",
        "version: 1\nsteps:\n  a:\n    command: [x]\n  a:\n    command: [y]\n",
        "pipeline_invalid",
        (5, 3),
        "duplicate key 'a'",
    ),
]


@pytest.mark.parametrize("spec, reason, position, words", [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_specs_are_refused_with_line_and_column(ctx, git_server, spec, reason, position, words):
    s, project = ctx["stack"], ctx["project"]
    before = len(list(ctx["client"].list_pipelines(project)))
    body = {"spec": spec, "repo": git_server[0], "commit": git_server[1]}
    r = s.api("POST", f"/projects/{project}/pipelines", ctx["token"], json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["reason"] == reason and (err["details"]["line"], err["details"]["column"]) == position, err
    assert words in err["message"] and f"line {position[0]} column {position[1]}" in err["message"]
    assert len(list(ctx["client"].list_pipelines(project))) == before


def test_unknown_environments_and_datasets_are_404_and_the_cli_shows_the_position(ctx, git_server, tmp_path):
    s, project = ctx["stack"], ctx["project"]
    for spec, reason in (
        ("version: 1\nsteps:\n  a:\n    command: [x]\n    environment: nope:1\n", "environment_not_found"),
        ("version: 1\nsteps:\n  a:\n    command: [x]\n    inputs: {d: 'nope:1'}\n", "dataset_not_found"),
    ):
        body = {"spec": spec, "repo": git_server[0], "commit": git_server[1]}
        r = s.api("POST", f"/projects/{project}/pipelines", ctx["token"], json=body)
        assert r.status_code == 404 and r.json()["reason"] == reason, r.text
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsteps:\n  a:\n    command: [x]\n    colour: red\n")
    env = {**os.environ, "ANIMUS_API_URL": s.api_url, "ANIMUS_TOKEN": ctx["token"], "ANIMUS_CONFIG_DIR": str(tmp_path)}
    cli = subprocess.run(
        [sys.executable, "-m", "animus.cli.main", "pipelines", "submit", "-p", project, str(bad),
         "--repo", git_server[0], "--commit", git_server[1]],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 1
    assert "line 5 column 5" in cli.stderr and "unknown key 'colour'" in cli.stderr
