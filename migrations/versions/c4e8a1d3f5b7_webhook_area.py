"""webhook area: a webhook's geo filter, one of the account's landmarks (kept from
deletion while in use) or its own circle or polygon

Revision ID: c4e8a1d3f5b7
Revises: b7e2d4f6a8c1
Create Date: 2026-12-05 00:11:56.571680

"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = "c4e8a1d3f5b7"
down_revision = "b7e2d4f6a8c1"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("area_landmark_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "area",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_area_landmark_id"), ["area_landmark_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_webhook_area_landmark_id_landmark"),
            "landmark",
            ["area_landmark_id"],
            ["id"],
            ondelete="RESTRICT",
        )


def downgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_webhook_area_landmark_id_landmark"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_webhook_area_landmark_id"))
        batch_op.drop_column("area")
        batch_op.drop_column("area_landmark_id")
