"""/projects/{project}/secrets (names and metadata; values write-only) and a runner's one fetch of its secrets."""

from __future__ import annotations

import logging

from animus.redaction import Redactor

from ..errors import AnimusError
from ..schemas import RunSecretsFetch, SecretPut
from ..secrets import validate_secret_name
from ..services import batch
from ..services import secrets as secrets_svc
from ..services import tracking as tracking_svc
from .base import APIHandler
from .projects import PROJECT

log = logging.getLogger("animus.api")

NAME = r"(?P<name>[^/]+)"
RUN = r"(?P<run_id>[^/]+)"


class SecretListAPIHandler(APIHandler):
    actions = {"GET": "secrets:read"}

    def get(self, project: str) -> None:
        rows, next_cursor = secrets_svc.list_entries(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        store = self.settings["secret_store"]
        self.write_json(
            {"items": [secrets_svc.entry_json(e) for e in rows], "next_cursor": next_cursor, "store": store.kind}
        )


class SecretAPIHandler(APIHandler):
    """GET: metadata; PUT: set or rotate the value (never echoed); DELETE: remove it from the store and here."""

    actions = {"GET": "secrets:read", "PUT": "secrets:write", "DELETE": "secrets:write"}

    def get(self, project: str, name: str) -> None:
        self.write_json(secrets_svc.entry_json(secrets_svc.find(self.db, self.project, name)))

    async def put(self, project: str, name: str) -> None:
        validate_secret_name(name)
        data = self.json_body(SecretPut)
        secrets_svc.check_value(data.value)
        store = self.settings["secret_store"]
        await secrets_svc.in_thread(store.put, self.project.slug, name, data.value)
        entry, created = secrets_svc.record_put(self.db, self.project, name, self.principal.name, data.description)
        body = secrets_svc.entry_json(entry)
        self.commit_and_write(
            body,
            201 if created else 200,
            audit_action="secret.create" if created else "secret.rotate",
            resource=f"project/{project}/secrets/{name}",
            details={"version": entry.version, "store": store.kind},
        )

    async def delete(self, project: str, name: str) -> None:
        entry = secrets_svc.find(self.db, self.project, name, lock=True)
        store = self.settings["secret_store"]
        await secrets_svc.in_thread(store.delete, self.project.slug, name)
        version = entry.version
        self.db.delete(entry)
        self.commit_and_write(
            None,
            204,
            audit_action="secret.delete",
            resource=f"project/{project}/secrets/{name}",
            details={"version": version, "store": store.kind},
        )


class RunSecretsAPIHandler(APIHandler):
    """The runner of the current attempt fetches its secret values, once (stores animus-api can read).

    Only that run's token may call it (``runs:secrets`` is run-token-only and confined to
    its run), only while the attempt is active, and only once per attempt. With Vault
    the runner reads from Vault with its own short-lived token instead (409 here).
    """

    actions = {"POST": "runs:secrets"}

    async def post(self, project: str, run_id: str) -> None:
        data = self.json_body(RunSecretsFetch)
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run, lock=True)
        if data.attempt != job.attempt or run.status not in batch.ACTIVE_STATES:
            raise AnimusError(
                409,
                "attempt_superseded",
                f"Attempt {data.attempt} of run {run.id} is no longer current ({run.status}); stop",
                {"current_attempt": job.attempt, "status": run.status},
            )
        store = self.settings["secret_store"]
        if not store.serves_values:
            raise AnimusError(
                409,
                "secrets_from_store",
                f"This installation's secret store ({store.kind}) gives runs their own credential; read from it",
            )
        if job.secrets_fetched_attempt == job.attempt:
            raise AnimusError(
                409, "secrets_already_fetched", f"Attempt {job.attempt} of run {run.id} has already fetched its secrets"
            )
        names = secrets_svc.run_secret_names(job)
        values = await secrets_svc.in_thread(secrets_svc.read_values, store, self.project.slug, names)
        job.secrets_fetched_attempt = job.attempt
        secrets_svc.audit_resolution(self.db, self.project, run.id, job.attempt, names, "api")
        self.commit_and_write(
            {
                "secrets": values,
                "env": {s["name"]: s["env"] for s in job.secrets or []},
                "git_credentials": job.git_credentials,
            },
            audit_action="run.secrets_fetch",
            resource=f"project/{project}/runs/{run.id}",
            details={"attempt": job.attempt, "names": names},
            # a retry with the same Idempotency-Key gets names, never the values again
            replay_body={"names": names, "replayed": True},
        )


class LogScrubber:
    """Known secret values of active attempts, for scrubbing log chunks on arrival (local store only)."""

    def __init__(self, ttl: float = 30.0):
        import time

        self._time = time.monotonic
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, Redactor]] = {}

    async def redactor(self, store, project: str, run_id: str, attempt: int, names: list[str]) -> Redactor | None:
        if not names or not store.serves_values:
            return None
        key = (run_id, attempt)
        now = self._time()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        values: dict[str, str] = {}
        for name in names:
            try:
                values[name] = await secrets_svc.in_thread(store.read, project, name)
            except Exception as e:  # noqa: BLE001 (a deleted secret cannot leak from here any more)
                log.debug("no value of secret %s to scrub with: %s", name, type(e).__name__)
        if len(self._cache) > 1000:
            self._cache.clear()
        red = Redactor(values)
        self._cache[key] = (now, red)
        return red


default_handlers = [
    (f"/projects/{PROJECT}/secrets", SecretListAPIHandler),
    (f"/projects/{PROJECT}/secrets/{NAME}", SecretAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/secrets", RunSecretsAPIHandler),
]
