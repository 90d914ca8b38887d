"""late data: a location webhook may skip late positions (received long after
their fix: store-and-forward after a dead zone)

Revision ID: c3a9e1f5b7d2
Revises: b7e2d4f6a8c1
Create Date: 2026-12-04 23:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "c3a9e1f5b7d2"
down_revision = "b7e2d4f6a8c1"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skip_late", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_column("skip_late")
