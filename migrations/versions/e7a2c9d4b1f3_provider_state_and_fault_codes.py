"""provider state and fault codes: what a provider module keeps between sends for
one integration (open faults, drivers without a technician …), and the fault
codes a vehicle reported last, so a code that stops being reported can be resolved

Revision ID: e7a2c9d4b1f3
Revises: d5f1b2c3a4e6
Create Date: 2026-12-03 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'e7a2c9d4b1f3'
down_revision = 'd5f1b2c3a4e6'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    with op.batch_alter_table('integration', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_state', JSON, nullable=False, server_default='{}'))
    with op.batch_alter_table('vehicle_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fault_codes', JSON, nullable=True))


def downgrade():
    with op.batch_alter_table('vehicle_state', schema=None) as batch_op:
        batch_op.drop_column('fault_codes')
    with op.batch_alter_table('integration', schema=None) as batch_op:
        batch_op.drop_column('provider_state')
