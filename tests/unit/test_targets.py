"""The target-spec checker and resolver (control_plane/services/targets.py) on a real,
migrated SQLite database: what each spec kind matches, and that a spec over 10,000 nodes
costs one query, not one per node."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from control_plane.config import load_config
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services.targets import MAX_NAME_GLOB, MAX_SPECS, check_specs, resolve
from control_plane.store import nodes as store
from control_plane.store.db import Database
from control_plane.store.schema import node_groups
from tests.unit.conftest import ServerDir

T = TypeVar("T")
RunDb = Callable[[Callable[[Database], Awaitable[T]]], T]


@pytest.fixture
def run_db(server_dir: ServerDir) -> Iterator[RunDb[Any]]:
    """``run_db(scenario)`` runs ``await scenario(db)`` on the data dir's database."""

    def run(scenario: Callable[[Database], Awaitable[T]]) -> T:
        async def main() -> T:
            db = Database(load_config(server_dir.path).async_database_url)
            try:
                return await scenario(db)
            finally:
                await db.close()

        return asyncio.run(main())

    yield run


def node_id(n: int) -> str:
    return f"mi-{n:017x}"


def row(n: int, name: str, platform: str = "Linux", addresses: Any = ()) -> dict[str, Any]:
    return {
        "id": node_id(n),
        "name": name,
        "public_key": "k" * 43,
        "credential_expires_at": 0.0,
        "platform": platform,
        "ip_addresses": list(addresses),
        "registered_at": float(n),
    }


FLEET = [
    # registered in this order (registered_at = n): resolve lists them so
    row(1, "web-1", "Linux", ["10.0.3.11", "fe80::1%eth0"]),
    row(2, "web-2", "linux", ["10.0.3.12"]),  # the value an agent reported, any case
    row(3, "WEB-3", "MacOS", ["192.168.1.3"]),
    row(4, "db-1", "Windows", ["10.0.4.21", "fd00::21"]),
    row(5, "web-[x]", "Linux", ["not an address", 7]),
    row(6, "web-gone", "Linux", ["10.0.3.13"]),  # deregistered below
]


async def with_fleet(db: Database) -> None:
    async with db.transaction() as conn:
        for values in FLEET:
            await store.insert(conn, values, {"team": "db" if "db" in values["name"] else "web"})
        await store.update(conn, node_id(6), deregistered_at=10.0)
        await conn.execute(
            node_groups.insert().values(
                name="webs", targets=["name:web-?"], description="", created_at=0.0
            )
        )


NAMES = {values["id"]: values["name"] for values in FLEET}


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["name:web-*"], ["web-1", "web-2", "web-[x]"]),
        (["name:web-?"], ["web-1", "web-2"]),
        (["name:web-[12]"], ["web-1", "web-2"]),
        (["name:web-[!1]"], ["web-2"]),
        (["name:db-1"], ["db-1"]),
        # Case matters, as in Salt's glob on minion ids and Ansible's host patterns.
        (["name:DB-1"], []),
        (["name:WEB-*"], ["WEB-3"]),
        (["name:*"], ["web-1", "web-2", "WEB-3", "db-1", "web-[x]"]),
        (["name:web-gone"], []),  # deregistered nodes are never targets
        (["platform:Linux"], ["web-1", "web-2", "web-[x]"]),
        (["platform:macos"], ["WEB-3"]),
        (["platform:WINDOWS"], ["db-1"]),
        (["ip:10.0.3.0/24"], ["web-1", "web-2"]),
        (["ip:10.0.3.12"], ["web-2"]),
        (["ip:10.0.3.1/24"], ["web-1", "web-2"]),  # host bits set: the network it is in
        (["ip:0.0.0.0/0"], ["web-1", "web-2", "WEB-3", "db-1"]),
        (["ip:fd00::/64"], ["db-1"]),
        (["ip:fe80::/10"], ["web-1"]),  # a zone (%eth0) does not count
        (["ip:::/0"], ["web-1", "db-1"]),  # IPv6 networks hold no IPv4 address
        (["name:db-*", "ip:192.168.0.0/16"], ["WEB-3", "db-1"]),  # a union
        (["group:webs", "platform:Windows"], ["web-1", "web-2", "db-1"]),
        (["tag:team=db", "name:web-1"], ["web-1", "db-1"]),
        ([node_id(3), "name:web-2"], ["web-2", "WEB-3"]),
    ],
)
def test_resolve_matches_each_spec_kind(
    run_db: RunDb[list[str]], specs: list[str], expected: list[str]
) -> None:
    async def scenario(db: Database) -> list[str]:
        await with_fleet(db)
        async with db.read() as conn:
            return await resolve(conn, check_specs(specs))

    assert [NAMES[i] for i in run_db(scenario)] == expected


def test_an_unknown_group_is_not_found(run_db: RunDb[None]) -> None:
    async def scenario(db: Database) -> None:
        await with_fleet(db)
        async with db.read() as conn:
            with pytest.raises(NotFound, match="group nope"):
                await resolve(conn, ["group:nope"])

    run_db(scenario)


def test_a_spec_over_ten_thousand_nodes_is_one_query(run_db: RunDb[None]) -> None:
    count = 10_000

    async def scenario(db: Database) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                sa.insert(store.nodes),
                [
                    row(
                        n,
                        f"web-{n}" if n % 2 else f"db-{n}",
                        addresses=[f"10.{n // 256}.{n % 256}.1"],
                    )
                    for n in range(1, count + 1)
                ],
            )
        statements: list[str] = []

        def seen(*args: Any) -> None:
            statements.append(args[2])

        sa.event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        async with db.read() as conn:
            for spec, matched in (
                ("name:web-*", count // 2),
                ("ip:10.1.0.0/16", 256),
                ("platform:linux", count),
                ("name:db-10", 1),
            ):
                statements.clear()
                found = await resolve(conn, [spec])
                assert len(found) == matched, spec
                assert len(statements) == 1, (spec, statements)
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)

    run_db(scenario)


def test_check_specs_keeps_good_specs() -> None:
    specs = [
        "name:web-*", "name:db-1", "name:web-[1-3]", "name:" + "x" * MAX_NAME_GLOB,
        "platform:Linux", "platform:macos", "platform:WINDOWS",
        "ip:10.0.3.0/24", "ip:10.0.3.7", "ip:fd00::/64", "ip:fe80::1",
        "tag:team=web,db", "tag-key:team", "group:webs", "all", node_id(1),
    ]  # fmt: skip
    assert check_specs(specs) == specs


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("name:", "expected name:GLOB of 1 to 256 characters"),
        ("name:" + "x" * (MAX_NAME_GLOB + 1), "expected name:GLOB of 1 to 256 characters"),
        ("platform:", "the platform is one of Linux, MacOS, Windows"),
        ("platform:Solaris", "the platform is one of Linux, MacOS, Windows"),
        ("ip:10.0.3.0/33", "expected ip:ADDRESS or ip:NETWORK/PREFIX"),
        ("ip:banana", "expected ip:ADDRESS or ip:NETWORK/PREFIX"),
        ("ip:", "expected ip:ADDRESS or ip:NETWORK/PREFIX"),
        ("ip:300.1.1.1", "expected ip:ADDRESS or ip:NETWORK/PREFIX"),
        ("ip:fd00::/129", "expected ip:ADDRESS or ip:NETWORK/PREFIX"),
        ("host:web-1", "unknown target"),
        ("name", "unknown target"),
    ],
)
def test_check_specs_names_the_bad_spec(spec: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_specs(["all", spec])
    message = str(raised.value)
    assert says in message and "\n" not in message
    assert repr(spec if len(spec) <= 80 else spec[:80] + "...") in message


def test_check_specs_limits() -> None:
    with pytest.raises(InvalidRequest, match="at least one target"):
        check_specs([])
    with pytest.raises(InvalidRequest, match=f"at most {MAX_SPECS}"):
        check_specs(["all"] * (MAX_SPECS + 1))
    with pytest.raises(InvalidRequest, match="'group:webs': a group cannot contain a group"):
        check_specs(["group:webs"], allow_groups=False)
