"""/projects/{project}/environments and batch runs: submit, job, cancel, logs, runner reports."""

from __future__ import annotations

from ..auth.rbac import authorize_run_cancel
from ..errors import AnimusError
from ..schemas import EnvironmentCreate, EnvironmentVersionCreate, RunLogAppend, RunReport, RunSubmit
from ..services import batch, gitrefs
from ..services import environments as env_svc
from ..services import secrets as secrets_svc
from ..services import tracking as tracking_svc
from ..services.blobs import blob_key
from .base import APIHandler
from .projects import PROJECT

ENV = r"(?P<environment>[^/]+)"
VERSION = r"(?P<version>[^/]+)"
RUN = r"(?P<run_id>[^/]+)"


class EnvironmentListAPIHandler(APIHandler):
    actions = {"GET": "environments:read", "POST": "environments:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = env_svc.list_environments(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        items = [env_svc.environment_json(e, env_svc.latest_version(self.db, e)) for e in rows]
        self.write_json({"items": items, "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(EnvironmentCreate)
        e = env_svc.create_environment(self.db, self.project, data.name, self.principal.name, data.description)
        self.commit_and_write(
            env_svc.environment_json(e),
            201,
            audit_action="environment.create",
            resource=f"project/{project}/environments/{e.name}",
        )


class EnvironmentAPIHandler(APIHandler):
    actions = {"GET": "environments:read"}

    def get(self, project: str, environment: str) -> None:
        e = env_svc.find_environment(self.db, self.project, environment)
        self.write_json(env_svc.environment_json(e, env_svc.latest_version(self.db, e)))


class EnvironmentVersionListAPIHandler(APIHandler):
    actions = {"GET": "environments:read", "POST": "environments:write"}

    def get(self, project: str, environment: str) -> None:
        e = env_svc.find_environment(self.db, self.project, environment)
        rows, next_cursor = env_svc.list_versions(self.db, e, self.limit_arg(), self.get_query_argument("cursor", None))
        self.write_json({"items": [env_svc.version_json(v, e) for v in rows], "next_cursor": next_cursor})

    def post(self, project: str, environment: str) -> None:
        data = self.json_body(EnvironmentVersionCreate)
        e = env_svc.find_environment(self.db, self.project, environment)
        v = env_svc.add_version(
            self.db,
            e,
            image=data.image,
            lock_content=data.lock_file,
            resources=data.resources,
            by=self.principal.name,
            description=data.description,
        )
        self.commit_and_write(
            env_svc.version_json(v, e),
            201,
            audit_action="environment.version_create",
            resource=f"project/{project}/environments/{e.name}/versions/{v.version}",
            details={"image": v.image, "lock_digest": v.lock_digest, "resources": v.resources},
        )


class EnvironmentVersionAPIHandler(APIHandler):
    actions = {"GET": "environments:read"}

    def get(self, project: str, environment: str, version: str) -> None:
        e = env_svc.find_environment(self.db, self.project, environment)
        v = env_svc.find_version(self.db, e, version)
        self.write_json(env_svc.version_json(v, e, with_lock=self.bool_arg("lock_file")))


# --- batch runs -------------------------------------------------------------------------


class RunSubmitAPIHandler(APIHandler):
    """Queue a batch run: code by commit, an environment version, pinned inputs, a command."""

    actions = {"POST": "runs:write"}

    async def post(self, project: str) -> None:
        data = self.json_body(RunSubmit)
        queue = self.settings["run_queue"]
        repo = gitrefs.validate_repo_url(data.repo, list(queue.allowed_repo_schemes))
        resolved = batch.resolve_names(
            self.db, self.project, self.principal, self.role, data.environment, data.datasets
        )
        if data.production:
            batch.refuse_unreproducible(data.commit, resolved)
        run_secrets, git_credentials = secrets_svc.parse_run_secrets(
            self.db, self.project, data.secrets, data.git_credentials
        )
        code = await gitrefs.resolve(repo, data.commit, queue.git_timeout, verify=queue.verify_commits)
        if data.experiment:
            experiment = tracking_svc.find_experiment_by_name(
                self.db, self.project, data.experiment
            ) or tracking_svc.create_experiment(self.db, self.project, data.experiment, self.principal.name)
        else:
            experiment = tracking_svc.default_experiment(self.db, self.project, self.principal.name)
        run, job = batch.submit(
            self.db,
            self.project,
            experiment,
            self.principal.name,
            repo_url=repo,
            code=code,
            command=data.command,
            resolved=resolved,
            params=data.params,
            tags=data.tags,
            name=data.name,
            priority=data.priority,
            retries=data.retries,
            infra_retries=data.infra_retries if data.infra_retries is not None else queue.max_infrastructure_retries,
            timeout_seconds=data.timeout_seconds,
            production=data.production,
            seed=data.seed,
            secrets=run_secrets,
            git_credentials=git_credentials,
        )
        body = {**tracking_svc.run_json(run), "job": batch.job_json(self.db, run, job)}
        self.commit_and_write(
            body,
            201,
            audit_action="run.submit",
            resource=f"project/{project}/runs/{run.id}",
            details={
                "commit_sha": code.sha,
                "ref": code.ref or None,
                "environment": resolved.env_ref or None,
                "datasets": [f"{i['name']}:{i['version']}" for i in resolved.inputs],
                "production": data.production,
                "priority": data.priority,
                "secrets": [s["name"] for s in run_secrets],
                "git_credentials": git_credentials,
            },
        )
        self.settings["scheduler_wake"]()


class RunJobAPIHandler(APIHandler):
    """What a batch run executes and where its attempts stand (the runner reads its spec here)."""

    actions = {"GET": "runs:read"}

    def get(self, project: str, run_id: str) -> None:
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run)
        body = batch.job_json(self.db, run, job, with_lock=self.principal.kind == "run")
        if self.principal.kind == "run":
            # the runner downloads upstream outputs straight from storage: short-lived URLs, no bytes here
            store, expires = self.settings["object_store"], self.settings["presign_expires"]
            for i in body["inputs"]:
                for f in i.get("files") or []:
                    key = blob_key(self.project.id, f["digest"].removeprefix("sha256:"))
                    f["url"] = store.presign_get(key, expires)
        self.write_json(body)


class RunCancelAPIHandler(APIHandler):
    actions = {"POST": "runs:write"}

    def post(self, project: str, run_id: str) -> None:
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run, lock=True)
        # object-level rule: contributors cancel their own runs, maintainers anyone's
        authorize_run_cancel(self.principal, self.role, run.created_by, run.id)
        if not batch.cancel(self.db, self.project, run, job, self.principal.name):
            raise AnimusError(
                409, "run_finished", f"Run {run.id} has already finished ({run.status})", {"status": run.status}
            )
        self.commit_and_write(
            batch.job_json(self.db, run, job),
            audit_action="run.cancel",
            resource=f"project/{project}/runs/{run.id}",
            details={"attempt": job.attempt},
        )
        self.settings["scheduler_wake"]()


class RunReproduceAPIHandler(APIHandler):
    """Queue the identical run again (same commit, environment version, inputs, params, command, seed)."""

    actions = {"POST": "runs:write"}

    def post(self, project: str, run_id: str) -> None:
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run)
        if not run.commit_sha:
            raise AnimusError(409, "not_reproducible", f"Run {run.id} has no commit to run again")
        new, new_job = batch.reproduce(self.db, self.project, run, job, self.principal.name)
        self.commit_and_write(
            {**tracking_svc.run_json(new), "job": batch.job_json(self.db, new, new_job), "reproduces": run.id},
            201,
            audit_action="run.reproduce",
            resource=f"project/{project}/runs/{new.id}",
            details={"reproduces": run.id, "commit_sha": run.commit_sha, "seed": new_job.seed},
        )
        self.settings["scheduler_wake"]()


class RunArtifactDiffAPIHandler(APIHandler):
    """Compare the artifacts of two runs by digest (?other=RUN, optional ?prefix=)."""

    actions = {"GET": "runs:read"}

    def get(self, project: str, run_id: str) -> None:
        other_id = self.get_query_argument("other", None)
        if not other_id:
            raise AnimusError(400, "invalid_argument", "Give the run to compare with as ?other=RUN_ID")
        if self.principal.kind == "run" and other_id != self.principal.run_id:
            raise AnimusError(404, "run_not_found", f"Run {other_id!r} not found")
        run = tracking_svc.find_run(self.db, self.project, run_id)
        other = tracking_svc.find_run(self.db, self.project, other_id)
        self.write_json(batch.artifact_diff(self.db, run, other, self.get_query_argument("prefix", "")))


class RunLogsAPIHandler(APIHandler):
    """GET: output after chunk `after` (follow by passing back `next`); POST: the runner appends."""

    actions = {"GET": "runs:read", "POST": "runs:report"}

    def get(self, project: str, run_id: str) -> None:
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run)
        raw = self.get_query_argument("after", "0")
        if not raw.isdigit() or len(raw) > 18:
            raise AnimusError(
                400, "invalid_argument", "after must be a non-negative integer (the `next` of a previous page)"
            )
        items, next_id = batch.read_logs(self.db, run, int(raw), self.limit_arg(1000))
        self.write_json(
            {
                "items": items,
                "next": next_id,
                "status": run.status,
                "attempt": job.attempt,
                "truncated": job.log_truncated,
            }
        )

    async def post(self, project: str, run_id: str) -> None:
        data = self.json_body(RunLogAppend)
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run)
        text = data.text
        # the runner scrubbed already; scrub again when this process can know the values (not with Vault)
        redact = await self.settings["log_scrubber"].redactor(
            self.settings["secret_store"], self.project.slug, run.id, job.attempt, secrets_svc.run_secret_names(job)
        )
        if redact:
            text = redact(text)
        job = batch.find_job(self.db, run, lock=True)
        result = batch.append_log(self.db, run, job, data.attempt, text, self.settings["run_queue"].log_max_bytes)
        # output is data of the run, not a change of state: like metric points, not audited one by one
        self.db.commit()
        self.write_json(result)


class RunReportAPIHandler(APIHandler):
    """The runner's reports: started, heartbeat, exited with a code, or could not set up."""

    actions = {"POST": "runs:report"}

    def post(self, project: str, run_id: str) -> None:
        data = self.json_body(RunReport)
        if data.state == "exited" and data.exit_code is None:
            raise AnimusError(422, "validation_failed", "An 'exited' report needs exit_code")
        run = tracking_svc.find_run(self.db, self.project, run_id)
        job = batch.find_job(self.db, run, lock=True)
        status = batch.report(
            self.db,
            self.project,
            run,
            job,
            attempt=data.attempt,
            state=data.state,
            exit_code=data.exit_code,
            message=data.message,
            policy=self.settings["run_queue"].policy(),
        )
        body = {"status": status, "attempt": job.attempt}
        if data.state == "heartbeat":
            # heartbeats are frequent and say nothing new: no audit record, just the timestamp
            self.db.commit()
            self.write_json(body)
            return
        self.commit_and_write(
            body,
            audit_action=f"run.report_{data.state}",
            resource=f"project/{project}/runs/{run.id}",
            details={"attempt": data.attempt, "exit_code": data.exit_code},
        )
        if status not in batch.ACTIVE_STATES:
            self.settings["scheduler_wake"]()


# the batch routes come before the tracking ones: /runs/submit must not be read as a run id
default_handlers = [
    (f"/projects/{PROJECT}/environments", EnvironmentListAPIHandler),
    (f"/projects/{PROJECT}/environments/{ENV}", EnvironmentAPIHandler),
    (f"/projects/{PROJECT}/environments/{ENV}/versions", EnvironmentVersionListAPIHandler),
    (f"/projects/{PROJECT}/environments/{ENV}/versions/{VERSION}", EnvironmentVersionAPIHandler),
    (f"/projects/{PROJECT}/runs/submit", RunSubmitAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/job", RunJobAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/cancel", RunCancelAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/logs", RunLogsAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/reproduce", RunReproduceAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/artifact-diff", RunArtifactDiffAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/report", RunReportAPIHandler),
]
