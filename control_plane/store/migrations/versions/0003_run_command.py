"""Run Command: commands, per-node invocations, node groups, webhooks and their deliveries.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("document_name", sa.String(128), nullable=False),
        sa.Column("document_version", sa.String(32), nullable=False),
        sa.Column("document_sha256", sa.String(64), nullable=False),
        sa.Column("document_content", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("comment", sa.String(100), nullable=False, server_default=""),
        sa.Column("max_concurrency", sa.String(8), nullable=False),
        sa.Column("max_errors", sa.String(8), nullable=False),
        sa.Column("execution_timeout", sa.Integer, nullable=False),
        sa.Column("delivery_timeout", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_details", sa.String(32), nullable=False),
        sa.Column("target_count", sa.Integer, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("completed_at", sa.Float, nullable=True),
        sa.Column("cancel_requested_at", sa.Float, nullable=True),
    )
    op.create_index("ix_commands_created_at", "commands", ["created_at"])
    op.create_table(
        "invocations",
        sa.Column(
            "command_id",
            sa.String(40),
            sa.ForeignKey("commands.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(20), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_details", sa.String(32), nullable=False),
        sa.Column("response_code", sa.Integer, nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_invocations_node_id", "invocations", ["node_id"])
    op.create_table(
        "node_groups",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.String(128), nullable=False),
        sa.Column("secret", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "webhook_id",
            sa.String(40),
            sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.String(256), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_next", "webhook_deliveries", ["next_attempt_at"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "node_groups", "invocations", "commands"):
        op.drop_table(table)
