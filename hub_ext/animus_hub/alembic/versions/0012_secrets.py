"""secrets: names and metadata of project secrets, run secret leases, secrets of batch runs

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28

Values are never in the database: `secret_entry` holds a project secret's name,
version and who created or rotated it; `secret_lease` the short-lived store
credentials issued to run attempts (revoked when the attempt ends); `run_job` names
the secrets a batch run receives (and in which variables), the secret with its git
credentials, and which attempt fetched its values.
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('secret_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_secret_entry_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_secret_entry')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_secret_entry_project_id'))
    )
    with op.batch_alter_table('secret_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secret_entry_project_id'), ['project_id'], unique=False)

    op.create_table('secret_lease',
    sa.Column('id', BIGINT, autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('store', sa.String(length=32), nullable=False),
    sa.Column('lease_id', sa.String(length=255), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_secret_lease_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_secret_lease'))
    )
    with op.batch_alter_table('secret_lease', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secret_lease_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_secret_lease_revoked_at'), ['revoked_at'], unique=False)

    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secrets', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('git_credentials', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('secrets_fetched_attempt', sa.Integer(), nullable=True))
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.alter_column('secrets', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('run_job', schema=None) as batch_op:
        batch_op.drop_column('secrets_fetched_attempt')
        batch_op.drop_column('git_credentials')
        batch_op.drop_column('secrets')
    with op.batch_alter_table('secret_lease', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secret_lease_revoked_at'))
        batch_op.drop_index(batch_op.f('ix_secret_lease_run_id'))
    op.drop_table('secret_lease')
    with op.batch_alter_table('secret_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secret_entry_project_id'))
    op.drop_table('secret_entry')
