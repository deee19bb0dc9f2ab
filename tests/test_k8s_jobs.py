"""The run Job builder: valid against the API's schema, and the rules a schema cannot check.

No API server can run here: the dicts are validated strictly with kubernetes-validate
(schema 1.30, the oldest release we support) and every semantic rule — no retries by
Kubernetes, no service-account token, unprivileged, read-only root — is asserted
explicitly, since a schema accepts e.g. ``restartPolicy: Always`` in a Job.
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from animus_hub.k8s.jobs import (
    KUEUE_PRIORITY_LABEL,
    KUEUE_QUEUE_LABEL,
    RunPodTemplate,
    job_name,
    make_run_job,
    make_token_secret,
)

K8S_VERSION = "1.30"
IMAGE = "registry.example.com/ml/train:1.0@sha256:" + "ab" * 32
RUN_ID = "0123456789abcdef0123456789abcdef"


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def build(**kw) -> dict:
    args = dict(
        run_id=RUN_ID,
        project="churn",
        attempt=2,
        image=IMAGE,
        api_url="http://animus-api.animus.svc:8090/services/animus/api/v1",
        resources={"cpu": 2, "memory_mb": 4096},
        timeout_seconds=600,
    )
    args.update(kw)
    return make_run_job(**args)


def pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def container(job: dict) -> dict:
    (c,) = pod_spec(job)["containers"]
    return c


def test_cpu_job_is_valid_and_never_retried_by_kubernetes():
    job = build()
    validate(job)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1
    assert pod_spec(job)["restartPolicy"] == "Never"
    # the scheduler's timeout (600 s) fires first; the Job's deadline is the backstop
    assert job["spec"]["activeDeadlineSeconds"] == 600 + RunPodTemplate().deadline_grace_seconds
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert job["spec"]["suspend"] is False  # no Kueue queue: starts at once


def test_job_without_timeout_gets_the_default_deadline():
    job = build(timeout_seconds=None, template=RunPodTemplate(default_deadline_seconds=86400))
    assert job["spec"]["activeDeadlineSeconds"] == 86400


def test_labels_link_job_and_pod_to_project_run_and_attempt():
    job = build()
    labels = job["metadata"]["labels"]
    assert labels["animus.io/project"] == "churn"
    assert labels["animus.io/run-id"] == RUN_ID
    assert labels["animus.io/attempt"] == "2"
    assert labels["app.kubernetes.io/managed-by"] == "animus"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["metadata"]["name"] == job_name(RUN_ID, 2) == f"animus-run-{RUN_ID}-2"
    assert KUEUE_QUEUE_LABEL not in labels and KUEUE_PRIORITY_LABEL not in labels


def test_kueue_labels_and_suspended_job():
    job = build(queue_name="animus-churn", priority_class="animus-high")
    validate(job)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels[KUEUE_QUEUE_LABEL] == "animus-churn"
        assert labels[KUEUE_PRIORITY_LABEL] == "animus-high"
    # Kueue admits a Job by unsuspending it
    assert job["spec"]["suspend"] is True


def test_no_service_account_token_is_automounted_and_credentials_are_a_projected_volume():
    job = build()
    spec = pod_spec(job)
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    volumes = {v["name"]: v for v in spec["volumes"]}
    creds = volumes["animus-credentials"]["projected"]
    assert creds["defaultMode"] == 0o400
    (source,) = creds["sources"]  # no audience configured: the run token only, no SA token
    assert source["secret"]["name"] == job["metadata"]["name"]
    assert source["secret"]["items"] == [{"key": "token", "path": "token", "mode": 0o400}]
    mounts = {m["mountPath"]: m for m in container(job)["volumeMounts"]}
    assert mounts["/var/run/secrets/animus"]["readOnly"] is True
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["ANIMUS_TOKEN_FILE"] == "/var/run/secrets/animus/token"
    assert "ANIMUS_TOKEN" not in env
    assert all("valueFrom" not in e for e in container(job)["env"])


def test_projected_service_account_token_has_audience_and_expiry():
    t = RunPodTemplate(service_account="animus-runner", token_audience="vault", token_expiration_seconds=900)
    job = build(template=t)
    validate(job)
    spec = pod_spec(job)
    assert spec["serviceAccountName"] == "animus-runner"
    assert spec["automountServiceAccountToken"] is False
    sources = next(v for v in spec["volumes"] if v["name"] == "animus-credentials")["projected"]["sources"]
    sa = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    assert sa == [{"audience": "vault", "expirationSeconds": 900, "path": "sa-token"}]
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["ANIMUS_SA_TOKEN_FILE"] == "/var/run/secrets/animus/sa-token"


def test_runs_unprivileged_with_a_read_only_root_and_writable_tmp_and_workdir():
    job = build()
    spec = pod_spec(job)
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(job)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/work"]]
    assert container(job)["workingDir"] == "/work"
    # every mount names a volume of the pod, and no host path sneaks in
    assert set(mounts.values()) <= set(volumes)
    assert not any("hostPath" in v for v in spec["volumes"])
    assert spec["enableServiceLinks"] is False
    assert "hostNetwork" not in spec and "hostPID" not in spec


def test_cpu_run_resources_and_no_gpu_tolerations():
    job = build(resources={"cpu": 0.5, "memory_mb": 1024})
    res = container(job)["resources"]
    assert res["requests"] == res["limits"] == {"cpu": "500m", "memory": "1024Mi"}
    assert "tolerations" not in pod_spec(job)
    assert "nodeSelector" not in pod_spec(job)
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["ANIMUS_MEMORY_LIMIT_MB"] == "1024"


def test_gpu_run_requests_gpus_tolerates_gpu_taints_and_selects_the_gpu_type():
    t = RunPodTemplate(
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        node_selector={"pool": "batch"},
    )
    job = build(
        resources={"cpu": 8, "memory_mb": 65536, "gpu_count": 2, "gpu_type": "NVIDIA-A100-SXM4-80GB"}, template=t
    )
    validate(job)
    res = container(job)["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "2" and res["requests"]["nvidia.com/gpu"] == "2"
    assert res["limits"]["cpu"] == "8000m" and res["limits"]["memory"] == "65536Mi"
    tolerations = pod_spec(job)["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in tolerations
    assert pod_spec(job)["nodeSelector"] == {"pool": "batch", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def test_empty_template_gets_default_sizes():
    job = build(resources={})
    validate(job)
    res = container(job)["resources"]
    assert res["limits"] == {"cpu": "1000m", "memory": "2048Mi"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"image": ""}, "needs an image"),
        ({"resources": {"gpu_count": 1, "gpu_type": "nvidia/a100"}}, "label value"),
        ({"queue_name": "not a label"}, "label value"),
    ],
)
def test_builder_refuses_what_kubernetes_would_refuse(kw, match):
    with pytest.raises(ValueError, match=match):
        build(**kw)


def test_job_names_are_dns_labels():
    for run_id, attempt in ((RUN_ID, 1), (RUN_ID, 9999), ("Odd_ID.with/chars" * 5, 3)):
        name = job_name(run_id, attempt)
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_token_secret_is_immutable_owned_by_its_job_and_valid():
    secret = make_token_secret(
        name="animus-run-x-1", namespace="animus-runs", token="tok", labels={"animus.io/run-id": "x"}, owner_uid="u-1"
    )
    validate(secret)
    assert secret["immutable"] is True
    assert secret["stringData"] == {"token": "tok"}
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "animus-run-x-1",
        "uid": "u-1",
        "blockOwnerDeletion": True,
    }


def test_runner_reads_its_token_from_the_projected_file(tmp_path, monkeypatch):
    from animus.runner.main import read_token_file

    (tmp_path / "token").write_text("run-token-value\n")
    monkeypatch.delenv("ANIMUS_TOKEN", raising=False)
    monkeypatch.setenv("ANIMUS_TOKEN_FILE", str(tmp_path / "token"))
    read_token_file()
    import os

    assert os.environ["ANIMUS_TOKEN"] == "run-token-value"
