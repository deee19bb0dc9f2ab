"""pipelines: pipeline runs with their spec, pipeline steps, run job resources/outputs/seed

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

A pipeline run keeps its spec (YAML source, normalised form, digest), the code it
runs and why it ended; each of its steps is a `pipeline_step` row (its batch run,
or the earlier run it was served from by cache, and the digests of its outputs).
A run job gains its own resources, its declared outputs and the seed it runs with.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PIPELINE_COLUMNS = [
    ('name', sa.String(length=128), ''),
    ('spec_source', sa.Text(), ''),
    ('spec', sa.JSON(), '{}'),
    ('repo_url', sa.String(length=1024), ''),
    ('commit_sha', sa.String(length=40), ''),
    ('git_ref', sa.String(length=255), ''),
    ('message', sa.Text(), ''),
]


def upgrade() -> None:
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        for name, type_, default in PIPELINE_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
        batch_op.add_column(sa.Column('experiment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested_by', sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False,
                      server_default='1970-01-01 00:00:00')
        )
        batch_op.add_column(sa.Column('finished_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_pipeline_run_experiment_id_experiment'), 'experiment', ['experiment_id'], ['id'],
            ondelete='SET NULL',
        )
    # server defaults only fill existing rows; the models give the values from now on
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        for name, _, _ in PIPELINE_COLUMNS:
            batch_op.alter_column(name, server_default=None)
        batch_op.alter_column('updated_at', server_default=None)

    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('outputs', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('seed', sa.Integer(), nullable=True))
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.alter_column('outputs', server_default=None)

    op.create_table('pipeline_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pipeline_run_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('cached_from_run_id', sa.String(length=36), nullable=True),
    sa.Column('cache_key', sa.String(length=71), nullable=True),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cached_from_run_id'], ['run.id'], name=op.f('fk_pipeline_step_cached_from_run_id_run'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pipeline_run_id'], ['pipeline_run.id'], name=op.f('fk_pipeline_step_pipeline_run_id_pipeline_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_pipeline_step_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_pipeline_step_run_id_run'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_step')),
    sa.UniqueConstraint('pipeline_run_id', 'name', name=op.f('uq_pipeline_step_pipeline_run_id')),
    )
    with op.batch_alter_table('pipeline_step', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipeline_step_cache_key'), ['cache_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_pipeline_step_pipeline_run_id'), ['pipeline_run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pipeline_step_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pipeline_step_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pipeline_step', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipeline_step_run_id'))
        batch_op.drop_index(batch_op.f('ix_pipeline_step_project_id'))
        batch_op.drop_index(batch_op.f('ix_pipeline_step_pipeline_run_id'))
        batch_op.drop_index(batch_op.f('ix_pipeline_step_cache_key'))
    op.drop_table('pipeline_step')
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.drop_column('seed')
        batch_op.drop_column('outputs')
        batch_op.drop_column('resources')
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_pipeline_run_experiment_id_experiment'), type_='foreignkey')
        for name in ('finished_at', 'updated_at', 'cancel_requested_by', 'experiment_id'):
            batch_op.drop_column(name)
        for name, _, _ in reversed(PIPELINE_COLUMNS):
            batch_op.drop_column(name)
