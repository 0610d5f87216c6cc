"""The migrations build exactly the tables ``store/schema.py`` declares (Alembic's autogenerate
finds nothing to add): a column added to one and not the other fails here."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from control_plane.store.schema import metadata
from tests.unit.conftest import ServerDir


def test_migrated_database_matches_the_schema(server_dir: ServerDir) -> None:
    engine = sa.create_engine(f"sqlite:///{server_dir.path / 'corral.db'}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []
