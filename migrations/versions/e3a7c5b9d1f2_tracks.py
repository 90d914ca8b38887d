"""tracks: a location webhook's choice to send positions as track batches (one
POST per vehicle per window of positions or seconds, a GeoJSON Feature), and the
positions waiting in their vehicle's open window

Revision ID: e3a7c5b9d1f2
Revises: d9b3f6a2c8e4
Create Date: 2026-12-05 01:00:00.000000

"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = "e3a7c5b9d1f2"
down_revision = "d9b3f6a2c8e4"
branch_labels = None
depends_on = None

PAYLOAD = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    op.create_table(
        "track_point",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("fix_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latitude", sa.Double(), nullable=False),
        sa.Column("longitude", sa.Double(), nullable=False),
        sa.Column("speed_mph", sa.Double(), nullable=True),
        sa.Column("heading", sa.Integer(), nullable=True),
        sa.Column("vehicle", PAYLOAD, nullable=False),
        sa.Column("driver", PAYLOAD, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhook.id"],
            name=op.f("fk_track_point_webhook_id_webhook"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_point")),
    )
    with op.batch_alter_table("track_point", schema=None) as batch_op:
        batch_op.create_index(
            "ix_track_point_window", ["webhook_id", "ordering_key", "id"], unique=False
        )
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("track_points", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("track_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("track_min_distance_m", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_column("track_min_distance_m")
        batch_op.drop_column("track_seconds")
        batch_op.drop_column("track_points")
    with op.batch_alter_table("track_point", schema=None) as batch_op:
        batch_op.drop_index("ix_track_point_window")
    op.drop_table("track_point")
