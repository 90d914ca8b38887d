"""ordering lanes: each message's lane and its sequence in it, the lanes' counters,
the delivery settings of a target (ordering, requests in flight, rate limit,
latest wins, throttling) and the typed cause of its status

Revision ID: b3d1c8e0a5f2
Revises: 7fbf73c5462d
Create Date: 2026-12-02 12:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3d1c8e0a5f2'
down_revision = '7fbf73c5462d'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('outbox_lane',
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('ordering_key', sa.String(length=64), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['target_id'], ['target.id'], name=op.f('fk_outbox_lane_target_id_target'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('target_id', 'ordering_key', name=op.f('pk_outbox_lane'))
    )
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ordering_key', sa.String(length=64), nullable=False, server_default='target'))
        batch_op.add_column(sa.Column('lane_sequence', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_outbox_message_target_status_lane', ['target_id', 'status', 'ordering_key', 'lane_sequence'], unique=False)
    # Messages queued before lanes: one lane per target, in the target's order.
    op.execute("UPDATE outbox_message SET lane_sequence = sequence")
    op.execute(
        "INSERT INTO outbox_lane (target_id, ordering_key, last_sequence) "
        "SELECT target_id, 'target', MAX(sequence) FROM outbox_message GROUP BY target_id"
    )

    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ordering', sa.String(length=8), nullable=False, server_default='vehicle'))
        batch_op.add_column(sa.Column('max_in_flight', sa.Integer(), nullable=False, server_default='16'))
        batch_op.add_column(sa.Column('send_window', sa.Integer(), nullable=False, server_default='16'))
        batch_op.add_column(sa.Column('in_flight', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('rate_limit', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('latest_wins', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('throttled_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('status_cause', sa.String(length=24), nullable=True))
    # Integrations paused for their release form said so in words only.
    op.execute(
        "UPDATE target SET status_cause = 'release_form' "
        "WHERE status = 'paused' AND status_reason LIKE '%release form%'"
    )


def downgrade():
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.drop_column('status_cause')
        batch_op.drop_column('throttled_until')
        batch_op.drop_column('latest_wins')
        batch_op.drop_column('rate_limit')
        batch_op.drop_column('in_flight')
        batch_op.drop_column('send_window')
        batch_op.drop_column('max_in_flight')
        batch_op.drop_column('ordering')

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_target_status_lane')
        batch_op.drop_column('lane_sequence')
        batch_op.drop_column('ordering_key')

    op.drop_table('outbox_lane')
