"""The audit trail on a real (migrated) SQLite database: recording in the caller's
transaction, tampering directly in SQLite, checkpoints, export, pruning, listing."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from control_plane.config import load_config
from control_plane.errors import Conflict, InvalidRequest
from control_plane.security.audit_chain import (
    GENESIS_HASH,
    KEY_FILE,
    PUBLIC_KEY_FILE,
    AuditKey,
    entry_hash,
    load_public_key,
)
from control_plane.security.audit_verify import verify_export
from control_plane.services.audit import AuditEvent, AuditService
from control_plane.store.db import Database
from control_plane.store.schema import webhooks
from tests.unit.conftest import FakeClock, ServerDir

T = TypeVar("T")
RunAudit = Callable[[Callable[[AuditService], Awaitable[T]]], T]

COLUMNS = (
    "id, time, identity_type, identity_id, identity_name, source_ip, action, resource, "
    "request, outcome, error, request_id, prev_hash, hash"
)


@pytest.fixture
def run_audit(server_dir: ServerDir, clock: FakeClock) -> Iterator[RunAudit[Any]]:
    """``run_audit(scenario)`` runs ``await scenario(audit)`` on the data dir's database."""

    def run(scenario: Callable[[AuditService], Awaitable[T]]) -> T:
        async def main() -> T:
            db = Database(load_config(server_dir.path).async_database_url)
            try:
                return await scenario(AuditService(db, clock, server_dir.path))
            finally:
                await db.close()

        return asyncio.run(main())

    yield run


@pytest.fixture
def sql(server_dir: ServerDir) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the database: the tamperer's tool."""
    conn = sqlite3.connect(server_dir.path / "corral.db", isolation_level=None)
    yield conn
    conn.close()


def event(n: int = 0, **fields: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "action": "commands:Send",
        "resource": f"node/mi-{n:017x}",
        "outcome": "allowed",
        "identity_type": "token",
        "identity_id": "tok-1",
        "identity_name": "alice",
        "source_ip": "10.0.0.7",
        "request": {"document": "AWS-RunShellScript", "n": n},
        "request_id": f"req-{n}",
    }
    return AuditEvent(**{**base, **fields})


async def record_many(audit: AuditService, count: int, clock: FakeClock | None = None) -> None:
    for n in range(count):
        await audit.record_standalone(event(n))
        if clock is not None:
            clock.advance(60)


def fill(run_audit: RunAudit[Any], count: int) -> None:
    run_audit(lambda audit: record_many(audit, count))


def entries(sql: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return sql.execute(f"SELECT seq, {COLUMNS} FROM audit_entries ORDER BY seq").fetchall()


# Writing ------------------------------------------------------------------------------------


def test_entries_form_a_chain_that_verifies(run_audit: RunAudit[Any], sql: Any) -> None:
    fill(run_audit, 20)
    rows = sql.execute("SELECT seq, prev_hash, hash FROM audit_entries ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(1, 21))
    assert rows[0][1] == GENESIS_HASH
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 20))
    assert sql.execute("SELECT seq, hash FROM audit_head").fetchall() == [(20, rows[-1][2])]
    result = run_audit(lambda audit: audit.verify())
    assert (result.ok, result.checked, result.first_bad_seq) == (True, 20, None)


def test_an_entry_holds_what_the_caller_gave_with_secrets_redacted(
    run_audit: RunAudit[Any],
) -> None:
    request = {"name": "/app/db", "type": "SecureString", "value": "hunter2", "overwrite": True}

    async def scenario(audit: AuditService) -> dict[str, Any]:
        return await audit.record_standalone(
            event(action="parameters:Put", resource="parameter/app/db", request=request)
        )

    entry = run_audit(scenario)
    assert entry["request"] == {**request, "value": "****"}
    assert entry["action"] == "parameters:Put" and entry["identity_name"] == "alice"
    assert entry["hash"] == entry_hash(entry)


def test_a_rolled_back_change_leaves_no_entry(
    run_audit: RunAudit[Any], sql: sqlite3.Connection
) -> None:
    fill(run_audit, 3)
    head_before = sql.execute("SELECT seq, hash FROM audit_head").fetchall()

    async def scenario(audit: AuditService) -> dict[str, Any]:
        db = audit._db
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(
                    webhooks.insert().values(
                        id="wh-1", url="https://x.test", events="*", secret=None, created_at=1.0
                    )
                )
                await audit.record(conn, event(99, action="webhooks:Create"))
                raise RuntimeError("the change fails after its entry was written")
        return await audit.record_standalone(event(100))

    after = run_audit(scenario)
    assert sql.execute("SELECT count(*) FROM webhooks").fetchone() == (0,)
    actions = [r[0] for r in sql.execute("SELECT action FROM audit_entries")]
    assert "webhooks:Create" not in actions
    assert after["seq"] == 4 and after["prev_hash"] == head_before[0][1]
    assert run_audit(lambda audit: audit.verify()).ok


def test_concurrent_transactions_keep_one_valid_chain(run_audit: RunAudit[Any]) -> None:
    async def scenario(audit: AuditService) -> Any:
        async def one(n: int) -> int:
            async with audit._db.transaction() as conn:
                # Yield inside the transaction so the other 49 queue behind it: the
                # interleaving is what this test is about, not a wait for anything.
                await asyncio.sleep(0)
                entry = await audit.record(conn, event(n))
                return int(entry["seq"])

        seqs = await asyncio.gather(*(one(n) for n in range(50)))
        assert sorted(seqs) == list(range(1, 51))
        return await audit.verify()

    result = run_audit(scenario)
    assert result.ok and result.checked == 50


def test_two_writers_on_one_database_keep_one_chain(
    run_audit: RunAudit[Any], clock: FakeClock, server_dir: ServerDir
) -> None:
    """Each service remembers the head it wrote last; the other's writes make that stale."""

    async def scenario(first: AuditService) -> Any:
        second = AuditService(first._db, clock, server_dir.path)
        for n in range(10):
            await (first if n % 3 else second).record_standalone(event(n))
        return await first.verify()

    result = run_audit(scenario)
    assert result.ok and result.checked == 10


def test_a_bad_event_is_refused(run_audit: RunAudit[Any]) -> None:
    async def scenario(audit: AuditService) -> None:
        with pytest.raises(ValueError):
            await audit.record_standalone(event(outcome="maybe"))  # type: ignore[arg-type]

    run_audit(scenario)


def test_long_and_odd_text_is_stored_cut_and_still_verifies(run_audit: RunAudit[Any]) -> None:
    async def scenario(audit: AuditService) -> Any:
        entry = await audit.record_standalone(
            event(resource="node/" + "x" * 5000, identity_name="bad \ud800 name", error="e" * 900)
        )
        assert len(entry["resource"]) == 2048 and "\ud800" not in entry["identity_name"]
        return await audit.verify()

    assert run_audit(scenario).ok


# Tampering in SQLite ------------------------------------------------------------------------


def _swap(sql: sqlite3.Connection, a: int, b: int) -> None:
    row_a = sql.execute(f"SELECT {COLUMNS} FROM audit_entries WHERE seq = ?", (a,)).fetchone()
    row_b = sql.execute(f"SELECT {COLUMNS} FROM audit_entries WHERE seq = ?", (b,)).fetchone()
    assignments = ", ".join(f"{c.strip()} = ?" for c in COLUMNS.split(","))
    sql.execute(f"UPDATE audit_entries SET {assignments} WHERE seq = ?", (*row_b, a))
    sql.execute(f"UPDATE audit_entries SET {assignments} WHERE seq = ?", (*row_a, b))


def _rehash(sql: sqlite3.Connection, seq: int) -> None:
    """Edit entry ``seq`` and give it a correct hash for its new content."""
    names = ["seq", *[c.strip() for c in COLUMNS.split(",")]]
    row = dict(zip(names, entries(sql)[seq - 1], strict=True))
    row["action"] = "commands:Nothing"
    row["request"] = None if row["request"] in (None, "null") else json.loads(row["request"])
    sql.execute(
        "UPDATE audit_entries SET action = ?, hash = ? WHERE seq = ?",
        (row["action"], entry_hash(row), seq),
    )


TAMPERING: dict[str, tuple[Callable[[sqlite3.Connection], Any], int, str]] = {
    "field edited": (
        lambda s: s.execute("UPDATE audit_entries SET source_ip = '6.6.6.6' WHERE seq = 17"),
        17,
        "entry 17: hash does not match its content (edited?)",
    ),
    "request edited": (
        lambda s: s.execute(
            "UPDATE audit_entries SET request = json_set(request, '$.n', 0) WHERE seq = 17"
        ),
        17,
        "entry 17: hash does not match its content (edited?)",
    ),
    "row deleted": (
        lambda s: s.execute("DELETE FROM audit_entries WHERE seq = 17"),
        18,
        "entry 17 missing (deleted?)",
    ),
    "rows deleted": (
        lambda s: s.execute("DELETE FROM audit_entries WHERE seq BETWEEN 17 AND 19"),
        20,
        "entries 17..19 missing (deleted?)",
    ),
    "first row deleted": (
        lambda s: s.execute("DELETE FROM audit_entries WHERE seq = 1"),
        2,
        "entry 1 missing (deleted?)",
    ),
    "rows swapped": (
        lambda s: _swap(s, 17, 18),
        17,
        "entry 17: prev_hash does not link to entry 16 (reordered or deleted?)",
    ),
    "seq renumbered over a deleted row": (
        lambda s: (
            s.execute("DELETE FROM audit_entries WHERE seq = 17"),
            s.execute("UPDATE audit_entries SET seq = seq - 1 WHERE seq > 17"),
            s.execute("UPDATE audit_head SET seq = seq - 1"),
        ),
        17,
        "entry 17: prev_hash does not link to entry 16 (reordered or deleted?)",
    ),
    "edited and rehashed": (
        lambda s: _rehash(s, 17),
        18,
        "entry 18: prev_hash does not link to entry 17 (reordered or deleted?)",
    ),
    "last rows deleted": (
        lambda s: s.execute("DELETE FROM audit_entries WHERE seq > 28"),
        29,
        "entries 29..30 missing (deleted?)",
    ),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_in_sqlite_names_the_first_bad_entry(
    how: str, run_audit: RunAudit[Any], sql: sqlite3.Connection
) -> None:
    fill(run_audit, 30)
    tamper, first_bad, reason = TAMPERING[how]
    tamper(sql)
    result = run_audit(lambda audit: audit.verify())
    assert (result.ok, result.first_bad_seq, result.reason) == (False, first_bad, reason)


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(
    run_audit: RunAudit[Any], sql: sqlite3.Connection
) -> None:
    """Edit entry 12 and recompute every hash after it (and the head): only the signature
    over the old head shows it."""
    fill(run_audit, 10)
    run_audit(lambda audit: audit.sign_checkpoint())
    fill(run_audit, 10)
    run_audit(lambda audit: audit.sign_checkpoint())
    names = ["seq", *[c.strip() for c in COLUMNS.split(",")]]
    prev = None
    for values in entries(sql):
        row = dict(zip(names, values, strict=True))
        row["request"] = json.loads(row["request"])
        if row["seq"] == 12:
            row["identity_name"] = "mallory"
        if prev is not None:
            row["prev_hash"] = prev
        row["hash"] = entry_hash(row)
        if row["seq"] >= 12:
            sql.execute(
                "UPDATE audit_entries SET identity_name = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["identity_name"], row["prev_hash"], row["hash"], row["seq"]),
            )
        prev = row["hash"]
    sql.execute("UPDATE audit_head SET hash = ?", (prev,))
    result = run_audit(lambda audit: audit.verify())
    assert not result.ok and result.first_bad_seq == 11
    assert result.reason.startswith("entries 11..20 do not match the periodic checkpoint at entry")


# Checkpoints --------------------------------------------------------------------------------


def test_checkpoints_are_signed_with_a_key_made_on_first_use(
    run_audit: RunAudit[Any], server_dir: ServerDir
) -> None:
    assert not (server_dir.path / KEY_FILE).exists()
    assert run_audit(lambda audit: audit.sign_checkpoint()) is None  # nothing to sign yet
    fill(run_audit, 5)
    first = run_audit(lambda audit: audit.sign_checkpoint())
    assert first is not None and first["seq_upto"] == 5 and first["kind"] == "periodic"
    assert first["prev_checkpoint_hash"] == GENESIS_HASH
    assert run_audit(lambda audit: audit.sign_checkpoint()) is None  # nothing new
    fill(run_audit, 2)
    second = run_audit(lambda audit: audit.sign_checkpoint())
    assert second is not None and second["prev_checkpoint_hash"] == first["checkpoint_hash"]
    key_file = server_dir.path / KEY_FILE
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    public = load_public_key((server_dir.path / PUBLIC_KEY_FILE).read_bytes())
    assert public == AuditKey.load_or_create(server_dir.path).public_key
    result = run_audit(lambda audit: audit.verify())
    assert result.ok and (result.checked, result.checkpoints) == (7, 2)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("signature", "A" * 86 + "==", "signature does not verify (forged or edited?)"),
        ("hash_upto", "f" * 64, "signature does not verify (forged or edited?)"),
        ("seq_upto", 4, "signature does not verify (forged or edited?)"),
        ("kind", "retention", "signature does not verify (forged or edited?)"),
        ("checkpoint_hash", "e" * 64, "checkpoint_hash does not match its content (edited?)"),
    ],
)
def test_a_tampered_checkpoint_is_detected(
    column: str, value: Any, problem: str, run_audit: RunAudit[Any], sql: sqlite3.Connection
) -> None:
    fill(run_audit, 5)
    run_audit(lambda audit: audit.sign_checkpoint())
    fill(run_audit, 1)
    sql.execute(f"UPDATE audit_checkpoints SET {column} = ?", (value,))
    result = run_audit(lambda audit: audit.verify())
    assert not result.ok and result.reason.endswith(problem), result.reason


def test_a_deleted_checkpoint_between_others_is_detected(
    run_audit: RunAudit[Any], sql: sqlite3.Connection
) -> None:
    for _ in range(3):
        fill(run_audit, 2)
        run_audit(lambda audit: audit.sign_checkpoint())
    sql.execute("DELETE FROM audit_checkpoints WHERE seq_upto = 4")
    result = run_audit(lambda audit: audit.verify())
    assert not result.ok and result.first_bad_seq == 6
    assert "does not link to the periodic checkpoint before it" in result.reason


def test_checkpoints_by_another_key_are_not_trusted(
    run_audit: RunAudit[Any], server_dir: ServerDir
) -> None:
    fill(run_audit, 3)
    run_audit(lambda audit: audit.sign_checkpoint())
    (server_dir.path / KEY_FILE).unlink()  # a new key is made: the old signature is foreign
    result = run_audit(lambda audit: audit.verify())
    assert not result.ok and result.first_bad_seq == 3
    assert "not the trusted key" in result.reason


# Export and offline verification ------------------------------------------------------------


def export_lines(run_audit: RunAudit[Any], **kwargs: Any) -> list[str]:
    async def scenario(audit: AuditService) -> list[str]:
        return [line async for line in audit.export(**kwargs)]

    lines: list[str] = run_audit(scenario)
    return lines


def public_key(server_dir: ServerDir) -> bytes:
    return load_public_key((server_dir.path / PUBLIC_KEY_FILE).read_bytes())


def build_history(run_audit: RunAudit[Any], clock: FakeClock) -> None:
    """30 entries a minute apart, a checkpoint after every 10th."""
    for _ in range(3):
        run_audit(lambda audit: record_many(audit, 10, clock))
        run_audit(lambda audit: audit.sign_checkpoint())


def test_an_export_verifies_offline(
    run_audit: RunAudit[Any], clock: FakeClock, server_dir: ServerDir, tmp_path: Path
) -> None:
    build_history(run_audit, clock)
    run_audit(lambda audit: record_many(audit, 2))
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(export_lines(run_audit)), encoding="utf-8")
    with path.open(encoding="utf-8") as fh:
        result = verify_export(fh, public_key(server_dir))
    assert result.ok and (result.checked, result.checkpoints) == (32, 3), result.reason
    untrusted = verify_export(path.read_text().splitlines(), None)
    assert untrusted.ok and "not a trusted key" in untrusted.reason


def test_an_export_from_since_starts_at_the_checkpoint_before_it(
    run_audit: RunAudit[Any], clock: FakeClock, server_dir: ServerDir
) -> None:
    start = clock.now
    build_history(run_audit, clock)
    lines = export_lines(run_audit, since=start + 15 * 60, until=start + 24 * 60)
    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["type"] == "header" and parsed[-1]["type"] == "end"
    assert parsed[1]["type"] == "checkpoint" and parsed[1]["seq_upto"] == 10
    seqs = [p["seq"] for p in parsed if p["type"] == "entry"]
    assert seqs == list(range(11, 26))  # from the checkpoint at 10 to the last before `until`
    result = verify_export(lines, public_key(server_dir))
    assert result.ok and result.checked == 15 and result.checkpoints == 2, result.reason
    ranged = run_audit(lambda audit: audit.verify(start + 15 * 60, start + 24 * 60))
    assert ranged.ok and ranged.checked == 15
    early = export_lines(run_audit, since=start + 60, until=start + 5 * 60)
    assert verify_export(early, public_key(server_dir)).checked == 6  # from entry 1: no anchor


def _edit(lines: list[str], index: int, **changes: Any) -> list[str]:
    obj = json.loads(lines[index])
    obj.update(changes)
    return [*lines[:index], json.dumps(obj) + "\n", *lines[index + 1 :]]


def _entry_index(lines: list[str], seq: int) -> int:
    return next(i for i, line in enumerate(lines) if f'"type":"entry","seq":{seq},' in line)


def test_an_edited_export_is_detected(
    run_audit: RunAudit[Any], clock: FakeClock, server_dir: ServerDir
) -> None:
    build_history(run_audit, clock)
    lines = export_lines(run_audit)
    key = public_key(server_dir)
    i = _entry_index(lines, 14)
    cases = {
        "edited": (_edit(lines, i, identity_name="bob"), 14, "hash does not match its content"),
        "deleted": ([*lines[:i], *lines[i + 1 :]], 15, "entry 14 missing (deleted?)"),
        "swapped": (
            [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]],
            15,
            "entry 14 missing (deleted?)",
        ),
        "field added": (_edit(lines, i, note="hi"), 14, "unexpected or missing fields: note"),
        "checkpoint edited": (
            _edit(lines, _entry_index(lines, 20) + 1, time=0.0),
            20,
            "signature does not verify",
        ),
        "truncated": (lines[:-1], None, "no end line (export truncated?)"),
        "tail cut": (
            [*lines[: _entry_index(lines, 29)], lines[-1]],
            None,
            "the end line counts 30 entries and 3 checkpoints, the file holds 28 and 2",
        ),
        "not json": ([*lines[:3], "{oops\n", *lines[3:]], None, "line 4: not JSON"),
        "no header": (lines[1:], None, "line 1: not a Corral audit export (no header)"),
    }
    assert verify_export(lines, key).ok
    for name, (edited, first_bad, reason) in cases.items():
        result = verify_export(edited, key)
        assert not result.ok, name
        assert result.first_bad_seq == first_bad, (name, result)
        assert reason in result.reason, (name, result.reason)


# Retention ----------------------------------------------------------------------------------


def test_pruning_keeps_the_chain_verifiable(
    run_audit: RunAudit[Any], clock: FakeClock, server_dir: ServerDir, sql: sqlite3.Connection
) -> None:
    build_history(run_audit, clock)  # entries 1..30, a minute apart, ending 30 minutes ago
    deleted = run_audit(lambda audit: audit.prune(older_than_seconds=13 * 60 + 30))
    assert deleted == 17
    assert sql.execute("SELECT min(seq) FROM audit_entries").fetchone() == (18,)
    anchors = sql.execute("SELECT kind, seq_upto FROM audit_checkpoints ORDER BY id").fetchall()
    assert anchors == [("periodic", 20), ("periodic", 30), ("retention", 17)]
    result = run_audit(lambda audit: audit.verify())
    assert result.ok and result.checked == 13 and result.checkpoints == 3, result.reason
    run_audit(lambda audit: record_many(audit, 3))
    assert run_audit(lambda audit: audit.verify()).checked == 16
    full = export_lines(run_audit)
    assert '"kind":"retention"' in full[1]
    assert verify_export(full, public_key(server_dir)).ok
    # The start of the remaining chain is now vouched for by the retention checkpoint.
    sql.execute("DELETE FROM audit_entries WHERE seq = 18")
    result = run_audit(lambda audit: audit.verify())
    assert (result.ok, result.first_bad_seq, result.reason) == (
        False,
        19,
        "entry 18 missing (deleted?)",
    )


def test_pruning_everything_then_recording_again(
    run_audit: RunAudit[Any], clock: FakeClock
) -> None:
    run_audit(lambda audit: record_many(audit, 5, clock))
    assert run_audit(lambda audit: audit.prune(1)) == 5
    assert run_audit(lambda audit: audit.verify()).ok
    assert run_audit(lambda audit: audit.prune(1)) == 0
    fill(run_audit, 2)
    result = run_audit(lambda audit: audit.verify())
    assert result.ok and result.checked == 2 and "(6..7)" in result.reason


def test_pruning_refuses_to_erase_evidence_of_tampering(
    run_audit: RunAudit[Any], clock: FakeClock, sql: sqlite3.Connection
) -> None:
    run_audit(lambda audit: record_many(audit, 10, clock))
    sql.execute("UPDATE audit_entries SET outcome = 'denied' WHERE seq = 3")

    async def refused(audit: AuditService) -> None:
        with pytest.raises(Conflict, match="entry 3: hash does not match"):
            await audit.prune(5 * 60)
        with pytest.raises(InvalidRequest):
            await audit.prune(0)

    run_audit(refused)
    assert sql.execute("SELECT count(*) FROM audit_entries").fetchone() == (10,)
    assert run_audit(lambda audit: audit.prune(5 * 60, force=True)) == 5
    assert run_audit(lambda audit: audit.verify()).ok


# Listing ------------------------------------------------------------------------------------


def test_listing_filters_and_pages(run_audit: RunAudit[Any], clock: FakeClock) -> None:
    start = clock.now

    async def scenario(audit: AuditService) -> None:
        await record_many(audit, 5, clock)
        await audit.record_standalone(
            event(action="documents:Create", resource="document/web_1", outcome="denied")
        )
        await audit.record_standalone(event(action="commands:Cancel", identity_name="bob"))
        page = await audit.list_entries(limit=3)
        assert [e["seq"] for e in page.entries] == [7, 6, 5] and page.next_cursor == "5"
        page = await audit.list_entries(limit=3, cursor=page.next_cursor)
        assert [e["seq"] for e in page.entries] == [4, 3, 2]
        page = await audit.list_entries(limit=3, cursor=page.next_cursor)
        assert [e["seq"] for e in page.entries] == [1] and page.next_cursor is None
        sends = await audit.list_entries(action="commands:S*")
        assert [e["seq"] for e in sends.entries] == [5, 4, 3, 2, 1]
        assert [e["seq"] for e in (await audit.list_entries(action="commands:*")).entries] == [
            7,
            5,
            4,
            3,
            2,
            1,
        ]
        assert [e["seq"] for e in (await audit.list_entries(outcome="denied")).entries] == [6]
        assert len((await audit.list_entries(resource="document/web?1")).entries) == 1
        # SQL's own wildcards are literal characters here.
        assert len((await audit.list_entries(resource="document/web_*")).entries) == 1
        assert len((await audit.list_entries(resource="document/we_*")).entries) == 0
        assert len((await audit.list_entries(resource="document/web%")).entries) == 0
        assert [e["seq"] for e in (await audit.list_entries(identity="bob")).entries] == [7]
        assert len((await audit.list_entries(identity="tok-1")).entries) == 7
        recent = await audit.list_entries(since=start + 150, until=start + 250)
        assert [e["seq"] for e in recent.entries] == [5, 4]
        bad_args: list[dict[str, Any]] = [
            {"limit": 0},
            {"limit": 1001},
            {"outcome": "maybe"},
            {"cursor": "x1"},
            {"cursor": "²"},
        ]
        for bad in bad_args:
            with pytest.raises(InvalidRequest):
                await audit.list_entries(**bad)

    run_audit(scenario)
