"""outbox message payload as written: json, not jsonb, on PostgreSQL, so a message's
body keeps the key order fan-out built it in and every attempt sends exactly the
bytes the portal's example shows (jsonb reorders keys). SQLite stores text either
way: nothing changes there. On PostgreSQL the table is rewritten: on a large outbox,
run it in a quiet hour.

Revision ID: f5c9e2a4b6d8
Revises: e3a7c5b9d1f2
Create Date: 2026-12-05 01:20:00.000000

"""

from alembic import op


# revision identifiers, used by Alembic.
revision = "f5c9e2a4b6d8"
down_revision = "e3a7c5b9d1f2"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox_message ALTER COLUMN payload TYPE json USING payload::json")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE outbox_message ALTER COLUMN payload TYPE jsonb USING payload::jsonb"
        )
