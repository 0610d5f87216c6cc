"""Node events: what an agent reports about itself (a state file found unreadable and moved
aside), the newest 1,000 per node.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "node_id",
            sa.String(20),
            sa.ForeignKey("nodes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.String(1024), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_node_events_node_id", "node_events", ["node_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_node_events_node_id", table_name="node_events")
    op.drop_table("node_events")
