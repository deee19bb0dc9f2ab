"""Writable S3 export targets for model bundles (``AnimusAPI.export_targets``).

Declared like the read-only external sources (storage/external.py): an endpoint, a
bucket, a key prefix, the projects that may use it, and the *names* of the
environment variables holding its credentials. animus-api never moves the bytes: it
signs one PUT URL per object of the bundle, and the exporting client (SDK/CLI)
streams each file from the project's store (presigned GET) to the target. Give the
credentials write rights on the prefix only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import check_expires_in
from .external import ExternalS3Source, load_external_sources, s3_uri

EXPORT_KEYS = frozenset(
    {
        "endpoint_url",
        "presign_endpoint_url",
        "region",
        "bucket",
        "prefix",
        "projects",
        "access_key_id_env",
        "secret_access_key_env",
        "session_token_env",
        "addressing_style",
        "description",
    }
)


class S3ExportTarget:
    """One configured export target: where bundles go, who may use it, and how to sign writes."""

    def __init__(self, source: ExternalS3Source, prefix: str) -> None:
        self.source = source
        self.name = source.name
        self.bucket = source.bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"<S3ExportTarget {self.name} bucket={self.bucket}>"

    def allows_project(self, slug: str) -> bool:
        return self.source.allows_project(slug)

    def describe(self) -> dict[str, Any]:
        """What a project member may know (no endpoint, no credentials)."""
        return {
            "name": self.name,
            "description": self.source.description,
            "uri": s3_uri(self.bucket, self.prefix + "/" if self.prefix else ""),
        }

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def presign_put(self, key: str, size: int, expires_in: int) -> str:
        return self.source.presign_client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentLength": size},
            ExpiresIn=check_expires_in(expires_in),
        )

    def close(self) -> None:
        self.source.close()


def load_export_targets(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, S3ExportTarget]:
    """Build the targets of `config`; ValueError names what is wrong (start-up stops)."""
    targets: dict[str, S3ExportTarget] = {}
    for name, spec in config.items():
        where = f"export_targets[{name!r}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: must be a dict")
        unknown = set(spec) - EXPORT_KEYS - {"access_key_id", "secret_access_key", "session_token", "credentials"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(EXPORT_KEYS)}")
        if not spec.get("bucket"):
            raise ValueError(f"{where}: 'bucket' is required (the bucket bundles are written to)")
        prefix = spec.get("prefix", "")
        if not isinstance(prefix, str) or prefix.startswith("/"):
            raise ValueError(f"{where}: 'prefix' must be a key prefix without a leading '/'")
        as_source = {k: v for k, v in spec.items() if k != "prefix"}
        try:
            source = load_external_sources({name: as_source}, environ)[name]
        except ValueError as e:
            raise ValueError(str(e).replace(f"external_sources[{name!r}]", where)) from None
        targets[name] = S3ExportTarget(source, prefix)
    return targets
