"""batch runs: environment versions, run jobs, run logs, run tokens

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28

Environment versions carry their lock file (content and sha256), a resource template
and who created them; a batch run's submission and scheduler state live in `run_job`
(one row per batch run, `Run.status` stays the one status); its output in
`run_log_chunk`; a run token names the one run it may touch (`token.run_id`).
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('environment_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lock_content', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('created_by', sa.String(length=255), nullable=False, server_default=''))
    # server defaults only fill existing rows; the models give the values from now on
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.alter_column('description', server_default=None)
    with op.batch_alter_table('environment_version', schema=None) as batch_op:
        for column in ('lock_content', 'resources', 'description', 'created_by'):
            batch_op.alter_column(column, server_default=None)
    with op.batch_alter_table('token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_id', sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_token_run_id_run'), 'run', ['run_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_token_run_id'), ['run_id'], unique=False)

    op.create_table('run_job',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('git_ref', sa.String(length=255), nullable=False),
    sa.Column('environment_version_id', sa.Integer(), nullable=True),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('production', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('infra_retries', sa.Integer(), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('user_failures', sa.Integer(), nullable=False),
    sa.Column('infra_failures', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('executor', sa.String(length=64), nullable=False),
    sa.Column('handle', sa.String(length=255), nullable=True),
    sa.Column('released', sa.Boolean(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('failure_kind', sa.String(length=16), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('cancel_requested_by', sa.String(length=255), nullable=True),
    sa.Column('log_bytes', sa.BigInteger(), nullable=False),
    sa.Column('log_truncated', sa.Boolean(), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_version_id'], ['environment_version.id'], name=op.f('fk_run_job_environment_version_id_environment_version'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_run_job_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_job_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_job'))
    )
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.create_index('ix_run_job_queue', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_job_environment_version_id'), ['environment_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_job_project_id'), ['project_id'], unique=False)

    op.create_table('run_log_chunk',
    sa.Column('id', BIGINT, autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_log_chunk_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_log_chunk'))
    )
    with op.batch_alter_table('run_log_chunk', schema=None) as batch_op:
        batch_op.create_index('ix_run_log_chunk_run', ['run_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_log_chunk', schema=None) as batch_op:
        batch_op.drop_index('ix_run_log_chunk_run')
    op.drop_table('run_log_chunk')
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_job_project_id'))
        batch_op.drop_index(batch_op.f('ix_run_job_environment_version_id'))
        batch_op.drop_index('ix_run_job_queue')
    op.drop_table('run_job')
    with op.batch_alter_table('token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_token_run_id'))
        batch_op.drop_constraint(batch_op.f('fk_token_run_id_run'), type_='foreignkey')
        batch_op.drop_column('run_id')
    with op.batch_alter_table('environment_version', schema=None) as batch_op:
        batch_op.drop_column('created_by')
        batch_op.drop_column('description')
        batch_op.drop_column('resources')
        batch_op.drop_column('lock_content')
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.drop_column('description')
