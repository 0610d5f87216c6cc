"""Session Manager's table (services/sessions/), on the shared metadata (store/metadata.py).

``sessions``: one row per session, from its start to its end (the recording itself lives in
the blob store, ``blobs/sessions/<id>/``; its size and sha256 are kept here once it ends).
"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", sa.String(32), primary_key=True),
    sa.Column("node_id", sa.String(32), nullable=False, index=True),
    sa.Column("owner_token_id", sa.String(64), nullable=False),
    sa.Column("owner_name", sa.String(128), nullable=False),
    sa.Column("document", sa.String(128), nullable=False),
    sa.Column("session_type", sa.String(32), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("run_as", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(256), nullable=True),  # the operator's, as SSM's --reason
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("status_reason", sa.String(500), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
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
