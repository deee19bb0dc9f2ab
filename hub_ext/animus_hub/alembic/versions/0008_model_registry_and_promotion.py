"""model registry and promotion

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

Model versions get their files (by digest), framework, signature, metrics snapshot,
tags and aliases; promotion policies (immutable versions), promotion requests with
their approvals, and the promotion history. The history and the policy versions are
append-only in the database itself (triggers below, like audit_event's in 0001).
The model tables had no rows before this revision; server defaults cover any.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('promotion_policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_promotion_policy_project_id_project')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotion_policy')),
    sa.UniqueConstraint('project_id', 'version', name=op.f('uq_promotion_policy_project_id'))
    )
    with op.batch_alter_table('promotion_policy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotion_policy_project_id'), ['project_id'], unique=False)

    op.create_table('model_alias',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_model_alias_model_id_model'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], name=op.f('fk_model_alias_version_id_model_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'alias', name=op.f('pk_model_alias'))
    )
    with op.batch_alter_table('model_alias', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_alias_version_id'), ['version_id'], unique=False)

    op.create_table('promotion_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('actor_kind', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=True),
    sa.Column('break_glass', sa.Boolean(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_promotion_event_model_id_model')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], name=op.f('fk_promotion_event_model_version_id_model_version')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_promotion_event_project_id_project')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotion_event'))
    )
    with op.batch_alter_table('promotion_event', schema=None) as batch_op:
        batch_op.create_index('ix_promotion_event_model', ['model_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_promotion_event_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_promotion_event_version', ['model_version_id', 'id'], unique=False)

    op.create_table('promotion_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=False),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('requested_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=True),
    sa.Column('required_approvals', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('closed_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], name=op.f('fk_promotion_request_model_version_id_model_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotion_request'))
    )
    with op.batch_alter_table('promotion_request', schema=None) as batch_op:
        batch_op.create_index('ix_promotion_request_version_state', ['model_version_id', 'state'], unique=False)

    op.create_table('model_approval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('approver', sa.String(length=255), nullable=False),
    sa.Column('approver_role', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['promotion_request.id'], name=op.f('fk_model_approval_request_id_promotion_request'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_approval')),
    sa.UniqueConstraint('request_id', 'approver', name=op.f('uq_model_approval_request_id'))
    )
    with op.batch_alter_table('model_approval', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_approval_request_id'), ['request_id'], unique=False)

    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))

    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_kind', sa.String(length=16), nullable=False, server_default='file'))
        batch_op.add_column(sa.Column('source_path', sa.String(length=1024), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('framework', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('flavors', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('signature', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('metrics', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('files', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('digest', sa.String(length=71), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('total_size', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('status_reason', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('status_changed_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('status_changed_by', sa.String(length=255), nullable=False, server_default=''))

    _create_append_only_triggers()


APPEND_ONLY = {"promotion_event": ("UPDATE", "DELETE"), "promotion_policy": ("UPDATE", "DELETE")}


def _create_append_only_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            """
            CREATE FUNCTION animus_promotion_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
    for table, verbs in APPEND_ONLY.items():
        if postgres:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION animus_promotion_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION animus_promotion_append_only()"
            )
        else:
            for verb in verbs:
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
                )


def _drop_append_only_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, verbs in APPEND_ONLY.items():
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            for verb in verbs:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb.lower()}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS animus_promotion_append_only()")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_column('status_changed_by')
        batch_op.drop_column('status_changed_at')
        batch_op.drop_column('status_reason')
        batch_op.drop_column('description')
        batch_op.drop_column('total_size')
        batch_op.drop_column('digest')
        batch_op.drop_column('files')
        batch_op.drop_column('tags')
        batch_op.drop_column('metrics')
        batch_op.drop_column('signature')
        batch_op.drop_column('flavors')
        batch_op.drop_column('framework')
        batch_op.drop_column('source_path')
        batch_op.drop_column('source_kind')

    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('tags')
        batch_op.drop_column('description')

    with op.batch_alter_table('model_approval', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_approval_request_id'))

    op.drop_table('model_approval')
    with op.batch_alter_table('promotion_request', schema=None) as batch_op:
        batch_op.drop_index('ix_promotion_request_version_state')

    op.drop_table('promotion_request')
    with op.batch_alter_table('promotion_event', schema=None) as batch_op:
        batch_op.drop_index('ix_promotion_event_version')
        batch_op.drop_index(batch_op.f('ix_promotion_event_project_id'))
        batch_op.drop_index('ix_promotion_event_model')

    op.drop_table('promotion_event')
    with op.batch_alter_table('model_alias', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_alias_version_id'))

    op.drop_table('model_alias')
    with op.batch_alter_table('promotion_policy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotion_policy_project_id'))

    op.drop_table('promotion_policy')
