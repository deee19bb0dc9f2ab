"""The model registry from Python: register versions, promote them under the project's policy, export.

    import animus.models as am
    am.create_model("churn", project="fraud")
    v = am.register("churn", run_id, "model", project="fraud")          # an MLflow model directory
    am.transition("churn", v["version"], "validated", project="fraud")   # policy checks run here
    am.transition("churn", 1, "approved", reason="beats v0", project="fraud")  # opens a request
    am.approve("churn", 1, project="fraud")                              # by someone else (four eyes)
    am.export_s3("churn", 1, target="releases", project="fraud")
    am.export_oci("churn", 1, "churn-1.oci.tar", project="fraud")

Exports run here, in the client: files come from the project's store through presigned
GETs (their sha256 verified on the way) and go to the target through presigned PUTs
(S3), into an OCI image layout, or to an MLflow Model Registry with the `mlflow` client.
animus-api only checks the status (approved, or forced by a maintainer with a reason),
records the export in the promotion history and signs URLs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from .client import Client, _seg

CHUNK = 1024 * 1024
BUNDLE_MEDIA_TYPE = "application/vnd.animus.model.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.animus.model.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ExportError(Exception):
    """A file could not be moved or did not match its digest."""


def _project(project: str | None) -> str:
    project = project or os.environ.get("ANIMUS_PROJECT")
    if not project:
        raise ValueError("Which project? Pass project=... or set ANIMUS_PROJECT")
    return project


def _base(project: str | None, model: str) -> str:
    return f"/projects/{_seg(_project(project))}/models/{_seg(model)}"


# --- registry ------------------------------------------------------------------------------


def create_model(
    name: str,
    project: str | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    *,
    client: Client | None = None,
) -> dict:
    client = client or Client()
    body = {"name": name, "description": description, "tags": tags or {}}
    return client.request("POST", f"/projects/{_seg(_project(project))}/models", json_body=body)


def list_models(project: str | None = None, *, client: Client | None = None) -> list[dict]:
    client = client or Client()
    return list(client.paginate(f"/projects/{_seg(_project(project))}/models"))


def get_model(name: str, project: str | None = None, *, client: Client | None = None) -> dict:
    return (client or Client()).request("GET", _base(project, name))


def register(
    model: str,
    run_id: str,
    path: str = "",
    project: str | None = None,
    *,
    description: str = "",
    tags: dict[str, str] | None = None,
    aliases: list[str] | None = None,
    client: Client | None = None,
) -> dict:
    """A new draft version of `model` from the artifact file or directory `path` of run `run_id`."""
    body = {"run_id": run_id, "path": path, "description": description, "tags": tags or {}, "aliases": aliases or []}
    return (client or Client()).request("POST", _base(project, model) + "/versions", json_body=body)


def list_versions(
    model: str, project: str | None = None, status: str | None = None, *, client: Client | None = None
) -> list[dict]:
    params = {"status": status} if status else None
    return list((client or Client()).paginate(_base(project, model) + "/versions", params))


def get_version(model: str, version: int | str, project: str | None = None, *, client: Client | None = None) -> dict:
    return (client or Client()).request("GET", _base(project, model) + f"/versions/{_seg(str(version))}")


def set_alias(
    model: str, alias: str, version: int, project: str | None = None, *, client: Client | None = None
) -> dict:
    return (client or Client()).request(
        "PUT", _base(project, model) + f"/aliases/{_seg(alias)}", json_body={"version": int(version)}
    )


def transition(
    model: str,
    version: int | str,
    to: str,
    reason: str = "",
    project: str | None = None,
    *,
    override: bool = False,
    client: Client | None = None,
) -> dict:
    """Move a version to status `to` as the policy allows (or open a request that needs approvals)."""
    body = {"to": to, "reason": reason, "override": override}
    return (client or Client()).request(
        "POST", _base(project, model) + f"/versions/{_seg(str(version))}/transitions", json_body=body
    )


def approve(
    model: str, version: int | str, reason: str = "", project: str | None = None, *, client: Client | None = None
) -> dict:
    return (client or Client()).request(
        "POST", _base(project, model) + f"/versions/{_seg(str(version))}/approvals", json_body={"reason": reason}
    )


def history(
    model: str, version: int | str | None = None, project: str | None = None, *, client: Client | None = None
) -> list[dict]:
    path = _base(project, model) + (f"/versions/{_seg(str(version))}/history" if version is not None else "/history")
    return list((client or Client()).paginate(path))


def get_policy(project: str | None = None, *, client: Client | None = None) -> dict:
    return (client or Client()).request("GET", f"/projects/{_seg(_project(project))}/promotion-policy")


def put_policy(source: str, project: str | None = None, comment: str = "", *, client: Client | None = None) -> dict:
    return (client or Client()).request(
        "PUT", f"/projects/{_seg(_project(project))}/promotion-policy", json_body={"source": source, "comment": comment}
    )


def lineage(
    node: str, project: str | None = None, direction: str = "both", depth: int = 3, *, client: Client | None = None
) -> dict:
    return (client or Client()).request(
        "GET",
        f"/projects/{_seg(_project(project))}/lineage",
        params={"node": node, "direction": direction, "depth": depth},
    )


# --- export ----------------------------------------------------------------------------------


def _plan(
    client: Client,
    project: str | None,
    model: str,
    version: int | str,
    fmt: str,
    target: str | None,
    force: bool,
    reason: str,
) -> dict:
    body = {"format": fmt, "force": force, "reason": reason}
    if target:
        body["target"] = target
    return client.request("POST", _base(project, model) + f"/versions/{_seg(str(version))}/exports", json_body=body)


def _download(item: dict, dest: Path) -> None:
    """Fetch one file through its presigned URL into `dest`, checking its sha256 and size."""
    digest, size = hashlib.sha256(), 0
    with requests.get(item["url"], stream=True, timeout=60) as r:
        if r.status_code != 200:
            raise ExportError(f"{item['path']}: download answered HTTP {r.status_code}")
        with open(dest, "wb") as f:
            for chunk in r.iter_content(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
    if digest.hexdigest() != item["sha256"] or size != item["size"]:
        raise ExportError(f"{item['path']}: content does not match its digest sha256:{item['sha256']}")


def _files(plan: dict, workdir: Path) -> Iterator[tuple[dict, Path]]:
    """Each distinct blob downloaded once; yields (file entry, local path)."""
    done: dict[str, Path] = {}
    for item in plan["files"]:
        local = done.get(item["sha256"])
        if local is None:
            local = workdir / item["sha256"]
            _download(item, local)
            done[item["sha256"]] = local
        yield item, local


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def export_s3(
    model: str,
    version: int | str,
    target: str,
    project: str | None = None,
    *,
    force: bool = False,
    reason: str = "",
    client: Client | None = None,
) -> dict:
    """Write the version's bundle under the export target: files/<path> and manifest.json (digests, lineage,
    policy decisions). Returns the bundle's s3:// URI and its manifest."""
    client = client or Client()
    plan = _plan(client, project, model, version, "s3", target, force, reason)
    uploads = {u["path"]: u for u in plan["destination"]["uploads"]}
    with tempfile.TemporaryDirectory(prefix="animus-export-") as tmp:
        for item, local in _files(plan, Path(tmp)):
            up = uploads[item["path"]]
            with open(local, "rb") as f:
                r = requests.put(up["url"], data=f, headers={"Content-Length": str(item["size"])}, timeout=300)
            if r.status_code >= 300:
                raise ExportError(
                    f"{item['path']}: upload to {plan['destination']['uri']} answered HTTP {r.status_code}"
                )
    data = manifest_bytes(plan["manifest"])
    signed = client.request(
        "POST",
        _base(project, model) + f"/versions/{_seg(str(version))}/exports/{plan['export_id']}/manifest",
        json_body={"size": len(data)},
    )
    r = requests.put(signed["url"], data=data, headers={"Content-Length": str(len(data))}, timeout=60)
    if r.status_code >= 300:
        raise ExportError(f"manifest.json: upload answered HTTP {r.status_code}")
    return {"uri": plan["destination"]["uri"], "manifest": plan["manifest"], "files": len(plan["files"])}


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    info.mode = 0o644
    if path is not None:
        info.size = path.stat().st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        info.size = len(data or b"")
        tar.addfile(info, io.BytesIO(data or b""))


def export_oci(
    model: str,
    version: int | str,
    output: str | os.PathLike[str],
    project: str | None = None,
    *,
    force: bool = False,
    reason: str = "",
    client: Client | None = None,
) -> Path:
    """Write the version as an OCI image-layout tarball (oci-layout, index.json, blobs/sha256/...).

    One layer per file (titled with its path, ORAS-style), the bundle manifest as the
    config blob; any OCI tool (oras, skopeo, crane) can push it to a registry.
    """
    client = client or Client()
    plan = _plan(client, project, model, version, "oci", None, force, reason)
    config = manifest_bytes(plan["manifest"])
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    output = Path(output)
    layers = [
        {
            "mediaType": "application/octet-stream",
            "digest": "sha256:" + f["sha256"],
            "size": f["size"],
            "annotations": {"org.opencontainers.image.title": f["path"]},
        }
        for f in plan["files"]
    ]
    m = plan["manifest"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config)},
        "layers": layers,
        "annotations": {
            "org.opencontainers.image.created": m["export"]["at"],
            "org.opencontainers.image.title": f"{m['model']}:{m['version']}",
            "dev.animus.project": m["project"],
            "dev.animus.model.digest": m["digest"],
            "dev.animus.model.status": m["status"],
        },
    }
    manifest_data = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_data).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "artifactType": BUNDLE_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(manifest_data),
                "annotations": {"org.opencontainers.image.ref.name": f"{m['model']}-{m['version']}"},
            }
        ],
    }
    with tempfile.TemporaryDirectory(prefix="animus-export-") as tmp, tarfile.open(output, "w") as tar:
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        _add(tar, f"blobs/sha256/{manifest_digest.split(':')[1]}", manifest_data)
        _add(tar, f"blobs/sha256/{config_digest.split(':')[1]}", config)
        written = {manifest_digest, config_digest}
        for item, local in _files(plan, Path(tmp)):
            if "sha256:" + item["sha256"] in written:
                continue
            written.add("sha256:" + item["sha256"])
            _add(tar, f"blobs/sha256/{item['sha256']}", path=local)
    return output


def export_mlflow(
    model: str,
    version: int | str,
    tracking_uri: str,
    project: str | None = None,
    *,
    registered_name: str | None = None,
    force: bool = False,
    reason: str = "",
    client: Client | None = None,
) -> dict:
    """Register the version in an MLflow Model Registry (needs the `mlflow` or `mlflow-skinny` package).

    The files go to a new run of experiment ``animus-exports`` on that server (through
    its artifact store), then ``create_model_version`` points at them; tags carry the
    Animus project, model, version, digest and status.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = client or Client()
    plan = _plan(client, project, model, version, "mlflow", None, force, reason)
    m = plan["manifest"]
    name = registered_name or m["model"]
    ml = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        ml.create_registered_model(name, description=m.get("description") or None)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    experiment = ml.get_experiment_by_name("animus-exports")
    experiment_id = experiment.experiment_id if experiment else ml.create_experiment("animus-exports")
    tags = {
        "animus.project": m["project"],
        "animus.model": m["model"],
        "animus.version": str(m["version"]),
        "animus.digest": m["digest"],
        "animus.status": m["status"],
    }
    run = ml.create_run(experiment_id, tags=tags, run_name=f"{m['model']}-v{m['version']}")
    with tempfile.TemporaryDirectory(prefix="animus-export-") as tmp:
        root = Path(tmp) / "model"
        blobs = Path(tmp) / ".blobs"
        blobs.mkdir()
        for item, local in _files(plan, blobs):
            dest = root / item["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(local.read_bytes())
        (Path(tmp) / "animus-manifest.json").write_bytes(manifest_bytes(m))
        ml.log_artifacts(run.info.run_id, str(root), "model")
        ml.log_artifact(run.info.run_id, str(Path(tmp) / "animus-manifest.json"))
    ml.set_terminated(run.info.run_id)
    mv = ml.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags=tags,
        description=f"Exported from Animus {m['project']}/{m['model']} v{m['version']} ({m['status']})",
    )
    return {"name": name, "version": mv.version, "run_id": run.info.run_id, "source": mv.source}
