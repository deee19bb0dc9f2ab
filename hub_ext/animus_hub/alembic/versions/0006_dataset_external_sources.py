"""dataset external sources

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Dataset versions whose source is a read-only external S3 prefix: the version records
the configured source and the s3:// URI it read; each manifest entry records the
object it came from (key, ETag, version id). Reference entries have no blob (sha256
"", unknown). The new dataset_version columns are frozen with the rest once the
version is committed: PostgreSQL's trigger compares whole rows already; SQLite's
lists the kept columns, so it is recreated here with the new ones.
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_KEPT_BEFORE = (
    "id", "dataset_id", "upload_id", "version", "digest", "file_count", "total_size", "message",
    "source_type", "produced_by_run_id", "created_at", "created_by", "committed_at", "committed_by",
)
_KEPT_NOW = _KEPT_BEFORE + ("source_name", "source_uri")


def _sqlite_version_trigger(kept: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS dataset_version_immutable_update")
    condition = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in kept)
    op.execute(
        "CREATE TRIGGER dataset_version_immutable_update BEFORE UPDATE ON dataset_version "
        f"WHEN OLD.state = 'deleted' OR (OLD.state = 'committed' AND NOT (NEW.state = 'deleted' AND {condition})) "
        "BEGIN SELECT RAISE(ABORT, 'a committed dataset version is immutable: UPDATE refused'); END"
    )


def upgrade() -> None:
    # plain ADD COLUMN (no batch table rebuild): the immutability triggers stay in place
    op.add_column('dataset_version', sa.Column('source_name', sa.String(length=64), nullable=True))
    op.add_column('dataset_version', sa.Column('source_uri', sa.String(length=2048), nullable=True))
    op.add_column('dataset_file', sa.Column('source_key', sa.String(length=1024), nullable=True))
    op.add_column('dataset_file', sa.Column('source_etag', sa.String(length=255), nullable=True))
    op.add_column('dataset_file', sa.Column('source_version_id', sa.String(length=1024), nullable=True))
    _sqlite_version_trigger(_KEPT_NOW)


def downgrade() -> None:
    _sqlite_version_trigger(_KEPT_BEFORE)
    # plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild, which would drop the triggers
    op.drop_column('dataset_file', 'source_version_id')
    op.drop_column('dataset_file', 'source_etag')
    op.drop_column('dataset_file', 'source_key')
    op.drop_column('dataset_version', 'source_uri')
    op.drop_column('dataset_version', 'source_name')
