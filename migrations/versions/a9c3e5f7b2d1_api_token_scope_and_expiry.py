"""api token scope and expiry: what a token may do (admin, read, telemetry:write)
and when it stops working; every existing token keeps acting as before (admin,
still capped by its user's role), and none expires

Revision ID: a9c3e5f7b2d1
Revises: e7a2c9d4b1f3
Create Date: 2026-12-03 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a9c3e5f7b2d1'
down_revision = 'e7a2c9d4b1f3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('scope', sa.String(length=32), nullable=False, server_default='admin')
        )
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('scope')
