"""KubernetesExecutor: each attempt of a batch run is one ``batch/v1`` Job (cluster profile).

``launch`` creates the Job built by ``k8s.make_run_job`` and then the Secret with the
run token, owned by the Job so Kubernetes deletes it with the Job (the pod waits for
the Secret's volume, so the order costs at most a moment). With Kueue, Jobs carry
the queue-name and priority-class labels and are created suspended; Kueue starts
them when the project's queue has quota.

A handle is ``k8s:<namespace>/<job name>``. ``alive`` reads the Job's status (and
its pod's when it has not finished): a finished, failed, deleted or unstartable
Job is gone. ``stop`` deletes the Job with foreground propagation, so the Job
object stays until its pod is gone. Calls use ``kubernetes_asyncio`` (never the
blocking client on the event loop) and retry transient API errors with backoff.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from traitlets import Dict, Float, Integer, List, Unicode, validate

from ..k8s.jobs import LABEL_ATTEMPT, LABEL_RUN, RunPodTemplate, job_name, make_run_job, make_token_secret
from .base import Executor, LaunchSpec

# waiting reasons of a container that will not start without someone changing the Job
FATAL_WAITING_REASONS = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
RETRY_STATUSES = {429, 500, 502, 503, 504}


def parse_handle(handle: str) -> tuple[str, str] | None:
    kind, _, rest = handle.partition(":")
    namespace, _, name = rest.partition("/")
    if kind != "k8s" or not namespace or not name:
        return None
    return namespace, name


class KubernetesExecutor(Executor):
    name = "kubernetes"

    api_url = Unicode(
        "",
        help="URL of the Kubernetes API server, without authentication (e.g. a `kubectl proxy`). "
        "Default: the in-cluster service account when running in a pod, else the kubeconfig file.",
    ).tag(config=True)
    kubeconfig = Unicode("", help="Path of a kubeconfig file (default: ~/.kube/config) when not in a pod.").tag(
        config=True
    )
    namespace = Unicode(
        "animus-runs", help="Namespace of the run Jobs; '{project}' is replaced by the project's slug."
    ).tag(config=True)
    default_image = Unicode(
        "", help="Image of runs submitted without an environment (it must contain animus-runner)."
    ).tag(config=True)
    runner_command = List(
        Unicode(), ["animus-runner"], help="Command that starts the runner inside the run's image."
    ).tag(config=True)
    queue_name = Unicode(
        "animus-{project}",
        help="Kueue LocalQueue of a project's runs ('{project}' is replaced by the slug); empty: no Kueue "
        "labels, and Jobs start at once.",
    ).tag(config=True)
    priority_classes = Dict(
        value_trait=Integer(),
        default_value={},
        help="Kueue WorkloadPriorityClass per run priority: {class name: lowest run priority}. A run gets the "
        "class with the highest threshold at or below its priority, e.g. {'animus-low': -1000, "
        "'animus-normal': 0, 'animus-high': 10}. Empty: no priority-class label.",
    ).tag(config=True)
    service_account = Unicode("", help="Service account of run pods (its token is not mounted).").tag(config=True)
    token_audience = Unicode(
        "",
        help="Audience of a projected service-account token mounted at /var/run/secrets/animus/sa-token "
        "(e.g. 'vault' for Vault's Kubernetes auth). Empty: no service-account token at all.",
    ).tag(config=True)
    token_expiration_seconds = Integer(
        600, help="Lifetime of the projected service-account token (Kubernetes requires at least 600)."
    ).tag(config=True)

    @validate("token_expiration_seconds")
    def _check_expiration(self, proposal):
        if proposal["value"] < 600:
            raise ValueError("token_expiration_seconds must be at least 600 (the API server's minimum)")
        return proposal["value"]

    tolerations = List(Dict(), help="Tolerations of every run pod (Kubernetes' JSON shape).").tag(config=True)
    gpu_tolerations = List(
        Dict(),
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        help="Tolerations added to pods of runs whose environment asks for GPUs.",
    ).tag(config=True)
    node_selector = Dict(Unicode(), help="Node selector of every run pod.").tag(config=True)
    gpu_resource_name = Unicode("nvidia.com/gpu", help="Extended resource that counts GPUs.").tag(config=True)
    gpu_type_label = Unicode("nvidia.com/gpu.product", help="Node label selected with the environment's gpu_type.").tag(
        config=True
    )
    run_as_user = Integer(1000, help="Non-root uid (and gid) of the runner's container.").tag(config=True)
    work_dir_size = Unicode("20Gi", help="Size limit of the working directory (an emptyDir).").tag(config=True)
    tmp_size = Unicode("2Gi", help="Size limit of /tmp (an emptyDir).").tag(config=True)
    ttl_seconds_after_finished = Integer(
        3600, help="Kubernetes deletes a finished Job (and its pod) this long after it ended."
    ).tag(config=True)
    default_deadline_seconds = Integer(7 * 24 * 3600, help="activeDeadlineSeconds of runs without a timeout.").tag(
        config=True
    )
    image_pull_secrets = List(Unicode(), help="Names of Secrets to pull run images with.").tag(config=True)
    extra_env = Dict(Unicode(), help="Extra environment variables of the runner (no secrets here).").tag(config=True)
    request_timeout = Float(20.0, help="Seconds one Kubernetes API request may take.").tag(config=True)
    request_retries = Integer(3, help="Tries of a Kubernetes API request that failed transiently.").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._client = None
        self._client_lock = asyncio.Lock()

    # --- building -----------------------------------------------------------------------------

    def pod_template(self, project: str) -> RunPodTemplate:
        return RunPodTemplate(
            namespace=self.namespace.replace("{project}", project),
            runner_command=list(self.runner_command),
            service_account=self.service_account,
            token_audience=self.token_audience,
            token_expiration_seconds=self.token_expiration_seconds,
            tolerations=list(self.tolerations),
            gpu_tolerations=list(self.gpu_tolerations),
            node_selector=dict(self.node_selector),
            gpu_resource_name=self.gpu_resource_name,
            gpu_type_label=self.gpu_type_label,
            run_as_user=self.run_as_user,
            run_as_group=self.run_as_user,
            work_dir_size=self.work_dir_size,
            tmp_size=self.tmp_size,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            default_deadline_seconds=self.default_deadline_seconds,
            image_pull_secrets=list(self.image_pull_secrets),
            extra_env=dict(self.extra_env),
        )

    def priority_class(self, priority: int) -> str | None:
        eligible = [(low, name) for name, low in self.priority_classes.items() if low <= priority]
        return max(eligible)[1] if eligible else None

    def build_job(self, spec: LaunchSpec) -> dict[str, Any]:
        return make_run_job(
            run_id=spec.run_id,
            project=spec.project,
            attempt=spec.attempt,
            image=spec.image or self.default_image,
            api_url=spec.api_url,
            resources=spec.resources,
            timeout_seconds=spec.timeout_seconds,
            heartbeat_interval=spec.heartbeat_interval,
            queue_name=self.queue_name.replace("{project}", spec.project) or None,
            priority_class=self.priority_class(spec.priority),
            template=self.pod_template(spec.project),
        )

    # --- the API client -----------------------------------------------------------------------

    async def api(self):
        from kubernetes_asyncio import client, config

        async with self._client_lock:
            if self._client is None:
                conf = client.Configuration()
                if self.api_url:
                    conf.host = self.api_url.rstrip("/")
                elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=conf)
                else:
                    await config.load_kube_config(config_file=self.kubeconfig or None, client_configuration=conf)
                self._client = client.ApiClient(conf)
            return self._client

    async def _call(self, what: str, fn, *args, **kwargs):
        """One API call with a timeout, retried with backoff and jitter on transient errors."""
        from kubernetes_asyncio.client.exceptions import ApiException

        for attempt in range(1, self.request_retries + 1):
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), self.request_timeout)
            except ApiException as e:
                if e.status not in RETRY_STATUSES or attempt == self.request_retries:
                    raise
                self.log.warning("%s: Kubernetes answered %s; retrying", what, e.status)
            except (TimeoutError, OSError) as e:
                if attempt == self.request_retries:
                    raise
                self.log.warning("%s: %s; retrying", what, type(e).__name__)
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random() / 2))  # noqa: S311
        raise AssertionError("unreachable")

    # --- the three verbs ----------------------------------------------------------------------

    async def launch(self, spec: LaunchSpec) -> str:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        body = self.build_job(spec)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        api = await self.api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        try:
            created = await self._call(f"create Job {name}", batch.create_namespaced_job, namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            # a retried POST whose first try did arrive: the Job of this very attempt exists (names
            # are per attempt), so take it over instead of leaving it without its token
            created = await self._call(f"read Job {name}", batch.read_namespaced_job, name, namespace)
        secret = make_token_secret(
            name=name,
            namespace=namespace,
            token=spec.token,
            labels={LABEL_RUN: spec.run_id, LABEL_ATTEMPT: str(spec.attempt)},
            owner_uid=created.metadata.uid,
        )
        try:
            await self._call(f"create Secret {name}", core.create_namespaced_secret, namespace, secret)
        except ApiException as e:
            # without its token the pod cannot start: take the Job back and let the scheduler retry
            self.log.error(
                "run %s attempt %s: creating the token Secret failed (%s)", spec.run_id, spec.attempt, e.status
            )
            await self.stop(f"k8s:{namespace}/{name}")
            raise RuntimeError(f"creating the run token Secret failed: HTTP {e.status} {e.reason}") from None
        self.log.info("run %s attempt %s: Job %s/%s created", spec.run_id, spec.attempt, namespace, name)
        return f"k8s:{namespace}/{name}"

    async def _job(self, namespace: str, name: str):
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            return await self._call(
                f"read Job {name}", client.BatchV1Api(await self.api()).read_namespaced_job_status, name, namespace
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @staticmethod
    def _finished(job) -> bool:
        status = job.status
        if status is None:
            return False
        for c in status.conditions or []:
            if c.type in ("Complete", "Failed") and c.status == "True":
                return True
        return bool(status.succeeded or status.failed)

    async def alive(self, handle: str) -> bool | None:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        parsed = parse_handle(handle)
        if parsed is None:
            return None
        namespace, name = parsed
        try:
            job = await self._job(namespace, name)
            if job is None or self._finished(job):
                return False
            labels = job.metadata.labels or {}
            selector = f"{LABEL_RUN}={labels.get(LABEL_RUN, '')},{LABEL_ATTEMPT}={labels.get(LABEL_ATTEMPT, '')}"
            pods = await self._call(
                f"list pods of {name}",
                client.CoreV1Api(await self.api()).list_namespaced_pod,
                namespace,
                label_selector=selector,
            )
        except (ApiException, TimeoutError, OSError) as e:
            self.log.warning("cannot tell whether Job %s/%s is alive: %s", namespace, name, type(e).__name__)
            return None
        for pod in pods.items:
            if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                return False
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None and waiting.reason in FATAL_WAITING_REASONS:
                    self.log.warning("Job %s/%s cannot start: %s", namespace, name, waiting.reason)
                    return False
        return True

    async def stop(self, handle: str, grace: float = 0.0) -> None:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        parsed = parse_handle(handle)
        if parsed is None:
            return
        namespace, name = parsed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while grace > 0 and loop.time() < deadline:
            job = await self._job(namespace, name)
            if job is None or self._finished(job):
                break
            await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        try:
            await self._call(
                f"delete Job {name}",
                client.BatchV1Api(await self.api()).delete_namespaced_job,
                name,
                namespace,
                body=body,
            )
        except ApiException as e:
            if e.status != 404:  # already gone: stopping is idempotent
                raise
        self.log.info("Job %s/%s deleted", namespace, name)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


__all__ = ["KubernetesExecutor", "job_name", "parse_handle"]
