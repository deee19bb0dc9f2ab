"""The Job of one batch-run attempt, and the Secret that carries its run token.

One ``batch/v1`` Job per attempt, never retried by Kubernetes (``backoffLimit: 0``,
``restartPolicy: Never``): the Animus scheduler owns retries, so it can tell a
user's non-zero exit from a lost node. The pod runs ``animus-runner`` in the
environment version's image, unprivileged and with a read-only root filesystem;
only ``/tmp`` and the working directory are writable (emptyDir volumes).

Credentials reach the pod as one projected volume, never as environment variables
and never as the pod's default service-account token (``automountServiceAccountToken:
false``):

* ``token``: the attempt's run token from a Secret owned by the Job (deleted with
  it). The token itself expires with the run and is revoked when the attempt ends.
* ``sa-token`` (only when an audience is configured): a projected service-account
  token bound to that audience and valid for ``expirationSeconds`` (the kubelet
  rotates it), e.g. for the runner's login to Vault's Kubernetes auth method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client import models as m

CREDENTIALS_DIR = "/var/run/secrets/animus"
TOKEN_KEY = "token"  # noqa: S105 (a file name, not a secret)
SA_TOKEN_PATH = "sa-token"  # noqa: S105 (a file name)
WORK_DIR = "/work"

LABEL_PROJECT = "animus.io/project"
LABEL_RUN = "animus.io/run-id"
LABEL_ATTEMPT = "animus.io/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


def to_dict(obj: Any) -> Any:
    """A model (or list/dict of models) as the API's JSON, the way the client serialises request bodies."""
    # sanitize_for_serialization uses no instance state: skip ApiClient.__init__, which opens an HTTP pool
    return ApiClient.sanitize_for_serialization(ApiClient.__new__(ApiClient), obj)


def label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        raise ValueError(f"{value[:80]!r} is not a valid Kubernetes label value")
    return value


def job_name(run_id: str, attempt: int) -> str:
    """``animus-run-<run id>-<attempt>``: a DNS label, unique per attempt."""
    rid = _DNS_LABEL_BAD.sub("-", run_id.lower()).strip("-")[:40] or "run"
    return f"animus-run-{rid}-{int(attempt)}"


@dataclass
class RunPodTemplate:
    """What the operator decides about every run pod (``c.KubernetesExecutor.*``); the
    environment version's resource template decides the sizes."""

    namespace: str = "animus-runs"
    runner_command: list[str] = field(default_factory=lambda: ["animus-runner"])
    service_account: str = ""
    #: audience of the projected service-account token; "" mounts none
    token_audience: str = ""
    token_expiration_seconds: int = 600
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    gpu_tolerations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_resource_name: str = "nvidia.com/gpu"
    #: node label that names the GPU model (the NVIDIA GPU feature discovery label by default)
    gpu_type_label: str = "nvidia.com/gpu.product"
    default_cpu: float = 1.0
    default_memory_mb: int = 2048
    run_as_user: int = 1000
    run_as_group: int = 1000
    work_dir_size: str = "20Gi"
    tmp_size: str = "2Gi"
    ttl_seconds_after_finished: int = 3600
    #: deadline of runs without a timeout
    default_deadline_seconds: int = 7 * 24 * 3600
    #: the Job's deadline is the run's timeout plus this, so the scheduler's own timeout fires first
    deadline_grace_seconds: int = 120
    termination_grace_seconds: int = 10
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)


def _tolerations(raw: list[dict[str, Any]]) -> list[m.V1Toleration]:
    return [
        m.V1Toleration(
            key=t.get("key"),
            operator=t.get("operator"),
            value=t.get("value"),
            effect=t.get("effect"),
            toleration_seconds=t.get("tolerationSeconds"),
        )
        for t in raw
    ]


def _resources(resources: dict[str, Any], template: RunPodTemplate) -> tuple[m.V1ResourceRequirements, int]:
    cpu = resources.get("cpu") or template.default_cpu
    memory = int(resources.get("memory_mb") or template.default_memory_mb)
    gpus = int(resources.get("gpu_count") or 0)
    # requests == limits: the run gets what Kueue admitted, and the pod is in the Guaranteed QoS class
    amounts = {"cpu": f"{int(round(float(cpu) * 1000))}m", "memory": f"{memory}Mi"}
    if gpus:
        amounts[template.gpu_resource_name] = str(gpus)
    return m.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts)), gpus


def make_run_job(
    *,
    run_id: str,
    project: str,
    attempt: int,
    image: str,
    api_url: str,
    resources: dict[str, Any] | None = None,
    timeout_seconds: int | None = None,
    heartbeat_interval: float = 10.0,
    token_secret: str | None = None,
    queue_name: str | None = None,
    priority_class: str | None = None,
    template: RunPodTemplate | None = None,
) -> dict[str, Any]:
    """The ``batch/v1`` Job of one attempt, as a dict.

    `resources` is the environment version's template (cpu, memory_mb, gpu_count,
    gpu_type); `queue_name` and `priority_class` become Kueue labels (the Job is then
    created suspended, Kueue starts it on admission); `token_secret` names the
    Secret with the run token (default: the Job's own name).
    """
    t = template or RunPodTemplate()
    if not image:
        raise ValueError("a run Job needs an image (the environment version's, or the executor's default_image)")
    resources = resources or {}
    name = job_name(run_id, attempt)
    labels = {
        "app.kubernetes.io/name": "animus-runner",
        "app.kubernetes.io/component": "batch-run",
        "app.kubernetes.io/managed-by": "animus",
        LABEL_PROJECT: label_value(project),
        LABEL_RUN: label_value(run_id),
        LABEL_ATTEMPT: str(int(attempt)),
    }
    if queue_name:
        labels[KUEUE_QUEUE_LABEL] = label_value(queue_name)
    if priority_class:
        labels[KUEUE_PRIORITY_LABEL] = label_value(priority_class)

    requirements, gpus = _resources(resources, t)
    tolerations = list(t.tolerations) + (list(t.gpu_tolerations) if gpus else [])
    node_selector = dict(t.node_selector)
    if gpus and resources.get("gpu_type"):
        node_selector[t.gpu_type_label] = label_value(str(resources["gpu_type"]))

    env = {
        **t.extra_env,
        "ANIMUS_API_URL": api_url,
        "ANIMUS_TOKEN_FILE": f"{CREDENTIALS_DIR}/{TOKEN_KEY}",
        "ANIMUS_PROJECT": project,
        "ANIMUS_RUN_ID": run_id,
        "ANIMUS_RUN_ATTEMPT": str(int(attempt)),
        "ANIMUS_RUNNER_CACHE": f"{WORK_DIR}/.cache",
        "ANIMUS_HEARTBEAT_INTERVAL": str(heartbeat_interval),
        "HOME": WORK_DIR,
        "TMPDIR": "/tmp",  # noqa: S108 (an emptyDir of its own)
    }
    if resources.get("memory_mb"):
        env["ANIMUS_MEMORY_LIMIT_MB"] = str(int(resources["memory_mb"]))
    if t.token_audience:
        env["ANIMUS_SA_TOKEN_FILE"] = f"{CREDENTIALS_DIR}/{SA_TOKEN_PATH}"

    sources = [
        m.V1VolumeProjection(
            secret=m.V1SecretProjection(
                name=token_secret or name,
                items=[m.V1KeyToPath(key=TOKEN_KEY, path=TOKEN_KEY, mode=0o400)],
                optional=False,
            )
        )
    ]
    if t.token_audience:
        sources.append(
            m.V1VolumeProjection(
                service_account_token=m.V1ServiceAccountTokenProjection(
                    audience=t.token_audience,
                    expiration_seconds=t.token_expiration_seconds,
                    path=SA_TOKEN_PATH,
                )
            )
        )
    volumes = [
        m.V1Volume(name="tmp", empty_dir=m.V1EmptyDirVolumeSource(size_limit=t.tmp_size)),
        m.V1Volume(name="work", empty_dir=m.V1EmptyDirVolumeSource(size_limit=t.work_dir_size)),
        m.V1Volume(
            name="animus-credentials",
            projected=m.V1ProjectedVolumeSource(sources=sources, default_mode=0o400),
        ),
    ]
    mounts = [
        m.V1VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108
        m.V1VolumeMount(name="work", mount_path=WORK_DIR),
        m.V1VolumeMount(name="animus-credentials", mount_path=CREDENTIALS_DIR, read_only=True),
    ]
    container = m.V1Container(
        name="runner",
        image=image,
        image_pull_policy=t.image_pull_policy,
        command=list(t.runner_command),
        working_dir=WORK_DIR,
        env=[m.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())],
        resources=requirements,
        volume_mounts=mounts,
        security_context=m.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=t.run_as_user,
            run_as_group=t.run_as_group,
            allow_privilege_escalation=False,
            privileged=False,
            read_only_root_filesystem=True,
            capabilities=m.V1Capabilities(drop=["ALL"]),
            seccomp_profile=m.V1SeccompProfile(type="RuntimeDefault"),
        ),
        termination_message_policy="FallbackToLogsOnError",
    )
    pod = m.V1PodSpec(
        restart_policy="Never",
        automount_service_account_token=False,
        service_account_name=t.service_account or None,
        enable_service_links=False,
        termination_grace_period_seconds=t.termination_grace_seconds,
        security_context=m.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=t.run_as_user,
            run_as_group=t.run_as_group,
            fs_group=t.run_as_group,
            seccomp_profile=m.V1SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[container],
        volumes=volumes,
        tolerations=_tolerations(tolerations) or None,
        node_selector=node_selector or None,
        image_pull_secrets=[m.V1LocalObjectReference(name=s) for s in t.image_pull_secrets] or None,
    )
    deadline = int(timeout_seconds) + t.deadline_grace_seconds if timeout_seconds else t.default_deadline_seconds
    job = m.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=m.V1ObjectMeta(name=name, namespace=t.namespace, labels=labels),
        spec=m.V1JobSpec(
            backoff_limit=0,
            completions=1,
            parallelism=1,
            active_deadline_seconds=deadline,
            ttl_seconds_after_finished=t.ttl_seconds_after_finished,
            # Kueue admits a suspended Job by unsuspending it; without Kueue it starts at once
            suspend=bool(queue_name),
            template=m.V1PodTemplateSpec(metadata=m.V1ObjectMeta(labels=dict(labels)), spec=pod),
        ),
    )
    return to_dict(job)


def make_token_secret(
    *, name: str, namespace: str, token: str, labels: dict[str, str], owner_uid: str | None = None
) -> dict[str, Any]:
    """The Secret with the attempt's run token, owned by its Job (so it goes when the Job goes)."""
    owners = None
    if owner_uid:
        owners = [
            m.V1OwnerReference(api_version="batch/v1", kind="Job", name=name, uid=owner_uid, block_owner_deletion=True)
        ]
    secret = m.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        immutable=True,
        metadata=m.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels), owner_references=owners),
        string_data={TOKEN_KEY: token},
    )
    return to_dict(secret)
