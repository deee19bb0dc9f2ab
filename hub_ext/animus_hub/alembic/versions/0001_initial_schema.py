"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28

Projects, membership, role mapping, the hash-chained append-only audit trail,
the event outbox, idempotency records, service accounts and tokens, and the
first minimal tables of the rest of the domain.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# The chain starts from 64 zeros; animus.auditchain.GENESIS_HASH is the same value
# (a migration must not import code that may change later).
GENESIS_HASH = "0" * 64


def _create_append_only_triggers() -> None:
    """UPDATE and DELETE on audit_event are refused by the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION animus_audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION animus_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
            "FOR EACH STATEMENT EXECUTE FUNCTION animus_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                f"BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: {verb} refused'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS animus_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")


def upgrade() -> None:
    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    op.create_table('audit_event',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('time', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('actor_kind', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('resource', sa.String(length=512), nullable=False),
    sa.Column('project', sa.String(length=63), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_event')),
    sa.UniqueConstraint('id', name=op.f('uq_audit_event_id'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_audit_event_project_seq', ['project', 'seq'], unique=False)
        batch_op.create_index('ix_audit_event_time', ['time'], unique=False)

    op.create_table('idempotency_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal', sa.String(length=300), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('request_digest', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_record')),
    sa.UniqueConstraint('principal', 'key', name=op.f('uq_idempotency_record_principal'))
    )
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_record_created_at'), ['created_at'], unique=False)

    op.create_table('project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('archived_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project')),
    sa.UniqueConstraint('slug', name=op.f('uq_project_slug'))
    )
    op.create_table('dataset',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_dataset_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_dataset_project_id'))
    )
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_project_id'), ['project_id'], unique=False)

    op.create_table('environment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_environment_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environment')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_environment_project_id'))
    )
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_environment_project_id'), ['project_id'], unique=False)

    op.create_table('legal_hold',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('released_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_legal_hold_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_hold'))
    )
    with op.batch_alter_table('legal_hold', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_hold_project_id'), ['project_id'], unique=False)

    op.create_table('model',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_model_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_model_project_id'))
    )
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_project_id'), ['project_id'], unique=False)

    op.create_table('outbox_event',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_outbox_event_project_id_project'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox_event')),
    sa.UniqueConstraint('id', name=op.f('uq_outbox_event_id'))
    )
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_event_pending', ['dispatched_at', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_event_project_id'), ['project_id'], unique=False)

    op.create_table('pipeline_run',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('spec_digest', sa.String(length=71), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_pipeline_run_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_run'))
    )
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipeline_run_project_id'), ['project_id'], unique=False)

    op.create_table('project_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('principal_kind', sa.String(length=16), nullable=False),
    sa.Column('principal_name', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_project_member_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_member')),
    sa.UniqueConstraint('project_id', 'principal_kind', 'principal_name', name=op.f('uq_project_member_project_id'))
    )
    with op.batch_alter_table('project_member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_member_project_id'), ['project_id'], unique=False)

    op.create_table('retention_policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('retention_class', sa.String(length=64), nullable=False),
    sa.Column('keep_days', sa.Integer(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_retention_policy_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_policy')),
    sa.UniqueConstraint('project_id', 'retention_class', name=op.f('uq_retention_policy_project_id'))
    )
    with op.batch_alter_table('retention_policy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retention_policy_project_id'), ['project_id'], unique=False)

    op.create_table('role_mapping_rule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_pattern', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_role_mapping_rule_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_role_mapping_rule')),
    sa.UniqueConstraint('group_pattern', 'project_id', name=op.f('uq_role_mapping_rule_group_pattern'))
    )
    with op.batch_alter_table('role_mapping_rule', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_mapping_rule_project_id'), ['project_id'], unique=False)

    op.create_table('service_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('disabled_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_service_account_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_account')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_service_account_project_id'))
    )
    with op.batch_alter_table('service_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_account_project_id'), ['project_id'], unique=False)

    op.create_table('webhook',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_webhook_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook'))
    )
    with op.batch_alter_table('webhook', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_project_id'), ['project_id'], unique=False)

    op.create_table('dataset_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], name=op.f('fk_dataset_version_dataset_id_dataset'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_version')),
    sa.UniqueConstraint('dataset_id', 'version', name=op.f('uq_dataset_version_dataset_id'))
    )
    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_version_dataset_id'), ['dataset_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhook.id'], name=op.f('fk_delivery_webhook_id_webhook'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_webhook_id'), ['webhook_id'], unique=False)

    op.create_table('environment_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('image', sa.String(length=512), nullable=False),
    sa.Column('lock_digest', sa.String(length=71), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_environment_version_environment_id_environment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environment_version')),
    sa.UniqueConstraint('environment_id', 'version', name=op.f('uq_environment_version_environment_id'))
    )
    with op.batch_alter_table('environment_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_environment_version_environment_id'), ['environment_id'], unique=False)

    op.create_table('run',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('pipeline_run_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('repo_url', sa.String(length=1024), nullable=True),
    sa.Column('commit_sha', sa.String(length=40), nullable=True),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['pipeline_run_id'], ['pipeline_run.id'], name=op.f('fk_run_pipeline_run_id_pipeline_run'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_run_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run'))
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_project_id'), ['project_id'], unique=False)

    op.create_table('token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('service_account_id', sa.Integer(), nullable=True),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('expires_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_token_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_account_id'], ['service_account.id'], name=op.f('fk_token_service_account_id_service_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_token')),
    sa.UniqueConstraint('prefix', name=op.f('uq_token_prefix'))
    )
    with op.batch_alter_table('token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_token_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_token_service_account_id'), ['service_account_id'], unique=False)

    op.create_table('artifact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_artifact_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact'))
    )
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_artifact_run_id'), ['run_id'], unique=False)

    op.create_table('model_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_model_version_model_id_model'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_model_version_run_id_run'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_version')),
    sa.UniqueConstraint('model_id', 'version', name=op.f('uq_model_version_model_id'))
    )
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_version_model_id'), ['model_id'], unique=False)

    _create_append_only_triggers()
    op.bulk_insert(
        sa.table('audit_chain_head', sa.column('id', sa.Integer), sa.column('seq', sa.Integer), sa.column('hash', sa.String)),
        [{'id': 1, 'seq': 0, 'hash': GENESIS_HASH}],
    )


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_version_model_id'))

    op.drop_table('model_version')
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_artifact_run_id'))

    op.drop_table('artifact')
    with op.batch_alter_table('token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_token_service_account_id'))
        batch_op.drop_index(batch_op.f('ix_token_project_id'))

    op.drop_table('token')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_project_id'))

    op.drop_table('run')
    with op.batch_alter_table('environment_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_environment_version_environment_id'))

    op.drop_table('environment_version')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_webhook_id'))
        batch_op.drop_index(batch_op.f('ix_delivery_event_id'))

    op.drop_table('delivery')
    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_version_dataset_id'))

    op.drop_table('dataset_version')
    with op.batch_alter_table('webhook', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_project_id'))

    op.drop_table('webhook')
    with op.batch_alter_table('service_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_account_project_id'))

    op.drop_table('service_account')
    with op.batch_alter_table('role_mapping_rule', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_mapping_rule_project_id'))

    op.drop_table('role_mapping_rule')
    with op.batch_alter_table('retention_policy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_policy_project_id'))

    op.drop_table('retention_policy')
    with op.batch_alter_table('project_member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_member_project_id'))

    op.drop_table('project_member')
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipeline_run_project_id'))

    op.drop_table('pipeline_run')
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_event_project_id'))
        batch_op.drop_index('ix_outbox_event_pending')

    op.drop_table('outbox_event')
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_project_id'))

    op.drop_table('model')
    with op.batch_alter_table('legal_hold', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_hold_project_id'))

    op.drop_table('legal_hold')
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_environment_project_id'))

    op.drop_table('environment')
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_project_id'))

    op.drop_table('dataset')
    op.drop_table('project')
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_record_created_at'))

    op.drop_table('idempotency_record')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_time')
        batch_op.drop_index('ix_audit_event_project_seq')

    op.drop_table('audit_event')
    op.drop_table('audit_chain_head')
