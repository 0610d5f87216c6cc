"""The durable outbox: every report the agent owes the server, in SQLite in the state dir.

A message is removed only after the server acknowledged storing it, so a restart, a kill -9 or
a server outage loses nothing (the server is idempotent by message id, so a resend is harmless).
A message the server refuses outright (4xx) moves to the ``dead`` table instead of blocking the
queue forever; it is kept there for inspection, never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

from agent.errors import ConfigError
from agent.wire import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""


class OutboxCorrupt(ConfigError):
    """The outbox file is not a database or is damaged (the agent moves it aside)."""


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:  # cannot open it at all (permissions, a directory...)
            raise ConfigError(f"outbox {path} is unusable: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            (check,) = self._conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(str(check))
        except sqlite3.OperationalError as exc:  # locked, read-only, out of space: not its fault
            self._conn.close()
            raise ConfigError(f"outbox {path} is unusable: {exc}") from None
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            self._conn.close()
            raise OutboxCorrupt(f"outbox {path} is corrupt: {exc}") from None
        self._new = asyncio.Event()

    # Synchronous core (runs in a worker thread) -------------------------------------------
    def _put(self, message: Message) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO outbox (id, type, body, created_at) VALUES (?, ?, ?, ?)",
                (
                    message["id"],
                    message["type"],
                    json.dumps(message["body"]),
                    message["created_at"],
                ),
            )

    def _peek(self, limit: int) -> list[Message]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, type, body, created_at FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [Message(id=r[0], type=r[1], body=json.loads(r[2]), created_at=r[3]) for r in rows]

    def _remove(self, ids: list[str]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def _bury(self, ids: list[str], reason: str) -> None:
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for msg_id in ids:
                self._conn.execute(
                    "INSERT OR REPLACE INTO dead (id, type, body, created_at, reason, dead_at) "
                    "SELECT id, type, body, created_at, ?, ? FROM outbox WHERE id = ?",
                    (reason, now, msg_id),
                )
                self._conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            self._conn.execute("COMMIT")

    def _contains(self, msg_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM outbox WHERE id = ?", (msg_id,)).fetchone()
        return row is not None

    def depth(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def dead_count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM dead").fetchone()
        return int(row[0])

    # Async surface -----------------------------------------------------------------------
    async def put(self, message: Message) -> None:
        """Returns once the message is on disk."""
        await asyncio.to_thread(self._put, message)
        self._new.set()

    async def peek(self, limit: int) -> list[Message]:
        return await asyncio.to_thread(self._peek, limit)

    async def remove(self, ids: list[str]) -> None:
        if ids:
            await asyncio.to_thread(self._remove, ids)

    async def bury(self, ids: list[str], reason: str) -> None:
        if ids:
            await asyncio.to_thread(self._bury, ids, reason)

    async def contains(self, msg_id: str) -> bool:
        """Whether the message is still waiting to be delivered."""
        return await asyncio.to_thread(self._contains, msg_id)

    async def wait_for_new(self) -> None:
        await self._new.wait()
        self._new.clear()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_depth(path: Path) -> int | None:
    """Outbox depth for ``corral-agent status``, read-only, without creating the file."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
