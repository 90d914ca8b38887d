"""delivery activity: per-minute counters and the latest results of each target

Revision ID: 7fbf73c5462d
Revises: 4754a89fd2f0
Create Date: 2026-11-30 03:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7fbf73c5462d'
down_revision = '4754a89fd2f0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('target_activity',
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.Integer(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['target_id'], ['target.id'], name=op.f('fk_target_activity_target_id_target'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('target_id', 'minute', name=op.f('pk_target_activity'))
    )
    with op.batch_alter_table('target_activity', schema=None) as batch_op:
        batch_op.create_index('ix_target_activity_minute', ['minute'], unique=False)

    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_delivered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.drop_column('last_error_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('last_delivered_at')

    with op.batch_alter_table('target_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_target_activity_minute')

    op.drop_table('target_activity')
