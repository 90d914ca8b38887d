"""speeding episodes: a speed or posted-speed webhook's choice between an event for
every report at or over its threshold and one per episode, and the vehicle's last
margin over the posted limit that tells an episode's start

Revision ID: d5f1b2c3a4e6
Revises: c4e7a91d2b60
Create Date: 2026-12-02 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5f1b2c3a4e6'
down_revision = 'c4e7a91d2b60'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'speeding_events', sa.String(length=16), nullable=False, server_default='every_report'
        ))
    with op.batch_alter_table('vehicle_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('over_limit_mph', sa.Double(), nullable=True))


def downgrade():
    with op.batch_alter_table('vehicle_state', schema=None) as batch_op:
        batch_op.drop_column('over_limit_mph')
    with op.batch_alter_table('webhook', schema=None) as batch_op:
        batch_op.drop_column('speeding_events')
