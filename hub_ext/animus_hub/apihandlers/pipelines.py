"""/projects/{project}/pipelines: submit a pipeline spec, list, show (with steps), cancel."""

from __future__ import annotations

from ..errors import AnimusError
from ..schemas import PipelineSubmit
from ..services import gitrefs, pipeline_spec, pipelines
from ..services import tracking as tracking_svc
from .base import APIHandler
from .projects import PROJECT

PIPELINE = r"(?P<pipeline_id>[^/]+)"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class PipelineListAPIHandler(APIHandler):
    """GET: the project's pipeline runs, newest first (?status=); POST: submit a spec."""

    actions = {"GET": "runs:read", "POST": "runs:write"}

    def get(self, project: str) -> None:
        status = self.get_query_argument("status", None)
        if status is not None and status not in STATUSES:
            raise AnimusError(400, "invalid_argument", f"status must be one of {', '.join(STATUSES)}")
        rows, next_cursor = pipelines.list_pipeline_runs(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None), status
        )
        items = [pipelines.pipeline_json(self.db, p) for p in rows]
        self.write_json({"items": items, "next_cursor": next_cursor})

    async def post(self, project: str) -> None:
        data = self.json_body(PipelineSubmit)
        spec = pipeline_spec.parse(data.spec)
        queue = self.settings["run_queue"]
        repo = gitrefs.validate_repo_url(data.repo, list(queue.allowed_repo_schemes))
        pipelines.resolve(self.db, self.project, self.principal, self.role, spec)
        code = await gitrefs.resolve(repo, data.commit, queue.git_timeout, verify=queue.verify_commits)
        if data.experiment:
            experiment = tracking_svc.find_experiment_by_name(
                self.db, self.project, data.experiment
            ) or tracking_svc.create_experiment(self.db, self.project, data.experiment, self.principal.name)
        else:
            experiment = tracking_svc.default_experiment(self.db, self.project, self.principal.name)
        p = pipelines.submit(
            self.db,
            self.project,
            experiment,
            self.principal.name,
            source=data.spec,
            spec=spec,
            spec_digest=pipeline_spec.digest(data.spec),
            repo_url=repo,
            code=code,
        )
        self.commit_and_write(
            pipelines.pipeline_json(self.db, p),
            201,
            audit_action="pipeline.submit",
            resource=f"project/{project}/pipelines/{p.id}",
            details={
                "spec_digest": p.spec_digest,
                "commit_sha": code.sha,
                "ref": code.ref or None,
                "steps": spec["order"],
            },
        )
        self.settings["scheduler_wake"]()


class PipelineAPIHandler(APIHandler):
    """One pipeline run with its steps (each: status, run, cached or not, output digests); ?spec=true adds the YAML."""

    actions = {"GET": "runs:read"}

    def get(self, project: str, pipeline_id: str) -> None:
        p = pipelines.find(self.db, self.project, pipeline_id)
        self.write_json(pipelines.pipeline_json(self.db, p, with_spec=self.bool_arg("spec")))


class PipelineCancelAPIHandler(APIHandler):
    actions = {"POST": "runs:write"}

    def post(self, project: str, pipeline_id: str) -> None:
        p = pipelines.find(self.db, self.project, pipeline_id, lock=True)
        if not pipelines.cancel(self.db, self.project, p, self.principal.name):
            raise AnimusError(
                409, "pipeline_finished", f"Pipeline run {p.id} has already finished ({p.status})", {"status": p.status}
            )
        self.commit_and_write(
            pipelines.pipeline_json(self.db, p),
            audit_action="pipeline.cancel",
            resource=f"project/{project}/pipelines/{p.id}",
        )
        self.settings["scheduler_wake"]()


default_handlers = [
    (f"/projects/{PROJECT}/pipelines", PipelineListAPIHandler),
    (f"/projects/{PROJECT}/pipelines/{PIPELINE}", PipelineAPIHandler),
    (f"/projects/{PROJECT}/pipelines/{PIPELINE}/cancel", PipelineCancelAPIHandler),
]
