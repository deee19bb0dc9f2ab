"""Object storage: the `ObjectStore` interface, a local directory store and an S3 store."""

from .base import ObjectInfo, ObjectStore, validate_key
from .local import LocalObjectStore
from .s3 import S3ObjectStore

__all__ = ["LocalObjectStore", "ObjectInfo", "ObjectStore", "S3ObjectStore", "validate_key"]
