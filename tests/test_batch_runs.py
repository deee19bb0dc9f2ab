"""Batch runs end to end: a real stack, a real git server (git daemon on 127.0.0.1), real runners.

Submission (ref resolution, production refusals, bad input), the queue (retries,
heartbeat loss after SIGKILL, timeouts, cancellation killing the process group),
logs with truncation, metrics logged by the SDK inside the run, RunFinished in the
outbox, and the run token's confinement to its own run.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import gitdaemon
import pytest
from gitdaemon import free_port, git
from sqlalchemy import select
from stack import HubStack, run_queue_config, running_stack

from animus import datasets as sdk_datasets
from animus.client import Client
from animus_hub import db as dbmod
from animus_hub.auth.tokens import issue_token
from animus_hub.orm import OutboxEvent, Project, RunJob

PINNED = "registry.example.com/ml/train:1.0@sha256:" + "ab" * 32
UNPINNED = "registry.example.com/ml/train:1.0"

SCRIPTS = {
    "train.py": """
import os, sys
import animus
print("training with", sys.argv[1:], flush=True)
inputs = os.environ["ANIMUS_INPUT_CHURN"]
data = open(os.path.join(inputs, "data.csv")).read()
print("rows:", len(data.splitlines()), flush=True)
# permission bits (root, as in this test, ignores them; the runner's user would not)
writable = [p for p in (inputs, os.path.join(inputs, "data.csv")) if os.stat(p).st_mode & 0o222]
print("inputs are", "WRITABLE" if writable else "read-only", flush=True)
with animus.start_run() as run:
    animus.log_metric("loss", 0.25, step=1)
    animus.log_param("lr", "0.01")
print("done", flush=True)
""",
    "fail_once.py": """
import os, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").write("failed once")
    print("first attempt fails", flush=True)
    sys.exit(3)
print("second attempt succeeds", flush=True)
""",
    "fail.py": "import sys\nprint('failing', flush=True)\nsys.exit(7)\n",
    "sleep.py": """
import os, sys, time
if len(sys.argv) > 1:
    open(sys.argv[1], "w").write(str(os.getpid()))
only_first = len(sys.argv) > 2 and sys.argv[2] == "first-attempt-only"
if not only_first or os.environ["ANIMUS_RUN_ATTEMPT"] == "1":
    print("sleeping", flush=True)
    time.sleep(120)
print("awake", flush=True)
""",
    "loud.py": "import sys\nfor i in range(4000):\n    print('x' * 99)\n",
}


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    """A repository with two commits served by `git daemon` on 127.0.0.1: (url, first sha, head sha)."""
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("first\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    for name, text in SCRIPTS.items():
        (work / name).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "scripts", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "v1", cwd=work)
    with gitdaemon.serve(work, root) as url:
        yield url, first, head


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def runs_stack(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"runs-{request.param}")
    config = run_queue_config(
        root / "runs", RunQueue__log_max_bytes=65536, RunQueue__project_concurrency=4, LocalExecutor__slots=6
    )
    with running_stack(root, request.param, api_config=config) as s:
        yield s


@pytest.fixture(scope="module")
def ctx(runs_stack, tmp_path_factory):
    """A project with a dataset churn:1, environments and a contributor's client."""
    s = runs_stack
    project = f"runs-{uuid.uuid4().hex[:6]}"
    owner = s.user_token(f"owner-{uuid.uuid4().hex[:6]}")
    assert s.api("POST", "/projects", owner, json={"slug": project}).status_code == 201
    client = Client(url=s.api_url, token=owner)
    data = tmp_path_factory.mktemp("data")
    (data / "data.csv").write_text("a,b\n1,2\n3,4\n")
    sdk_datasets.push("churn", data, project=project, client=client, progress=False)
    for name, image, lock in (
        ("pinned", PINNED, "# no third-party packages: the platform's own suffice\n"),
        ("nolock", PINNED, ""),
        ("unpinned", UNPINNED, "# nothing\n"),
    ):
        client.create_environment(project, name)
        client.add_environment_version(project, name, image, lock, {"cpu": 1, "memory_mb": 2048})
    return {"stack": s, "project": project, "client": client, "token": owner}


def wait_status(client: Client, project: str, run_id: str, statuses: tuple[str, ...], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.run_job(project, run_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"run {run_id} still {job['status']}: {job}"
        time.sleep(0.2)


def logs(client: Client, project: str, run_id: str) -> str:
    out, after = [], 0
    while True:
        page = client.run_logs(project, run_id, after=after)
        if not page["items"]:
            return "".join(out)
        out += [i["text"] for i in page["items"]]
        after = page["next"]


def submit(ctx, git_server, command, **kw):
    url, _, head = git_server
    kw.setdefault("environment", "pinned:1")
    return ctx["client"].submit_run(ctx["project"], url, kw.pop("commit", head), command, **kw)


def db_session(stack: HubStack):
    engine = dbmod.make_engine(stack.db_url)
    return dbmod.make_session_factory(engine)()


# --- the happy path ---------------------------------------------------------------------------


def test_submitted_run_is_queued_then_runs_and_succeeds_with_logs_metrics_and_run_finished(ctx, git_server):
    client, project = ctx["client"], ctx["project"]
    run = submit(
        ctx,
        git_server,
        ["python", "train.py", "--lr", "0.01"],
        datasets=["churn:1"],
        params={"lr": "0.01"},
        production=True,
    )
    assert run["kind"] == "batch" and run["status"] in ("queued", "starting")
    assert run["code"]["commit_sha"] == git_server[2]
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    text = logs(client, project, run["id"])
    assert job["status"] == "succeeded", text
    assert job["attempt"] == 1 and job["exit_code"] == 0
    assert "training with ['--lr', '0.01']" in text and "rows: 3" in text
    assert "inputs are read-only" in text
    full = client.get_run(project, run["id"])
    assert full["metrics"]["loss"]["value"] == 0.25
    assert full["params"]["lr"] == "0.01"
    assert [i["name"] for i in full["inputs"]] == ["churn"]
    with db_session(ctx["stack"]) as s:
        events = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "RunFinished")).all()
        mine = [e for e in events if e.payload["run_id"] == run["id"]]
        assert [e.payload["status"] for e in mine] == ["succeeded"]
    # the runner's process group is cleaned up by the scheduler's next round
    assert wait_released(ctx["stack"], [run["id"]])


def wait_released(stack: HubStack, run_ids: list[str], timeout: float = 30) -> bool:
    """Whether every run's job is marked released (its process group stopped) within `timeout`."""
    deadline = time.monotonic() + timeout
    with db_session(stack) as s:
        while True:
            if all(s.get(RunJob, rid).released for rid in run_ids):
                return True
            if time.monotonic() > deadline:
                return False
            s.rollback()  # end the read transaction: the next look sees new commits
            s.expire_all()
            time.sleep(0.2)


def test_a_branch_or_tag_is_resolved_once_to_its_sha(ctx, git_server):
    run = submit(ctx, git_server, ["python", "-c", "print(1)"], commit="main")
    assert run["code"]["commit_sha"] == git_server[2]
    assert run["job"]["code"]["ref"] == "main"
    tagged = submit(ctx, git_server, ["python", "-c", "print(1)"], commit="v1")
    assert tagged["code"]["commit_sha"] == git_server[2]
    older = submit(ctx, git_server, ["python", "-c", "print(1)"], commit=git_server[1])
    assert older["code"]["commit_sha"] == git_server[1]  # not a ref tip: checked by fetching it
    for r in (run, tagged, older):
        assert wait_status(ctx["client"], ctx["project"], r["id"], ("succeeded", "failed"))["status"] == "succeeded"


def test_submission_is_idempotent_with_the_same_key(ctx, git_server):
    key = uuid.uuid4().hex
    a = submit(ctx, git_server, ["python", "-c", "print(1)"], idempotency_key=key)
    b = submit(ctx, git_server, ["python", "-c", "print(1)"], idempotency_key=key)
    assert a["id"] == b["id"]


# --- failures, retries, timeouts, cancellation --------------------------------------------------


def test_failing_code_is_not_retried_unless_asked(ctx, git_server):
    client, project = ctx["client"], ctx["project"]
    run = submit(ctx, git_server, ["python", "fail.py"])
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    assert job["status"] == "failed" and job["exit_code"] == 7 and job["failure_kind"] == "user"
    assert job["attempt"] == 1
    assert "failing" in logs(client, project, run["id"])


def test_failing_code_is_retried_when_configured_and_succeeds(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    run = submit(ctx, git_server, ["python", "fail_once.py", str(tmp_path / "marker")], retries=1)
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded" and job["attempt"] == 2 and job["user_failures"] == 1
    text = logs(client, project, run["id"])
    assert "first attempt fails" in text and "second attempt succeeds" in text


def test_a_runner_killed_with_sigkill_loses_its_heartbeat_and_the_run_is_retried(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    pid_file = tmp_path / "pid"
    run = submit(ctx, git_server, ["python", "sleep.py", str(pid_file), "first-attempt-only"])
    wait_status(client, project, run["id"], ("running",))
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    child = int(pid_file.read_text())
    with db_session(ctx["stack"]) as s:
        runner_pid = int(s.get(RunJob, run["id"]).handle.split(":")[1])
    os.kill(runner_pid, signal.SIGKILL)  # the runner only: its child keeps sleeping
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2 and job["infra_failures"] == 1 and job["user_failures"] == 0
    _wait_gone(child)  # the first attempt's leftover process was killed with its group
    assert "awake" in logs(client, project, run["id"])


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return  # a zombie: dead, waiting for its parent
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.1)


def test_timeout_fails_the_run_and_kills_it(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    pid_file = tmp_path / "pid"
    run = submit(ctx, git_server, ["python", "sleep.py", str(pid_file)], timeout_seconds=3)
    job = wait_status(client, project, run["id"], ("succeeded", "failed", "cancelled"))
    assert job["status"] == "failed" and job["failure_kind"] == "timeout" and job["attempt"] == 1
    _wait_gone(int(pid_file.read_text()))


def test_cancel_kills_the_process_group(ctx, git_server, tmp_path):
    client, project = ctx["client"], ctx["project"]
    pid_file = tmp_path / "pid"
    run = submit(ctx, git_server, ["python", "sleep.py", str(pid_file)])
    wait_status(client, project, run["id"], ("running",))
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.cancel_run(project, run["id"])["status"] == "cancelled"
    _wait_gone(int(pid_file.read_text()))
    assert client.run_job(project, run["id"])["status"] == "cancelled"
    with pytest.raises(Exception) as e:
        client.cancel_run(project, run["id"])
    assert getattr(e.value, "status", None) == 409


def test_cancelling_a_queued_run_means_it_never_starts(ctx, git_server):
    client, project = ctx["client"], ctx["project"]
    run = submit(ctx, git_server, ["python", "-c", "print('should not run')"], environment="pinned:1")
    client.cancel_run(project, run["id"])
    time.sleep(2)
    job = client.run_job(project, run["id"])
    assert job["status"] == "cancelled" and job["attempt"] in (0, 1)
    assert "should not run" not in logs(client, project, run["id"])


def test_oversize_output_is_capped_with_a_visible_marker(ctx, git_server):
    client, project = ctx["client"], ctx["project"]
    run = submit(ctx, git_server, ["python", "loud.py"])
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded" and job["log_truncated"]
    text = logs(client, project, run["id"])
    assert "[animus: log truncated at 65536 bytes" in text
    assert len(text.encode()) < 65536 + 1000


# --- refusals -------------------------------------------------------------------------------------


def _refused(ctx, git_server, status: int, reason: str, command=("python", "-c", "1"), **kw) -> dict:
    url, _, head = git_server
    body = {"repo": url, "commit": head, "command": list(command), **kw}
    r = ctx["stack"].api("POST", f"/projects/{ctx['project']}/runs/submit", ctx["token"], json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["reason"] == reason, err
    return err


@pytest.mark.parametrize(
    "kw, missing",
    [
        ({"environment": "unpinned:1", "datasets": ["churn:1"]}, ["image_digest"]),
        ({"environment": "nolock:1", "datasets": ["churn:1"]}, ["lock_file"]),
        ({"environment": "pinned:1", "datasets": ["churn"]}, ["dataset_version:churn"]),
        ({"environment": "pinned:1", "datasets": ["churn:latest"]}, ["dataset_version:churn"]),
        ({"environment": "pinned:1", "commit": "main"}, ["commit_sha"]),
        ({"environment": "pinned"}, ["environment_version"]),
        ({}, ["environment"]),
    ],
)
def test_production_runs_refuse_what_is_not_pinned(ctx, git_server, kw, missing):
    before = len(list(ctx["client"].search_runs(ctx["project"], "attributes.kind = 'batch'")))
    err = _refused(ctx, git_server, 422, "production_requirements_missing", production=True, **kw)
    assert err["details"]["missing"] == missing
    assert len(list(ctx["client"].search_runs(ctx["project"], "attributes.kind = 'batch'"))) == before


def test_bad_commits_and_repositories_are_refused(ctx, git_server):
    _refused(ctx, git_server, 422, "invalid_commit_sha", commit="abc1234")
    _refused(ctx, git_server, 422, "commit_not_found", commit="0123456789" * 4)
    _refused(ctx, git_server, 422, "ref_not_found", commit="no-such-branch")
    _refused(ctx, git_server, 422, "repo_unreachable", repo=f"git://127.0.0.1:{free_port()}/nope.git")
    _refused(ctx, git_server, 422, "invalid_repo_url", repo="file:///etc")
    _refused(ctx, git_server, 422, "invalid_repo_url", repo="https://user:secret@git.example.com/x.git")
    _refused(ctx, git_server, 404, "environment_not_found", environment="nope:1")
    _refused(ctx, git_server, 404, "dataset_not_found", datasets=["nope:1"])
    _refused(ctx, git_server, 422, "validation_failed", command=[])


@pytest.mark.parametrize(
    "resources",
    [{"cpu": -1}, {"memory_mb": 10**12}, {"gpu_count": 1000}, {"cpu": "4"}, {"gpu_type": "a100"}, {"disk": 1}],
)
def test_negative_or_absurd_resources_are_refused(ctx, resources):
    s, project = ctx["stack"], ctx["project"]
    r = s.api(
        "POST",
        f"/projects/{project}/environments/pinned/versions",
        ctx["token"],
        json={"image": PINNED, "resources": resources},
    )
    assert r.status_code == 422 and r.json()["reason"] == "invalid_resources", r.text
    versions = ctx["client"].list_environment_versions(project, "pinned")
    assert [v["version"] for v in versions] == [1]


def test_environment_versions_are_numbered_and_report_pinning(ctx):
    s, project = ctx["stack"], ctx["project"]
    r = s.api("POST", f"/projects/{project}/environments", ctx["token"], json={"name": "gpu"})
    assert r.status_code == 201
    v = ctx["client"].add_environment_version(
        project,
        "gpu",
        PINNED,
        "torch==2.5.1 --hash=sha256:" + "0" * 64 + "\n",
        {"cpu": 8, "memory_mb": 65536, "gpu_count": 2, "gpu_type": "nvidia-a100-80gb"},
    )
    assert v["ref"] == "gpu:1" and v["image_pinned"] and v["lock_digest"].startswith("sha256:")
    u = ctx["client"].add_environment_version(project, "gpu", UNPINNED)
    assert u["version"] == 2 and not u["image_pinned"] and u["lock_digest"] is None
    r = s.api("POST", f"/projects/{project}/environments/gpu/versions", ctx["token"], json={"image": "Not An Image!"})
    assert r.status_code == 422 and r.json()["reason"] == "invalid_image"


# --- the run token ------------------------------------------------------------------------------


def test_a_run_token_touches_only_its_own_run(ctx, git_server):
    client, project, s = ctx["client"], ctx["project"], ctx["stack"]
    mine = submit(ctx, git_server, ["python", "-c", "print(1)"])
    other = submit(ctx, git_server, ["python", "-c", "print(2)"])
    with db_session(s) as db:
        p = db.scalar(select(Project).where(Project.slug == project))
        token, value = issue_token(db, kind="run", project=p, created_by="test", scopes=["write"])
        token.run_id = mine["id"]
        db.commit()
    assert s.api("GET", f"/projects/{project}/runs/{mine['id']}/job", value).status_code == 200
    assert s.api("GET", f"/projects/{project}/runs/{other['id']}/job", value).status_code == 404
    r = s.api(
        "POST", f"/projects/{project}/runs/{other['id']}/log-batch", value, json={"metrics": [{"key": "m", "value": 1}]}
    )
    assert r.status_code == 404
    assert s.api("GET", f"/projects/{project}/runs", value).status_code == 403
    r = s.api("POST", f"/projects/{project}/runs", value, json={"name": "sneaky"})
    assert r.status_code == 403
    assert s.api("GET", f"/projects/{project}/datasets/churn", value).status_code == 200
    # people cannot fake a runner's report
    r = s.api(
        "POST",
        f"/projects/{project}/runs/{mine['id']}/report",
        ctx["token"],
        json={"attempt": 1, "state": "exited", "exit_code": 0},
    )
    assert r.status_code == 403
    for r in (mine, other):
        wait_status(client, project, r["id"], ("succeeded", "failed"))
    # the run ended: its tokens are revoked, so a leftover runner can do nothing
    with db_session(s) as db:
        from animus_hub.orm import Token

        live = db.scalars(select(Token).where(Token.run_id == mine["id"], Token.revoked_at.is_(None))).all()
        assert live == []


def test_a_batch_runs_status_cannot_be_set_through_tracking(ctx, git_server):
    run = submit(ctx, git_server, ["python", "-c", "print(1)"])
    r = ctx["stack"].api(
        "PATCH", f"/projects/{ctx['project']}/runs/{run['id']}", ctx["token"], json={"status": "succeeded"}
    )
    assert r.status_code == 409 and r.json()["reason"] == "batch_run_status"
    wait_status(ctx["client"], ctx["project"], run["id"], ("succeeded",))


# --- the model registry's pinned-environment check ---------------------------------------------

LOG_MODEL = """
import pathlib, animus
pathlib.Path("model.bin").write_bytes(b"weights of a batch run")
with animus.start_run() as run:
    run.log_artifact("model.bin")
"""
PINNED_POLICY = """\
version: 1
transitions:
  validated:
    roles: [contributor, maintainer, owner]
    lineage:
      commit_sha: true
      pinned_environment: true
"""


def test_a_policy_requiring_a_pinned_environment_passes_a_production_run_and_refuses_others(ctx, git_server):
    import animus.models as am
    from animus.client import AnimusAPIError
    from animus.tracking import Run

    client, project = ctx["client"], ctx["project"]
    am.put_policy(PINNED_POLICY, project, "pinned environments only", client=client)
    am.create_model("pinned-env", project, client=client)

    # a production batch run on pinned:1 (image by digest, a lock file): the check passes, with evidence
    run = submit(ctx, git_server, ["python", "-c", LOG_MODEL], production=True)
    assert wait_status(client, project, run["id"], ("succeeded", "failed"))["status"] == "succeeded"
    am.register("pinned-env", run["id"], "model.bin", project, client=client)
    r = am.transition("pinned-env", 1, "validated", "reproducible", project, client=client)
    assert r["outcome"] == "transitioned" and r["version"]["status"] == "validated", r
    check = next(c for c in r["checks"] if c["check"] == "pinned_environment")
    assert check["ok"] and check["environment"]["ref"] == "pinned:1"
    assert check["environment"]["image"] == PINNED and check["environment"]["lock_digest"].startswith("sha256:")

    # a batch run on an environment without a lock file: refused, saying what it lacks
    nolock = submit(ctx, git_server, ["python", "-c", LOG_MODEL], environment="nolock:1")
    assert wait_status(client, project, nolock["id"], ("succeeded", "failed"))["status"] == "succeeded"
    am.register("pinned-env", nolock["id"], "model.bin", project, client=client)
    with pytest.raises(AnimusAPIError) as e:
        am.transition("pinned-env", 2, "validated", project=project, client=client)
    assert (e.value.status, e.value.reason) == (422, "policy_check_failed")
    assert "nolock:1, which lacks a lock file" in e.value.message

    # an interactive run (a notebook's): refused, explained, the version stays in draft
    data = client.request(
        "POST",
        f"/projects/{project}/runs",
        json_body={"name": "notebook", "code": {"repo_url": git_server[0], "commit_sha": git_server[2]}},
    )
    interactive = Run(client, project, data)
    interactive.log_artifact(Path(__file__))
    interactive.end()
    am.register("pinned-env", interactive.id, Path(__file__).name, project, client=client)
    with pytest.raises(AnimusAPIError) as e:
        am.transition("pinned-env", 3, "validated", project=project, client=client)
    assert (e.value.status, e.value.reason) == (422, "policy_check_failed")
    assert f"Run {interactive.id} records no environment version: it is not a batch run" in e.value.message
    assert am.get_version("pinned-env", 3, project, client=client)["status"] == "draft"
    assert [h["kind"] for h in am.history("pinned-env", 3, project, client=client)] == ["validation_failed"]
