"""Patch Manager: baselines, per-OS defaults, patch groups, baseline snapshots, and each
command's patch snapshot (AWS-RunPatchBaseline).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patch_baselines",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("operating_system", sa.String(32), nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
    )
    op.create_table(
        "patch_defaults",
        sa.Column("operating_system", sa.String(32), primary_key=True),
        sa.Column("baseline_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "patch_groups",
        sa.Column("patch_group", sa.String(256), primary_key=True),
        sa.Column("operating_system", sa.String(32), primary_key=True),
        sa.Column("baseline_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_patch_groups_baseline_id", "patch_groups", ["baseline_id"])
    op.create_table(
        "patch_snapshots",
        sa.Column("snapshot_id", sa.String(40), primary_key=True),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_patch_snapshots_created_at", "patch_snapshots", ["created_at"])
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("patch", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("patch")
    op.drop_index("ix_patch_snapshots_created_at", "patch_snapshots")
    op.drop_table("patch_snapshots")
    op.drop_index("ix_patch_groups_baseline_id", "patch_groups")
    op.drop_table("patch_groups")
    op.drop_table("patch_defaults")
    op.drop_table("patch_baselines")
