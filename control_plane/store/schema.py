"""Table definitions (SQLAlchemy Core).  Changes here need a migration in ``migrations/``.

Times are seconds since the epoch (float); JSON columns hold small documents only.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

activations = sa.Table(
    "activations",
    metadata,
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

nodes = sa.Table(
    "nodes",
    metadata,
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

node_tags = sa.Table(
    "node_tags",
    metadata,
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_node_tags_key_value", "key", "value"),
)

# Server -> agent messages waiting for the agent's acknowledgement (at-least-once delivery).
node_inbox = sa.Table(
    "node_inbox",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("node_id", sa.String(20), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Ids of agent -> server messages already stored: the server is idempotent by message id.
# Keyed per node: one node cannot shadow another's message by reusing its id.
processed_messages = sa.Table(
    "processed_messages",
    metadata,
    sa.Column("node_id", sa.String(20), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)
