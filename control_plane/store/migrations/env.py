"""Alembic environment: runs migrations on a synchronous connection."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from control_plane.store.schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None

engine = sa.create_engine(url)
if url.startswith("sqlite"):

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA journal_mode=WAL")


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
