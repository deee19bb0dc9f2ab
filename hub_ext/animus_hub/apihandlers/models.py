"""/projects/{project}/models: the model registry, promotion under the project's policy, exports;
/projects/{project}/promotion-policy: the policy as code; /projects/{project}/lineage: the graph."""

from __future__ import annotations

from typing import Any

from .. import audit
from ..errors import AnimusError
from ..orm import PromotionEvent, Run
from ..schemas import (
    ExportManifestUpload,
    ModelAliasSet,
    ModelApprovalCreate,
    ModelCreate,
    ModelExportCreate,
    ModelTransition,
    ModelUpdate,
    ModelVersionCreate,
    PromotionPolicyPut,
)
from ..services import lineage as lineage_svc
from ..services import models as svc
from ..services import promotion_policy as policy_svc
from ..services.blobs import blob_key
from ..services.projects import iso
from .base import APIHandler
from .projects import PROJECT

MODEL = r"(?P<model>[^/]+)"
VERSION = r"(?P<version>[^/]+)"
ALIAS = r"(?P<alias>[^/]+)"
POLICY_VERSION = r"(?P<policy_version>[^/]+)"
BUNDLE_FORMAT = "animus.model-bundle/v1"


def _resource(project: str, model: str, version: int | str | None = None) -> str:
    base = f"project/{project}/models/{model}"
    return f"{base}/versions/{version}" if version is not None else base


class ModelListAPIHandler(APIHandler):
    actions = {"GET": "models:read", "POST": "models:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_models(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        self.write_json({"items": [svc.model_json(self.db, m) for m in rows], "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(ModelCreate)
        m = svc.create_model(self.db, self.project, data.name, data.description, data.tags, self.principal.name)
        self.commit_and_write(
            svc.model_json(self.db, m), 201, audit_action="model.create", resource=_resource(project, m.name)
        )


class ModelAPIHandler(APIHandler):
    actions = {"GET": "models:read", "PATCH": "models:write"}

    def get(self, project: str, model: str) -> None:
        self.write_json(svc.model_json(self.db, svc.find_model(self.db, self.project, model)))

    def patch(self, project: str, model: str) -> None:
        data = self.json_body(ModelUpdate)
        m = svc.find_model(self.db, self.project, model)
        changes = svc.update_model(m, data.description, data.tags)
        self.commit_and_write(
            svc.model_json(self.db, m),
            audit_action="model.update",
            resource=_resource(project, m.name),
            details={"changes": changes},
        )


class ModelVersionListAPIHandler(APIHandler):
    actions = {"GET": "models:read", "POST": "models:write"}

    def get(self, project: str, model: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        rows, next_cursor = svc.list_versions(
            self.db,
            m,
            self.limit_arg(),
            self.get_query_argument("cursor", None),
            self.get_query_argument("status", None),
        )
        self.write_json({"items": [svc.version_json(self.db, m, v) for v in rows], "next_cursor": next_cursor})

    async def post(self, project: str, model: str) -> None:
        data = self.json_body(ModelVersionCreate)
        m = svc.find_model(self.db, self.project, model)
        run = svc.find_source_run(self.db, self.project, data.run_id)
        store = self.settings["object_store"]
        source = svc.find_animus_source(self.db, run, data.path)
        if source is None:
            # files an MLflow client logged (log_model, autolog): given a content address here
            source = await svc.resolve_mlflow_source(self.db, store, run, data.path)
        if source is None:
            raise svc.artifact_not_found(run, data.path.strip("/"))
        framework, flavors, signature = "", {}, None
        if source.mlmodel_sha256 is not None:
            # the MLmodel file is small metadata: read here to record framework and signature
            text = await store.get_bytes(blob_key(self.project.id, source.mlmodel_sha256), svc.MAX_MLMODEL_BYTES)
            framework, flavors, signature = svc.parse_mlmodel(text)
        v = svc.create_version(
            self.db,
            self.project,
            m,
            source,
            framework=framework,
            flavors=flavors,
            signature=signature,
            description=data.description,
            tags=data.tags,
            aliases=list(dict.fromkeys(data.aliases)),
            by=self.principal.name,
        )
        self.commit_and_write(
            svc.version_json(self.db, m, v),
            201,
            audit_action="model_version.create",
            resource=_resource(project, m.name, v.version),
            details={
                "run_id": v.run_id,
                "path": v.source_path,
                "kind": v.source_kind,
                "digest": v.digest,
                "files": len(v.files),
                "aliases": data.aliases,
            },
        )


class ModelVersionAPIHandler(APIHandler):
    actions = {"GET": "models:read"}

    def get(self, project: str, model: str, version: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        self.write_json(svc.version_json(self.db, m, svc.find_version(self.db, m, version)))


class ModelVersionActionsAPIHandler(APIHandler):
    """What the caller may do with a version now, each refusal explained by the policy (read-only)."""

    actions = {"GET": "models:read"}

    def get(self, project: str, model: str, version: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        self.write_json(svc.actions(self.db, self.project, m, v, self.principal, self.role))


class _PromotionHandler(APIHandler):
    def answer(self, project: str, m: Any, outcome: svc.Outcome, audit_action: str, details: dict[str, Any]) -> None:
        v = outcome.version
        body = {
            "outcome": outcome.status,
            "version": svc.version_json(self.db, m, v),
            "request": svc.request_json(self.db, outcome.request) if outcome.request is not None else None,
            "checks": outcome.checks or [],
            "policy_version": outcome.policy_version,
        }
        details = {**details, "outcome": outcome.status, "status": v.status, "policy_version": outcome.policy_version}
        if outcome.status == "refused":
            # the refusal itself is history: commit its record, then answer 422
            audit.record(
                self.db,
                self.actor,
                audit_action,
                outcome="failure",
                resource=_resource(project, m.name, v.version),
                project=project,
                details={**details, "failed": [c["message"] for c in outcome.checks or [] if not c["ok"]]},
            )
            self.db.commit()
            failed = [c for c in outcome.checks or [] if not c["ok"]]
            raise AnimusError(
                422,
                "policy_check_failed",
                "The promotion policy refuses: "
                + "; ".join(c["message"] for c in failed)
                + (" (the version stays in draft)" if v.status == "draft" else ""),
                {"checks": outcome.checks, "policy_version": outcome.policy_version, "status": v.status},
                audited=True,
            )
        self.commit_and_write(
            body,
            202 if outcome.status == "pending" else 200,
            audit_action=audit_action,
            resource=_resource(project, m.name, v.version),
            details=details,
        )


class ModelTransitionAPIHandler(_PromotionHandler):
    actions = {"POST": "models:promote"}

    def post(self, project: str, model: str, version: str) -> None:
        data = self.json_body(ModelTransition)
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        before = v.status
        outcome = svc.request_transition(
            self.db, self.project, m, v, data.to, data.reason, self.principal, self.role, override=data.override
        )
        self.answer(
            project,
            m,
            outcome,
            "model_version.break_glass" if data.override else "model_version.transition",
            {"from_status": before, "to_status": data.to, "reason": data.reason, "break_glass": data.override},
        )


class ModelApprovalAPIHandler(_PromotionHandler):
    actions = {"POST": "models:promote"}

    def post(self, project: str, model: str, version: str) -> None:
        data = self.json_body(ModelApprovalCreate)
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        outcome = svc.approve(self.db, self.project, m, v, data.reason, self.principal, self.role)
        self.answer(project, m, outcome, "model_version.approve", {"reason": data.reason})


class ModelVersionHistoryAPIHandler(APIHandler):
    actions = {"GET": "models:read"}

    def get(self, project: str, model: str, version: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        items, next_cursor = svc.history(
            self.db,
            m,
            v,
            self.limit_arg(),
            self.get_query_argument("cursor", None),
            self.get_query_argument("kind", None),
        )
        self.write_json({"items": items, "next_cursor": next_cursor})


class ModelHistoryAPIHandler(APIHandler):
    actions = {"GET": "models:read"}

    def get(self, project: str, model: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        items, next_cursor = svc.history(
            self.db,
            m,
            None,
            self.limit_arg(),
            self.get_query_argument("cursor", None),
            self.get_query_argument("kind", None),
        )
        self.write_json({"items": items, "next_cursor": next_cursor})


class ModelAliasAPIHandler(APIHandler):
    actions = {"PUT": "models:write", "DELETE": "models:write"}

    def put(self, project: str, model: str, alias: str) -> None:
        data = self.json_body(ModelAliasSet)
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, str(data.version))
        before = svc.set_alias(self.db, m, alias, v, self.principal.name)
        self.commit_and_write(
            svc.version_json(self.db, m, v),
            audit_action="model.alias_set",
            resource=f"{_resource(project, m.name)}/aliases/{alias}",
            details={"alias": alias, "version": v.version, "previous_version": before},
        )

    def delete(self, project: str, model: str, alias: str) -> None:
        m = svc.find_model(self.db, self.project, model)
        version = svc.delete_alias(self.db, m, alias)
        self.commit_and_write(
            None,
            204,
            audit_action="model.alias_delete",
            resource=f"{_resource(project, m.name)}/aliases/{alias}",
            details={"alias": alias, "version": version},
        )


class ModelExportAPIHandler(APIHandler):
    """Plan an export: the bundle manifest, presigned GETs for the files and, for S3, presigned PUTs.

    The exporting client (SDK/CLI) moves the bytes; animus-api only signs and records.
    """

    actions = {"POST": "models:export"}

    def post(self, project: str, model: str, version: str) -> None:
        data = self.json_body(ModelExportCreate)
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        target = None
        if data.format == "s3":
            targets = self.settings.get("export_targets") or {}
            if not data.target:
                raise AnimusError(
                    422,
                    "target_required",
                    "An S3 export names its target (see GET .../export-targets)",
                    {"targets": sorted(n for n, t in targets.items() if t.allows_project(project))},
                )
            target = targets.get(data.target)
            if target is None or not target.allows_project(project):
                raise AnimusError(404, "export_target_not_found", f"No export target {data.target!r} for this project")
        elif data.target:
            raise AnimusError(422, "validation_failed", "Only S3 exports name a target")
        target_info: dict[str, Any] = {"format": data.format, "target": data.target}
        if target is not None:
            target_info["uri"] = "s3://" + target.bucket + "/" + target.key(project, m.name, str(v.version)) + "/"
        event = svc.record_export(
            self.db, self.project, m, v, self.principal, self.role, target_info, data.force, data.reason
        )
        store, expires = self.settings["object_store"], self.settings["presign_expires"]
        run = self.db.get(Run, v.run_id) if v.run_id else None
        upstream = lineage_svc.graph(
            self.db, self.project, self.principal, self.role, f"model_version:{m.name}/{v.version}", "upstream", 4
        )
        manifest = {
            "format": BUNDLE_FORMAT,
            "project": project,
            "model": m.name,
            "version": v.version,
            "status": v.status,
            "digest": v.digest,
            "framework": v.framework,
            "flavors": v.flavors or {},
            "signature": v.signature,
            "metrics": v.metrics or {},
            "tags": v.tags or {},
            "description": v.description,
            "created_at": iso(v.created_at),
            "created_by": v.created_by,
            "files": v.files or [],
            "lineage": {"run": svc.run_summary(self.db, run), "graph": upstream},
            "policy": {"decisions": svc.decisions(self.db, v)},
            "export": {
                "id": event.id,
                "at": iso(event.created_at),
                "by": self.principal.name,
                "forced": event.evidence.get("forced", False),
                "reason": data.reason,
                **target_info,
            },
        }
        files = [
            {**f, "url": store.presign_get(blob_key(self.project.id, f["sha256"]), expires)} for f in v.files or []
        ]
        body: dict[str, Any] = {"export_id": event.id, "manifest": manifest, "files": files, "expires_in": expires}
        if target is not None:
            base = target.key(project, m.name, str(v.version))
            body["destination"] = {
                "target": target.name,
                "uri": target_info["uri"],
                "uploads": [
                    {
                        "path": f["path"],
                        "key": f"{base}/files/{f['path']}",
                        "url": target.presign_put(f"{base}/files/{f['path']}", f["size"], expires),
                    }
                    for f in v.files or []
                ],
                "manifest_key": f"{base}/manifest.json",
            }
        # the manifest is signed last, by the client's request for it: its size is known only then
        self.commit_and_write(
            body,
            201,
            audit_action="model_version.export",
            resource=_resource(project, m.name, v.version),
            details={
                **target_info,
                "forced": manifest["export"]["forced"],
                "reason": data.reason,
                "status": v.status,
                "files": len(files),
            },
            replay_body={"export_id": event.id, "replayed": True},
        )


class ModelExportManifestAPIHandler(APIHandler):
    """A presigned PUT for an S3 export's manifest.json, once the client knows its exact size."""

    actions = {"POST": "models:export"}

    def post(self, project: str, model: str, version: str, export_id: str) -> None:
        data = self.json_body(ExportManifestUpload)
        m = svc.find_model(self.db, self.project, model)
        v = svc.find_version(self.db, m, version)
        event = self.db.get(PromotionEvent, int(export_id)) if export_id.isdigit() else None
        if event is None or event.model_version_id != v.id or event.kind != "export":
            raise AnimusError(404, "export_not_found", f"Version {v.version} has no export {export_id!r}")
        target_name = (event.evidence.get("target") or {}).get("target")
        target = (self.settings.get("export_targets") or {}).get(target_name or "")
        if target is None or not target.allows_project(project):
            raise AnimusError(409, "not_an_s3_export", "This export has no S3 target")
        key = target.key(project, m.name, str(v.version), "manifest.json")
        url = target.presign_put(key, data.size, self.settings["presign_expires"])
        self.commit_and_write(
            {"key": key, "url": url},
            audit_action="model_version.export_manifest",
            resource=_resource(project, m.name, v.version),
            details={"export_id": event.id, "size": data.size},
        )


class ExportTargetListAPIHandler(APIHandler):
    actions = {"GET": "models:read"}

    def get(self, project: str) -> None:
        targets = self.settings.get("export_targets") or {}
        items = [t.describe() for n, t in sorted(targets.items()) if t.allows_project(project)]
        self.write_json({"items": items, "next_cursor": None})


class PromotionPolicyAPIHandler(APIHandler):
    actions = {"GET": "promotion_policy:read", "PUT": "promotion_policy:write"}

    def get(self, project: str) -> None:
        self.write_json(policy_svc.policy_json(policy_svc.current_policy(self.db, self.project)))

    def put(self, project: str) -> None:
        data = self.json_body(PromotionPolicyPut)
        p = policy_svc.put_policy(self.db, self.project, data.source, data.comment, self.principal.name)
        self.commit_and_write(
            policy_svc.policy_json(p),
            201,
            audit_action="promotion_policy.put",
            resource=f"project/{project}/promotion-policy/versions/{p.version}",
            details={"version": p.version, "digest": p.digest, "comment": data.comment},
        )


class PromotionPolicyVersionListAPIHandler(APIHandler):
    actions = {"GET": "promotion_policy:read"}

    def get(self, project: str) -> None:
        items = [policy_svc.policy_json(p, with_source=False) for p in policy_svc.list_policies(self.db, self.project)]
        self.write_json({"items": items, "next_cursor": None})


class PromotionPolicyVersionAPIHandler(APIHandler):
    actions = {"GET": "promotion_policy:read"}

    def get(self, project: str, policy_version: str) -> None:
        self.write_json(policy_svc.policy_json(policy_svc.find_policy_version(self.db, self.project, policy_version)))


class LineageAPIHandler(APIHandler):
    actions = {"GET": "lineage:read"}

    def get(self, project: str) -> None:
        node = self.get_query_argument("node", None)
        if not node:
            raise AnimusError(
                400, "invalid_argument", "Give node=model_version:NAME/N, dataset_version:NAME/N, run:ID or code:SHA"
            )
        depth_raw = self.get_query_argument("depth", "3")
        if not depth_raw.isdigit():
            raise AnimusError(400, "invalid_argument", f"depth must be between 1 and {lineage_svc.MAX_DEPTH}")
        self.write_json(
            lineage_svc.graph(
                self.db,
                self.project,
                self.principal,
                self.role,
                node,
                self.get_query_argument("direction", "both"),
                int(depth_raw),
            )
        )


default_handlers = [
    (f"/projects/{PROJECT}/models", ModelListAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}", ModelAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/history", ModelHistoryAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/aliases/{ALIAS}", ModelAliasAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions", ModelVersionListAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}", ModelVersionAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/actions", ModelVersionActionsAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/transitions", ModelTransitionAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/approvals", ModelApprovalAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/history", ModelVersionHistoryAPIHandler),
    (f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/exports", ModelExportAPIHandler),
    (
        f"/projects/{PROJECT}/models/{MODEL}/versions/{VERSION}/exports/(?P<export_id>[^/]+)/manifest",
        ModelExportManifestAPIHandler,
    ),
    (f"/projects/{PROJECT}/export-targets", ExportTargetListAPIHandler),
    (f"/projects/{PROJECT}/promotion-policy", PromotionPolicyAPIHandler),
    (f"/projects/{PROJECT}/promotion-policy/versions", PromotionPolicyVersionListAPIHandler),
    (f"/projects/{PROJECT}/promotion-policy/versions/{POLICY_VERSION}", PromotionPolicyVersionAPIHandler),
    (f"/projects/{PROJECT}/lineage", LineageAPIHandler),
]
