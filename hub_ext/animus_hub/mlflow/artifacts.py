"""MLflow's artifact proxy routes (/api/2.0/mlflow-artifacts/...) without proxying bytes.

A run's ``artifact_uri`` is ``mlflow-artifacts:/projects/<project id>/runs/<run id>/artifacts``
(a logged model's: ``.../logged-models/<model id>/artifacts``), so the path the
client sends is the object key. A caller may only touch keys of runs and logged
models of the project it is authorised in.

- ``GET .../artifacts?path=<dir>`` lists a directory from the store's listing.
- ``GET .../artifacts/<key>`` answers 307 to a presigned GET URL.
- ``PUT .../artifacts/<key>`` answers 307 to a presigned PUT URL; the client
  (requests) rewinds the file and sends it to the store. HTTP/1.1 clients send a
  body with the first request whatever the answer, so this handler streams it
  away unread (never buffered, never stored) before answering: closing the
  connection instead makes the hub's proxy answer 503, which the client retries.
- ``DELETE .../artifacts/<key>`` deletes a file or a directory.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from ..errors import AnimusError
from ..orm import LoggedModel, Run
from ..services import tracking as svc
from ..storage.base import MAX_LIST_LIMIT, validate_key
from . import logged_models as lm
from .handlers import MLflowHandler

# presigned URLs live this long unless settings["presign_expires"] says otherwise
DEFAULT_PRESIGN_EXPIRES = 300
# the largest body a PUT may carry (S3's single-PUT limit); it is discarded, not stored
DEFAULT_MAX_ARTIFACT_SIZE = 5 * 1024**3
# a listing or a recursive delete touches at most this many objects
MAX_OBJECTS = 10_000
# the MLflow client falls back to a single PUT when mpu/create answers this message
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"


def artifact_not_found(path: str) -> AnimusError:
    return AnimusError(404, "artifact_not_found", f"No artifact {path!r} in this project")


class ArtifactTarget:
    """The run or logged model an artifact path belongs to, and its object key."""

    def __init__(self, key: str, owner: Run | LoggedModel, root: str) -> None:
        self.key = key
        self.owner = owner
        self.root = root  # the owner's artifact prefix, without the trailing '/'

    @property
    def is_root(self) -> bool:
        return self.key == self.root


@web.stream_request_body
class ArtifactHandler(MLflowHandler):
    actions = {"GET": "runs:read", "PUT": "runs:write", "DELETE": "runs:write"}

    _refusal: AnimusError | None = None
    _discarded = 0

    # --- the body of a PUT is read only after prepare(), so it can be refused unread ---

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except AnimusError as e:
            if self.request.method != "PUT":
                raise
            # answer only once the body is drained: see the module docstring
            self._refusal = e
        if self.request.method == "PUT":
            # an identified caller may send a large body (it is thrown away); others may not
            limit = (
                self.settings.get("mlflow_max_artifact_size", DEFAULT_MAX_ARTIFACT_SIZE)
                if self.principal.kind != "anonymous"
                else self.settings["max_request_body"]
            )
            self.request.connection.set_max_body_size(limit)
            # no transaction (nor pooled connection) stays open while the body drains
            if self._db is not None:
                self._db.close()
                self._db = None

    def data_received(self, chunk: bytes) -> None:
        self._discarded += len(chunk)

    # --- helpers ------------------------------------------------------------------

    @property
    def store(self) -> Any:
        store = self.settings.get("object_store")
        if store is None:
            raise AnimusError(501, "storage_not_configured", "This Animus has no object store configured for artifacts")
        return store

    @property
    def expires(self) -> int:
        return int(self.settings.get("presign_expires", DEFAULT_PRESIGN_EXPIRES))

    def target(self, path: str) -> ArtifactTarget:
        """Authorise `path` (an object key) against the project; 404 for anything else."""
        path = path.strip("/") if path else ""
        if not path:
            raise artifact_not_found(path)
        validate_key(path)
        parts = path.split("/")
        if len(parts) < 5 or parts[0] != "projects" or parts[4] != "artifacts":
            raise artifact_not_found(path)
        if parts[1] != str(self.project.id):
            raise artifact_not_found(path)  # another project's key: not found, whatever exists
        root = "/".join(parts[:5])
        owner: Run | LoggedModel
        if parts[2] == "runs":
            owner = svc.find_run(self.db, self.project, parts[3])
        elif parts[2] == "logged-models":
            owner = lm.find_logged_model(self.db, self.project, parts[3])
        else:
            raise artifact_not_found(path)
        return ArtifactTarget(path, owner, root)

    def ensure_writable(self, target: ArtifactTarget) -> None:
        if isinstance(target.owner, Run):
            svc.ensure_writable(target.owner)
        else:
            lm.ensure_files_writable(target.owner)

    async def walk(self, prefix: str, recursive: bool) -> list[Any]:
        """Objects under `prefix` (ends with '/'); without `recursive`, one per subdirectory."""
        found: list[Any] = []
        start_after = ""
        while len(found) < MAX_OBJECTS:
            page = await self.store.list(prefix, limit=MAX_LIST_LIMIT, start_after=start_after)
            found.extend(page)
            if len(page) < MAX_LIST_LIMIT:
                break
            last = page[-1].key
            head, sep, _ = last[len(prefix) :].partition("/")
            # a directory already seen is skipped whole: keys in it sort before "<dir>/\U0010ffff"
            start_after = prefix + head + "/\U0010ffff" if sep and not recursive else last
        return found[:MAX_OBJECTS]

    # --- verbs --------------------------------------------------------------------

    async def get(self, path: str | None = None, **_: str) -> None:
        if not path:
            await self.list_directory(self.get_query_argument("path", ""))
            return
        target = self.target(path)
        if target.is_root or await self.store.head(target.key) is None:
            raise artifact_not_found(path)
        self.set_status(307)
        self.set_header("Location", self.store.presign_get(target.key, self.expires))
        self.finish()

    async def list_directory(self, path: str) -> None:
        target = self.target(path)
        prefix = target.key + "/"
        files: list[dict[str, Any]] = []
        seen: set[str] = set()
        for info in await self.walk(prefix, recursive=False):
            name, sep, _ = info.key[len(prefix) :].partition("/")
            if sep:
                if name not in seen:
                    seen.add(name)
                    files.append({"path": name, "is_dir": True})
            else:
                files.append({"path": name, "is_dir": False, "file_size": info.size})
        self.write_json({"files": files})

    async def put(self, path: str | None = None, **_: str) -> None:
        if self._refusal is not None:
            raise self._refusal
        target = self.target(path or "")
        if target.is_root:
            raise AnimusError(400, "invalid_artifact_path", "Give the file's path after the artifact root")
        self.ensure_writable(target)
        declared = self.request.headers.get("Content-Length", "")
        length = int(declared) if declared.isdigit() else None
        url = self.store.presign_put(target.key, self.expires, content_length=length)
        self.set_header("Location", url)
        self.commit_and_write(
            {},
            307,
            audit_action="artifact.upload",
            resource=f"project/{self.project.slug}/artifacts/{target.key}",
            details={"via": "mlflow", "size": length},
        )

    async def delete(self, path: str | None = None, **_: str) -> None:
        target = self.target(path or "")
        self.ensure_writable(target)
        keys = [info.key for info in await self.walk(target.key + "/", recursive=True)]
        if not target.is_root and await self.store.head(target.key) is not None:
            keys.append(target.key)
        for key in keys:
            await self.store.delete(key)
        self.commit_and_write(
            {},
            audit_action="artifact.delete",
            resource=f"project/{self.project.slug}/artifacts/{target.key}",
            details={"via": "mlflow", "objects": len(keys)},
        )


class MultipartUploadHandler(MLflowHandler):
    """mpu/create|complete|abort: not offered (server-info says so); a client that forces
    multipart uploads gets the answer that makes it fall back to a single PUT."""

    actions = {"POST": "runs:write"}

    def post(self, **_: str) -> None:
        raise AnimusError(501, "multipart_not_supported", MULTIPART_UNSUPPORTED)


class ServerInfoHandler(MLflowHandler):
    """What the client asks before multipart transfers: none are offered."""

    actions = {"GET": "version:read"}

    def get(self, **_: str) -> None:
        self.write_json(
            {
                "store_type": None,
                "workspaces_enabled": False,
                "trace_archival_enabled": False,
                "multipart_uploads_enabled": False,
                "multipart_downloads_enabled": False,
                "presigned_upload_run_id_supported": False,
                "presigned_upload_model_id_supported": False,
                "features_enabled": {"gateway": False},
            }
        )
