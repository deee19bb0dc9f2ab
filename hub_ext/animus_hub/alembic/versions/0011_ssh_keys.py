"""ssh keys: people's public keys for the workspace SSH gateway

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
import animus_hub.orm


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ssh_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_name', sa.String(length=255), nullable=False),
    sa.Column('key_type', sa.String(length=64), nullable=False),
    sa.Column('bits', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.Column('created_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', animus_hub.orm.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ssh_key')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_ssh_key_fingerprint'))
    )
    with op.batch_alter_table('ssh_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ssh_key_user_name'), ['user_name'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ssh_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ssh_key_user_name'))
    op.drop_table('ssh_key')
