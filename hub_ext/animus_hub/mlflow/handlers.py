"""The MLflow tracking REST API (/api/2.0/mlflow/...) over Animus experiment tracking.

Every handler is an APIHandler, so identity, RBAC (``actions``), audit and
idempotency work as in /api/v1; the domain rules are those of services.tracking
and services.runsearch. Only the request and response shapes are MLflow's.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..apihandlers.base import APIHandler
from ..errors import AnimusError
from ..orm import Experiment, Project, Run, utcnow
from ..services import runsearch
from ..services import tracking as svc
from ..services.pagination import decode_cursor, encode_cursor
from . import logged_models as lm
from . import protocol as p
from .errors import mlflow_error

# MLflow's own limits
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS = 50_000
MAX_DATASETS_PER_REQUEST = 1000
DATASET_SOURCE_MAX = 65_535
DATASET_SCHEMA_MAX = 1_048_575
DATASET_PROFILE_MAX = 16_384

_SHA_RE = re.compile(r"[0-9a-f]{40}")
_NAME_FILTER = re.compile(
    r"""\s*(?:attributes?\.)?name\s*=\s*(?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*")\s*""", re.IGNORECASE
)


class MLflowHandler(APIHandler):
    """An MLflow endpoint: Animus authentication, RBAC and audit; MLflow's request and error shapes."""

    def initialize(self, mlflow_root: str = "/services/animus/mlflow") -> None:
        self.mlflow_root = mlflow_root

    # --- hooks of APIHandler --------------------------------------------------------

    def project_slug(self) -> str:
        """The project: named in the path, or, on the short route, the one the token is bound to."""
        if self.path_kwargs.get("project"):
            return self.path_kwargs["project"]
        if self.principal.kind == "anonymous":
            return ""  # authorisation answers 401
        if self.principal.project_id is not None:
            project = self.db.get(Project, self.principal.project_id)
            return project.slug if project is not None else ""
        if self.principal.workspace_project is not None:
            return self.principal.workspace_project  # a workspace's token: its project
        root = f"{self.request.protocol}://{self.request.host}{self.mlflow_root}"
        raise AnimusError(
            400,
            "project_required",
            "This token is not bound to a project, so the MLflow tracking URI must name one: "
            f"set MLFLOW_TRACKING_URI={root}/projects/<project>",
        )

    def error_response(self, error: AnimusError) -> tuple[int, dict[str, Any]]:
        return mlflow_error(error)

    def run_scope_id(self) -> str | None:
        """MLflow names the run in the query or body, not the path."""
        if self.principal.kind != "run":
            return None
        try:
            args = self.args()
        except AnimusError:
            return None
        value = args.get("run_id") or args.get("run_uuid")
        return value if isinstance(value, str) else None

    # --- requests -------------------------------------------------------------------

    def args(self) -> dict[str, Any]:
        """The request message: the query string of a GET, else the JSON body."""
        if self.request.method == "GET":
            return {k: v[-1].decode("utf-8", "replace") for k, v in self.request.query_arguments.items()}
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AnimusError(400, "invalid_json", f"Malformed JSON request body: {e}") from None
        if not isinstance(data, dict):
            raise AnimusError(400, "invalid_json", "The request body must be a JSON object")
        return data

    def experiment(self, experiment_id: Any, create_default: bool = False) -> Experiment:
        """An experiment of the project; "0" (MLflow's default experiment) is the project's "Default"."""
        if not isinstance(experiment_id, str | int) or isinstance(experiment_id, bool):
            raise p.invalid("experiment_id must be a string")
        experiment_id = str(experiment_id)
        if experiment_id == p.DEFAULT_EXPERIMENT_ID:
            if create_default:
                return svc.default_experiment(self.db, self.project, self.principal.name)
            e = svc.find_experiment_by_name(self.db, self.project, svc.DEFAULT_EXPERIMENT)
            if e is None:
                raise AnimusError(
                    404, "experiment_not_found", f"Experiment '0' not found in project {self.project.slug!r}"
                )
            return e
        return svc.find_experiment(self.db, self.project, experiment_id)

    def run(self, args: dict[str, Any]) -> Run:
        return svc.find_run(self.db, self.project, p.required_str(args, "run_id", "run_uuid"))

    # --- responses ------------------------------------------------------------------

    def run_body(self, run: Run) -> dict[str, Any]:
        data = svc.run_data(self.db, [run])[run.id]
        return p.run_json(run, data, lm.model_ids_by_run(self.db, [run.id])[run.id])

    def commit(self, body: Any, audit_action: str, resource: str, **details: Any) -> None:
        self.commit_and_write(
            body,
            audit_action=audit_action,
            resource=f"project/{self.project.slug}/{resource}",
            details={"via": "mlflow", **details},
        )


def _rename(session: Any, run: Run, name: str) -> None:
    """Keep the run's name and its mlflow.runName tag the same, as MLflow does."""
    if len(name) > 250:
        raise AnimusError(422, "invalid_run_name", "A run name is at most 250 characters")
    run.name = name
    svc.set_tags(session, run, [(p.RUN_NAME_TAG, name)])


def _without_credentials(url: str) -> str:
    """A git remote may carry a token (https://user:token@host/...): never store it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- experiments ------------------------------------------------------------------------


class ExperimentCreateHandler(MLflowHandler):
    actions = {"POST": "experiments:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        name = p.required_str(args, "name")
        tags = dict(p.key_values(args, "tags"))
        # artifact_location is the service's to choose: runs' files go to the project's store
        description = tags.pop(p.NOTE_TAG, "")
        e = svc.create_experiment(self.db, self.project, name, self.principal.name, description, tags)
        self.commit({"experiment_id": str(e.id)}, "experiment.create", f"experiments/{e.id}", name=e.name)


class ExperimentGetHandler(MLflowHandler):
    actions = {"GET": "experiments:read"}

    def get(self, **_: str) -> None:
        e = self.experiment(p.required_str(self.args(), "experiment_id"))
        self.write_json({"experiment": p.experiment_json(e)})


class ExperimentGetByNameHandler(MLflowHandler):
    actions = {"GET": "experiments:read"}

    def get(self, **_: str) -> None:
        name = p.required_str(self.args(), "experiment_name")
        e = svc.find_experiment_by_name(self.db, self.project, name)
        if e is None:
            raise AnimusError(
                404, "experiment_not_found", f"Experiment {name!r} not found in project {self.project.slug!r}"
            )
        self.write_json({"experiment": p.experiment_json(e)})


class ExperimentSearchHandler(MLflowHandler):
    """Search experiments; the filter may test the name for equality (``name = 'x'``)."""

    actions = {"GET": "experiments:read", "POST": "experiments:read"}

    def get(self, **_: str) -> None:
        args = self.args()
        limit = p.optional_int(args, "max_results", 1, SEARCH_MAX_RESULTS) or SEARCH_MAX_RESULTS_DEFAULT
        name = None
        text = p.optional_str(args, "filter")
        if text:
            m = _NAME_FILTER.fullmatch(text)
            if m is None:
                raise AnimusError(
                    400, "invalid_filter", f"Unsupported experiment filter {text!r}: only name = '<name>' is supported"
                )
            raw = m.group("value")
            name = raw[1:-1].replace(raw[0] * 2, raw[0])
        rows, next_cursor = svc.list_experiments(
            self.db,
            self.project,
            lifecycle=p.view_type(args.get("view_type")),
            name=name,
            limit=limit,
            cursor=p.optional_str(args, "page_token"),
        )
        body: dict[str, Any] = {"experiments": [p.experiment_json(e) for e in rows]}
        if next_cursor:
            body["next_page_token"] = next_cursor
        self.write_json(body)

    post = get


class ExperimentUpdateHandler(MLflowHandler):
    actions = {"POST": "experiments:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        e = self.experiment(p.required_str(args, "experiment_id"))
        changes = svc.update_experiment(self.db, self.project, e, name=p.optional_str(args, "new_name"))
        self.commit({}, "experiment.update", f"experiments/{e.id}", changes=changes)


class ExperimentDeleteHandler(MLflowHandler):
    actions = {"POST": "experiments:write"}
    lifecycle_stage = "deleted"
    audit_action = "experiment.delete"

    def post(self, **_: str) -> None:
        e = self.experiment(p.required_str(self.args(), "experiment_id"))
        changes = svc.update_experiment(self.db, self.project, e, lifecycle_stage=self.lifecycle_stage)
        self.commit({}, self.audit_action, f"experiments/{e.id}", changes=changes)


class ExperimentRestoreHandler(ExperimentDeleteHandler):
    lifecycle_stage = "active"
    audit_action = "experiment.restore"


class ExperimentSetTagHandler(MLflowHandler):
    actions = {"POST": "experiments:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        e = self.experiment(p.required_str(args, "experiment_id"))
        key = p.required_str(args, "key")
        value = p.optional_str(args, "value") or ""
        if key == p.NOTE_TAG:
            # MLflow keeps an experiment's description in this tag; Animus has a field for it
            changes = svc.update_experiment(self.db, self.project, e, description=value)
        else:
            changes = svc.update_experiment(self.db, self.project, e, tags={key: value})
        self.commit({}, "experiment.update", f"experiments/{e.id}", changes=changes)


class ExperimentDeleteTagHandler(MLflowHandler):
    actions = {"POST": "experiments:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        e = self.experiment(p.required_str(args, "experiment_id"))
        key = p.required_str(args, "key")
        if key == p.NOTE_TAG:
            changes = svc.update_experiment(self.db, self.project, e, description="")
        else:
            if key not in (e.tags or {}):
                raise AnimusError(404, "tag_not_found", f"Experiment {e.id} has no tag {key!r}")
            e.tags = {k: v for k, v in e.tags.items() if k != key}
            e.updated_at = utcnow()
            changes = {"tags_deleted": [key]}
        self.commit({}, "experiment.update", f"experiments/{e.id}", changes=changes)


# --- runs ---------------------------------------------------------------------


class RunCreateHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        experiment = self.experiment(args.get("experiment_id") or p.DEFAULT_EXPERIMENT_ID, create_default=True)
        tags = dict(p.key_values(args, "tags"))
        run_name, tag_name = p.optional_str(args, "run_name"), tags.get(p.RUN_NAME_TAG)
        if run_name and tag_name and run_name != tag_name:
            raise p.invalid(
                f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
                f"(run_name='{run_name}', mlflow.runName='{tag_name}')."
            )
        name = run_name or tag_name or f"run-{secrets.token_hex(4)}"
        tags[p.RUN_NAME_TAG] = name
        # who ran it is the authenticated caller, whatever user_id the client claims
        tags[p.USER_TAG] = self.principal.name
        code = None
        if p.GIT_REPO_TAG in tags:
            tags[p.GIT_REPO_TAG] = _without_credentials(tags[p.GIT_REPO_TAG])
        commit = tags.get(p.GIT_COMMIT_TAG, "")
        if _SHA_RE.fullmatch(commit):
            code = svc.CodeRef(repo_url=tags.get(p.GIT_REPO_TAG, "")[:1024] or None, commit_sha=commit)
        start = p.optional_int(args, "start_time", 0)
        run = svc.create_run(
            self.db,
            self.project,
            experiment,
            self.principal.name,
            name=name,
            tags=tags,
            start_time=svc.from_epoch_ms(start) if start else None,
            code=code,
        )
        self.commit(
            {"run": self.run_body(run)}, "run.create", f"runs/{run.id}", experiment_id=str(experiment.id), name=run.name
        )


class RunGetHandler(MLflowHandler):
    actions = {"GET": "runs:read"}

    def get(self, **_: str) -> None:
        self.write_json({"run": self.run_body(self.run(self.args()))})


class RunUpdateHandler(MLflowHandler):
    """Rename a run, or end it: a terminal status ends the run and emits RunFinished."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        details: dict[str, Any] = {}
        name = p.optional_str(args, "run_name")
        if name and name != run.name:
            details["name"] = {"from": run.name, "to": name}
            _rename(self.db, run, name)
        # a batch run's status is its runner's to report: MLflow code inside it that ends
        # "its" run (mlflow.end_run at exit) must not end it early, so the status is ignored
        if args.get("status") not in (None, "") and run.kind != "batch":
            status = p.run_status(args["status"])
            end = p.optional_int(args, "end_time", 0)
            if svc.set_status(self.db, self.project, run, status, svc.from_epoch_ms(end) if end else None):
                details["status"] = status
        self.commit({"run_info": p.run_info_json(run)}, "run.update", f"runs/{run.id}", **details)


class RunDeleteHandler(MLflowHandler):
    actions = {"POST": "runs:write"}
    lifecycle_stage = "deleted"
    audit_action = "run.delete"

    def post(self, **_: str) -> None:
        run = self.run(self.args())
        run.lifecycle_stage = self.lifecycle_stage
        self.commit({}, self.audit_action, f"runs/{run.id}")


class RunRestoreHandler(RunDeleteHandler):
    lifecycle_stage = "active"
    audit_action = "run.restore"


class RunLogMetricHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        raw = {k: args[k] for k in ("key", "value", "timestamp", "step") if k in args}
        point = svc.parse_metric(raw, svc.epoch_ms(utcnow()))
        svc.ensure_writable(run)
        svc.log_metrics(self.db, run, [point])
        self.commit({}, "run.log", f"runs/{run.id}", metrics=1, params=0, tags=0)


class RunLogParamHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        key = p.required_str(args, "key")
        value = args.get("value")
        if value is None:
            value = ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise p.invalid(f"Invalid value for param {key!r}: a string is expected")
        svc.ensure_writable(run)
        n = svc.log_params(self.db, run, [(key, str(value))])
        self.commit({}, "run.log", f"runs/{run.id}", metrics=0, params=n, tags=0)


class RunSetTagHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        key = p.required_str(args, "key")
        value = p.optional_str(args, "value") or ""
        if key == p.RUN_NAME_TAG:
            _rename(self.db, run, value)
        else:
            svc.set_tags(self.db, run, [(key, value)])
        self.commit({}, "run.log", f"runs/{run.id}", metrics=0, params=0, tags=1)


class RunDeleteTagHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        key = p.required_str(args, "key")
        svc.delete_tag(self.db, run, key)
        self.commit({}, "run.tag_delete", f"runs/{run.id}", key=key)


class RunLogBatchHandler(MLflowHandler):
    """Metrics, params and tags at once, within MLflow's limits (1000 metrics, 100 params,
    100 tags, 1000 in all); params and metrics only while the run has not ended."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        metrics = args.get("metrics") or []
        if not isinstance(metrics, list):
            raise p.invalid("metrics must be a list")
        params = p.key_values(args, "params")
        tags = p.key_values(args, "tags")
        svc.check_batch_limits(len(metrics), len(params), len(tags))
        run = self.run(args)
        now_ms = svc.epoch_ms(utcnow())
        points = [svc.parse_metric(m, now_ms) for m in metrics]
        other_tags = [(k, v) for k, v in tags if k != p.RUN_NAME_TAG]
        n_metrics, n_params, n_tags = svc.log_batch(self.db, run, points, params, other_tags)
        names = [v for k, v in tags if k == p.RUN_NAME_TAG]
        if names:
            _rename(self.db, run, names[-1])
        n_tags += len(names)
        self.commit({}, "run.log", f"runs/{run.id}", metrics=n_metrics, params=n_params, tags=n_tags)


class RunLogInputsHandler(MLflowHandler):
    """Datasets a run consumed (as MLflow describes them); model inputs are accepted and not kept."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        raw = args.get("datasets") or []
        if not isinstance(raw, list) or len(raw) > MAX_DATASETS_PER_REQUEST:
            raise p.invalid(f"datasets must be a list of at most {MAX_DATASETS_PER_REQUEST} dataset inputs")
        datasets = []
        for item in raw:
            d = item.get("dataset") if isinstance(item, dict) else None
            if not isinstance(d, dict):
                raise p.invalid("Each dataset input is an object {dataset: {name, digest, ...}, tags}")
            context = dict(p.key_values(item, "tags")).get(p.DATASET_CONTEXT_TAG, "")
            name, digest = p.required_str(d, "name"), p.required_str(d, "digest")
            source = p.optional_str(d, "source") or ""
            schema = p.optional_str(d, "schema") or ""
            profile = p.optional_str(d, "profile") or ""
            for what, value, limit in (
                ("source", source, DATASET_SOURCE_MAX),
                ("schema", schema, DATASET_SCHEMA_MAX),
                ("profile", profile, DATASET_PROFILE_MAX),
            ):
                if len(value) > limit:
                    raise p.invalid(f"Dataset {name!r}: {what} is longer than {limit} characters")
            if len(name) > 500 or len(digest) > 71 or len(context) > 64:
                raise p.invalid(f"Dataset {name[:100]!r}: name ≤ 500, digest ≤ 71 and context ≤ 64 characters")
            datasets.append(
                {
                    "name": name,
                    "digest": digest,
                    "source_type": p.optional_str(d, "source_type") or "",
                    "source": source,
                    "schema": schema,
                    "profile": profile,
                    "context": context,
                }
            )
        svc.ensure_writable(run)
        n = svc.log_inputs(self.db, run, datasets)
        self.commit({}, "run.inputs", f"runs/{run.id}", datasets=n)


class RunLogOutputsHandler(MLflowHandler):
    """Logged models a run produced."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        models = args.get("models") or []
        if not isinstance(models, list) or len(models) > 100:
            raise p.invalid("models must be a list of at most 100 {model_id, step} objects")
        svc.ensure_writable(run)
        linked = []
        for item in models:
            model_id = p.required_str(item if isinstance(item, dict) else {}, "model_id")
            if lm.link_output(run, lm.find_logged_model(self.db, self.project, model_id)):
                linked.append(model_id)
        self.commit({}, "run.outputs", f"runs/{run.id}", models=linked)


class RunLogModelHandler(MLflowHandler):
    """MLflow 2's record of a logged model: appended to the run's mlflow.log-model.history tag."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        try:
            model = json.loads(p.required_str(args, "model_json"))
        except json.JSONDecodeError:
            raise p.invalid("model_json must be a JSON object") from None
        if not isinstance(model, dict) or not isinstance(model.get("artifact_path"), str):
            raise p.invalid("model_json must be a JSON object with an artifact_path")
        current = svc.run_data(self.db, [run])[run.id]["tags"].get(p.LOG_MODEL_HISTORY_TAG)
        try:
            history = json.loads(current) if current else []
        except json.JSONDecodeError:
            history = []
        history = [*(history if isinstance(history, list) else []), model]
        value = json.dumps(history)
        while len(value) > svc.TAG_VALUE_MAX and len(history) > 1:
            history = history[1:]  # the tag has a size limit: keep the newest records
            value = json.dumps(history)
        if len(value) > svc.TAG_VALUE_MAX:
            raise p.invalid(f"model_json is longer than {svc.TAG_VALUE_MAX} characters")
        svc.set_tags(self.db, run, [(p.LOG_MODEL_HISTORY_TAG, value)])
        self.commit({}, "run.log", f"runs/{run.id}", metrics=0, params=0, tags=1)


class RunSearchHandler(MLflowHandler):
    """search-runs on services.runsearch: the same filter language, page_token is the cursor."""

    actions = {"POST": "runs:read"}

    def post(self, **_: str) -> None:
        args = self.args()
        raw_ids = args.get("experiment_ids") or []
        if not isinstance(raw_ids, list):
            raise p.invalid("experiment_ids must be a list")
        experiment_ids: list[int] | None = None
        if raw_ids:
            experiment_ids = []
            for raw in raw_ids:
                value = str(raw)
                if value == p.DEFAULT_EXPERIMENT_ID:
                    default = svc.find_experiment_by_name(self.db, self.project, svc.DEFAULT_EXPERIMENT)
                    if default is not None:
                        experiment_ids.append(default.id)
                elif value.isdigit() and len(value) < 12:
                    # ids of other projects select nothing: search is scoped to this project
                    experiment_ids.append(int(value))
                else:
                    raise p.invalid(f"Invalid experiment id {raw!r}")
        order_by = args.get("order_by") or []
        if not isinstance(order_by, list) or not all(isinstance(o, str) for o in order_by):
            raise p.invalid("order_by must be a list of strings")
        result = runsearch.search_runs(
            self.db,
            project_id=self.project.id,
            experiment_ids=experiment_ids,
            filter=p.optional_str(args, "filter") or "",
            order_by=order_by,
            limit=p.optional_int(args, "max_results", 1, SEARCH_MAX_RESULTS) or SEARCH_MAX_RESULTS_DEFAULT,
            cursor=p.optional_str(args, "page_token"),
            lifecycle=p.view_type(args.get("run_view_type")),
        )
        ids = [r.id for r in result.runs]
        data = svc.run_data(self.db, result.runs)
        models = lm.model_ids_by_run(self.db, ids)
        body: dict[str, Any] = {"runs": [p.run_json(r, data[r.id], models[r.id]) for r in result.runs]}
        if result.next_cursor:
            body["next_page_token"] = result.next_cursor
        self.write_json(body)


class MetricHistoryHandler(MLflowHandler):
    actions = {"GET": "runs:read"}

    def get(self, **_: str) -> None:
        args = self.args()
        run = self.run(args)
        key = p.required_str(args, "metric_key")
        points, _total, _reduced = svc.metric_history(self.db, run, key)
        body: dict[str, Any] = {}
        limit = p.optional_int(args, "max_results", 1, 1_000_000)
        if limit is not None:
            offset = decode_cursor(p.optional_str(args, "page_token"))
            if offset + limit < len(points):
                body["next_page_token"] = encode_cursor(offset + limit)
            points = points[offset : offset + limit]
        body["metrics"] = [p.metric_json(key, point) for point in points]
        self.write_json(body)


# --- logged models (MLflow 3) ---------------------------------------------------------


class LoggedModelCreateHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        args = self.args()
        experiment = self.experiment(p.required_str(args, "experiment_id"), create_default=True)
        run_id = p.optional_str(args, "source_run_id")
        run = svc.find_run(self.db, self.project, run_id) if run_id else None
        m = lm.create_logged_model(
            self.db,
            self.project,
            experiment,
            self.principal.name,
            name=p.optional_str(args, "name"),
            model_type=p.optional_str(args, "model_type"),
            run=run,
            params=p.key_values(args, "params"),
            tags=p.key_values(args, "tags"),
        )
        self.commit(
            {"model": p.logged_model_json(m, self.project)},
            "logged_model.create",
            f"logged-models/{m.id}",
            name=m.name,
            run_id=m.run_id,
        )


class LoggedModelHandler(MLflowHandler):
    """Get, finalize (PATCH status) or delete one logged model."""

    actions = {"GET": "runs:read", "PATCH": "runs:write", "DELETE": "runs:write"}

    def get(self, model_id: str, **_: str) -> None:
        allow_deleted = self.get_query_argument("allow_deleted", "false").lower() == "true"
        m = lm.find_logged_model(self.db, self.project, model_id, allow_deleted=allow_deleted)
        self.write_json({"model": p.logged_model_json(m, self.project)})

    def patch(self, model_id: str, **_: str) -> None:
        args = self.args()
        m = lm.find_logged_model(self.db, self.project, model_id)
        raw = args.get("status")
        if raw not in p.MODEL_STATUS_FROM_MLFLOW:
            raise p.invalid(f"Invalid logged model status {raw!r}")
        changed = lm.finalize(m, p.MODEL_STATUS_FROM_MLFLOW[raw])
        self.commit(
            {"model": p.logged_model_json(m, self.project)},
            "logged_model.finalize",
            f"logged-models/{m.id}",
            status=m.status,
            changed=changed,
        )

    def delete(self, model_id: str, **_: str) -> None:
        m = lm.find_logged_model(self.db, self.project, model_id)
        lm.delete_logged_model(m)
        self.commit({}, "logged_model.delete", f"logged-models/{m.id}")


class LoggedModelTagsHandler(MLflowHandler):
    actions = {"PATCH": "runs:write"}

    def patch(self, model_id: str, **_: str) -> None:
        m = lm.find_logged_model(self.db, self.project, model_id)
        keys = lm.set_tags(m, p.key_values(self.args(), "tags"))
        self.commit({}, "logged_model.update", f"logged-models/{m.id}", tags=keys)


class LoggedModelTagHandler(MLflowHandler):
    actions = {"DELETE": "runs:write"}

    def delete(self, model_id: str, tag_key: str, **_: str) -> None:
        m = lm.find_logged_model(self.db, self.project, model_id)
        lm.delete_tag(m, tag_key)
        self.commit({}, "logged_model.update", f"logged-models/{m.id}", tags_deleted=[tag_key])


class LoggedModelParamsHandler(MLflowHandler):
    actions = {"POST": "runs:write"}

    def post(self, model_id: str, **_: str) -> None:
        args = self.args()
        params = p.key_values(args, "params")
        if len(params) > svc.MAX_PARAMS_PER_BATCH:
            raise p.invalid(f"At most {svc.MAX_PARAMS_PER_BATCH} params per request")
        m = lm.find_logged_model(self.db, self.project, model_id)
        keys = lm.log_params(m, params)
        self.commit({}, "logged_model.update", f"logged-models/{m.id}", params=keys)


class LoggedModelSearchHandler(MLflowHandler):
    actions = {"POST": "runs:read"}

    def post(self, **_: str) -> None:
        args = self.args()
        raw_ids = args.get("experiment_ids") or []
        if not isinstance(raw_ids, list):
            raise p.invalid("experiment_ids must be a list")
        ids = []
        for raw in raw_ids:
            try:
                ids.append(self.experiment(raw).id)
            except AnimusError as e:
                if e.status != 404:
                    raise
        rows, next_cursor = lm.search_logged_models(
            self.db,
            self.project,
            ids if raw_ids else None,
            p.optional_str(args, "filter") or "",
            p.optional_int(args, "max_results", 1, lm.SEARCH_MAX_RESULTS) or 100,
            p.optional_str(args, "page_token"),
        )
        body: dict[str, Any] = {"models": [p.logged_model_json(m, self.project) for m in rows]}
        if next_cursor:
            body["next_page_token"] = next_cursor
        self.write_json(body)


class MLflowNotFoundHandler(MLflowHandler):
    """Any other path under the MLflow root: ENDPOINT_NOT_FOUND, after authentication."""

    actions = {m: "api:describe" for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}

    def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise AnimusError(
            404, "route_not_found", f"This MLflow endpoint is not implemented by Animus: {self.request.path}"
        )

    get = post = put = patch = delete = _not_found
