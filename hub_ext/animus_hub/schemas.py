"""Request bodies, validated strictly: unknown fields and wrong types are refused.

The models double as the source of the request schemas in ``openapi.yaml``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import AnimusError

SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$"
# user and group names as JupyterHub and IdPs spell them: no control characters, no '/',
# no leading or trailing blank
PRINCIPAL_NAME_PATTERN = r"^[^\s/\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]{0,253}[^\s/\x00-\x1f\x7f])?$"
RoleName = Literal["viewer", "contributor", "maintainer", "owner"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class ProjectCreate(Strict):
    slug: str = Field(pattern=SLUG_PATTERN, description="3–63 characters: a-z, 0-9 and '-', starting with a letter")
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)


class ProjectUpdate(Strict):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _not_empty(self) -> ProjectUpdate:
        if self.display_name is None and self.description is None:
            raise ValueError("give at least one of display_name, description")
        return self


class MemberCreate(Strict):
    kind: Literal["user", "group"]
    name: str = Field(pattern=PRINCIPAL_NAME_PATTERN, max_length=255)
    role: RoleName


class MemberUpdate(Strict):
    role: RoleName


class RoleMappingCreate(Strict):
    group_pattern: str = Field(pattern=PRINCIPAL_NAME_PATTERN, max_length=255)
    role: RoleName
    project: str | None = Field(default=None, pattern=SLUG_PATTERN)


def parse_body(model: type[Strict], data: Any) -> Any:
    """Validate decoded JSON against `model`, or raise a 422 naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "(body)",
                "message": err["msg"],
                "type": err["type"],
            }
            for err in e.errors(include_url=False, include_input=False)
        ]
        first = errors[0]
        raise AnimusError(
            422,
            "validation_failed",
            f"Invalid request body: {first['field']}: {first['message']}",
            {"errors": errors},
        ) from None


TagMap = dict[str, str]


class ExperimentCreate(Strict):
    name: str = Field(min_length=1, max_length=256)
    description: str = Field(default="", max_length=4000)
    tags: TagMap = Field(default_factory=dict)


class ExperimentUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=4000)
    tags: TagMap | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExperimentUpdate:
        if self.name is None and self.description is None and not self.tags:
            raise ValueError("give at least one of name, description, tags")
        return self


class CodeRefBody(Strict):
    repo_url: str | None = Field(default=None, max_length=1024)
    commit_sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    diff_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")


class RunCreate(Strict):
    experiment_id: str | None = Field(default=None, pattern=r"^[0-9]{1,11}$")
    experiment: str | None = Field(
        default=None, min_length=1, max_length=256, description="experiment name; created if missing"
    )
    name: str = Field(default="", max_length=250)
    tags: TagMap = Field(default_factory=dict)
    start_time: int | None = Field(default=None, ge=0, description="epoch milliseconds")
    code: CodeRefBody | None = None

    @model_validator(mode="after")
    def _one_experiment(self) -> RunCreate:
        if self.experiment_id is not None and self.experiment is not None:
            raise ValueError("give experiment_id or experiment, not both")
        return self


RunStatus = Literal["running", "succeeded", "failed", "cancelled"]


class RunUpdate(Strict):
    name: str | None = Field(default=None, max_length=250)
    status: RunStatus | None = None
    end_time: int | None = Field(default=None, ge=0, description="epoch milliseconds")


class DatasetInputBody(Strict):
    name: str = Field(min_length=1, max_length=500)
    digest: str = Field(min_length=1, max_length=71)
    source_type: str = Field(default="", max_length=64)
    source: str = Field(default="", max_length=4000)
    schema_: str = Field(default="", max_length=100_000, alias="schema")
    profile: str = Field(default="", max_length=100_000)
    context: str = Field(default="", max_length=64)


class RunInputs(Strict):
    datasets: list[DatasetInputBody] = Field(max_length=100)


# --- datasets ---------------------------------------------------------------------

DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PrincipalName = Annotated[str, Field(pattern=PRINCIPAL_NAME_PATTERN, max_length=255)]


class DatasetCreate(Strict):
    name: str = Field(pattern=DATASET_NAME_PATTERN, description="1–128 characters: letters, digits, '.', '_' and '-'")
    description: str = Field(default="", max_length=4000)
    tags: TagMap = Field(default_factory=dict)
    owners: list[PrincipalName] | None = Field(
        default=None, max_length=50, description="who answers for the data (default: you)"
    )


class DatasetUpdate(Strict):
    description: str | None = Field(default=None, max_length=4000)
    tags: TagMap | None = None
    owners: list[PrincipalName] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _not_empty(self) -> DatasetUpdate:
        if self.description is None and self.tags is None and self.owners is None:
            raise ValueError("give at least one of description, tags, owners")
        return self


class DatasetAccess(Strict):
    reader_groups: list[PrincipalName] = Field(
        max_length=100, description="groups that may read; empty lifts the restriction"
    )


class DatasetUploadCreate(Strict):
    message: str = Field(default="", max_length=4000)
    run_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$", description="the run producing this version")
    files: list[dict[str, Any]] | None = Field(default=None, description="a first batch of manifest entries")


class DatasetUploadFiles(Strict):
    files: list[dict[str, Any]] = Field(description="a batch of manifest entries {path, sha256, size[, media_type]}")


class DatasetImport(Strict):
    source: str = Field(min_length=1, max_length=64, description="an external source configured for the project")
    uri: str = Field(min_length=6, max_length=2048, description="s3://BUCKET/PREFIX/ (a folder: every object under it)")
    mode: Literal["reference", "snapshot"] = Field(
        default="reference",
        description="reference: nothing copied, objects pinned by ETag/version id; "
        "snapshot: copied into the project by the client, then committed",
    )
    message: str = Field(default="", max_length=4000)


# --- service accounts ----------------------------------------------------------------

SERVICE_ACCOUNT_NAME_PATTERN = r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$"
TokenScope = Literal["read", "write"]


class ServiceAccountCreate(Strict):
    name: str = Field(
        pattern=SERVICE_ACCOUNT_NAME_PATTERN, description="1–63 characters: a-z, 0-9 and '-', starting with a letter"
    )
    description: str = Field(default="", max_length=4000)
    role: RoleName


class ServiceAccountUpdate(Strict):
    description: str | None = Field(default=None, max_length=4000)
    role: RoleName | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ServiceAccountUpdate:
        if self.description is None and self.role is None:
            raise ValueError("give at least one of description, role")
        return self


class ServiceAccountTokenCreate(Strict):
    note: str = Field(default="", max_length=255, description="what the token is for, e.g. 'GitLab CI, 2026-Q1'")
    expires_in: int = Field(ge=1, description="seconds until the token expires (at most the server's maximum)")
    scopes: list[TokenScope] = Field(
        default=[], max_length=2, description="'read' restricts the token to reads; empty: what the role allows"
    )


# --- webhooks --------------------------------------------------------------------------

EventTypeName = Annotated[str, Field(min_length=1, max_length=64)]


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2048, description="http:// or https:// URL the events are POSTed to")
    event_types: list[EventTypeName] = Field(
        min_length=1, max_length=32, description="event types to deliver, e.g. ['RunFinished', 'ModelApproved']"
    )
    description: str = Field(default="", max_length=4000)
    enabled: bool = True


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[EventTypeName] | None = Field(default=None, min_length=1, max_length=32)
    description: str | None = Field(default=None, max_length=4000)
    enabled: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> WebhookUpdate:
        if self.url is None and self.event_types is None and self.description is None and self.enabled is None:
            raise ValueError("give at least one of url, event_types, description, enabled")
        return self


class ForcedLogout(Strict):
    stop_servers: bool | None = Field(
        default=None,
        description="Stop the person's running workspaces (default: AnimusAPI.forced_logout_stops_servers)",
    )
    reason: str = Field(default="", max_length=500, description="Why; recorded in the audit trail")


# --- model registry --------------------------------------------------------------------------

ModelStatus = Literal["draft", "validated", "approved", "deprecated"]
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class ModelCreate(Strict):
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="1-128 letters, digits, '.', '_' or '-'")
    description: str = Field(default="", max_length=4000)
    tags: TagMap = Field(default_factory=dict)


class ModelUpdate(Strict):
    description: str | None = Field(default=None, max_length=4000)
    tags: TagMap | None = Field(default=None, description="replaces the model's tags ({} clears them)")

    @model_validator(mode="after")
    def _not_empty(self) -> ModelUpdate:
        if self.description is None and self.tags is None:
            raise ValueError("give at least one of description, tags")
        return self


class ModelVersionCreate(Strict):
    run_id: str = Field(min_length=1, max_length=36, description="the run whose artifact this version is")
    path: str = Field(
        default="",
        max_length=1024,
        description="an artifact file or directory of the run ('' for all its artifacts); "
        "a directory with an MLmodel file is an MLflow model",
    )
    description: str = Field(default="", max_length=4000)
    tags: TagMap = Field(default_factory=dict)
    aliases: list[Annotated[str, Field(pattern=ALIAS_PATTERN)]] = Field(default_factory=list, max_length=20)


class ModelTransition(Strict):
    to: ModelStatus
    reason: str = Field(default="", max_length=4000)
    override: bool = Field(
        default=False, description="break-glass: platform admins only, with a reason; bypasses the policy, flagged"
    )


class WorkspaceOpen(Strict):
    #: the workspace template chosen, recorded in the audit trail
    template: str | None = Field(default=None, max_length=63)
    #: the JupyterHub server name (the project's slug for a project's workspace)
    server: str | None = Field(default=None, max_length=255)


class ModelApprovalCreate(Strict):
    reason: str = Field(default="", max_length=4000)


class ModelAliasSet(Strict):
    version: int = Field(ge=1)


class PromotionPolicyPut(Strict):
    source: str = Field(min_length=1, max_length=65536, description="the policy as YAML")
    comment: str = Field(default="", max_length=4000)


class ModelExportCreate(Strict):
    format: Literal["s3", "oci", "mlflow"]
    target: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="export target name (format s3)"
    )
    force: bool = Field(default=False, description="export a version that is not approved (maintainers, with a reason)")
    reason: str = Field(default="", max_length=4000)


class ExportManifestUpload(Strict):
    size: int = Field(ge=1, le=64 * 1024 * 1024, description="the exact size in bytes of manifest.json")


# --- environments and batch runs ------------------------------------------------------------

ENVIRONMENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
CommandArg = Annotated[str, Field(max_length=8192)]
ParamValue = Annotated[str, Field(max_length=6000)]


class EnvironmentCreate(Strict):
    name: str = Field(pattern=ENVIRONMENT_NAME_PATTERN, description="1–128 letters, digits, '.', '_' or '-'")
    description: str = Field(default="", max_length=4000)


class EnvironmentVersionCreate(Strict):
    image: str = Field(
        min_length=1,
        max_length=512,
        description="image reference; pinned when it names a digest: registry/name:tag@sha256:<64 hex>",
    )
    lock_file: str = Field(
        default="", max_length=512 * 1024, description="content of the Python lock file (pip requirements with hashes)"
    )
    resources: dict[str, Any] = Field(
        default_factory=dict, description="{cpu, memory_mb, gpu_count, gpu_type}; all optional"
    )
    description: str = Field(default="", max_length=4000)


class RunSubmit(Strict):
    repo: str = Field(min_length=1, max_length=1024, description="git URL of the code (https, ssh or git)")
    commit: str = Field(
        min_length=1, max_length=255, description="a 40-hex commit SHA, or a branch or tag resolved once to its SHA"
    )
    command: list[CommandArg] = Field(min_length=1, max_length=256, description="the command and its arguments")
    environment: str | None = Field(default=None, max_length=200, description="NAME:VERSION of an environment")
    datasets: list[str] = Field(default_factory=list, max_length=50, description="input datasets as NAME:VERSION")
    params: dict[str, ParamValue] = Field(default_factory=dict, max_length=100)
    tags: TagMap = Field(default_factory=dict)
    experiment: str | None = Field(
        default=None, min_length=1, max_length=256, description="experiment name (default: Default)"
    )
    name: str = Field(default="", max_length=250)
    priority: int = Field(default=0, ge=-100, le=100, description="higher runs first within the project's queue")
    retries: int = Field(default=0, ge=0, le=20, description="retries after the code fails (non-zero exit, timeout)")
    infra_retries: int | None = Field(
        default=None, ge=0, le=20, description="retries after infrastructure failures (default: the server's setting)"
    )
    timeout_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    production: bool = Field(
        default=False, description="refuse unless the code, environment and data are all pinned (422 lists what is not)"
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="exported as ANIMUS_SEED and PYTHONHASHSEED (default: random)"
    )
    secrets: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="project secrets the run receives as environment variables: [NAME, …] (variable NAME "
        "upper-cased, '-' and '.' as '_') or {NAME: VARIABLE}",
    )
    git_credentials: str | None = Field(
        default=None,
        description="name of a project secret with credentials for an https git remote: 'user:password' or a token",
    )



class PipelineSubmit(Strict):
    spec: str = Field(
        min_length=1, max_length=256 * 1024, description="the pipeline spec as YAML (see docs/reference/pipeline-spec.md)"
    )
    repo: str = Field(min_length=1, max_length=1024, description="git URL of the code every step runs")
    commit: str = Field(
        min_length=1, max_length=255, description="a 40-hex commit SHA, or a branch or tag resolved once to its SHA"
    )
    experiment: str | None = Field(default=None, min_length=1, max_length=256, description="experiment of the step runs")


class RunReport(Strict):
    attempt: int = Field(ge=1)
    state: Literal["running", "heartbeat", "exited", "setup_failed", "outputs_missing"]
    exit_code: int | None = Field(default=None, ge=-255, le=255)
    message: str = Field(default="", max_length=4000)


class RunLogAppend(Strict):
    attempt: int = Field(ge=1)
    text: str = Field(max_length=512 * 1024)


# --- workspace SSH ---------------------------------------------------------------------------


class SSHKeyCreate(Strict):
    public_key: str = Field(
        min_length=1, max_length=16384, description="One OpenSSH public key line (the content of a .pub file)"
    )
    comment: str | None = Field(default=None, max_length=255, description="A label (default: the key line's comment)")


class SSHAuthorize(Strict):
    """What the SSH gateway asks before it lets a key in (``user+project`` login)."""

    user: str = Field(pattern=PRINCIPAL_NAME_PATTERN, max_length=255)
    groups: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list, max_length=1000)
    admin: bool = False
    project: str = Field(max_length=255)
    public_key: str = Field(min_length=1, max_length=16384)
    client: str = Field(default="", max_length=64, description="The SSH client's address")


class SSHEvent(Strict):
    """Something the SSH gateway saw, for the audit trail."""

    event: Literal["login", "refused", "session_end"]
    user: str = Field(max_length=255)
    project: str = Field(default="", max_length=255)
    fingerprint: str = Field(default="", max_length=128)
    client: str = Field(default="", max_length=64)
    session: str = Field(default="", max_length=64, description="The gateway's id of the connection")
    reason: str = Field(default="", max_length=64)
    message: str = Field(default="", max_length=500)
    duration_seconds: float | None = Field(default=None, ge=0)
    commands: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100)
    forwards: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)


class SecretPut(Strict):
    value: str = Field(description="the secret value (write-only: never returned)")
    description: str | None = Field(default=None, max_length=2000)


class RunSecretsFetch(Strict):
    attempt: int = Field(ge=1)
