"""retention: the indexes the sweeper prunes by (reports by time, messages by
when they ended), and each target's pruned_before, so a recovery from before it
says its messages were deleted; on PostgreSQL the pruned tables are vacuumed
after 2 % of their rows changed, not 20 %, so the space pruning frees is reused
within hours (bench/storage.py)

Revision ID: a4d8f2b6c1e9
Revises: a9c3e5f7b2d1
Create Date: 2026-12-03 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a4d8f2b6c1e9'
down_revision = 'a9c3e5f7b2d1'
branch_labels = None
depends_on = None


# Tables the sweeper deletes from all day (outbox/retention.py).
PRUNED = ('telemetry_report', 'outbox_message', 'delivery_attempt')


def upgrade():
    op.create_index('ix_telemetry_report_time', 'telemetry_report', ['time'], unique=False)
    op.create_index('ix_outbox_message_finished_at', 'outbox_message', ['finished_at'],
                    unique=False)
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pruned_before', sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        for table in PRUNED:
            op.execute(f'ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.02)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for table in PRUNED:
            op.execute(f'ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor)')
    with op.batch_alter_table('target', schema=None) as batch_op:
        batch_op.drop_column('pruned_before')
    op.drop_index('ix_outbox_message_finished_at', table_name='outbox_message')
    op.drop_index('ix_telemetry_report_time', table_name='telemetry_report')
