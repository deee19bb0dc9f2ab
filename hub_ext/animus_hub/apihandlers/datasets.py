"""/projects/{project}/datasets: the dataset registry, the push protocol and pulls.

Every handler finds its dataset through ``services.datasets.find_dataset``, which
applies the restricted-readers rule: a caller who may not read a dataset gets the
same 404 for the dataset, its versions, its manifest, its uploads and its blob URLs.
"""

from __future__ import annotations

from typing import Any

from ..errors import AnimusError
from ..orm import Dataset
from ..schemas import (
    DatasetAccess,
    DatasetCreate,
    DatasetImport,
    DatasetUpdate,
    DatasetUploadCreate,
    DatasetUploadFiles,
)
from ..services import dataset_profiles as profiles
from ..services import datasets as svc
from ..services import external_sources as ext
from ..services.pagination import parse_limit
from .base import APIHandler
from .projects import PROJECT

DATASET = r"(?P<dataset>[^/]+)"
VERSION = r"(?P<version>[^/]+)"
UPLOAD = r"(?P<upload_id>[^/]+)"


class _DatasetHandler(APIHandler):
    def find_dataset(self, name: str) -> Dataset:
        return svc.find_dataset(self.db, self.project, name, self.principal, self.role)

    def resource(self, dataset: str, *rest: Any) -> str:
        return "/".join([f"project/{self.project.slug}/datasets/{dataset}", *(str(r) for r in rest)])

    @property
    def sources(self) -> dict[str, Any]:
        return self.settings.get("external_sources") or {}


# --- datasets -------------------------------------------------------------------------


class DatasetListAPIHandler(_DatasetHandler):
    actions = {"GET": "datasets:read", "POST": "datasets:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_datasets(
            self.db, self.project, self.principal, self.role, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        items = [svc.dataset_json(self.db, d, svc.latest_version(self.db, d)) for d in rows]
        self.write_json({"items": items, "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(DatasetCreate)
        d = svc.create_dataset(
            self.db, self.project, self.principal.name, data.name, data.description, data.tags, data.owners
        )
        self.commit_and_write(
            svc.dataset_json(self.db, d), 201, audit_action="dataset.create", resource=self.resource(d.name)
        )


class DatasetAPIHandler(_DatasetHandler):
    actions = {"GET": "datasets:read", "PATCH": "datasets:write"}

    def get(self, project: str, dataset: str) -> None:
        d = self.find_dataset(dataset)
        self.write_json(svc.dataset_json(self.db, d, svc.latest_version(self.db, d)))

    def patch(self, project: str, dataset: str) -> None:
        data = self.json_body(DatasetUpdate)
        d = self.find_dataset(dataset)
        changes = svc.update_dataset(d, data.description, data.tags, data.owners)
        self.commit_and_write(
            svc.dataset_json(self.db, d, svc.latest_version(self.db, d)),
            audit_action="dataset.update",
            resource=self.resource(d.name),
            details={"changes": changes},
        )


class DatasetAccessAPIHandler(_DatasetHandler):
    """Restrict a dataset to named reader groups (maintainers and owners always keep access)."""

    actions = {"PUT": "datasets:admin"}

    def put(self, project: str, dataset: str) -> None:
        data = self.json_body(DatasetAccess)
        d = self.find_dataset(dataset)
        change = svc.set_reader_groups(self.db, d, data.reader_groups)
        self.commit_and_write(
            svc.dataset_json(self.db, d, svc.latest_version(self.db, d)),
            audit_action="dataset.access",
            resource=self.resource(d.name),
            details={"reader_groups": change},
        )


# --- versions -------------------------------------------------------------------------


class DatasetVersionListAPIHandler(_DatasetHandler):
    actions = {"GET": "datasets:read"}

    def get(self, project: str, dataset: str) -> None:
        d = self.find_dataset(dataset)
        rows, next_cursor = svc.list_versions(self.db, d, self.limit_arg(), self.get_query_argument("cursor", None))
        self.write_json({"items": [svc.version_json(v, d) for v in rows], "next_cursor": next_cursor})


class DatasetVersionAPIHandler(_DatasetHandler):
    actions = {"GET": "datasets:read", "DELETE": "datasets:delete"}

    def get(self, project: str, dataset: str, version: str) -> None:
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        self.write_json(svc.version_json(v, d, svc.consumers(self.db, v)))

    def delete(self, project: str, dataset: str, version: str) -> None:
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        svc.delete_version(self.db, v, self.principal.name)
        self.commit_and_write(
            None,
            204,
            audit_action="dataset.version_delete",
            resource=self.resource(d.name, "versions", v.version),
            details={"digest": v.digest},
        )


class DatasetFilesAPIHandler(_DatasetHandler):
    """The manifest of a version, paginated; with ``urls=true`` each file carries a presigned GET URL."""

    actions = {"GET": "datasets:read"}

    def get(self, project: str, dataset: str, version: str) -> None:
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        limit = parse_limit(
            self.get_query_argument("limit", None), svc.MAX_URLS_PER_PAGE, default=svc.MAX_URLS_PER_PAGE
        )
        rows, next_cursor = svc.list_files(
            self.db, v, limit, self.get_query_argument("cursor", None), self.get_query_argument("prefix", None)
        )
        if self.bool_arg("urls"):
            store, expires, local = (
                self.settings["object_store"],
                self.settings["presign_expires"],
                self.bool_arg("local"),
            )
            items = ext.downloads(store, self.sources, self.project, v, rows, expires, local)
        else:
            items = [svc.file_json(f) for f in rows]
        self.write_json({"items": items, "next_cursor": next_cursor, "version": v.version, "digest": v.digest})


class DatasetDownloadAPIHandler(_DatasetHandler):
    """A presigned GET URL (and, on request, the direct local path) for one file of a version."""

    actions = {"GET": "datasets:read"}

    async def get(self, project: str, dataset: str, version: str) -> None:
        path = self.get_query_argument("path", None)
        if not path:
            raise AnimusError(400, "invalid_argument", "Give the file as ?path=")
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        f = svc.find_file(self.db, v, path)
        expires = self.settings["presign_expires"]
        if ext.is_reference(f):
            # one file: check the source now, so a changed object is a clear 409 rather than a 412 later
            source = ext.source_of(self.sources, self.project, v)
            await ext.check_reference(source, v, f)
            body = ext.reference_download(source, v, f, expires)
        else:
            body = svc.file_download(self.settings["object_store"], self.project.id, f, expires, self.bool_arg("local"))
        self.write_json({**body, "version": v.version, "expires_in": expires})


class DatasetVerifyAPIHandler(_DatasetHandler):
    """HEAD a page of a version's files: referenced objects against what was captured, blobs for presence."""

    actions = {"GET": "datasets:read"}

    async def get(self, project: str, dataset: str, version: str) -> None:
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        limit = parse_limit(
            self.get_query_argument("limit", None), svc.MAX_URLS_PER_PAGE, default=svc.MAX_URLS_PER_PAGE
        )
        rows, next_cursor = svc.list_files(self.db, v, limit, self.get_query_argument("cursor", None))
        report = await ext.verify(self.settings["object_store"], self.sources, self.project, v, rows)
        self.write_json(
            {
                "dataset": d.name,
                "version": v.version,
                "digest": v.digest,
                "source_type": v.source_type,
                **report,
                "next_cursor": next_cursor,
            }
        )


class DatasetSchemaAPIHandler(_DatasetHandler):
    """Columns, types and statistics of every profiled tabular file of a version (paginated; ``?path=`` for one)."""

    actions = {"GET": "datasets:read"}

    def get(self, project: str, dataset: str, version: str) -> None:
        d = self.find_dataset(dataset)
        v = svc.find_version(self.db, d, version)
        items, next_cursor = profiles.version_schema(
            self.db, v, self.limit_arg(), self.get_query_argument("cursor", None), self.get_query_argument("path", None)
        )
        self.write_json(
            {"dataset": d.name, "version": v.version, "digest": v.digest, "items": items, "next_cursor": next_cursor}
        )


class DatasetDiffAPIHandler(_DatasetHandler):
    """Files added, removed and changed between two versions, and schema changes of tabular files."""

    actions = {"GET": "datasets:read"}

    def get(self, project: str, dataset: str) -> None:
        refs = [self.get_query_argument(k, None) for k in ("from", "to")]
        if not all(refs):
            raise AnimusError(400, "invalid_argument", "Give the versions to compare as ?from=&to=")
        d = self.find_dataset(dataset)
        a, b = (svc.find_version(self.db, d, r) for r in refs)
        self.write_json(profiles.diff_versions(self.db, d, a, b))


# --- the push protocol --------------------------------------------------------------------


class DatasetUploadListAPIHandler(_DatasetHandler):
    """Start a push: a pending upload (invisible until committed), optionally with a first manifest batch."""

    actions = {"POST": "datasets:write"}

    def post(self, project: str, dataset: str) -> None:
        data = self.json_body(DatasetUploadCreate)
        files = svc.parse_files(data.files) if data.files is not None else []
        d = self.find_dataset(dataset)
        upload = svc.create_upload(self.db, self.project, d, self.principal.name, data.message, data.run_id)
        if files:
            svc.add_files(self.db, upload, files)
        self.commit_and_write(
            svc.upload_json(self.db, upload, d),
            201,
            audit_action="dataset.upload_start",
            resource=self.resource(d.name, "uploads", upload.upload_id),
            details={"files": len(files)},
        )


class DatasetUploadAPIHandler(_DatasetHandler):
    actions = {"GET": "datasets:read", "DELETE": "datasets:write"}

    def get(self, project: str, dataset: str, upload_id: str) -> None:
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        self.write_json(svc.upload_json(self.db, upload, d))

    def delete(self, project: str, dataset: str, upload_id: str) -> None:
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        svc.abandon_upload(self.db, upload)
        self.commit_and_write(
            None, 204, audit_action="dataset.upload_abandon", resource=self.resource(d.name, "uploads", upload_id)
        )


class DatasetUploadFilesAPIHandler(_DatasetHandler):
    """Add a batch of manifest entries to a pending upload."""

    actions = {"POST": "datasets:write"}

    def post(self, project: str, dataset: str, upload_id: str) -> None:
        data = self.json_body(DatasetUploadFiles)
        files = svc.parse_files(data.files)
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        if upload.source_type == ext.SNAPSHOT:
            n = ext.fill_snapshot(self.db, upload, files)
        else:
            n = svc.add_files(self.db, upload, files)
        self.commit_and_write(
            svc.upload_json(self.db, upload, d),
            audit_action="dataset.upload_files",
            resource=self.resource(d.name, "uploads", upload_id),
            details={"files": n},
        )


class DatasetUploadMissingAPIHandler(_DatasetHandler):
    """Pages of presigned PUT URLs for the upload's blobs that storage does not have yet."""

    actions = {"GET": "datasets:write"}

    async def get(self, project: str, dataset: str, upload_id: str) -> None:
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        limit = parse_limit(
            self.get_query_argument("limit", None), svc.MAX_URLS_PER_PAGE, default=svc.MAX_URLS_PER_PAGE
        )
        page = await svc.missing_blobs(
            self.db,
            self.settings["object_store"],
            self.project.id,
            upload,
            limit,
            self.get_query_argument("cursor", None),
            self.settings["presign_expires"],
            local=self.bool_arg("local"),
            batch=self.bool_arg("batch"),
        )
        self.write_json(page)


class DatasetUploadCommitAPIHandler(_DatasetHandler):
    """Verify every blob and create the next version atomically."""

    actions = {"POST": "datasets:write"}

    async def post(self, project: str, dataset: str, upload_id: str) -> None:
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        v = await svc.commit_upload(
            self.db, self.settings["object_store"], self.project, d, upload, self.principal.name
        )
        self.commit_and_write(
            svc.version_json(v, d),
            201,
            audit_action="dataset.version_create",
            resource=self.resource(d.name, "versions", v.version),
            details={
                "digest": v.digest,
                "files": v.file_count,
                "bytes": v.total_size,
                "upload": upload_id,
                **({"source": v.source_name, "uri": v.source_uri} if v.source_name else {}),
            },
        )


class DatasetUploadSourcesAPIHandler(_DatasetHandler):
    """Pages of pinned presigned GETs for the captured objects of a snapshot upload (empty for other uploads)."""

    actions = {"GET": "datasets:write"}

    def get(self, project: str, dataset: str, upload_id: str) -> None:
        d = self.find_dataset(dataset)
        upload = svc.find_upload(self.db, d, upload_id, self.principal, self.role)
        limit = parse_limit(
            self.get_query_argument("limit", None), svc.MAX_URLS_PER_PAGE, default=svc.MAX_URLS_PER_PAGE
        )
        if upload.source_type != ext.SNAPSHOT:
            self.write_json({"items": [], "next_cursor": None, "remaining": 0})
            return
        source = ext.source_of(self.sources, self.project, upload)
        rows, next_cursor = svc.list_files(self.db, upload, limit, self.get_query_argument("cursor", None))
        expires = self.settings["presign_expires"]
        items = [ext.reference_download(source, upload, f, expires) for f in rows]
        self.write_json(
            {
                "items": items,
                "next_cursor": next_cursor,
                "remaining": ext.snapshot_progress(self.db, upload),
                "expires_in": expires,
            }
        )


class DatasetImportAPIHandler(_DatasetHandler):
    """A version from a read-only external S3 prefix: by reference (committed now) or as a snapshot (an upload)."""

    actions = {"POST": "datasets:write"}

    async def post(self, project: str, dataset: str) -> None:
        data = self.json_body(DatasetImport)
        d = self.find_dataset(dataset)
        source = ext.find_source(self.sources, self.project, data.source)
        bucket, prefix, captured = await ext.capture(source, data.uri)
        details = {
            "source": source.name,
            "uri": f"s3://{bucket}/{prefix}",
            "mode": data.mode,
            "files": len(captured),
            "bytes": sum(obj.size for _, obj in captured),
            "versioned": any(obj.version_id for _, obj in captured),
        }
        if data.mode == "reference":
            v = ext.register_reference(
                self.db, self.project, d, source, bucket, prefix, captured, self.principal.name, data.message
            )
            self.commit_and_write(
                svc.version_json(v, d),
                201,
                audit_action="dataset.version_create",
                resource=self.resource(d.name, "versions", v.version),
                details={**details, "digest": v.digest},
            )
            return
        upload = ext.start_snapshot(self.db, d, source, bucket, prefix, captured, self.principal.name, data.message)
        body = {
            **svc.upload_json(self.db, upload, d),
            "source_type": upload.source_type,
            "source_uri": upload.source_uri,
        }
        self.commit_and_write(
            body,
            201,
            audit_action="dataset.import_start",
            resource=self.resource(d.name, "uploads", upload.upload_id),
            details=details,
        )


class ExternalSourceListAPIHandler(APIHandler):
    """The external S3 sources this project may import from (names and where they may read; no secrets)."""

    actions = {"GET": "datasets:read"}

    def get(self, project: str) -> None:
        sources = ext.project_sources(self.settings.get("external_sources") or {}, self.project)
        self.write_json({"items": [s.describe() for s in sources], "next_cursor": None})


BASE = f"/projects/{PROJECT}/datasets"

default_handlers = [
    (BASE, DatasetListAPIHandler),
    (f"{BASE}/{DATASET}", DatasetAPIHandler),
    (f"{BASE}/{DATASET}/access", DatasetAccessAPIHandler),
    (f"{BASE}/{DATASET}/versions", DatasetVersionListAPIHandler),
    (f"{BASE}/{DATASET}/versions/{VERSION}", DatasetVersionAPIHandler),
    (f"{BASE}/{DATASET}/versions/{VERSION}/files", DatasetFilesAPIHandler),
    (f"{BASE}/{DATASET}/versions/{VERSION}/download", DatasetDownloadAPIHandler),
    (f"{BASE}/{DATASET}/versions/{VERSION}/schema", DatasetSchemaAPIHandler),
    (f"{BASE}/{DATASET}/versions/{VERSION}/verify", DatasetVerifyAPIHandler),
    (f"{BASE}/{DATASET}/imports", DatasetImportAPIHandler),
    (f"{BASE}/{DATASET}/diff", DatasetDiffAPIHandler),
    (f"{BASE}/{DATASET}/uploads", DatasetUploadListAPIHandler),
    (f"{BASE}/{DATASET}/uploads/{UPLOAD}", DatasetUploadAPIHandler),
    (f"{BASE}/{DATASET}/uploads/{UPLOAD}/files", DatasetUploadFilesAPIHandler),
    (f"{BASE}/{DATASET}/uploads/{UPLOAD}/missing", DatasetUploadMissingAPIHandler),
    (f"{BASE}/{DATASET}/uploads/{UPLOAD}/commit", DatasetUploadCommitAPIHandler),
    (f"{BASE}/{DATASET}/uploads/{UPLOAD}/sources", DatasetUploadSourcesAPIHandler),
    (f"/projects/{PROJECT}/external-sources", ExternalSourceListAPIHandler),
]
