"""Patch Manager's tables (services/patching/), on the shared metadata (store/metadata.py).

- ``patch_baselines``: the operators' baselines (the predefined ones live in code,
  agent/patching/defaults.py): AWS's GetPatchBaseline JSON in ``content``.
- ``patch_defaults``: the default baseline of an operating system, where an operator set one
  (absent: the predefined one).
- ``patch_groups``: a patch group's baseline per operating system.
- ``patch_snapshots``: the baselines a command runs against, frozen when it was sent
  (AWS-RunPatchBaseline's SnapshotId names one; commands given the same id share it).

Per-node patch states are inventory (types AWS:PatchSummary and Corral:Patch) and compliance
(type Patch): stored there, not here.
"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata

patch_baselines = sa.Table(
    "patch_baselines",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("operating_system", sa.String(32), nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("modified_at", sa.Float, nullable=False),
)

patch_defaults = sa.Table(
    "patch_defaults",
    metadata,
    sa.Column("operating_system", sa.String(32), primary_key=True),
    sa.Column("baseline_id", sa.String(128), nullable=False),
)

patch_groups = sa.Table(
    "patch_groups",
    metadata,
    sa.Column("patch_group", sa.String(256), primary_key=True),
    sa.Column("operating_system", sa.String(32), primary_key=True),
    sa.Column("baseline_id", sa.String(128), nullable=False, index=True),
)

patch_snapshots = sa.Table(
    "patch_snapshots",
    metadata,
    sa.Column("snapshot_id", sa.String(40), primary_key=True),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)
