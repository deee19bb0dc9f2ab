"""The cluster profile's object store: any S3-compatible service, through boto3.

boto3 is blocking: every call runs in the store's thread pool. Presigned URLs are
SigV4, made by a client configured with the endpoint clients reach
(`presign_endpoint_url`), which may differ from the one animus-api uses.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from traitlets import Bool, CaselessStrEnum, Unicode, default

from ..errors import AnimusError, not_found
from .base import (
    MAX_LIST_LIMIT,
    ObjectInfo,
    ObjectStore,
    check_content_length,
    check_expires_in,
    check_filename,
    content_disposition,
    normalise_sha256,
    object_too_large,
    sha256_from_base64,
    sha256_to_base64,
    validate_key,
)

#: CopyObject's limit; larger objects are copied part by part
MAX_SINGLE_COPY = 5 * 1024**3
READ_CHUNK = 1024 * 1024
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _full_object_sha256(response: dict[str, Any]) -> str | None:
    """The object's sha256 if the store recorded one for the whole object.

    A multipart upload's checksum is a checksum of part checksums ("…-N",
    ChecksumType COMPOSITE): not the content's digest, so it is ignored.
    """
    value = response.get("ChecksumSHA256")
    if not value or "-" in value or response.get("ChecksumType") == "COMPOSITE":
        return None
    return sha256_from_base64(value)


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket; clients use SigV4 presigned URLs."""

    endpoint_url = Unicode(
        "", help="S3 endpoint animus-api uses, e.g. http://seaweedfs-s3:8333 (empty: AWS, or AWS_ENDPOINT_URL_S3)."
    ).tag(config=True)
    presign_endpoint_url = Unicode(
        "",
        help="S3 endpoint clients reach, put in presigned URLs; empty: endpoint_url. "
        "SigV4 signs the host, so this cannot be rewritten after signing.",
    ).tag(config=True)
    bucket = Unicode("", help="Bucket holding every Animus object.").tag(config=True)
    region = Unicode(help="Region to sign for (env AWS_REGION / AWS_DEFAULT_REGION, else us-east-1).").tag(config=True)

    @default("region")
    def _region_default(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    access_key_id = Unicode(help="Access key id (env AWS_ACCESS_KEY_ID; empty: boto3's credential chain).").tag(
        config=True
    )

    @default("access_key_id")
    def _access_key_id_default(self) -> str:
        return os.environ.get("AWS_ACCESS_KEY_ID", "")

    secret_access_key = Unicode(help="Secret access key (env AWS_SECRET_ACCESS_KEY). Never logged.").tag(config=True)

    @default("secret_access_key")
    def _secret_access_key_default(self) -> str:
        return os.environ.get("AWS_SECRET_ACCESS_KEY", "")

    session_token = Unicode(help="Session token of temporary credentials (env AWS_SESSION_TOKEN).").tag(config=True)

    @default("session_token")
    def _session_token_default(self) -> str:
        return os.environ.get("AWS_SESSION_TOKEN", "")

    addressing_style = CaselessStrEnum(
        ["path", "virtual", "auto"],
        "path",
        help="'path' (bucket in the URL path) works with every S3-compatible store and needs no wildcard DNS.",
    ).tag(config=True)
    create_bucket = Bool(False, help="Create the bucket at start-up if it does not exist.").tag(config=True)

    _client: Any = None
    _presign_client: Any = None

    def _make_client(self, endpoint_url: str) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": self.addressing_style},
            max_pool_connections=max(self.io_threads, 10),
            retries={"max_attempts": 3, "mode": "standard"},
            # boto3 >= 1.36 adds CRC checksums to every upload by default, which several
            # S3-compatible stores refuse; we send a checksum only where we mean to
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        credentials = {}
        if self.access_key_id and self.secret_access_key:
            credentials = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
            if self.session_token:
                credentials["aws_session_token"] = self.session_token
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=self.region, config=config, **credentials
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            if not self.bucket:
                raise AnimusError(500, "storage_misconfigured", "S3ObjectStore.bucket is not set")
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

    # --- errors ---------------------------------------------------------------------------

    def _error(self, e: Exception, key: str = "") -> AnimusError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING and key:
                return not_found("object", key)
            self.log.error("S3 refused a request for %r: %s", key, code)
            return AnimusError(502, "storage_error", f"The object store refused the request ({code})", {"code": code})
        if isinstance(e, BotoCoreError):
            self.log.error("S3 unreachable: %s", type(e).__name__)
            return AnimusError(503, "storage_unavailable", "The object store is unavailable; try again shortly")
        return AnimusError(500, "storage_error", "Unexpected error from the object store")

    async def _call(self, operation: str, key: str = "", **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await self.run_in_thread(getattr(self.client, operation), Bucket=self.bucket, **params)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key) from None

    async def close(self) -> None:
        for client in {id(c): c for c in (self._client, self._presign_client) if c is not None}.values():
            client.close()
        self._client = self._presign_client = None
        await super().close()

    # --- start-up -------------------------------------------------------------------------

    async def setup(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self.run_in_thread(self.client.head_bucket, Bucket=self.bucket)
            return
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound") or not self.create_bucket:
                raise AnimusError(
                    500, "storage_misconfigured", f"Bucket {self.bucket!r} is not usable ({code})", {"code": code}
                ) from None
        params: dict[str, Any] = {}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call("create_bucket", **params)
        except AnimusError as e:
            if e.details.get("code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self.log.info("Created bucket %s", self.bucket)

    # --- presigned URLs ---------------------------------------------------------------------

    def presign_get(self, key: str, expires_in: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        if check_filename(filename):
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self.presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=check_expires_in(expires_in)
        )

    def presign_put(
        self,
        key: str,
        expires_in: int,
        content_length: int | None = None,
        sha256: str | None = None,
        local: bool = False,
    ) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        if check_content_length(content_length) is not None:
            params["ContentLength"] = content_length
        if sha256 is not None:
            # signed as the x-amz-checksum-sha256 header: the store checks the body against
            # it and stores nothing on a mismatch (SeaweedFS does too: 400 BadDigest)
            params["ChecksumSHA256"] = sha256_to_base64(normalise_sha256(sha256))
        return self.presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=check_expires_in(expires_in)
        )

    # --- the interface --------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            r = await self._call("head_object", key, Key=key, ChecksumMode="ENABLED")
        except AnimusError as e:
            if e.status == 404:
                return None
            raise
        return ObjectInfo(
            key=key,
            size=r["ContentLength"],
            etag=r.get("ETag", ""),
            last_modified=r.get("LastModified"),
            sha256=_full_object_sha256(r),
        )

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._call("delete_object", key, Key=key)

    async def list(self, prefix: str = "", limit: int = MAX_LIST_LIMIT, start_after: str = "") -> list[ObjectInfo]:
        self._check_list_args(prefix, limit, start_after)
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": limit}
        if start_after:
            params["StartAfter"] = start_after
        r = await self._call("list_objects_v2", **params)
        return [
            ObjectInfo(key=o["Key"], size=o["Size"], etag=o.get("ETag", ""), last_modified=o.get("LastModified"))
            for o in r.get("Contents", [])[:limit]
        ]

    async def copy(self, src_key: str, dst_key: str) -> None:
        validate_key(src_key)
        validate_key(dst_key)
        src = await self.head(src_key)
        if src is None:
            raise not_found("object", src_key)
        source = {"Bucket": self.bucket, "Key": src_key}
        if src.size <= MAX_SINGLE_COPY:
            # one CopyObject keeps the whole-object checksum, so the copy's sha256 stays known
            await self._call("copy_object", dst_key, Key=dst_key, CopySource=source)
            return
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        config = TransferConfig(multipart_threshold=MAX_SINGLE_COPY, multipart_chunksize=512 * 1024**2)
        try:
            await self.run_in_thread(self.client.copy, source, self.bucket, dst_key, Config=config)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, src_key) from None

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        validate_key(key)
        digest = hashlib.sha256(data).hexdigest()
        r = await self._call("put_object", key, Key=key, Body=bytes(data), ChecksumSHA256=sha256_to_base64(digest))
        return ObjectInfo(key=key, size=len(data), etag=r.get("ETag", ""), sha256=digest)

    async def get_bytes(self, key: str, max_bytes: int) -> bytes:
        validate_key(key)
        r = await self._call("get_object", key, Key=key)
        body = r["Body"]
        try:
            if r.get("ContentLength", 0) > max_bytes:
                raise object_too_large(key, r["ContentLength"], max_bytes)
            data = await self.run_in_thread(body.read, max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise object_too_large(key, len(data), max_bytes)
        return data

    def _stream_sha256(self, key: str) -> str:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        h = hashlib.sha256()
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                h.update(chunk)
        finally:
            body.close()
        return h.hexdigest()

    async def sha256(self, key: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        info = await self.head(key)
        if info is None:
            return None
        if info.sha256 is not None:
            return info.sha256
        try:
            return await self.run_in_thread(self._stream_sha256, key)
        except (ClientError, BotoCoreError) as e:
            error = self._error(e, key)
            if error.status == 404:
                return None
            raise error from None

    async def verify_sha256(self, key: str, expected: str) -> bool:
        """Uses the checksum the store verified at upload (x-amz-checksum-sha256, which
        SeaweedFS supports) when there is one; otherwise reads the object and hashes it."""
        from botocore.exceptions import BotoCoreError, ClientError

        expected = normalise_sha256(expected)
        info = await self.head(key)
        if info is None:
            return False
        actual = info.sha256
        if actual is None:
            try:
                actual = await self.run_in_thread(self._stream_sha256, key)
            except (ClientError, BotoCoreError) as e:
                error = self._error(e, key)
                if error.status == 404:
                    return False
                raise error from None
        return hmac.compare_digest(actual, expected)
