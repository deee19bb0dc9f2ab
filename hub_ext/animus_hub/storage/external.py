"""Read-only external S3 sources: data lakes a dataset version can reference or snapshot.

The platform configuration (``AnimusAPI.external_sources``) declares each source:
an endpoint, an optional bucket and prefix allow-list, the projects that may use it,
and the *names* of the environment variables holding its credentials. Credentials
never appear in configuration files, responses, logs or audit details.

animus-api only lists, HEADs and signs: clients read the bytes themselves through
presigned GETs pinned to what was captured (``VersionId`` when the bucket is
versioned, and always ``If-Match: <ETag>`` as a *signed* header, so a URL cannot be
used without the ETag check and a changed object answers 412 instead of new bytes).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import AnimusError
from .base import MAX_KEY_BYTES, check_expires_in, check_filename, content_disposition

T = TypeVar("T")

SOURCE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# S3's rules, simplified: 3-63 of a-z, 0-9, '.', '-'
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONFIG_KEYS = frozenset(
    {
        "endpoint_url",
        "presign_endpoint_url",
        "region",
        "bucket",
        "prefixes",
        "projects",
        "access_key_id_env",
        "secret_access_key_env",
        "session_token_env",
        "addressing_style",
        "description",
    }
)
# literal credentials are refused: the configuration names environment variables instead
LITERAL_SECRET_KEYS = frozenset({"access_key_id", "secret_access_key", "session_token", "credentials"})
# S3 error codes that mean "this service may not, or cannot, read that": the caller's 4xx
_UNREADABLE = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "403",
        "401",
    }
)
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})


@dataclass(frozen=True)
class ExternalObject:
    """One object as captured from a source: what a reference pins."""

    key: str
    size: int
    etag: str
    #: None when the bucket is not versioned
    version_id: str | None = None


def normalise_etag(etag: str) -> str:
    """The ETag without its quotes (S3 sends it quoted)."""
    return etag.strip().strip('"')


def parse_s3_uri(uri: Any) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix/"): the prefix names a folder.

    An empty prefix (``s3://bucket`` or ``s3://bucket/``) means the whole bucket.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise AnimusError(422, "invalid_source_uri", "The source must be an S3 URI: s3://BUCKET/PREFIX/")
    shown = uri[:300]
    if _CONTROL.search(uri) or "\\" in uri:
        raise AnimusError(422, "invalid_source_uri", f"{shown!r} contains a control character or '\\'", {"uri": shown})
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not BUCKET_PATTERN.match(bucket):
        raise AnimusError(
            422, "invalid_source_uri", f"{shown!r}: {bucket!r} is not a valid bucket name", {"uri": shown}
        )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise AnimusError(422, "invalid_source_uri", f"{shown!r}: the prefix is too long", {"uri": shown})
    if prefix and any(seg in ("", ".", "..") for seg in prefix[:-1].split("/")):
        raise AnimusError(
            422, "invalid_source_uri", f"{shown!r}: empty, '.' and '..' segments are not allowed", {"uri": shown}
        )
    return bucket, prefix


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


class ExternalS3Source:
    """One configured source: who may use it, where it may read, and a boto3 client to read with."""

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str = "",
        presign_endpoint_url: str = "",
        region: str = "us-east-1",
        bucket: str = "",
        prefixes: list[str] | None = None,
        projects: list[str] | None = None,
        access_key_id: str = "",
        secret_access_key: str = "",
        session_token: str = "",
        addressing_style: str = "path",
        description: str = "",
        io_threads: int = 8,
    ) -> None:
        self.name = name
        self.endpoint_url = endpoint_url
        self.presign_endpoint_url = presign_endpoint_url
        self.region = region
        self.bucket = bucket
        self.prefixes = [p if p.endswith("/") or not p else p + "/" for p in (prefixes or [])]
        self.projects = list(projects or [])
        self.addressing_style = addressing_style
        self.description = description
        # kept private, never logged or serialised (see __repr__ and describe())
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._io_threads = io_threads
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None
        self._presign_client: Any = None

    def __repr__(self) -> str:
        return f"<ExternalS3Source {self.name} bucket={self.bucket or '*'}>"

    def describe(self) -> dict[str, Any]:
        """What a project member may know about the source (no endpoint, no credentials)."""
        return {
            "name": self.name,
            "description": self.description,
            "bucket": self.bucket or None,
            "prefixes": list(self.prefixes),
        }

    # --- policy -----------------------------------------------------------------------------

    def allows_project(self, slug: str) -> bool:
        return "*" in self.projects or slug in self.projects

    def check_uri(self, uri: Any) -> tuple[str, str]:
        """(bucket, prefix) of `uri` if this source may read there; 422 otherwise."""
        bucket, prefix = parse_s3_uri(uri)
        if self.bucket and bucket != self.bucket:
            raise AnimusError(
                422,
                "source_uri_not_allowed",
                f"Source {self.name!r} may only read bucket {self.bucket!r}, not {bucket!r}",
                {"source": self.name, "uri": uri[:300]},
            )
        if self.prefixes and not any(prefix.startswith(p) for p in self.prefixes):
            raise AnimusError(
                422,
                "source_uri_not_allowed",
                f"Source {self.name!r} may only read under {', '.join(self.prefixes)}",
                {"source": self.name, "uri": uri[:300], "allowed_prefixes": self.prefixes},
            )
        return bucket, prefix

    # --- clients ----------------------------------------------------------------------------

    def _make_client(self, endpoint_url: str) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": self.addressing_style},
            max_pool_connections=max(self._io_threads, 10),
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        key_id, secret, token = self._credentials
        credentials: dict[str, str] = {}
        if key_id and secret:
            credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
            if token:
                credentials["aws_session_token"] = token
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=self.region, config=config, **credentials
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client(self.endpoint_url)
        return self._client

    @property
    def presign_client(self) -> Any:
        if self._presign_client is None:
            if self.presign_endpoint_url and self.presign_endpoint_url != self.endpoint_url:
                self._presign_client = self._make_client(self.presign_endpoint_url)
            else:
                self._presign_client = self.client
        return self._presign_client

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._io_threads, thread_name_prefix=f"source-{self.name}")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        for client in {id(c): c for c in (self._client, self._presign_client) if c is not None}.values():
            client.close()
        self._client = self._presign_client = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _error(self, e: Exception, uri: str) -> AnimusError:
        from botocore.exceptions import ClientError

        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _UNREADABLE or code in _MISSING:
                return AnimusError(
                    422,
                    "source_unreadable",
                    f"animus-api cannot read {uri} through source {self.name!r} ({code}); "
                    "check the URI, and ask a platform admin about the source's bucket and permissions",
                    {"source": self.name, "uri": uri[:300], "code": code},
                )
            return AnimusError(
                502,
                "source_error",
                f"Source {self.name!r} refused the request ({code})",
                {"source": self.name, "code": code},
            )
        # connection refused, DNS, timeouts: the source is down, not the request wrong
        return AnimusError(
            503,
            "source_unavailable",
            f"Source {self.name!r} is unavailable ({type(e).__name__}); try again shortly",
            {"source": self.name},
        )

    # --- reads ------------------------------------------------------------------------------

    def _versioned(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            status = self.client.get_bucket_versioning(Bucket=bucket).get("Status")
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("AccessDenied", "403", "NotImplemented", "MethodNotAllowed"):
                return False  # may not ask: ETags alone pin the objects
            raise
        return status in ("Enabled", "Suspended")

    def _list(self, bucket: str, prefix: str, max_objects: int) -> list[ExternalObject]:
        out: list[ExternalObject] = []
        if self._versioned(bucket):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for v in page.get("Versions", []):
                    if not v.get("IsLatest"):
                        continue
                    vid = v.get("VersionId")
                    out.append(
                        ExternalObject(v["Key"], int(v["Size"]), normalise_etag(v.get("ETag", "")), _version(vid))
                    )
                if len(out) > max_objects:
                    break
        else:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    out.append(ExternalObject(o["Key"], int(o["Size"]), normalise_etag(o.get("ETag", ""))))
                if len(out) > max_objects:
                    break
        return out

    async def list_prefix(self, bucket: str, prefix: str, max_objects: int) -> list[ExternalObject]:
        """Every object under `prefix` (metadata only), at most `max_objects` + 1 (to detect too many)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await self._run(self._list, bucket, prefix, max_objects)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, s3_uri(bucket, prefix)) from None

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ExternalObject | None:
        """The object (that version of it, when pinned) as it is now; None if it is gone."""
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            r = await self._run(self.client.head_object, **params)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return None
            raise self._error(e, s3_uri(bucket, key)) from None
        except BotoCoreError as e:
            raise self._error(e, s3_uri(bucket, key)) from None
        return ExternalObject(
            key, int(r["ContentLength"]), normalise_etag(r.get("ETag", "")), _version(r.get("VersionId"))
        )

    def presign_get(
        self, bucket: str, key: str, etag: str, version_id: str | None, expires_in: int, filename: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """A GET URL for exactly the captured object, and the headers the client must send with it.

        ``If-Match`` is signed: the URL does not work without it, and answers 412
        when the object's ETag is no longer the captured one.
        """
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "IfMatch": f'"{etag}"'}
        if version_id:
            params["VersionId"] = version_id
        if check_filename(filename):
            params["ResponseContentDisposition"] = content_disposition(filename)
        url = self.presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=check_expires_in(expires_in)
        )
        return url, {"If-Match": f'"{etag}"'}


def _version(vid: Any) -> str | None:
    # unversioned objects of a versioned listing carry the literal "null"
    return vid if isinstance(vid, str) and vid and vid != "null" else None


def load_external_sources(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None, io_threads: int = 8
) -> dict[str, ExternalS3Source]:
    """Build the sources of `config` (``AnimusAPI.external_sources``); ValueError names what is wrong."""
    environ = os.environ if environ is None else environ
    sources: dict[str, ExternalS3Source] = {}
    for name, spec in config.items():
        where = f"external_sources[{name!r}]"
        if not isinstance(name, str) or not SOURCE_NAME_PATTERN.match(name):
            raise ValueError(f"{where}: a source name is 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: must be a dict")
        literal = LITERAL_SECRET_KEYS & set(spec)
        if literal:
            raise ValueError(
                f"{where}: credentials are never written in configuration ({', '.join(sorted(literal))}); "
                "give the names of environment variables instead: access_key_id_env, secret_access_key_env"
            )
        unknown = set(spec) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
        projects = spec.get("projects")
        if not isinstance(projects, list) or not projects or not all(isinstance(p, str) and p for p in projects):
            raise ValueError(f"{where}: 'projects' must list the project slugs that may use it, or be ['*']")
        bucket = spec.get("bucket", "")
        if bucket and (not isinstance(bucket, str) or not BUCKET_PATTERN.match(bucket)):
            raise ValueError(f"{where}: 'bucket' {bucket!r} is not a valid bucket name")
        prefixes = spec.get("prefixes", [])
        if not isinstance(prefixes, list) or not all(
            isinstance(p, str) and p and not p.startswith("/") for p in prefixes
        ):
            raise ValueError(f"{where}: 'prefixes' must be a list of non-empty key prefixes (no leading '/')")
        credentials: dict[str, str] = {}
        for key in ("access_key_id_env", "secret_access_key_env", "session_token_env"):
            var = spec.get(key)
            if var is None:
                continue
            if not isinstance(var, str) or not var:
                raise ValueError(f"{where}: {key!r} must name an environment variable")
            value = environ.get(var, "")
            if not value:
                raise ValueError(f"{where}: environment variable {var} ({key}) is not set")
            credentials[key.removesuffix("_env")] = value
        if ("access_key_id" in credentials) != ("secret_access_key" in credentials):
            raise ValueError(f"{where}: give both access_key_id_env and secret_access_key_env, or neither")
        style = spec.get("addressing_style", "path")
        if style not in ("path", "virtual", "auto"):
            raise ValueError(f"{where}: addressing_style must be 'path', 'virtual' or 'auto'")
        sources[name] = ExternalS3Source(
            name,
            endpoint_url=str(spec.get("endpoint_url", "")),
            presign_endpoint_url=str(spec.get("presign_endpoint_url", "")),
            region=str(spec.get("region", "") or "us-east-1"),
            bucket=bucket,
            prefixes=prefixes,
            projects=projects,
            addressing_style=style,
            description=str(spec.get("description", "")),
            io_threads=io_threads,
            **credentials,
        )
    return sources
