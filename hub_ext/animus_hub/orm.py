"""The Animus data model (DESIGN.md §4) as SQLAlchemy 2 typed models.

Every schema change ships as an Alembic migration in ``animus_hub/alembic``;
``tests/test_migrations.py`` fails when these models and the migrations drift.
Projects are referenced by integer id inside the database and by slug in the API.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.IntEnum):
    """Project roles, ordered: a higher role can do everything a lower one can."""

    viewer = 10
    contributor = 20
    maintainer = 30
    owner = 40

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name]


ROLE_NAMES = [r.name for r in Role]
PRINCIPAL_KINDS = ("user", "group")


# --- projects and membership -------------------------------------------------


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    members: Mapped[list[ProjectMember]] = relationship(back_populates="project", cascade="all, delete-orphan")


class ProjectMember(Base):
    """A user or an IdP/JupyterHub group holding a role in a project."""

    __tablename__ = "project_member"
    __table_args__ = (UniqueConstraint("project_id", "principal_kind", "principal_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")


class RoleMappingRule(Base):
    """Maps IdP/JupyterHub group names to project roles.

    ``group_pattern`` is an exact group name, or contains ``{project}`` to stand for
    any project slug (``ml-{project}-admins`` → owner of every project it names).
    A rule without ``{project}`` must name its project.
    """

    __tablename__ = "role_mapping_rule"
    __table_args__ = (UniqueConstraint("group_pattern", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_pattern: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))

    project: Mapped[Project | None] = relationship()


# --- audit trail and event outbox ----------------------------------------------


class AuditEvent(Base):
    """One append-only, hash-chained audit record.

    ``seq`` orders the chain; ``hash`` is sha256 over the canonical serialisation of
    the record including ``prev_hash`` (see ``animus.auditchain``). The database
    refuses UPDATE and DELETE on this table (triggers created by the migrations).
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_project_seq", "project", "seq"),
        Index("ix_audit_event_time", "time"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(512), default="")
    project: Mapped[str] = mapped_column(String(63), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The tip of the audit chain: one row, locked while an event is appended."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxEvent(Base):
    """A domain event recorded in the same transaction as the change it describes.

    ``id`` is the idempotency key receivers dedupe on; delivery (webhooks) is done
    later by the scheduler, which sets ``dispatched_at``.
    """

    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_event_pending", "dispatched_at", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    type: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="SET NULL"), nullable=True, index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyRecord(Base):
    """The stored answer to a POST sent with an ``Idempotency-Key`` header."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(300))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


# --- service accounts and tokens --------------------------------------------


class ServiceAccount(Base):
    """A non-human principal of one project (CI, automation) holding a project role."""

    __tablename__ = "service_account"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    project: Mapped[Project] = relationship()
    tokens: Mapped[list[Token]] = relationship(back_populates="service_account")


class Token(Base):
    """An Animus-issued bearer token. Only its sha256 is stored; the value is shown once.

    The presented value is ``anm_<prefix>_<secret>``; ``prefix`` finds the row and
    ``secret_hash`` proves it. ``kind`` is ``service_account`` or ``run``.
    """

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    service_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_account.id", ondelete="CASCADE"), nullable=True, index=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    #: for kind "run": the one run the token may touch (it is revoked when the run ends)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), nullable=True, index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    service_account: Mapped[ServiceAccount | None] = relationship(back_populates="tokens")
    project: Mapped[Project] = relationship()


class UserSession(Base):
    """One login of a person: a browser session of JupyterHub, kept in the Animus database.

    ``hub_session_id`` is the value of JupyterHub's ``jupyterhub-session-id`` cookie
    (not a credential on its own: the hub's login cookie is); the OAuth tokens the hub
    issues during the session carry it, so ending a session revokes them. A session is
    active while ``ended_at`` is empty and ``expires_at`` (login + TTL) is in the future.
    """

    __tablename__ = "user_session"
    __table_args__ = (Index("ix_user_session_user_active", "user_name", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_session_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(255))
    authenticator: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # logout, expired, evicted, replaced, forced_logout
    end_reason: Mapped[str] = mapped_column(String(32), default="")


class SSHKey(Base):
    """A person's public SSH key for the workspace SSH gateway (``animus_hub.sshgateway``).

    Only the public half is stored; ``fingerprint`` (``SHA256:…``, as ``ssh-keygen -l``
    prints it) is unique across people, so a key names exactly one person.
    """

    __tablename__ = "ssh_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(255), index=True)
    key_type: Mapped[str] = mapped_column(String(64))
    bits: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


# --- the rest of the domain: minimal now, grown by their own issues ------------------


class Dataset(Base):
    """A named, versioned dataset of a project; mutable metadata, immutable versions.

    ``restricted`` datasets are visible only to the groups in ``reader_groups`` (and
    to maintainers and owners of the project): see ``services.datasets.can_read``.
    """

    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    owners: Mapped[list[str]] = mapped_column(JSON, default=list)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    reader_groups: Mapped[list[DatasetReaderGroup]] = relationship(cascade="all, delete-orphan")


class DatasetReaderGroup(Base):
    """A group allowed to read a restricted dataset."""

    __tablename__ = "dataset_reader_group"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(255), primary_key=True)


DATASET_VERSION_STATES = ("pending", "committed", "deleted")


class DatasetVersion(Base):
    """A pending upload (``state`` pending, no ``version`` yet) or a committed version.

    Committed versions are immutable: the database refuses UPDATE of a committed row
    (except committed → deleted, which changes only state/deleted_at/deleted_by) and
    any change to its ``dataset_file`` rows (triggers of migrations 0003 and 0005).
    """

    __tablename__ = "dataset_version"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version"),
        Index("ix_dataset_version_dataset_state", "dataset_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), index=True)
    upload_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    digest: Mapped[str] = mapped_column(String(71), default="")
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    #: "upload", or an external S3 source: "external_reference" (nothing copied) or
    #: "external_snapshot" (copied into the project's blobs); see services.external_sources
    source_type: Mapped[str] = mapped_column(String(32), default="upload")
    #: the configured source (AnimusAPI.external_sources) and the s3:// prefix read
    source_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    produced_by_run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id"), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    committed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    committed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(String(255), nullable=True)

    dataset: Mapped[Dataset] = relationship()


class DatasetFile(Base):
    """One manifest entry of a dataset version: path → blob (sha256, size).

    An entry of an external source also records the object it came from (key, ETag,
    version id). A reference entry has no blob: its sha256 is "" (unknown), and the
    object is read from the source, pinned to that ETag / version id.
    """

    __tablename__ = "dataset_file"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_version.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(255), default="")
    source_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    source_etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source_version_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class DatasetFileProfile(Base):
    """Schema and statistics of one tabular file of a version, as the pushing client computed them.

    Insert-only: rows are added with the manifest of a pending upload and never change
    (triggers of migration 0004); see ``services.dataset_profiles``.
    """

    __tablename__ = "dataset_file_profile"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_version.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    row_count: Mapped[int] = mapped_column(BigInteger)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)


class Environment(Base):
    """A named runtime of a project's batch runs; its versions are immutable."""

    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))


class EnvironmentVersion(Base):
    """An immutable runtime: image reference (pinned when it carries ``@sha256:``), the
    Python lock file (content and its sha256; "" when there is none) and a resource
    template {cpu, memory_mb, gpu_count, gpu_type}. See ``services.environments``."""

    __tablename__ = "environment_version"
    __table_args__ = (UniqueConstraint("environment_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    image: Mapped[str] = mapped_column(String(512))
    lock_digest: Mapped[str] = mapped_column(String(71), default="")
    lock_content: Mapped[str] = mapped_column(Text, default="")
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), default="")

    environment: Mapped[Environment] = relationship()


class PipelineRun(Base):
    """A DAG of batch runs from a declarative spec (``services.pipelines``).

    The spec's YAML source is kept as submitted (its sha256 in ``spec_digest``) next
    to the checked, normalised form the scheduler works from. Status: queued →
    running → succeeded | failed | cancelled.
    """

    __tablename__ = "pipeline_run"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    spec_digest: Mapped[str] = mapped_column(String(71))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(128), default="")
    spec_source: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    repo_url: Mapped[str] = mapped_column(String(1024), default="")
    commit_sha: Mapped[str] = mapped_column(String(40), default="")
    git_ref: Mapped[str] = mapped_column(String(255), default="")
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiment.id", ondelete="SET NULL"), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PipelineStep(Base):
    """One step of a pipeline run: waiting for its dependencies, served from cache, or a batch run.

    Status: pending → queued/starting/running (its run's status) → succeeded | failed |
    cancelled, or skipped (the pipeline ended before it could start). A cached step
    has no run of its own: ``cached_from_run_id`` names the earlier run whose outputs it reuses.
    """

    __tablename__ = "pipeline_step"
    __table_args__ = (UniqueConstraint("pipeline_run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline_run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_run.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"), nullable=True, index=True)
    cached_from_run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"), nullable=True)
    #: sha256 over code, environment digests, command, params, input digests and declared outputs
    cache_key: Mapped[str | None] = mapped_column(String(71), nullable=True, index=True)
    #: {output name: digest} once the step succeeded (digest over the output's files)
    outputs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def new_run_id() -> str:
    return uuid.uuid4().hex


RUN_STATUSES = ("queued", "starting", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


class Experiment(Base):
    """A named group of runs inside a project (MLflow experiments map onto these)."""

    __tablename__ = "experiment"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """One execution: interactive (a notebook, a script with the SDK or MLflow) or batch."""

    __tablename__ = "run"
    __table_args__ = (Index("ix_run_experiment_start", "experiment_id", "start_time"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_run_id)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    pipeline_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("pipeline_run.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(250), default="")
    kind: Mapped[str] = mapped_column(String(16), default="interactive")
    status: Mapped[str] = mapped_column(String(16), default="running")
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    repo_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    commit_sha: Mapped[str | None] = mapped_column(String(40), nullable=True)
    diff_digest: Mapped[str | None] = mapped_column(String(71), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))

    experiment: Mapped[Experiment] = relationship()


RUN_FAILURE_KINDS = ("user", "timeout", "infrastructure", "setup")


class RunJob(Base):
    """The execution side of a batch run (``Run.kind == "batch"``): what to run and where it is.

    ``Run.status`` stays the one status (queued → starting → running → succeeded |
    failed | cancelled); this row holds the submission (command, environment version,
    inputs, retry policy) and the scheduler's state (attempt, backoff, executor handle,
    heartbeat). ``attempt`` fences the runner: reports of an older attempt are refused.
    """

    __tablename__ = "run_job"
    __table_args__ = (Index("ix_run_job_queue", "state", "next_attempt_at"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    #: the queue's copy of the run status, kept in step with ``Run.status`` (one index serves the queue)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    command: Mapped[list[str]] = mapped_column(JSON)
    git_ref: Mapped[str] = mapped_column(String(255), default="")
    environment_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("environment_version.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: [{"name", "version", "version_id", "digest"}] as resolved at submission
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    production: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    infra_retries: Mapped[int] = mapped_column(Integer, default=3)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    user_failures: Mapped[int] = mapped_column(Integer, default=0)
    infra_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    executor: Mapped[str] = mapped_column(String(64), default="")
    handle: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: set once the executor's resources of a finished (or abandoned) attempt are freed
    released: Mapped[bool] = mapped_column(Boolean, default=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failure_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the step's own resources (a pipeline step may override its environment's template)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: declared outputs {name: path relative to the code root} the runner uploads after success
    outputs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: the seed the runner exports (ANIMUS_SEED, PYTHONHASHSEED); reproduce runs use the same one
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: [{"name", "env"}]: the project secrets the run receives, and in which variables (names only)
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: the name of a secret holding credentials for the run's git remote (https), if any
    git_credentials: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: the attempt whose runner fetched its secret values through the API (local store: once per attempt)
    secrets_fetched_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)

    run: Mapped[Run] = relationship()
    environment_version: Mapped[EnvironmentVersion | None] = relationship()


class SecretEntry(Base):
    """A project secret's name and metadata; the value lives only in the secret store."""

    __tablename__ = "secret_entry"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    #: 1 at creation, +1 at each rotation (PUT of a new value)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class SecretLease(Base):
    """A short-lived store credential issued to one attempt of a run; revoked when the attempt ends.

    ``lease_id`` identifies the credential to its store (with Vault: the run policy's name
    and the token's accessor, which can revoke the token but not read with it).
    """

    __tablename__ = "secret_lease"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    store: Mapped[str] = mapped_column(String(32))
    lease_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)


class RunLogChunk(Base):
    """A chunk of a batch run's output (stdout and stderr merged), in order of ``id``."""

    __tablename__ = "run_log_chunk"
    __table_args__ = (Index("ix_run_log_chunk_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunParam(Base):
    """A run parameter: immutable once logged."""

    __tablename__ = "run_param"

    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTag(Base):
    """A run tag: mutable."""

    __tablename__ = "run_tag"

    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Metric(Base):
    """One point of a metric history. NaN is stored as is_nan with value 0 (SQLite has no NaN)."""

    __tablename__ = "metric"
    __table_args__ = (Index("ix_metric_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class LatestMetric(Base):
    """The latest point of each metric of a run (highest step, then timestamp): what search sorts on."""

    __tablename__ = "latest_metric"
    __table_args__ = (Index("ix_latest_metric_key_value", "key", "value"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class RunInput(Base):
    """A dataset a run consumed, as MLflow records it (name, digest, source) and, when it
    is an Animus dataset version, a link to it."""

    __tablename__ = "run_input"
    __table_args__ = (UniqueConstraint("run_id", "name", "digest", "context"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(71))
    source_type: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    schema: Mapped[str] = mapped_column(Text, default="")
    profile: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[str] = mapped_column(String(64), default="")
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_version.id", ondelete="SET NULL"), nullable=True, index=True
    )


class Artifact(Base):
    """A file a run produced, content-addressed: bytes live once per project under their digest."""

    __tablename__ = "artifact"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoggedModel(Base):
    """An MLflow 3 logged model (what `mlflow.<flavor>.log_model` creates), linked to its run."""

    __tablename__ = "logged_model"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(32), default="PENDING")
    model_type: Mapped[str] = mapped_column(String(250), default="")
    params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


MODEL_STATUSES = ("draft", "validated", "approved", "deprecated")


class Model(Base):
    """A named model of a project; its versions carry the files and the promotion status."""

    __tablename__ = "model"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """A version of a model, made from a run's artifact (a file, a directory or an MLflow model).

    ``files`` lists ``{path, sha256, size}``: the bytes are the run's content-addressed
    blobs, referenced by digest, never copied. ``digest`` is the sha256 of the
    canonical file list. ``metrics`` is a snapshot of the run's latest metrics.
    ``status`` changes only through services.models (the promotion policy).
    """

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    #: "file", "directory" or "mlflow_model" (a directory holding an MLmodel file)
    source_kind: Mapped[str] = mapped_column(String(16), default="file")
    source_path: Mapped[str] = mapped_column(String(1024), default="")
    framework: Mapped[str] = mapped_column(String(64), default="")
    flavors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    digest: Mapped[str] = mapped_column(String(71), default="")
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status_changed_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))

    model: Mapped[Model] = relationship()


class ModelAlias(Base):
    """A movable name (``champion``, ``staging``) pointing at one version of a model."""

    __tablename__ = "model_alias"

    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class PromotionPolicy(Base):
    """One immutable version of a project's promotion policy (YAML as written, and parsed).

    Each PUT adds a version; the newest is in force. The database refuses UPDATE and
    DELETE (triggers of migration 0008).
    """

    __tablename__ = "promotion_policy"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(71))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))


PROMOTION_REQUEST_STATES = ("open", "completed", "cancelled")


class PromotionRequest(Base):
    """A request to move a version to a status that needs approvals; completed by the Nth approval."""

    __tablename__ = "promotion_request"
    __table_args__ = (Index("ix_promotion_request_version_state", "model_version_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default="open")
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelApproval(Base):
    """One person's approval of a promotion request; a person counts once."""

    __tablename__ = "model_approval"
    __table_args__ = (UniqueConstraint("request_id", "approver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("promotion_request.id", ondelete="CASCADE"), index=True)
    approver: Mapped[str] = mapped_column(String(255))
    approver_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromotionEvent(Base):
    """The append-only promotion history of model versions: every transition, request,
    approval, failed check, break-glass override and export, with who, when, why, the
    evidence and the policy version applied. The database refuses UPDATE and DELETE
    (triggers of migration 0008), like audit_event.
    """

    __tablename__ = "promotion_event"
    __table_args__ = (
        Index("ix_promotion_event_version", "model_version_id", "id"),
        Index("ix_promotion_event_model", "model_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    #: transition, requested, approval, validation_failed, check_failed, override, export
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    actor: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(32), default="user")
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    """A project's subscription: events of the listed types are POSTed, signed, to ``url``.

    The signing secret is stored encrypted (``secret_encrypted``, see
    ``webhook_delivery.SecretBox``) because it must be usable for signing; its value is
    returned once, at creation. A disabled subscription gets no new deliveries and its
    pending ones wait until it is enabled again.
    """

    __tablename__ = "webhook"
    __table_args__ = (UniqueConstraint("project_id", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    secret_hint: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str] = mapped_column(String(500), default="")
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


DELIVERY_STATES = ("pending", "succeeded", "failed")


class Delivery(Base):
    """One event to be delivered to one webhook, with its exact body; retried until it
    succeeds or its retry horizon passes. A manual redelivery is a new row
    (``redelivery_of``) with the same ``event_id``, the receivers' idempotency key."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_due", "state", "next_attempt_at"),
        Index("ix_delivery_webhook_log", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    redelivery_of: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: what the receiver answered, or why there was no answer."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (Index("ix_delivery_attempt_delivery", "delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("delivery.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(500), default="")
    response_excerpt: Mapped[str] = mapped_column(String(512), default="")


class SchedulerLease(Base):
    """Leader election of animus-scheduler: the replica holding an unexpired lease runs the loop.

    Taken and renewed with a compare-and-set UPDATE (see ``scheduler.Lease``); ``term``
    grows each time another holder takes it.
    """

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), default="")
    term: Mapped[int] = mapped_column(Integer, default=0)
    acquired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RetentionPolicy(Base):
    __tablename__ = "retention_policy"
    __table_args__ = (UniqueConstraint("project_id", "retention_class"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    retention_class: Mapped[str] = mapped_column(String(64))
    keep_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LegalHold(Base):
    __tablename__ = "legal_hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
