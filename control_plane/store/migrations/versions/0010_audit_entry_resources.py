"""Audit entries found by the nodes they concern: ``corral audit list --resource node/mi-...``
finds the commands sent to that node.  ``audit_entry_resources`` indexes what an entry's
hashed ``request.nodes`` names (the nodes a command resolved to); entries already written are
indexed here, so the search reaches back before the upgrade.  The chain is not touched.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MAX_NODES = 1000  # as services.audit indexes them
_BATCH = 1000
_NODE_ID = re.compile(r"^mi-[0-9a-f]{17}$")


def _seq() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _nodes(request: Any) -> list[str]:
    """The rule of services.audit.concerned_resources, frozen as it was at this revision."""
    if isinstance(request, str):
        try:
            request = json.loads(request)
        except ValueError:
            return []
    nodes = request.get("nodes") if isinstance(request, dict) else None
    if not isinstance(nodes, list):
        return []
    ids = {n for n in nodes[:MAX_NODES] if isinstance(n, str) and _NODE_ID.match(n)}
    return [f"node/{n}" for n in sorted(ids)]


def upgrade() -> None:
    table = op.create_table(
        "audit_entry_resources",
        sa.Column("resource", sa.String(256), primary_key=True),
        sa.Column("seq", _seq(), primary_key=True, autoincrement=False),
    )
    op.create_index("ix_audit_entry_resources_seq", "audit_entry_resources", ["seq"])
    entries = sa.table(
        "audit_entries",
        sa.column("seq", _seq()),
        sa.column("action", sa.String),
        sa.column("request", sa.JSON),
    )
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(entries.c.seq, entries.c.request)
            .where(entries.c.seq > after, entries.c.action == "commands:Send")
            .order_by(entries.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        found = [
            {"resource": resource, "seq": row.seq}
            for row in rows
            for resource in _nodes(row.request)
        ]
        if found:
            conn.execute(table.insert(), found)
        after = rows[-1].seq


def downgrade() -> None:
    op.drop_index("ix_audit_entry_resources_seq", table_name="audit_entry_resources")
    op.drop_table("audit_entry_resources")
