"""Closing the database leaves no SQLite connection open, even one a task still holds."""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from control_plane.store import db as store_db
from control_plane.store.db import Database


def test_close_closes_a_connection_still_checked_out(tmp_path: Path) -> None:
    raw: list[Any] = []

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        holding = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
                fairy = await conn.get_raw_connection()
                raw.append(fairy.driver_connection)
                holding.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await holding.wait()
        await db.close()  # the task still holds its connection
        assert raw[0]._connection is None  # closed under it, not left for the collector
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        raw.clear()
        gc.collect()


def test_close_after_ordinary_use_is_quiet(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'y.db'}")
        for _ in range(3):
            await db.ping()
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        await db.close()

    asyncio.run(main())
    gc.collect()


def test_no_connection_opens_once_closed_and_one_being_opened_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw: list[Any] = []

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'z.db'}")
        await db.ping()
        await db.engine.dispose()  # the pool is empty: the next use opens a connection
        started, go = asyncio.Event(), asyncio.Event()
        real_open = store_db._open_sqlite

        async def held_open(path: str) -> Any:  # an opening still under way when close starts
            started.set()
            await go.wait()
            return await real_open(path)

        monkeypatch.setattr(store_db, "_open_sqlite", held_open)

        async def late_reader() -> None:  # a request still finishing while the server stops
            async with db.engine.connect() as conn:
                fairy = await conn.get_raw_connection()
                raw.append(fairy.driver_connection)
                await conn.execute(sa.text("SELECT 1"))

        opening = asyncio.create_task(late_reader())
        await asyncio.wait_for(started.wait(), 30)
        closing = asyncio.create_task(db.close())
        go.set()
        await closing
        await asyncio.gather(opening, return_exceptions=True)
        assert all(conn._connection is None for conn in raw)
        try:
            await db.ping()
        except sa.exc.OperationalError as exc:
            assert "the database is closed" in str(exc)
        else:
            raise AssertionError("a closed database opened a connection")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        raw.clear()
        gc.collect()
