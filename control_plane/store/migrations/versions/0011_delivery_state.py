"""What an operator needs to see that nothing is stuck (issue 17).

invocations.status_details holds a reason, not only SSM's short detail words: "result
rejected: <why>" (up to 256 characters) when the server refused a node's result.  SQLite
ignores the width; PostgreSQL would refuse the longer text.  nodes.outbox_depth and
nodes.outbox_dead: the agent's outbox as its last heartbeat told (messages waiting, and
messages the server refused, kept in the agent's dead table until `outbox retry-dead`).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.alter_column(
            "status_details", existing_type=sa.String(32), type_=sa.String(300), nullable=False
        )
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("outbox_depth", sa.Integer, nullable=True))
        batch.add_column(sa.Column("outbox_dead", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("outbox_dead")
        batch.drop_column("outbox_depth")
    with op.batch_alter_table("invocations") as batch:
        batch.alter_column(
            "status_details", existing_type=sa.String(300), type_=sa.String(32), nullable=False
        )
