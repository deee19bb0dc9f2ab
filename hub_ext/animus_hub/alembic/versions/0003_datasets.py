"""datasets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Datasets with tags, owners and restricted reader groups; versions that are pending
uploads until committed; manifests as dataset_file rows. Committed versions are
immutable in the database itself (triggers below, on both backends). The dataset
and dataset_version tables had no rows before this revision (nothing created
them), so their new NOT NULL columns need no defaults.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# columns of dataset_version a committed → deleted transition may change
_DELETION_COLUMNS = ("state", "deleted_at", "deleted_by")
# every other column must stay as it was (SQLite triggers cannot compare whole rows)
_KEPT_COLUMNS = (
    "id", "dataset_id", "upload_id", "version", "digest", "file_count", "total_size", "message",
    "source_type", "produced_by_run_id", "created_at", "created_by", "committed_at", "committed_by",
)


def _create_immutability_triggers() -> None:
    """Committed dataset versions and their manifests cannot change.

    - dataset_file: INSERT only into a pending version; UPDATE refused unless the
      version is pending; DELETE refused while the version is committed (pending
      uploads may be abandoned, deleted versions purged later).
    - dataset_version: a committed row may only become deleted (state, deleted_at,
      deleted_by); a deleted row never changes; DELETE of a committed row refused.
    """
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION animus_dataset_file_immutable() RETURNS trigger AS $$
            DECLARE s text;
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    SELECT state INTO s FROM dataset_version WHERE id = NEW.version_id;
                    IF s IS DISTINCT FROM 'pending' THEN
                        RAISE EXCEPTION 'dataset_file: files can only be added to a pending dataset version'
                            USING ERRCODE = 'insufficient_privilege';
                    END IF;
                    RETURN NEW;
                END IF;
                SELECT state INTO s FROM dataset_version WHERE id = OLD.version_id;
                IF TG_OP = 'UPDATE' THEN
                    IF s IS DISTINCT FROM 'pending' OR NEW.version_id <> OLD.version_id THEN
                        RAISE EXCEPTION 'dataset_file rows of a committed dataset version are immutable: UPDATE refused'
                            USING ERRCODE = 'insufficient_privilege';
                    END IF;
                    RETURN NEW;
                END IF;
                IF s = 'committed' THEN
                    RAISE EXCEPTION 'dataset_file rows of a committed dataset version are immutable: DELETE refused'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN OLD;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER dataset_file_immutable BEFORE INSERT OR UPDATE OR DELETE ON dataset_file "
            "FOR EACH ROW EXECUTE FUNCTION animus_dataset_file_immutable()"
        )
        op.execute(
            f"""
            CREATE FUNCTION animus_dataset_version_immutable() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    IF OLD.state = 'committed' THEN
                        RAISE EXCEPTION 'a committed dataset version cannot be deleted from the database'
                            USING ERRCODE = 'insufficient_privilege';
                    END IF;
                    RETURN OLD;
                END IF;
                IF OLD.state = 'deleted' OR (OLD.state = 'committed' AND NOT (
                    NEW.state = 'deleted'
                    AND (to_jsonb(NEW) - ARRAY{list(_DELETION_COLUMNS)!r}::text[])
                        = (to_jsonb(OLD) - ARRAY{list(_DELETION_COLUMNS)!r}::text[])
                )) THEN
                    RAISE EXCEPTION 'a committed dataset version is immutable: UPDATE refused'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER dataset_version_immutable BEFORE UPDATE OR DELETE ON dataset_version "
            "FOR EACH ROW EXECUTE FUNCTION animus_dataset_version_immutable()"
        )
        return
    state_of = "(SELECT state FROM dataset_version WHERE id = {}.version_id)"
    op.execute(
        "CREATE TRIGGER dataset_file_immutable_insert BEFORE INSERT ON dataset_file "
        f"WHEN {state_of.format('NEW')} IS NOT 'pending' "
        "BEGIN SELECT RAISE(ABORT, 'dataset_file: files can only be added to a pending dataset version'); END"
    )
    op.execute(
        "CREATE TRIGGER dataset_file_immutable_update BEFORE UPDATE ON dataset_file "
        f"WHEN {state_of.format('OLD')} IS NOT 'pending' OR NEW.version_id IS NOT OLD.version_id "
        "BEGIN SELECT RAISE(ABORT, 'dataset_file rows of a committed dataset version are immutable: UPDATE refused'); END"
    )
    op.execute(
        "CREATE TRIGGER dataset_file_immutable_delete BEFORE DELETE ON dataset_file "
        f"WHEN {state_of.format('OLD')} = 'committed' "
        "BEGIN SELECT RAISE(ABORT, 'dataset_file rows of a committed dataset version are immutable: DELETE refused'); END"
    )
    kept = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _KEPT_COLUMNS)
    op.execute(
        "CREATE TRIGGER dataset_version_immutable_update BEFORE UPDATE ON dataset_version "
        f"WHEN OLD.state = 'deleted' OR (OLD.state = 'committed' AND NOT (NEW.state = 'deleted' AND {kept})) "
        "BEGIN SELECT RAISE(ABORT, 'a committed dataset version is immutable: UPDATE refused'); END"
    )
    op.execute(
        "CREATE TRIGGER dataset_version_immutable_delete BEFORE DELETE ON dataset_version "
        "WHEN OLD.state = 'committed' "
        "BEGIN SELECT RAISE(ABORT, 'a committed dataset version cannot be deleted from the database'); END"
    )


def _drop_immutability_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS dataset_version_immutable ON dataset_version")
        op.execute("DROP FUNCTION IF EXISTS animus_dataset_version_immutable()")
        op.execute("DROP TRIGGER IF EXISTS dataset_file_immutable ON dataset_file")
        op.execute("DROP FUNCTION IF EXISTS animus_dataset_file_immutable()")
        return
    for name in (
        "dataset_version_immutable_delete",
        "dataset_version_immutable_update",
        "dataset_file_immutable_delete",
        "dataset_file_immutable_update",
        "dataset_file_immutable_insert",
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table('dataset_reader_group',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('group_name', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], name=op.f('fk_dataset_reader_group_dataset_id_dataset'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id', 'group_name', name=op.f('pk_dataset_reader_group'))
    )
    op.create_table('dataset_file',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('media_type', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_version.id'], name=op.f('fk_dataset_file_version_id_dataset_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_file')),
    sa.UniqueConstraint('version_id', 'path', name=op.f('uq_dataset_file_version_id'))
    )
    with op.batch_alter_table('dataset_file', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_file_sha256'), ['sha256'], unique=False)

    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False))
        batch_op.add_column(sa.Column('owners', sa.JSON(), nullable=False))
        batch_op.add_column(sa.Column('restricted', sa.Boolean(), nullable=False))
        batch_op.add_column(sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False))

    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upload_id', sa.String(length=36), nullable=False))
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False))
        batch_op.add_column(sa.Column('file_count', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('total_size', sa.BigInteger(), nullable=False))
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=False))
        batch_op.add_column(sa.Column('source_type', sa.String(length=32), nullable=False))
        batch_op.add_column(sa.Column('produced_by_run_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('committed_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('committed_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_by', sa.String(length=255), nullable=True))
        batch_op.alter_column('version',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index('ix_dataset_version_dataset_state', ['dataset_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_version_produced_by_run_id'), ['produced_by_run_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_dataset_version_upload_id'), ['upload_id'])
        batch_op.create_foreign_key(batch_op.f('fk_dataset_version_produced_by_run_id_run'), 'run', ['produced_by_run_id'], ['id'])

    _create_immutability_triggers()


def downgrade() -> None:
    _drop_immutability_triggers()
    # revision 0002 has no pending versions (version was NOT NULL) and no manifests
    op.execute("DELETE FROM dataset_version WHERE version IS NULL")
    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_dataset_version_produced_by_run_id_run'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_dataset_version_upload_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_dataset_version_produced_by_run_id'))
        batch_op.drop_index('ix_dataset_version_dataset_state')
        batch_op.alter_column('version',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('deleted_by')
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('committed_by')
        batch_op.drop_column('committed_at')
        batch_op.drop_column('produced_by_run_id')
        batch_op.drop_column('source_type')
        batch_op.drop_column('message')
        batch_op.drop_column('total_size')
        batch_op.drop_column('file_count')
        batch_op.drop_column('state')
        batch_op.drop_column('upload_id')

    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('restricted')
        batch_op.drop_column('owners')
        batch_op.drop_column('tags')

    with op.batch_alter_table('dataset_file', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_file_sha256'))

    op.drop_table('dataset_file')
    op.drop_table('dataset_reader_group')
