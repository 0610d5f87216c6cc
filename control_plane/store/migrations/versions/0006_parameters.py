"""Parameter Store: parameters, their versions (values; SecureString as envelope blobs),
the parameter policies' schedule, and the references a command pins.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("parameter_refs", sa.JSON, nullable=True))
    op.create_table(
        "parameters",
        sa.Column("name", sa.String(1011), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("data_type", sa.String(32), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False, server_default=""),
        sa.Column("allowed_pattern", sa.String(1024), nullable=True),
        sa.Column("policies", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_modified_at", sa.Float, nullable=False),
        sa.Column("last_modified_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "parameter_versions",
        sa.Column("name", sa.String(1011), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("description", sa.String(1024), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "parameter_schedule",
        sa.Column("name", sa.String(1011), primary_key=True),
        sa.Column("event", sa.String(64), primary_key=True),
        sa.Column("fire_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=True),
        sa.Index("ix_parameter_schedule_due", "fired_at", "fire_at"),
    )


def downgrade() -> None:
    op.drop_table("parameter_schedule")
    op.drop_table("parameter_versions")
    op.drop_table("parameters")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("parameter_refs")
