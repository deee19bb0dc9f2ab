"""The MLflow tracking protocol, driven by the real `mlflow` client against the real stack.

Each client program runs in its own Python process (a script written to tmp_path)
with MLFLOW_TRACKING_URI=<hub>/services/animus/mlflow/projects/<project> and
MLFLOW_TRACKING_TOKEN, as a user would run it, so no global mlflow state leaks
between tests. What it logged is then checked through Animus's own API, CLI,
audit trail and outbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from animus_hub import db as dbmod
from animus_hub.auth.tokens import issue_token
from animus_hub.mlflow import make_handlers
from animus_hub.orm import OutboxEvent, Project, ServiceAccount

PRELUDE = '''
import json, math, os, sys, time
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

def result(**values):
    print("RESULT " + json.dumps(values, default=str))

def error_of(fn, *args, **kwargs):
    """The MLflow error code (and message) fn raises, or None."""
    try:
        fn(*args, **kwargs)
    except MlflowException as e:
        return [e.error_code, e.message]
    return None

def rest_store():
    """The client's REST store: sends requests as given, without the client's own checks."""
    from mlflow.tracking._tracking_service.utils import _get_store
    return _get_store()
'''


@dataclass
class Team:
    project: str
    project_id: int
    names: dict[str, str]
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def team(stack, unique) -> Team:
    """A project with an owner, a contributor and a viewer, and an outsider with a project of their own."""
    names = {role: unique(f"ml{role[:3]}") for role in ("owner", "contributor", "viewer", "outsider")}
    tokens = {role: stack.user_token(name) for role, name in names.items()}
    project = unique("mlf")
    assert stack.api("POST", "/projects", tokens["owner"], json={"slug": project}).status_code == 201
    for role in ("contributor", "viewer"):
        r = stack.api(
            "POST",
            f"/projects/{project}/members",
            tokens["owner"],
            json={"kind": "user", "name": names[role], "role": role},
        )
        assert r.status_code == 201, r.text
    assert stack.api("POST", "/projects", tokens["outsider"], json={"slug": unique("mlo")}).status_code == 201
    engine = dbmod.make_engine(stack.db_url)
    with dbmod.make_session_factory(engine)() as s:
        project_id = s.scalar(select(Project.id).where(Project.slug == project))
    engine.dispose()
    return Team(project, project_id, names, tokens)


@pytest.fixture
def mlflow_client(stack, tmp_path) -> Callable[..., dict[str, Any]]:
    """Run a client program; returns what it passed to result(...)."""
    counter = iter(range(1000))

    def run(code: str, token: str, project: str | None, expect_ok: bool = True) -> dict[str, Any]:
        script = tmp_path / f"client_{next(counter)}.py"
        script.write_text(PRELUDE + textwrap.dedent(code))
        uri = f"{stack.url}/services/animus/mlflow" + (f"/projects/{project}" if project else "")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JUPYTERHUB_", "ANIMUS_"))}
        env.update(
            MLFLOW_TRACKING_URI=uri,
            MLFLOW_TRACKING_TOKEN=token,
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            GIT_PYTHON_REFRESH="quiet",
            HOME=str(tmp_path),
            # a server error must fail the test quickly, not after minutes of back-off
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0",
        )
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
        if expect_ok:
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
        return json.loads(lines[-1][len("RESULT ") :])

    return run


def audit_events(stack, team: Team) -> list[dict[str, Any]]:
    r = stack.api("GET", f"/projects/{team.project}/audit/events?limit=500", team.tokens["owner"])
    assert r.status_code == 200, r.text
    return r.json()["items"]


def outbox_events(stack, event_type: str) -> list[dict[str, Any]]:
    engine = dbmod.make_engine(stack.db_url)
    with dbmod.make_session_factory(engine)() as s:
        payloads = [e.payload for e in s.scalars(select(OutboxEvent).where(OutboxEvent.type == event_type))]
    engine.dispose()
    return payloads


def animus_cli(stack, config_dir: Path, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
    env.update(ANIMUS_API_URL=stack.api_url, ANIMUS_TOKEN=token, ANIMUS_CONFIG_DIR=str(config_dir))
    return subprocess.run(
        [sys.executable, "-m", "animus.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


# --- the routes ---------------------------------------------------------------------------


def test_every_mlflow_route_declares_an_authorisation_action_for_each_method():
    for pattern, cls, _ in make_handlers("/services/animus/"):
        implemented = {m.upper() for m in ("get", "post", "put", "patch", "delete") if m in _own_methods(cls)}
        assert implemented and implemented == set(cls.actions), (pattern, cls.__name__, implemented, cls.actions)


def _own_methods(cls: type) -> set[str]:
    from tornado.web import RequestHandler

    return {m for m in ("get", "post", "put", "patch", "delete") if getattr(cls, m) is not getattr(RequestHandler, m)}


# --- (1) unmodified autolog code --------------------------------------------------------


def test_sklearn_autolog_logs_a_run_and_model_visible_through_animus(stack, team, mlflow_client, tmp_path):
    out = mlflow_client(
        """
        import hashlib
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression

        mlflow.autolog()
        X, y = make_classification(n_samples=200, n_features=5, random_state=0)
        forest = RandomForestClassifier(n_estimators=7, max_depth=3, random_state=0).fit(X, y)
        forest_run = mlflow.last_active_run()
        forest_model = mlflow.last_logged_model()
        LogisticRegression(max_iter=150).fit(X, y)
        linear_run = mlflow.last_active_run()

        files = [f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=forest_model.artifact_location)]
        models = mlflow.search_logged_models(
            experiment_ids=[forest_run.info.experiment_id],
            filter_string=f"source_run_id = '{forest_run.info.run_id}'",
            output_format="list",
        )
        mlmodel = mlflow.artifacts.load_text(forest_model.artifact_location + "/MLmodel")
        loaded = mlflow.sklearn.load_model(f"models:/{forest_model.model_id}")
        result(
            forest_run=forest_run.info.run_id,
            linear_run=linear_run.info.run_id,
            model_id=forest_model.model_id,
            model_status=str(forest_model.status),
            model_run=forest_model.source_run_id,
            files=files,
            searched=[m.model_id for m in models],
            mlmodel=mlmodel,
            same_predictions=bool((loaded.predict(X) == forest.predict(X)).all()),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    # through Animus's own API
    r = stack.api("GET", f"/projects/{team.project}/runs/{out['forest_run']}", team.tokens["viewer"])
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "succeeded" and run["user"] == team.names["contributor"]
    assert run["params"]["n_estimators"] == "7" and run["params"]["max_depth"] == "3"
    assert 0.5 < run["metrics"]["training_accuracy_score"]["value"] <= 1.0
    assert run["tags"]["mlflow.user"] == team.names["contributor"]  # the caller, not the OS user
    assert run["tags"]["mlflow.runName"] == run["name"]
    linear = stack.api("GET", f"/projects/{team.project}/runs/{out['linear_run']}", team.tokens["viewer"]).json()
    assert linear["params"]["max_iter"] == "150" and "training_accuracy_score" in linear["metrics"]
    # the model: an MLflow 3 logged model of this run, with its files in the store
    assert out["model_run"] == out["forest_run"] and out["model_status"].endswith("READY")
    assert "artifacts/MLmodel" in out["files"] and "artifacts/model.pkl" in out["files"]
    assert out["searched"] == [out["model_id"]]
    assert "sklearn" in out["mlmodel"] and out["model_id"] in out["mlmodel"]
    assert out["same_predictions"]
    # ... and Animus's own API lists the model's files under the run and hands out a download URL
    files = stack.api("GET", f"/projects/{team.project}/runs/{out['forest_run']}/artifacts", team.tokens["viewer"]).json()["items"]
    mlmodel_path = f"logged-models/{out['model_id']}/MLmodel"
    assert mlmodel_path in {f["path"] for f in files}, files
    dl = stack.api(
        "GET", f"/projects/{team.project}/runs/{out['forest_run']}/artifacts/download", team.tokens["viewer"], params={"path": mlmodel_path}
    ).json()
    assert "sklearn" in requests.get(dl["url"], timeout=30).text
    # the CLI (`animus runs`) finds the run by its params
    found = animus_cli(
        stack,
        tmp_path,
        team.tokens["viewer"],
        "runs",
        "ls",
        "--project",
        team.project,
        "--json",
        "-f",
        "params.n_estimators = '7'",
    )
    assert found.returncode == 0, found.stderr
    assert [r["id"] for r in json.loads(found.stdout)] == [out["forest_run"]]
    shown = animus_cli(
        stack, tmp_path, team.tokens["viewer"], "runs", "show", "--project", team.project, out["forest_run"]
    )
    assert shown.returncode == 0 and json.loads(shown.stdout)["params"]["n_estimators"] == "7", shown.stderr
    listed = animus_cli(stack, tmp_path, team.tokens["viewer"], "runs", "artifacts", "--project", team.project, "--json", out["forest_run"])
    assert mlmodel_path in {f["path"] for f in json.loads(listed.stdout)}, listed.stderr
    # every change was audited as the contributor, and the run's end emitted RunFinished
    mine = [e for e in audit_events(stack, team) if e["actor"] == team.names["contributor"]]
    actions = {e["action"] for e in mine if e["outcome"] == "success"}
    assert {"run.create", "run.log", "run.update", "logged_model.create", "artifact.upload"} <= actions
    finished = [e for e in outbox_events(stack, "RunFinished") if e["run_id"] == out["forest_run"]]
    assert len(finished) == 1 and finished[0]["status"] == "succeeded"


# --- (2) the explicit API ----------------------------------------------------------------


def test_explicit_logging_history_and_search_with_or_parentheses_and_order_by(stack, team, mlflow_client):
    out = mlflow_client(
        """
        client = MlflowClient()
        experiment_id = mlflow.create_experiment("explicit-" + os.urandom(4).hex())
        mlflow.set_experiment(experiment_id=experiment_id)
        runs = []
        for i, (optimizer, team) in enumerate([("adam", "nlp"), ("sgd", "vision"), ("adam", "vision")]):
            with mlflow.start_run(run_name=f"r{i}") as run:
                mlflow.log_param("optimizer", optimizer)
                mlflow.set_tag("team", team)
                for step in range(3):
                    mlflow.log_metric("loss", 1.0 / (i + 1 + step), step=step)
                mlflow.log_metric("acc", 0.5 + 0.1 * i)
                now = int(time.time() * 1000)
                client.log_batch(
                    run.info.run_id,
                    metrics=[Metric("batch_metric", float(i), now, 0)],
                    params=[Param("batch_size", "32")],
                    tags=[RunTag("source", "batch")],
                )
            runs.append(run.info.run_id)
        history = client.get_metric_history(runs[0], "loss")
        found = client.search_runs(
            [experiment_id],
            "(params.optimizer = 'adam' and metrics.acc > 0.55) or tags.team = 'nlp'",
            order_by=["metrics.acc DESC"],
        )
        first = client.search_runs([experiment_id], "", order_by=["params.optimizer ASC", "metrics.acc ASC"], max_results=2)
        second = client.search_runs([experiment_id], "", order_by=["params.optimizer ASC", "metrics.acc ASC"], max_results=2, page_token=first.token)
        statuses = client.search_runs([experiment_id], "attributes.status = 'FINISHED'")
        client.update_run(runs[1], name="renamed")
        renamed = client.get_run(runs[1])
        client.set_tag(runs[2], "mlflow.runName", "tagged-name")
        tagged = client.get_run(runs[2])
        r0 = client.get_run(runs[0])
        result(
            experiment_id=experiment_id,
            runs=runs,
            history=[(m.step, m.value) for m in history],
            found=[r.info.run_id for r in found],
            pages=[[r.info.run_id for r in first], [r.info.run_id for r in second], second.token],
            finished=len(statuses),
            renamed=[renamed.info.run_name, renamed.data.tags["mlflow.runName"]],
            tagged=[tagged.info.run_name, tagged.data.tags["mlflow.runName"]],
            r0=dict(params=r0.data.params, tags=r0.data.tags, metrics=r0.data.metrics, user=r0.info.user_id),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    runs = out["runs"]
    assert out["history"] == [[0, 1.0], [1, 0.5], [2, 1.0 / 3]]
    assert out["found"] == [runs[2], runs[0]]
    assert out["pages"][0] == [runs[0], runs[2]] and out["pages"][1] == [runs[1]] and out["pages"][2] is None
    assert out["finished"] == 3
    assert out["renamed"] == ["renamed", "renamed"] and out["tagged"] == ["tagged-name", "tagged-name"]
    r0 = out["r0"]
    assert r0["params"] == {"optimizer": "adam", "batch_size": "32"}
    assert r0["tags"]["team"] == "nlp" and r0["tags"]["source"] == "batch" and r0["tags"]["mlflow.runName"] == "r0"
    assert r0["metrics"] == {"loss": 1.0 / 3, "acc": 0.5, "batch_metric": 0.0}
    assert r0["user"] == team.names["contributor"]
    # the same experiment and runs through Animus's API
    experiments = stack.api("GET", f"/projects/{team.project}/experiments", team.tokens["viewer"]).json()["items"]
    assert out["experiment_id"] in [e["id"] for e in experiments]
    listed = stack.api(
        "GET",
        f"/projects/{team.project}/runs",
        team.tokens["viewer"],
        params={"experiment_id": out["experiment_id"], "order_by": "metrics.acc DESC"},
    ).json()["items"]
    assert [r["id"] for r in listed] == [runs[2], runs[1], runs[0]]
    assert [r["name"] for r in listed] == ["tagged-name", "renamed", "r0"]
    history = stack.api(
        "GET", f"/projects/{team.project}/runs/{runs[0]}/metric-history", team.tokens["viewer"], params={"key": "loss"}
    ).json()
    assert [p["value"] for p in history["points"]] == [1.0, 0.5, 1.0 / 3]


def test_experiments_map_onto_the_projects_experiments(stack, team, mlflow_client):
    out = mlflow_client(
        """
        client = MlflowClient()
        name = "exp-" + os.urandom(4).hex()
        experiment = mlflow.set_experiment(name)  # created: it does not exist yet
        mlflow.set_experiment_tag("owner", "team-a")
        client.set_experiment_tag(experiment.experiment_id, "mlflow.note.content", "what we try")
        again = error_of(mlflow.create_experiment, name)
        searched = [e.experiment_id for e in mlflow.search_experiments(filter_string=f"name = '{name}'")]
        client.rename_experiment(experiment.experiment_id, name + "-renamed")
        with mlflow.start_run(experiment_id="0") as default_run:
            pass
        client.delete_experiment(experiment.experiment_id)
        deleted = client.get_experiment(experiment.experiment_id).lifecycle_stage
        run_in_deleted = error_of(client.create_run, experiment.experiment_id)
        client.restore_experiment(experiment.experiment_id)
        got = client.get_experiment(experiment.experiment_id)
        result(
            id=experiment.experiment_id, again=again, searched=searched, deleted=deleted,
            run_in_deleted=run_in_deleted, name=got.name, tags=got.tags, stage=got.lifecycle_stage,
            default_experiment=default_run.info.experiment_id,
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["again"][0] == "RESOURCE_ALREADY_EXISTS"
    assert out["searched"] == [out["id"]] and out["deleted"] == "deleted" and out["stage"] == "active"
    assert out["run_in_deleted"][0] == "INVALID_PARAMETER_VALUE"
    assert out["tags"] == {"owner": "team-a", "mlflow.note.content": "what we try"}
    animus = stack.api("GET", f"/projects/{team.project}/experiments/{out['id']}", team.tokens["viewer"]).json()
    assert animus["name"] == out["name"] and animus["name"].endswith("-renamed")
    assert animus["description"] == "what we try" and animus["tags"] == {"owner": "team-a"}
    default = stack.api(
        "GET", f"/projects/{team.project}/experiments/{out['default_experiment']}", team.tokens["viewer"]
    )
    assert default.json()["name"] == "Default"


# --- (3) NaN and infinities ----------------------------------------------------------------


def test_nan_and_infinities_round_trip_as_mlflow_does(stack, team, mlflow_client):
    out = mlflow_client(
        """
        client = MlflowClient()
        with mlflow.start_run() as run:
            mlflow.log_metric("nan", float("nan"))
            mlflow.log_metric("inf", float("inf"))
            mlflow.log_metric("ninf", float("-inf"))
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[Metric("batch_nan", float("nan"), now, 1), Metric("batch_inf", float("inf"), now, 1)])
        got = client.get_run(run.info.run_id).data.metrics
        hist = [m.value for m in client.get_metric_history(run.info.run_id, "ninf")]
        exp = mlflow.get_experiment(run.info.experiment_id)
        huge = client.search_runs([run.info.experiment_id], "metrics.inf > 1e308")
        result(
            run_id=run.info.run_id,
            nan=math.isnan(got["nan"]), batch_nan=math.isnan(got["batch_nan"]),
            inf=got["inf"] == float("inf"), batch_inf=got["batch_inf"] == float("inf"),
            ninf=got["ninf"] == float("-inf"), hist=hist[0] == float("-inf"),
            found=[r.info.run_id for r in huge],
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["nan"] and out["batch_nan"] and out["inf"] and out["batch_inf"] and out["ninf"] and out["hist"]
    assert out["run_id"] in out["found"]
    metrics = stack.api("GET", f"/projects/{team.project}/runs/{out['run_id']}", team.tokens["viewer"]).json()[
        "metrics"
    ]
    assert {k: metrics[k]["value"] for k in ("nan", "inf", "ninf")} == {
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
    }
    # and on the wire, exactly as MLflow's server writes them
    raw = requests.get(
        f"{stack.url}/services/animus/mlflow/projects/{team.project}/api/2.0/mlflow/runs/get",
        params={"run_id": out["run_id"]},
        headers={"Authorization": f"Bearer {team.tokens['viewer']}"},
        timeout=30,
    ).json()
    values = {m["key"]: m["value"] for m in raw["run"]["data"]["metrics"]}
    assert values["nan"] == "NaN" and values["inf"] == "Infinity" and values["ninf"] == "-Infinity"


# --- (4)-(6) bad input -------------------------------------------------------------------


def test_relogging_a_param_with_another_value_fails_in_the_client(team, mlflow_client):
    out = mlflow_client(
        """
        with mlflow.start_run() as run:
            mlflow.log_param("lr", 0.1)
            same = error_of(mlflow.log_param, "lr", 0.1)
            changed = error_of(mlflow.log_param, "lr", 0.2)
            batch = error_of(MlflowClient().log_batch, run.info.run_id, params=[Param("lr", "0.3")])
        result(same=same, changed=changed, batch=batch, params=MlflowClient().get_run(run.info.run_id).data.params)
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["same"] is None
    assert out["changed"][0] == "INVALID_PARAMETER_VALUE" and "'lr'" in out["changed"][1]
    assert out["batch"][0] == "INVALID_PARAMETER_VALUE"
    assert out["params"] == {"lr": "0.1"}


def test_oversize_batches_are_refused_within_mlflow_limits(team, mlflow_client):
    out = mlflow_client(
        """
        store, client = rest_store(), MlflowClient()
        now = int(time.time() * 1000)
        with mlflow.start_run() as run:
            rid = run.info.run_id
            metrics = [Metric(f"m{i}", 1.0, now, 0) for i in range(1001)]
            too_many_metrics = error_of(store.log_batch, rid, metrics, [], [])
            too_many_params = error_of(store.log_batch, rid, [], [Param(f"p{i}", "1") for i in range(101)], [])
            too_many_tags = error_of(store.log_batch, rid, [], [], [RunTag(f"t{i}", "1") for i in range(101)])
            too_many_in_all = error_of(
                store.log_batch, rid, metrics[:950], [Param(f"p{i}", "1") for i in range(30)], [RunTag(f"t{i}", "1") for i in range(30)]
            )
            at_the_limits = error_of(
                store.log_batch, rid, metrics[:900], [Param(f"p{i}", "1") for i in range(50)], [RunTag(f"t{i}", "1") for i in range(50)]
            )
            # the client's own log_batch splits large batches: that must keep working
            chunked = error_of(client.log_batch, rid, metrics=[Metric(f"c{i}", 2.0, now, 0) for i in range(2500)])
        data = client.get_run(rid).data
        result(
            errors=[too_many_metrics, too_many_params, too_many_tags, too_many_in_all],
            at_the_limits=at_the_limits, chunked=chunked, n_metrics=len(data.metrics), n_params=len(data.params),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert [e[0] for e in out["errors"]] == ["INVALID_PARAMETER_VALUE"] * 4
    assert "1001 metrics (max 1000)" in out["errors"][0][1]
    assert out["at_the_limits"] is None and out["chunked"] is None
    assert out["n_metrics"] == 900 + 2500 and out["n_params"] == 50


def test_unknown_run_and_experiment_are_resource_does_not_exist(team, mlflow_client):
    out = mlflow_client(
        """
        client = MlflowClient()
        missing = "0" * 32
        result(
            get_run=error_of(client.get_run, missing),
            log_metric=error_of(client.log_metric, missing, "m", 1.0),
            log_param=error_of(client.log_param, missing, "p", "1"),
            update=error_of(client.set_terminated, missing),
            history=error_of(client.get_metric_history, missing, "m"),
            experiment=error_of(client.get_experiment, "999999999"),
            run_in_missing_experiment=error_of(client.create_run, "999999999"),
            by_name=client.get_experiment_by_name("no-such-experiment"),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    by_name = out.pop("by_name")
    assert by_name is None
    assert {k: v[0] for k, v in out.items()} == dict.fromkeys(out, "RESOURCE_DOES_NOT_EXIST")


# --- (7) roles --------------------------------------------------------------------------------


def test_viewer_cannot_log_and_outsider_sees_nothing_both_audited_as_denied(stack, team, mlflow_client):
    made = mlflow_client(
        """
        with mlflow.start_run() as run:
            mlflow.log_param("a", "1")
        result(run_id=run.info.run_id)
        """,
        team.tokens["contributor"],
        team.project,
    )
    code = f"""
        client = MlflowClient()
        run_id = {made["run_id"]!r}
        with open("f.txt", "w") as f:
            f.write("x" * 300_000)
        def upload():
            try:
                client.log_artifact(run_id, "f.txt")
            except Exception as e:
                return type(e).__name__ + ": " + str(e)[:300]
        result(
            read=error_of(client.get_run, run_id),
            create=error_of(client.create_run, "0"),
            log=error_of(client.log_metric, run_id, "m", 1.0),
            end=error_of(client.set_terminated, run_id),
            upload=upload(),
        )
        """
    viewer = mlflow_client(code, team.tokens["viewer"], team.project)
    assert viewer["read"] is None
    assert [viewer[k][0] for k in ("create", "log", "end")] == ["PERMISSION_DENIED"] * 3
    assert "403" in viewer["upload"] and "PERMISSION_DENIED" in viewer["upload"]
    outsider = mlflow_client(code, team.tokens["outsider"], team.project)
    assert [outsider[k][0] for k in ("read", "create", "log", "end")] == ["RESOURCE_DOES_NOT_EXIST"] * 4
    assert "RESOURCE_DOES_NOT_EXIST" in outsider["upload"]  # the client cannot even find the run
    key = f"projects/{team.project_id}/runs/{made['run_id']}/artifacts/f.txt"
    url = f"{stack.url}/services/animus/mlflow/projects/{team.project}/api/2.0/mlflow-artifacts/artifacts/{key}"
    r = requests.put(
        url, data=b"x" * 300_000, headers={"Authorization": f"Bearer {team.tokens['outsider']}"}, timeout=30
    )
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    denied = [e for e in audit_events(stack, team) if e["outcome"] == "denied"]
    by = {(e["actor"], e["action"]) for e in denied}
    assert (team.names["viewer"], "runs:write") in by
    assert (team.names["outsider"], "runs:read") in by and (team.names["outsider"], "runs:write") in by


# --- (8) finished runs ----------------------------------------------------------------------


def test_logging_into_a_finished_run_is_refused(stack, team, mlflow_client, tmp_path):
    out = mlflow_client(
        """
        client = MlflowClient()
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 1.0)
        rid = run.info.run_id
        with open("late.txt", "w") as f:
            f.write("late")
        def upload():
            try:
                client.log_artifact(rid, "late.txt")
            except Exception as e:
                return str(e)[:500]
        result(
            run_id=rid,
            status=client.get_run(rid).info.status,
            metric=error_of(client.log_metric, rid, "m", 2.0),
            param=error_of(client.log_param, rid, "p", "1"),
            batch=error_of(client.log_batch, rid, metrics=[Metric("m", 3.0, int(time.time() * 1000), 1)]),
            reopen=error_of(client.update_run, rid, "RUNNING"),
            tag=error_of(client.set_tag, rid, "note", "tags stay editable"),
            upload=upload(),
            history=[m.value for m in client.get_metric_history(rid, "m")],
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["status"] == "FINISHED"
    for what in ("metric", "param", "batch", "reopen"):
        assert out[what][0] == "INVALID_PARAMETER_VALUE" and "finished" in out[what][1], (what, out[what])
    assert out["tag"] is None
    assert "400" in out["upload"] and "finished" in out["upload"]
    assert out["history"] == [1.0]
    run = stack.api("GET", f"/projects/{team.project}/runs/{out['run_id']}", team.tokens["viewer"]).json()
    assert run["status"] == "succeeded" and run["tags"]["note"] == "tags stay editable"
    assert [e["status"] for e in outbox_events(stack, "RunFinished") if e["run_id"] == out["run_id"]] == ["succeeded"]


# --- (9) artifacts ------------------------------------------------------------------------


def test_artifact_bytes_go_to_the_store_not_through_animus_api(stack, team, mlflow_client):
    out = mlflow_client(
        """
        import hashlib
        with mlflow.start_run() as run:
            data = os.urandom(3_000_000)  # larger than any proxy buffer
            with open("blob.bin", "wb") as f:
                f.write(data)
            mlflow.log_artifact("blob.bin", "data")
            mlflow.log_text("hello", "notes/hello.txt")
        client = MlflowClient()
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data/blob.bin", dst_path="dl")
        result(
            run_id=run.info.run_id,
            open_run_id=client.create_run(run.info.experiment_id).info.run_id,
            artifact_uri=run.info.artifact_uri,
            root=sorted((f.path, f.is_dir) for f in client.list_artifacts(run.info.run_id)),
            data=[(f.path, f.file_size) for f in client.list_artifacts(run.info.run_id, "data")],
            same=hashlib.sha256(open(path, "rb").read()).hexdigest() == hashlib.sha256(data).hexdigest(),
            text=mlflow.artifacts.load_text(run.info.artifact_uri + "/notes/hello.txt"),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["artifact_uri"] == f"mlflow-artifacts:/projects/{team.project_id}/runs/{out['run_id']}/artifacts"
    assert out["root"] == [["data", True], ["notes", True]]
    assert out["data"] == [["data/blob.bin", 3_000_000]] and out["same"] and out["text"] == "hello"

    # the API answers an upload with a redirect to the store, and a download likewise
    base = f"{stack.url}/services/animus/mlflow/projects/{team.project}/api/2.0/mlflow-artifacts/artifacts"
    key = f"projects/{team.project_id}/runs/{out['open_run_id']}/artifacts/direct/check.bin"
    auth = {"Authorization": f"Bearer {team.tokens['contributor']}"}
    body = os.urandom(1000)
    http = requests.Session()
    r = http.put(f"{base}/{key}", data=body, headers=auth, allow_redirects=False, timeout=30)
    assert r.status_code == 307, r.text
    upload_url = r.headers["Location"]
    assert "/services/animus/" not in upload_url
    assert http.put(upload_url, data=body, timeout=30).status_code in (200, 201, 204)
    r = http.get(f"{base}/{key}", headers=auth, allow_redirects=False, timeout=30)
    assert r.status_code == 307 and "/services/animus/" not in r.headers["Location"]
    assert hashlib.sha256(http.get(r.headers["Location"], timeout=30).content).digest() == hashlib.sha256(body).digest()
    listed = http.get(base, params={"path": key.rsplit("/", 1)[0]}, headers=auth, timeout=30).json()
    assert listed == {"files": [{"path": "check.bin", "is_dir": False, "file_size": 1000}]}
    # deleting a directory deletes what is under it
    r = http.delete(f"{base}/{key.rsplit('/', 1)[0]}", headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert http.get(base, params={"path": key.rsplit("/", 1)[0]}, headers=auth, timeout=30).json() == {"files": []}
    assert http.get(f"{base}/{key}", headers=auth, allow_redirects=False, timeout=30).status_code == 404
    # the upload was audited with its size; the bytes were not kept by the API
    uploads = [e for e in audit_events(stack, team) if e["action"] == "artifact.upload" and e["resource"].endswith(key)]
    assert uploads and uploads[-1]["details"]["size"] == 1000


# --- keys, paths and filters built to trick ------------------------------------------------


def test_path_tricks_in_keys_and_artifact_paths_are_refused(stack, team, mlflow_client, unique):
    out = mlflow_client(
        """
        store = rest_store()
        with mlflow.start_run() as run:
            rid = run.info.run_id
            now = int(time.time() * 1000)
            result(
                run_id=rid,
                metric=[error_of(store.log_metric, rid, Metric(k, 1.0, now, 0)) for k in ("../evil", "/abs", "a//b", "a/./b")],
                param=error_of(store.log_param, rid, Param("../../etc/passwd", "x")),
                tag=error_of(store.set_tag, rid, RunTag("x/../../y", "v")),
                fine=error_of(store.log_metric, rid, Metric("train/loss", 1.0, now, 0)),
            )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert [e[0] for e in out["metric"]] == ["INVALID_PARAMETER_VALUE"] * 4
    assert out["param"][0] == out["tag"][0] == "INVALID_PARAMETER_VALUE" and out["fine"] is None
    base = f"{stack.url}/services/animus/mlflow/projects/{team.project}/api/2.0/mlflow-artifacts/artifacts"
    root = f"projects/{team.project_id}/runs/{out['run_id']}/artifacts"
    auth = {"Authorization": f"Bearer {team.tokens['contributor']}"}
    other_project = team.project_id + 1000
    for path, status in [
        (f"{root}/..%2F..%2Fother-run%2Fartifacts%2Fx", 400),  # dot segments, however encoded
        (f"{root}/%2e%2e/%2e%2e/other-run/artifacts/x", 404),  # (the client normalises these itself)
        (f"{root}/a%2F%2Fb", 400),
        (f"projects/{other_project}/runs/{out['run_id']}/artifacts/x", 404),  # another project's keys
        (f"projects/{team.project_id}/runs/{'f' * 32}/artifacts/x", 404),  # no such run
        (f"projects/{team.project_id}/datasets/1/artifacts/x", 404),  # not an artifact prefix
        ("etc/passwd", 404),
    ]:
        r = requests.put(f"{base}/{path}", data=b"x", headers=auth, allow_redirects=False, timeout=30)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert "Location" not in r.headers
        assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")


def test_filter_strings_built_to_inject_sql_are_data(stack, team, mlflow_client):
    out = mlflow_client(
        """
        client = MlflowClient()
        with mlflow.start_run() as run:
            mlflow.log_param("name", "x")
        eid = run.info.experiment_id
        def ids(f):
            return [r.info.run_id for r in client.search_runs([eid], f)]
        result(
            run_id=run.info.run_id,
            quoted=ids("params.name = 'x'' or ''1''=''1'"),
            key=ids("params.`name' OR 1=1 --` = 'x'"),
            broken=error_of(client.search_runs, [eid], "params.name = 'x'; DROP TABLE run; --"),
            union=error_of(client.search_runs, [eid], "params.name = 'x' UNION SELECT * FROM audit_event"),
            order=error_of(client.search_runs, [eid], "", order_by=["metrics.m; DROP TABLE run"]),
            after=ids("params.name = 'x'"),
        )
        """,
        team.tokens["contributor"],
        team.project,
    )
    assert out["quoted"] == [] and out["key"] == []
    assert [out[k][0] for k in ("broken", "union", "order")] == ["INVALID_PARAMETER_VALUE"] * 3
    assert out["run_id"] in out["after"]


def test_an_archived_project_can_be_searched_but_not_logged_into(stack, team, mlflow_client, unique):
    project = unique("mlarch")
    owner = team.tokens["owner"]
    assert stack.api("POST", "/projects", owner, json={"slug": project}).status_code == 201
    made = mlflow_client(
        """
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 1.0)
        result(run_id=run.info.run_id, experiment_id=run.info.experiment_id)
        """,
        owner,
        project,
    )
    assert stack.api("POST", f"/projects/{project}/archive", owner).status_code == 200
    out = mlflow_client(
        f"""
        client = MlflowClient()
        found = client.search_runs([{made["experiment_id"]!r}], "metrics.m = 1")
        result(
            found=[r.info.run_id for r in found],
            experiments=len(mlflow.search_experiments()),
            create=error_of(client.create_run, {made["experiment_id"]!r}),
            tag=error_of(client.set_tag, {made["run_id"]!r}, "k", "v"),
        )
        """,
        owner,
        project,
    )
    # searches are POSTs that only read: an archived (read-only) project still answers them
    assert out["found"] == [made["run_id"]] and out["experiments"] == 1
    assert out["create"][0] == out["tag"][0] == "INVALID_PARAMETER_VALUE" and "archived" in out["create"][1]


# --- the short tracking URI -----------------------------------------------------------------


def test_short_tracking_uri_takes_the_project_from_a_project_bound_token(stack, team, mlflow_client):
    user = mlflow_client(
        "result(error=error_of(mlflow.MlflowClient().create_run, '0'))", team.tokens["contributor"], None
    )
    assert user["error"][0] == "INVALID_PARAMETER_VALUE"
    assert f"{stack.url}/services/animus/mlflow/projects/<project>" in user["error"][1]
    engine = dbmod.make_engine(stack.db_url)
    with dbmod.make_session_factory(engine)() as s:
        project = s.scalar(select(Project).where(Project.slug == team.project))
        sa = ServiceAccount(project_id=project.id, name="ci-mlflow", role="contributor", created_by="test")
        s.add(sa)
        _, token = issue_token(
            s,
            kind="service_account",
            project=project,
            created_by="test",
            service_account=sa,
            expires_in=dt.timedelta(hours=1),
        )
        s.commit()
    engine.dispose()
    out = mlflow_client(
        """
        with mlflow.start_run(run_name="from-ci") as run:
            mlflow.log_metric("m", 1.0)
            mlflow.log_text("x", "x.txt")
        result(run_id=run.info.run_id, files=[f.path for f in MlflowClient().list_artifacts(run.info.run_id)])
        """,
        token,
        None,
    )
    assert out["files"] == ["x.txt"]
    run = stack.api("GET", f"/projects/{team.project}/runs/{out['run_id']}", team.tokens["viewer"]).json()
    assert run["name"] == "from-ci" and run["user"] == "ci-mlflow" and run["status"] == "succeeded"


def test_errors_never_leak_tracebacks_and_unknown_endpoints_say_so(stack, team):
    base = f"{stack.url}/services/animus/mlflow/projects/{team.project}"
    auth = {"Authorization": f"Bearer {team.tokens['contributor']}"}
    r = requests.post(f"{base}/api/2.0/mlflow/runs/log-batch", data=b"{not json", headers=auth, timeout=30)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = requests.get(f"{base}/api/2.0/mlflow/no/such/endpoint", headers=auth, timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    r = requests.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": "x"}, timeout=30)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    for resp in (r,):
        assert "Traceback" not in resp.text
