"""experiment tracking

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Experiments, runs with params/tags/metrics (full history and latest values),
run inputs (datasets), content-addressed artifacts and MLflow logged models.
The run table had no rows before this revision (nothing created runs), so its new
NOT NULL columns need no defaults.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_experiment_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_experiment_project_id'))
    )
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_experiment_project_id'), ['project_id'], unique=False)

    op.create_table('latest_metric',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('is_nan', sa.Boolean(), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_latest_metric_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_latest_metric'))
    )
    with op.batch_alter_table('latest_metric', schema=None) as batch_op:
        batch_op.create_index('ix_latest_metric_key_value', ['key', 'value'], unique=False)

    op.create_table('logged_model',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=250), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('model_type', sa.String(length=250), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], name=op.f('fk_logged_model_experiment_id_experiment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_logged_model_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_logged_model_run_id_run'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logged_model'))
    )
    with op.batch_alter_table('logged_model', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logged_model_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_logged_model_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_logged_model_run_id'), ['run_id'], unique=False)

    op.create_table('metric',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('is_nan', sa.Boolean(), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_metric_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric'))
    )
    with op.batch_alter_table('metric', schema=None) as batch_op:
        batch_op.create_index('ix_metric_run_key_step', ['run_id', 'key', 'step'], unique=False)

    op.create_table('run_input',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('source_type', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('schema', sa.Text(), nullable=False),
    sa.Column('profile', sa.Text(), nullable=False),
    sa.Column('context', sa.String(length=64), nullable=False),
    sa.Column('dataset_version_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_version.id'], name=op.f('fk_run_input_dataset_version_id_dataset_version'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_input_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_input')),
    sa.UniqueConstraint('run_id', 'name', 'digest', 'context', name=op.f('uq_run_input_run_id'))
    )
    with op.batch_alter_table('run_input', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_input_dataset_version_id'), ['dataset_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_input_run_id'), ['run_id'], unique=False)

    op.create_table('run_param',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_param_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_run_param'))
    )
    op.create_table('run_tag',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_tag_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_run_tag'))
    )
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_artifact_run_id'), ['run_id', 'path'])

    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('experiment_id', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('name', sa.String(length=250), nullable=False))
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False))
        batch_op.add_column(sa.Column('lifecycle_stage', sa.String(length=16), nullable=False))
        batch_op.add_column(sa.Column('start_time', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('end_time', animus_hub.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('diff_digest', sa.String(length=71), nullable=True))
        batch_op.create_index(batch_op.f('ix_run_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index('ix_run_experiment_start', ['experiment_id', 'start_time'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_run_experiment_id_experiment'), 'experiment', ['experiment_id'], ['id'], ondelete='CASCADE')



def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_run_experiment_id_experiment'), type_='foreignkey')
        batch_op.drop_index('ix_run_experiment_start')
        batch_op.drop_index(batch_op.f('ix_run_experiment_id'))
        batch_op.drop_column('diff_digest')
        batch_op.drop_column('end_time')
        batch_op.drop_column('start_time')
        batch_op.drop_column('lifecycle_stage')
        batch_op.drop_column('kind')
        batch_op.drop_column('name')
        batch_op.drop_column('experiment_id')

    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_artifact_run_id'), type_='unique')

    op.drop_table('run_tag')
    op.drop_table('run_param')
    with op.batch_alter_table('run_input', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_input_run_id'))
        batch_op.drop_index(batch_op.f('ix_run_input_dataset_version_id'))

    op.drop_table('run_input')
    with op.batch_alter_table('metric', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_run_key_step')

    op.drop_table('metric')
    with op.batch_alter_table('logged_model', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_logged_model_run_id'))
        batch_op.drop_index(batch_op.f('ix_logged_model_project_id'))
        batch_op.drop_index(batch_op.f('ix_logged_model_experiment_id'))

    op.drop_table('logged_model')
    with op.batch_alter_table('latest_metric', schema=None) as batch_op:
        batch_op.drop_index('ix_latest_metric_key_value')

    op.drop_table('latest_metric')
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_experiment_project_id'))

    op.drop_table('experiment')
