"""Foundation: operator tokens, activations, nodes, tags, the node inbox, processed ids.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("registration_limit", sa.Integer, nullable=False),
        sa.Column("registrations_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("activation_id", sa.String(40), nullable=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("credential_expires_at", sa.Float, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
        sa.Column("deregistered_at", sa.Float, nullable=True),
        sa.Column("hostname", sa.String(256), nullable=False, server_default=""),
        sa.Column("platform", sa.String(32), nullable=False, server_default=""),
        sa.Column("platform_name", sa.String(128), nullable=False, server_default=""),
        sa.Column("platform_version", sa.String(128), nullable=False, server_default=""),
        sa.Column("agent_version", sa.String(32), nullable=False, server_default=""),
        sa.Column("ip_addresses", sa.JSON, nullable=False),
        sa.Column("boot_time", sa.Float, nullable=True),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=True),
    )
    op.create_table(
        "node_tags",
        sa.Column(
            "node_id",
            sa.String(20),
            sa.ForeignKey("nodes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_node_tags_key_value", "node_tags", ["key", "value"])
    op.create_table(
        "node_inbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(20), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_node_inbox_node_id", "node_inbox", ["node_id"])
    op.create_table(
        "processed_messages",
        sa.Column("node_id", sa.String(20), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_processed_messages_received_at", "processed_messages", ["received_at"])


def downgrade() -> None:
    for table in (
        "processed_messages",
        "node_inbox",
        "node_tags",
        "nodes",
        "activations",
        "tokens",
    ):
        op.drop_table(table)
