"""KubernetesExecutor's API calls, as the real kubernetes_asyncio client sends them.

No Kubernetes API server can run here. ``k8s_fake_api.FakeKubeAPI`` fakes only the
API server's HTTP surface on 127.0.0.1 (records method, path, query and JSON body,
answers with the API's object and Status shapes); the executor and the client
library are the real ones. The tests assert the exact requests: the Job POSTed is
the builder's, the token Secret is owned by the Job's uid, status is read from
``.../jobs/NAME/status``, and deletion asks for foreground propagation.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from k8s_fake_api import FakeKubeAPI

from animus_hub.executors.base import LaunchSpec
from animus_hub.executors.kubernetes import KubernetesExecutor

RUN_ID = "fedcba9876543210fedcba9876543210"
IMAGE = "registry.example.com/ml/train:1.0@sha256:" + "cd" * 32
JOBS = "/apis/batch/v1/namespaces/animus-runs/jobs"
NAME = f"animus-run-{RUN_ID}-1"


@pytest.fixture
def fake():
    api = FakeKubeAPI().start()
    yield api
    api.stop()


def executor(fake: FakeKubeAPI, **config) -> KubernetesExecutor:
    return KubernetesExecutor(api_url=fake.url, request_timeout=5, **config)


def spec(**kw) -> LaunchSpec:
    args = dict(
        run_id=RUN_ID,
        project="churn",
        attempt=1,
        token="secret-run-token",
        api_url="http://animus-api:8090/services/animus/api/v1",
        timeout_seconds=300,
        resources={"cpu": 1, "memory_mb": 1024},
        image=IMAGE,
        priority=5,
    )
    args.update(kw)
    return LaunchSpec(**args)


def run(coro):
    return asyncio.run(coro)


async def _with(ex: KubernetesExecutor, coro):
    try:
        return await coro
    finally:
        await ex.close()


def test_launch_posts_the_built_job_then_a_secret_owned_by_it(fake):
    ex = executor(fake, priority_classes={"animus-normal": 0, "animus-high": 5, "animus-urgent": 100})
    s = spec()
    handle = run(_with(ex, ex.launch(s)))
    assert handle == f"k8s:animus-runs/{NAME}"
    assert fake.calls() == [("POST", JOBS), ("POST", "/api/v1/namespaces/animus-runs/secrets")]
    job_req, secret_req = fake.requests
    assert job_req.body == ex.build_job(s)
    labels = job_req.body["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "animus-churn"
    assert labels["kueue.x-k8s.io/priority-class"] == "animus-high"  # priority 5: highest threshold <= 5
    assert job_req.body["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    # the token travels only in the Secret, never in the Job
    assert "secret-run-token" not in str(job_req.body)
    uid = fake.jobs[("animus-runs", NAME)]["metadata"]["uid"]
    assert secret_req.body["metadata"]["name"] == NAME
    assert secret_req.body["metadata"]["ownerReferences"][0]["uid"] == uid
    assert secret_req.body["stringData"] == {"token": "secret-run-token"}
    stored = fake.secrets[("animus-runs", NAME)]
    assert base64.b64decode(stored["data"]["token"]) == b"secret-run-token"


def test_namespace_per_project_and_no_kueue(fake):
    ex = executor(fake, namespace="runs-{project}", queue_name="")
    handle = run(_with(ex, ex.launch(spec())))
    assert handle == f"k8s:runs-churn/{NAME}"
    body = fake.requests[0].body
    assert fake.requests[0].path == "/apis/batch/v1/namespaces/runs-churn/jobs"
    assert "kueue.x-k8s.io/queue-name" not in body["metadata"]["labels"]
    assert "kueue.x-k8s.io/priority-class" not in body["metadata"]["labels"]
    assert body["spec"]["suspend"] is False


def test_run_without_environment_uses_the_default_image_or_fails(fake):
    ex = executor(fake, default_image="registry.example.com/animus/runner:1")
    run(_with(ex, ex.launch(spec(image=""))))
    assert fake.requests[0].body["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/animus/runner:1"
    )
    ex = executor(fake)
    with pytest.raises(ValueError, match="needs an image"):
        run(_with(ex, ex.launch(spec(image="", attempt=2))))


def test_transient_api_errors_are_retried(fake):
    fake.fail("POST", "/jobs$", 503, times=2)
    ex = executor(fake)
    run(_with(ex, ex.launch(spec())))
    assert [c for c in fake.calls() if c[0] == "POST" and c[1] == JOBS] == [("POST", JOBS)] * 3
    assert ("animus-runs", NAME) in fake.jobs


def test_a_refused_secret_takes_the_job_back(fake):
    fake.fail("POST", "/secrets$", 403)
    ex = executor(fake)
    with pytest.raises(RuntimeError, match="Secret failed: HTTP 403"):
        run(_with(ex, ex.launch(spec())))
    assert fake.calls()[-1] == ("DELETE", f"{JOBS}/{NAME}")
    assert ("animus-runs", NAME) not in fake.jobs


def test_alive_reads_job_status_then_its_pods(fake):
    ex = executor(fake)

    async def go():
        handle = await ex.launch(spec())
        fake.requests.clear()
        fake.set_job_status("animus-runs", NAME, {"active": 1})
        fake.pods[f"animus-runs/{NAME}"] = [
            {
                "metadata": {
                    "name": NAME + "-x1",
                    "namespace": "animus-runs",
                    "labels": {"animus.io/run-id": RUN_ID, "animus.io/attempt": "1"},
                },
                "status": {"phase": "Running", "containerStatuses": []},
            }
        ]
        running = await ex.alive(handle)
        calls = fake.calls()
        query = fake.requests[-1].query
        # the image cannot be named: the pod never starts, the runner is as good as gone
        fake.pods[f"animus-runs/{NAME}"][0]["status"] = {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "runner",
                    "image": IMAGE,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "InvalidImageName"}},
                }
            ],
        }
        unstartable = await ex.alive(handle)
        fake.requests.clear()
        fake.set_job_status("animus-runs", NAME, {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]})
        failed = await ex.alive(handle)
        failed_calls = fake.calls()
        fake.set_job_status(
            "animus-runs", NAME, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        )
        complete = await ex.alive(handle)
        return running, calls, query, unstartable, failed, failed_calls, complete

    running, calls, query, unstartable, failed, failed_calls, complete = run(_with(ex, go()))
    assert running is True
    assert calls == [("GET", f"{JOBS}/{NAME}/status"), ("GET", "/api/v1/namespaces/animus-runs/pods")]
    assert query["labelSelector"] == [f"animus.io/run-id={RUN_ID},animus.io/attempt=1"]
    assert unstartable is False
    assert failed is False and failed_calls == [("GET", f"{JOBS}/{NAME}/status")]
    assert complete is False


def test_alive_of_a_deleted_job_is_false_and_of_an_unreachable_api_is_unknown(fake):
    ex = executor(fake, request_retries=2)

    async def go():
        gone = await ex.alive(f"k8s:animus-runs/{NAME}")
        fake.fail("GET", "/status$", 500, times=2)
        unknown = await ex.alive(f"k8s:animus-runs/{NAME}")
        foreign = await ex.alive("local:123:456")
        return gone, unknown, foreign

    assert run(_with(ex, go())) == (False, None, None)


def test_stop_deletes_with_foreground_propagation_and_is_idempotent(fake):
    ex = executor(fake)

    async def go():
        handle = await ex.launch(spec())
        fake.requests.clear()
        await ex.stop(handle)
        first = [(r.method, r.path, r.body) for r in fake.requests]
        fake.requests.clear()
        await ex.stop(handle)  # already gone: 404 is fine
        return first, fake.calls()

    first, second = run(_with(ex, go()))
    assert first == [("DELETE", f"{JOBS}/{NAME}", {"propagationPolicy": "Foreground"})]
    assert ("animus-runs", NAME) not in fake.jobs
    assert second == [("DELETE", f"{JOBS}/{NAME}")]


def test_stop_with_grace_waits_for_a_finished_job_before_deleting(fake):
    ex = executor(fake)

    async def go():
        handle = await ex.launch(spec())
        fake.set_job_status(
            "animus-runs", NAME, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        )
        fake.requests.clear()
        await ex.stop(handle, grace=2.0)
        return fake.calls()

    assert run(_with(ex, go())) == [("GET", f"{JOBS}/{NAME}/status"), ("DELETE", f"{JOBS}/{NAME}")]


def test_token_expiration_below_the_api_minimum_is_refused():
    with pytest.raises(Exception, match="at least 600"):
        KubernetesExecutor(token_expiration_seconds=60)


def test_a_job_that_already_exists_is_taken_over(fake):
    """A POST retried after a timeout may find the Job its first try created: it gets its Secret."""
    ex = executor(fake)
    s = spec()

    async def go():
        await ex.launch(s)
        del fake.secrets[("animus-runs", NAME)]  # as if the first try had stopped after the Job
        fake.requests.clear()
        return await ex.launch(s)

    handle = run(_with(ex, go()))
    assert handle == f"k8s:animus-runs/{NAME}"
    assert fake.calls() == [
        ("POST", JOBS),
        ("GET", f"{JOBS}/{NAME}"),
        ("POST", "/api/v1/namespaces/animus-runs/secrets"),
    ]
    uid = fake.jobs[("animus-runs", NAME)]["metadata"]["uid"]
    assert fake.requests[-1].body["metadata"]["ownerReferences"][0]["uid"] == uid
