"""The OpenAPI document (hub_ext/animus_hub/openapi.yaml) against the code that serves the API.

No server is started: routes come from ``AnimusAPI.make_handlers()``, request bodies
from the pydantic models in ``animus_hub.schemas``, roles from ``animus_hub.auth.rbac``.
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from tornado import web

from animus.keys import KEY_MAX
from animus_hub import schemas
from animus_hub.apihandlers.audit import AUDIT_PAGE_MAX
from animus_hub.apihandlers.base import APIHandler, NotFoundHandler
from animus_hub.apihandlers.meta import OpenAPIHandler
from animus_hub.app import API_PREFIX, AnimusAPI
from animus_hub.auth.rbac import PLATFORM_ACTIONS, PROJECT_ACTIONS
from animus_hub.services import tracking
from animus_hub.services.pagination import DEFAULT_LIMIT

BASE_URL = "/services/animus/"
HTTP_METHODS = tuple(m.lower() for m in web.RequestHandler.SUPPORTED_METHODS)
# classes whose verbs are placeholders answering 405, not implementations
NOT_IMPLEMENTATIONS = (web.RequestHandler, APIHandler)

# operationId → the pydantic model its handler parses the body with
REQUEST_MODELS: dict[str, type[schemas.Strict]] = {
    "createProject": schemas.ProjectCreate,
    "updateProject": schemas.ProjectUpdate,
    "addMember": schemas.MemberCreate,
    "setMemberRole": schemas.MemberUpdate,
    "createRoleMapping": schemas.RoleMappingCreate,
    "createExperiment": schemas.ExperimentCreate,
    "updateExperiment": schemas.ExperimentUpdate,
    "createRun": schemas.RunCreate,
    "updateRun": schemas.RunUpdate,
    "logRunInputs": schemas.RunInputs,
    "createDataset": schemas.DatasetCreate,
    "updateDataset": schemas.DatasetUpdate,
    "setDatasetAccess": schemas.DatasetAccess,
    "startDatasetUpload": schemas.DatasetUploadCreate,
    "addDatasetUploadFiles": schemas.DatasetUploadFiles,
    "importDatasetVersion": schemas.DatasetImport,
    "createServiceAccount": schemas.ServiceAccountCreate,
    "updateServiceAccount": schemas.ServiceAccountUpdate,
    "createServiceAccountToken": schemas.ServiceAccountTokenCreate,
    "createWebhook": schemas.WebhookCreate,
    "updateWebhook": schemas.WebhookUpdate,
    "forceUserLogout": schemas.ForcedLogout,
    "createModel": schemas.ModelCreate,
    "updateModel": schemas.ModelUpdate,
    "createModelVersion": schemas.ModelVersionCreate,
    "transitionModelVersion": schemas.ModelTransition,
    "approveModelVersion": schemas.ModelApprovalCreate,
    "openWorkspace": schemas.WorkspaceOpen,
    "setModelAlias": schemas.ModelAliasSet,
    "putPromotionPolicy": schemas.PromotionPolicyPut,
    "exportModelVersion": schemas.ModelExportCreate,
    "signExportManifest": schemas.ExportManifestUpload,
    "createEnvironment": schemas.EnvironmentCreate,
    "addEnvironmentVersion": schemas.EnvironmentVersionCreate,
    "submitRun": schemas.RunSubmit,
    "reportRun": schemas.RunReport,
    "appendRunLogs": schemas.RunLogAppend,
    "submitPipeline": schemas.PipelineSubmit,
    "addSSHKey": schemas.SSHKeyCreate,
    "authorizeSSHLogin": schemas.SSHAuthorize,
    "reportSSHEvent": schemas.SSHEvent,
    "putSecret": schemas.SecretPut,
    "fetchRunSecrets": schemas.RunSecretsFetch,
}

# operationId → why its body has no pydantic model; documented by hand from its handler
HAND_PARSED_BODIES: dict[str, str] = {
    "logRunBatch": "RunLogBatchAPIHandler parses metrics, params and tags itself",
    "requestArtifactUploads": "services.tracking.parse_artifact_files parses the files",
    "commitArtifacts": "services.tracking.parse_artifact_files parses the files",
}

# how an operation's description states who may call it, per platform audience
PLATFORM_AUDIENCE_WORDS = {
    "public": "public",
    "authenticated": "any authenticated caller",
    "user": "human users only",
    "admin": "platform admins only",
    "ssh_gateway": "the ssh gateway service only",
}


def load_document_text() -> str:
    """Read the document as OpenAPIHandler does: from the installed package."""
    return importlib.resources.files("animus_hub").joinpath("openapi.yaml").read_text()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(load_document_text())


def route_template(regex: str) -> str:
    """'/projects/(?P<project>[^/]+)' → '/projects/{project}'."""
    template = re.sub(r"\(\?P<(\w+)>[^()]*\)", r"{\1}", regex)
    assert not re.search(r"[()\[\]?*+\\|^$]", template), f"route {regex!r} has an unnamed regex part"
    return template


def implemented_methods(cls: type) -> set[str]:
    """Upper-case verbs the class implements itself or inherits from one of our handlers."""
    found = set()
    for verb in HTTP_METHODS:
        owner = next(klass for klass in cls.__mro__ if verb in vars(klass))
        if owner not in NOT_IMPLEMENTATIONS:
            found.add(verb.upper())
    return found


def api_handlers() -> dict[str, type]:
    """Route template (relative to the API prefix) → handler class, as the app mounts them."""
    app = AnimusAPI(base_url=BASE_URL)
    prefix = app.base_url + API_PREFIX
    routes: dict[str, type] = {}
    for pattern, cls, _kwargs in app.make_handlers():
        if cls is NotFoundHandler or not pattern.startswith(prefix):
            continue  # the catch-all 404 and the service root are not API routes
        path = route_template(pattern[len(prefix) :])
        assert path not in routes, f"two handlers for {path}"
        routes[path] = cls
    assert routes, "make_handlers() mounted no API route"
    return routes


def implemented_operations() -> set[tuple[str, str]]:
    return {(path, verb) for path, cls in api_handlers().items() for verb in implemented_methods(cls)}


def documented_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    ops = {}
    for path, item in document["paths"].items():
        for verb in HTTP_METHODS:
            if verb in item:
                ops[(path, verb.upper())] = item[verb]
    return ops


def resolver(root: dict[str, Any]):
    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), f"only local references are expected, not {ref}"
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    return resolve


def field_constraints(prop: dict[str, Any], resolve) -> dict[str, Any]:
    """The validation keywords of one property, with `X | None` spelt either way made equal."""
    prop = resolve(prop)
    out: dict[str, Any] = {}
    types: set[str] = set()
    for branch in prop.get("anyOf", [prop]):
        branch = resolve(branch)
        kind = branch.get("type")
        types |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
        for key in ("pattern", "minLength", "maxLength", "enum", "const"):
            if key in branch:
                out[key] = branch[key]
    out["type"] = sorted(types)
    if "default" in prop:
        out["default"] = prop["default"]
    return out


def describe(pairs: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {verb} {path}" for path, verb in sorted(pairs)) or "  (none)"


# --- the document itself -----------------------------------------------------------


def test_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1.")


def test_server_url_is_the_api_prefix(document):
    assert [s["url"] for s in document["servers"]] == [BASE_URL + API_PREFIX]


def test_openapi_handler_can_load_and_serve_the_document(monkeypatch):
    monkeypatch.setattr(OpenAPIHandler, "_doc", None)
    written = []
    OpenAPIHandler.get(SimpleNamespace(write_json=written.append))
    (served,) = written
    assert served == yaml.safe_load(load_document_text())
    assert served["openapi"].startswith("3.1.")
    # the handler answers JSON: YAML-only values (dates, ...) would break it
    json.dumps(served)


# --- routes ----------------------------------------------------------------------------


def test_every_route_is_documented(document):
    missing = implemented_operations() - set(documented_operations(document))
    assert not missing, "implemented by a handler but missing from openapi.yaml:\n" + describe(missing)


def test_document_names_no_route_that_does_not_exist(document):
    extra = set(documented_operations(document)) - implemented_operations()
    assert not extra, "in openapi.yaml but implemented by no handler:\n" + describe(extra)


def test_handlers_declare_an_rbac_action_for_exactly_the_methods_they_implement():
    problems = []
    for path, cls in api_handlers().items():
        implemented, declared = implemented_methods(cls), set(cls.actions)
        if implemented != declared:
            problems.append(
                f"  {cls.__name__} ({path}): implements {sorted(implemented)}, actions declare {sorted(declared)}"
            )
    assert not problems, "handlers whose `actions` and verbs disagree:\n" + "\n".join(problems)


def test_each_operation_names_the_rbac_action_its_handler_checks(document):
    handlers = api_handlers()
    wrong = []
    for (path, verb), op in documented_operations(document).items():
        cls = handlers.get(path)
        expected = cls.actions.get(verb) if cls else None
        if op.get("x-rbac-action") != expected:
            wrong.append(f"  {verb} {path}: document says {op.get('x-rbac-action')!r}, handler checks {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_each_operation_description_states_who_may_call_it(document):
    wrong = []
    for (path, verb), op in documented_operations(document).items():
        action = op["x-rbac-action"]
        if action in PROJECT_ACTIONS:
            words = f"role {PROJECT_ACTIONS[action].name}"
        else:
            words = PLATFORM_AUDIENCE_WORDS[PLATFORM_ACTIONS[action]]
        if words not in op.get("description", "").lower():
            wrong.append(f"  {verb} {path} ({action}): description should say {words!r}")
    assert not wrong, "\n".join(wrong)


def test_only_public_operations_skip_authentication(document):
    assert document["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (path, verb), op in documented_operations(document).items():
        public = PLATFORM_ACTIONS.get(op["x-rbac-action"]) == "public"
        if public:
            assert op.get("security") == [], f"{verb} {path} is public: it needs `security: []`"
        else:
            assert "security" not in op, f"{verb} {path} needs a token: it must not override `security`"
            assert "401" in op["responses"], f"{verb} {path} needs a token: it must document 401"


def test_operations_inside_a_project_document_404(document):
    for (path, verb), op in documented_operations(document).items():
        if "{project}" in path:
            assert "404" in op["responses"], f"{verb} {path}: non-members get 404"
            assert "403" in op["responses"], f"{verb} {path}: members with too low a role get 403"


# --- request bodies, parameters, responses --------------------------------------------


def test_request_bodies_match_the_pydantic_models(document):
    ops = {op["operationId"]: op for op in documented_operations(document).values()}
    with_body = {op_id for op_id, op in ops.items() if "requestBody" in op}
    resolve = resolver(document)
    assert not set(REQUEST_MODELS) & set(HAND_PARSED_BODIES)
    assert with_body == set(REQUEST_MODELS) | set(HAND_PARSED_BODIES), (
        f"operations with a requestBody {sorted(with_body)} != operations parsing a body "
        f"{sorted(set(REQUEST_MODELS) | set(HAND_PARSED_BODIES))}"
    )
    for op_id in HAND_PARSED_BODIES:
        body = ops[op_id]["requestBody"]
        assert body.get("required") is True, f"{op_id}: the body is required"
        assert resolve(body["content"]["application/json"]["schema"]).get("type") == "object", op_id
    for op_id, model in REQUEST_MODELS.items():
        body = ops[op_id]["requestBody"]
        assert body.get("required") is True, f"{op_id}: the body is required"
        schema = resolve(body["content"]["application/json"]["schema"])
        expected = model.model_json_schema()
        expected_resolve = resolver(expected)
        assert set(schema["properties"]) == set(model.model_fields), (
            f"{op_id}: schema properties {sorted(schema['properties'])} != {model.__name__} fields "
            f"{sorted(model.model_fields)}"
        )
        assert schema.get("additionalProperties") is False, f"{op_id}: unknown fields are refused"
        assert set(schema.get("required", [])) == set(expected.get("required", [])), f"{op_id}: required fields"
        for name in model.model_fields:
            documented = field_constraints(schema["properties"][name], resolve)
            actual = field_constraints(expected["properties"][name], expected_resolve)
            assert documented == actual, f"{op_id}.{name}: document {documented} != {model.__name__} {actual}"


def test_log_batch_schema_matches_the_handler(document):
    """log-batch has no pydantic model: its documented limits and fields are checked here instead."""
    resolve = resolver(document)
    schema = resolve(document["components"]["schemas"]["LogBatch"])
    props = schema["properties"]
    assert set(props) == {"metrics", "params", "tags"}
    assert props["metrics"]["maxItems"] == tracking.MAX_METRICS_PER_BATCH
    assert props["params"]["maxItems"] == tracking.MAX_PARAMS_PER_BATCH
    assert props["tags"]["maxItems"] == tracking.MAX_TAGS_PER_BATCH
    metric = resolve(props["metrics"]["items"])
    assert metric["additionalProperties"] is False and set(metric["required"]) == {"key", "value"}
    assert set(metric["properties"]) == {
        "key",
        "value",
        "step",
        "timestamp",
        "run_id",
        "run_uuid",
        "model_id",
        "dataset_name",
        "dataset_digest",
    }
    key = resolve(metric["properties"]["key"])
    assert (key["minLength"], key["maxLength"]) == (1, KEY_MAX)
    assert schema["additionalProperties"] is False  # unknown top-level fields answer 422


def test_artifact_files_schema_matches_the_parser(document):
    """The artifact upload and commit bodies have no pydantic model either."""
    resolve = resolver(document)
    files = resolve(document["components"]["schemas"]["ArtifactFiles"])["properties"]["files"]
    assert (files["minItems"], files["maxItems"]) == (1, tracking.MAX_ARTIFACT_FILES)
    item = resolve(files["items"])
    assert set(item["properties"]) == set(item["required"]) == {"path", "sha256", "size"}
    assert item["additionalProperties"] is False
    assert item["properties"]["sha256"]["pattern"] == tracking.SHA256_RE.pattern
    assert item["properties"]["path"]["maxLength"] == KEY_MAX


def test_error_responses_use_the_shared_error_schema(document):
    resolve = resolver(document)
    for (path, verb), op in documented_operations(document).items():
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            schema = resolve(response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, f"{verb} {path} {status}"
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == set(error["properties"]) == {"status", "reason", "message", "details"}


def test_every_post_accepts_an_idempotency_key(document):
    resolve = resolver(document)
    for (path, verb), op in documented_operations(document).items():
        if verb != "POST":
            continue
        names = {(p["in"], p["name"]) for p in map(resolve, op.get("parameters", []))}
        assert ("header", "Idempotency-Key") in names, f"POST {path}"
        assert "422" in op["responses"], f"POST {path}: a reused key answers 422"


def test_page_sizes_match_the_code(document):
    params = document["components"]["parameters"]
    limit_max = inspect.signature(APIHandler.limit_arg).parameters["maximum"].default
    assert params["limit"]["schema"]["maximum"] == limit_max
    assert params["auditLimit"]["schema"]["maximum"] == AUDIT_PAGE_MAX
    assert params["limit"]["schema"]["default"] == params["auditLimit"]["schema"]["default"] == DEFAULT_LIMIT


def test_paginated_lists_take_limit_and_cursor(document):
    resolve = resolver(document)
    for (path, verb), op in documented_operations(document).items():
        if verb != "GET":
            continue
        ok = resolve(op["responses"]["200"])["content"]["application/json"]["schema"]
        props = resolve(ok).get("properties", {})
        if "next_cursor" not in props or resolve(props["next_cursor"]).get("type") == "null":
            continue  # not a list, or a list that is never paginated
        names = {p["name"] for p in map(resolve, op.get("parameters", []))}
        assert {"limit", "cursor"} <= names, f"GET {path} is paginated: it takes limit and cursor"
