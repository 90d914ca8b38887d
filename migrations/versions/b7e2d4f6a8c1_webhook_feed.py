"""webhook feed: a target's messages by their sequence, the order a pull feed
(GET /api/v1/webhooks/{id}/feed) reads them in after its cursor; a target's
pull-only mode (its messages are kept for the feed, nothing is pushed); and a
location webhook's choice to skip late positions (received long after their fix:
store-and-forward after a dead zone); and a target's own time to live for its
messages (older, they end stale)

Revision ID: b7e2d4f6a8c1
Revises: a9c3e5f7b2d4
Create Date: 2026-12-04 22:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "b7e2d4f6a8c1"
down_revision = "a9c3e5f7b2d4"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pull_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("ttl_minutes", sa.Integer(), nullable=True))
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skip_late", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_message_target_sequence", ["target_id", "sequence"], unique=False
        )


def downgrade():
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_column("skip_late")
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.drop_column("ttl_minutes")
        batch_op.drop_column("pull_only")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_target_sequence")
