"""account quotas: an operator's per-account overrides of the tenant limits, and
each target's count of events dropped because its account was over its pending
messages quota

Revision ID: a9c3e5f7b2d4
Revises: a4d8f2b6c1e9
Create Date: 2026-12-03 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9c3e5f7b2d4'
down_revision = 'a4d8f2b6c1e9'  # brief: e7a2c9d4b1f3; chained for the shared tree
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'account_quota',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('reports_per_second', sa.Double(), nullable=True),
        sa.Column('reports_burst', sa.Integer(), nullable=True),
        sa.Column('webhooks', sa.Integer(), nullable=True),
        sa.Column('integrations', sa.Integer(), nullable=True),
        sa.Column('pending_messages', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'],
                                name=op.f('fk_account_quota_account_id_account'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_quota')),
    )
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('dropped_by_quota', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade():
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.drop_column('dropped_by_quota')
    op.drop_table('account_quota')
