"""delivery attempt error detail: the technical text of a failure, kept beside the
plain-words error the grid shows

Revision ID: c4e7a91d2b60
Revises: b3d1c8e0a5f2
Create Date: 2026-12-03 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e7a91d2b60'
down_revision = 'b3d1c8e0a5f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('delivery_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_detail', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('delivery_attempt', schema=None) as batch_op:
        batch_op.drop_column('error_detail')
