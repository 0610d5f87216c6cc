"""Scoped tokens: a token carries a role (a stored policy) or a policy document of its own.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("role", existing_type=sa.String(32), nullable=True)
        batch.add_column(sa.Column("policy", sa.JSON, nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(40), nullable=True))
    op.create_table(
        "policies",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policies")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("created_by")
        batch.drop_column("policy")
        batch.alter_column("role", existing_type=sa.String(32), nullable=False)
