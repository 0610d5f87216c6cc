"""Monitoring (issue 15): the agent's own figures from its heartbeat, and status indexes.

nodes.workers (document workers running) and nodes.rss_bytes (the agent's resident memory),
as the last heartbeat told, beside nodes.outbox_depth (0011); NULL for an agent that does
not send them.  commands.status and invocations.status are indexed: ``GET /metrics`` counts
them by status (``GROUP BY status``) on every scrape, from the index alone.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("workers", sa.Integer, nullable=True))
        batch.add_column(sa.Column("rss_bytes", sa.BigInteger, nullable=True))
    op.create_index("ix_commands_status", "commands", ["status"])
    op.create_index("ix_invocations_status", "invocations", ["status"])


def downgrade() -> None:
    op.drop_index("ix_invocations_status", table_name="invocations")
    op.drop_index("ix_commands_status", table_name="commands")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("rss_bytes")
        batch.drop_column("workers")
