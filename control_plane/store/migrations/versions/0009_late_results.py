"""Late results: when a node's result arrived after the server had ended its invocation
(TimedOut with "no report from node", or DeliveryTimedOut); the result is stored, the final
status is not changed.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.add_column(sa.Column("late_result_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("late_result_at")
