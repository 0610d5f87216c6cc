"""Session Manager: one row per session.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(32), primary_key=True),
        sa.Column("node_id", sa.String(32), nullable=False),
        sa.Column("owner_token_id", sa.String(64), nullable=False),
        sa.Column("owner_name", sa.String(128), nullable=False),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("session_type", sa.String(32), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("run_as", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("connected_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("exit_status", sa.Integer, nullable=True),
        sa.Column("recorded", sa.Boolean, nullable=False),
        sa.Column("input_logged", sa.Boolean, nullable=False),
        sa.Column("recording_bytes", sa.BigInteger, nullable=True),
        sa.Column("recording_sha256", sa.String(64), nullable=True),
        sa.Column("recording_chunks", sa.Integer, nullable=True),
        sa.Column("cols", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
    )
    op.create_index("ix_sessions_node_id", "sessions", ["node_id"])
    op.create_index("ix_sessions_status", "sessions", ["status"])
    op.create_index("ix_sessions_created_at", "sessions", ["created_at"])


def downgrade() -> None:
    op.drop_table("sessions")
