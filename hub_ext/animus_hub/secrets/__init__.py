"""Secret stores: where secret values live (never in the Animus database).

``SecretStore`` is the interface; ``LocalSecretStore`` (embedded profile: an
encrypted file store) and ``VaultSecretStore`` (Vault / OpenBao through hvac)
implement it. ``AnimusAPI.secret_store_class`` picks one.
"""

from .base import (
    RunCredential,
    SecretNotFound,
    SecretStore,
    SecretStoreUnavailable,
    default_env_name,
    validate_env_name,
    validate_secret_name,
)

__all__ = [
    "RunCredential",
    "SecretNotFound",
    "SecretStore",
    "SecretStoreUnavailable",
    "default_env_name",
    "validate_env_name",
    "validate_secret_name",
]
