"""The database handle: an async SQLAlchemy engine, SQLite (WAL) by default."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


async def _open_sqlite(path: str) -> Any:
    import aiosqlite

    conn = aiosqlite.connect(path)
    thread = getattr(conn, "_thread", None)  # as SQLAlchemy does: never blocks the exit
    if thread is not None:
        thread.daemon = True
    await conn
    try:
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn


class _Connections:
    """The SQLite connections of one Database: those open, those being opened, and whether
    the database is closing (then no new one opens)."""

    def __init__(self) -> None:
        self.opened: weakref.WeakSet[Any] = weakref.WeakSet()
        self.opening: set[asyncio.Future[Any]] = set()
        self.closing = False


def _sqlite_creator(path: str, conns: _Connections) -> Any:
    """Open SQLite connections out of reach of cancellation: a request cancelled while the pool
    opens a connection (a long-poll whose client went away) would otherwise drop a half-made
    aiosqlite connection unclosed (aiosqlite#259, sqlalchemy#8145).  The opening finishes in a
    task of its own; if nobody is left to take the connection, it is closed.  Once the
    database is closing, no connection opens: one opened by a task that outlived the shutdown
    (a request still finishing) would be left for the garbage collector."""

    async def creator() -> Any:
        if conns.closing:
            raise sqlite3.OperationalError("the database is closed (the server is stopping)")
        opening = asyncio.ensure_future(_open_sqlite(path))
        conns.opening.add(opening)
        opening.add_done_callback(lambda done: _remember(done, conns))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_orphan)
            raise

    return creator


def _remember(task: asyncio.Future[Any], conns: _Connections) -> None:
    conns.opening.discard(task)
    if not task.cancelled() and task.exception() is None:
        conns.opened.add(task.result())


def _close_orphan(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is None:
        _orphans.add(asyncio.ensure_future(task.result().close()))
        for done in [t for t in _orphans if t.done()]:
            _orphans.discard(done)


_orphans: set[asyncio.Future[Any]] = set()


BeforeCommit = Callable[[AsyncConnection], Awaitable[None]]


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        # Runs inside every write transaction just before it commits (the audit trail).
        self.before_commit: BeforeCommit | None = None
        self.is_sqlite = url.startswith("sqlite")
        # Every SQLite connection this handle opened, so that close() leaves none open.
        self._conns = _Connections()
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # One writer at a time is SQLite's rule; a small pool avoids lock contention.
            kwargs["pool_size"] = 4
            kwargs["async_creator"] = _sqlite_creator(sa.make_url(url).database or "", self._conns)
        self._write_lock = asyncio.Lock()
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                yield conn
                if self.before_commit is not None:
                    await self.before_commit(conn)
            return
        # SQLite has one writer at a time; a deferred transaction that reads and then writes
        # fails at once (SQLITE_BUSY) if another writer got in between.  Writers in this
        # process take turns instead; readers (WAL) never wait.
        async with self._write_lock, self.engine.begin() as conn:
            yield conn
            if self.before_commit is not None:
                await self.before_commit(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        self._conns.closing = True
        await self.engine.dispose()
        # dispose() closes the pool's idle connections only.  One still checked out by a task
        # that is being torn down, one being opened, or one whose opening outlived its caller,
        # would otherwise be left for the garbage collector (an unclosed aiosqlite connection
        # and its thread).
        pending = [task for task in (*_orphans, *self._conns.opening) if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for conn in list(self._conns.opened):
            if getattr(conn, "_connection", None) is not None:
                with contextlib.suppress(sqlite3.Error, TimeoutError, ValueError):
                    await asyncio.wait_for(conn.close(), timeout=5)
