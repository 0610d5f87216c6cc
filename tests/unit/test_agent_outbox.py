"""The durable outbox: order, durability across reopening, idempotent put, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent.outbox import Outbox, OutboxCorrupt, read_depth
from agent.wire import Message


def msg(msg_id: str, **body: object) -> Message:
    return Message(id=msg_id, type="heartbeat", body=dict(body), created_at=1_700_000_000.5)


def test_peek_returns_messages_in_the_order_they_were_put(tmp_path: Path) -> None:
    async def scenario() -> None:
        box = Outbox(tmp_path / "outbox.db")
        try:
            # Ids deliberately out of lexical order: order is arrival order.
            for msg_id in ("zz-000003", "aa-000001", "mm-000002"):
                await box.put(msg(msg_id, n=msg_id))
            assert [m["id"] for m in await box.peek(10)] == ["zz-000003", "aa-000001", "mm-000002"]
            assert [m["id"] for m in await box.peek(2)] == ["zz-000003", "aa-000001"]
            first = (await box.peek(1))[0]
            assert first == msg("zz-000003", n="zz-000003")
            await box.remove(["aa-000001"])
            assert [m["id"] for m in await box.peek(10)] == ["zz-000003", "mm-000002"]
            assert box.depth() == 2
        finally:
            box.close()

    asyncio.run(scenario())


def test_messages_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def write() -> None:
        box = Outbox(path)
        try:
            await box.put(msg("msg-00001", hostname="a", ips=["10.0.0.1"]))
            await box.put(msg("msg-00002"))
            await box.put(msg("msg-00003"))
            await box.remove(["msg-00002"])
        finally:
            box.close()

    async def read() -> list[Message]:
        box = Outbox(path)
        try:
            return await box.peek(10)
        finally:
            box.close()

    asyncio.run(write())
    again = asyncio.run(read())
    assert again == [msg("msg-00001", hostname="a", ips=["10.0.0.1"]), msg("msg-00003")]


def test_a_duplicate_id_is_ignored_and_keeps_the_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        box = Outbox(tmp_path / "outbox.db")
        try:
            await box.put(msg("msg-00001", v=1))
            await box.put(msg("msg-00002", v=2))
            await box.put(msg("msg-00001", v=99))
            queued = await box.peek(10)
        finally:
            box.close()
        assert [(m["id"], m["body"]) for m in queued] == [
            ("msg-00001", {"v": 1}),
            ("msg-00002", {"v": 2}),
        ]

    asyncio.run(scenario())


def test_bury_moves_messages_to_the_dead_table_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def scenario() -> None:
        box = Outbox(path)
        try:
            for i in range(1, 4):
                await box.put(msg(f"msg-0000{i}", i=i))
            await box.bury(["msg-00002"], "HTTP 400: invalid_request")
            await box.bury([], "nothing")
            assert [m["id"] for m in await box.peek(10)] == ["msg-00001", "msg-00003"]
            assert (box.depth(), box.dead_count()) == (2, 1)
        finally:
            box.close()
        reopened = Outbox(path)
        try:
            assert (reopened.depth(), reopened.dead_count()) == (2, 1)
        finally:
            reopened.close()

    asyncio.run(scenario())
    # Kept for inspection, with what it said and why it was refused.
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT id, body, reason FROM dead").fetchall()
    finally:
        conn.close()
    assert rows == [("msg-00002", '{"i": 2}', "HTTP 400: invalid_request")]


def test_read_depth_of_a_missing_outbox_is_none_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    assert read_depth(path) is None
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_read_depth_counts_queued_messages(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def scenario() -> None:
        box = Outbox(path)
        try:
            for i in range(5):
                await box.put(msg(f"msg-0000{i}"))
            await box.bury(["msg-00000"], "refused")
            # Read while the daemon still holds the outbox open.
            assert read_depth(path) == 4
        finally:
            box.close()

    asyncio.run(scenario())
    assert read_depth(path) == 4


def test_read_depth_of_a_file_that_is_not_an_outbox_is_none(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    assert read_depth(path) is None


def test_a_corrupted_outbox_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxCorrupt, match=r"outbox .* is corrupt"):
        Outbox(path)
