"""redaction: what a target leaves out of every event or blurs before it is sent —
the driver's name, coordinates rounded to a number of decimals, fields dropped by
their path in the event body

Revision ID: d9b3f6a2c8e4
Revises: c4e8a1d3f5b7
Create Date: 2026-12-05 00:40:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "d9b3f6a2c8e4"
down_revision = "c4e8a1d3f5b7"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("drop_driver_name", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("coordinate_decimals", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("drop_fields", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade():
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.drop_column("drop_fields")
        batch_op.drop_column("coordinate_decimals")
        batch_op.drop_column("drop_driver_name")
