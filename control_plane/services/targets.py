"""Target specs, resolved to node ids when a command is sent.

``mi-…`` node ids, ``tag:KEY=V1,V2`` (any of the values), ``tag-key:KEY``, ``group:NAME``
(a saved target query), ``all``, and the way Salt and Ansible users name hosts:
``name:web-*`` (a shell-style glob, ``*`` ``?`` ``[...]``, on the node's name; case
matters, as in Salt's glob on minion ids (``fnmatch`` on a POSIX master) and Ansible's host
patterns; ``name:db-1`` is one name), ``platform:Linux`` (Linux, MacOS or Windows, any case)
and ``ip:10.0.3.0/24`` (a network or one address, IPv4 or IPv6, matched against every address
the node reported).  Several specs are a union.  Deregistered nodes are never targets.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services.validation import check_tag_key
from control_plane.store.schema import node_groups, node_tags, nodes

MAX_SPECS = 50
MAX_NAME_GLOB = 256
PLATFORMS = ("Linux", "MacOS", "Windows")


def check_specs(specs: list[Any], allow_groups: bool = True) -> list[str]:
    if not specs:
        raise InvalidRequest("give at least one target")
    if len(specs) > MAX_SPECS:
        raise InvalidRequest(f"at most {MAX_SPECS} target specs")
    out: list[str] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise InvalidRequest("targets must be strings")
        kind, sep, rest = spec.partition(":")
        if spec == "all" or wire.NODE_ID_RE.match(spec):
            pass
        elif kind == "tag" and sep:
            key, eq, values = rest.partition("=")
            check_tag_key(key)
            if not eq or not all(values.split(",")):
                raise InvalidRequest(f"target {spec!r}: expected tag:KEY=VALUE[,VALUE...]")
        elif kind == "tag-key" and sep:
            check_tag_key(rest)
        elif kind == "group" and sep:
            if not allow_groups:
                raise InvalidRequest(f"target {_short(spec)}: a group cannot contain a group")
            if not rest:
                raise InvalidRequest(f"target {spec!r}: expected group:NAME")
        elif kind == "name" and sep:
            if not rest or len(rest) > MAX_NAME_GLOB:
                raise InvalidRequest(
                    f"target {_short(spec)}: expected name:GLOB of 1 to {MAX_NAME_GLOB} characters"
                )
        elif kind == "platform" and sep:
            if _platform(rest) is None:
                raise InvalidRequest(
                    f"target {_short(spec)}: the platform is one of {', '.join(PLATFORMS)}"
                )
        elif kind == "ip" and sep:
            _network(spec, rest)
        else:
            raise InvalidRequest(
                f"unknown target {_short(spec)}: use a node id, name:GLOB, tag:KEY=VALUE, "
                "tag-key:KEY, platform:NAME, ip:CIDR, group:NAME or all"
            )
        out.append(spec)
    return out


async def resolve(conn: AsyncConnection, specs: list[str]) -> list[str]:
    """Node ids (registered, not deregistered) matching any spec, in registration order."""
    found = await _matching(conn, specs, depth=0)
    return sorted(found, key=lambda node_id: (found[node_id], node_id))


Found = dict[str, float]  # node id -> registered_at, the order targets are listed in


async def _matching(conn: AsyncConnection, specs: list[str], depth: int) -> Found:
    """One query per spec; ``name:`` globs and ``ip:`` networks read the live nodes' names or
    addresses once and match them here."""
    live = sa.select(nodes.c.id, nodes.c.registered_at).where(nodes.c.deregistered_at.is_(None))
    found: Found = {}
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if spec == "all":
            query = live
        elif wire.NODE_ID_RE.match(spec):
            query = live.where(nodes.c.id == spec)
        elif kind == "tag":
            key, _, values = rest.partition("=")
            query = live.where(
                sa.exists().where(
                    node_tags.c.node_id == nodes.c.id,
                    node_tags.c.key == key,
                    node_tags.c.value.in_(values.split(",")),
                )
            )
        elif kind == "tag-key":
            query = live.where(
                sa.exists().where(node_tags.c.node_id == nodes.c.id, node_tags.c.key == rest)
            )
        elif kind == "platform":
            query = live.where(sa.func.lower(nodes.c.platform) == rest.lower())
        elif kind == "name":
            found.update(await _by_name(conn, live, rest))
            continue
        elif kind == "ip":
            found.update(await _by_address(conn, live, _network(spec, rest)))
            continue
        else:  # group
            row = (
                await conn.execute(
                    sa.select(node_groups.c.targets).where(node_groups.c.name == rest)
                )
            ).first()
            if row is None:
                raise NotFound(f"group {rest} not found")
            if depth > 0:
                raise InvalidRequest("a group cannot contain another group")
            found.update(await _matching(conn, list(row.targets), depth + 1))
            continue
        found.update({row.id: row.registered_at for row in await conn.execute(query)})
    return found


def _short(spec: str) -> str:
    return repr(spec if len(spec) <= 80 else spec[:80] + "...")


def _platform(text: str) -> str | None:
    """The platform's canonical name (any case given), or None."""
    return next((p for p in PLATFORMS if p.lower() == text.lower()), None)


def _network(spec: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidRequest(
            f"target {_short(spec)}: expected ip:ADDRESS or ip:NETWORK/PREFIX "
            "(10.0.3.0/24, fd00::/64)"
        ) from None


async def _by_name(conn: AsyncConnection, live: sa.Select[Any], glob: str) -> Found:
    if not any(c in glob for c in "*?["):  # one name: let the database find it
        rows = await conn.execute(live.where(nodes.c.name == glob))
        return {row.id: row.registered_at for row in rows}
    pattern = re.compile(fnmatch.translate(glob))  # as fnmatchcase: case matters
    rows = await conn.execute(live.add_columns(nodes.c.name))
    return {row.id: row.registered_at for row in rows if pattern.match(row.name)}


async def _by_address(
    conn: AsyncConnection,
    live: sa.Select[Any],
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> Found:
    rows = await conn.execute(live.add_columns(nodes.c.ip_addresses))
    return {row.id: row.registered_at for row in rows if _in_network(row.ip_addresses, network)}


def _in_network(addresses: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    for text in addresses if isinstance(addresses, list) else []:
        try:
            # An address may carry a zone (fe80::1%eth0): the zone does not count.
            address = ipaddress.ip_address(str(text).split("%", 1)[0])
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return True
    return False


class Fleet:
    """Every live node (id, name, platform, addresses, tags) and the saved groups, read once:
    target specs matched here, with resolve()'s meaning, cost no query each.  The scheduler
    re-evaluates every association's targets against one Fleet per pass."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        tags: dict[str, dict[str, str]],
        groups: dict[str, list[str]],
    ) -> None:
        self._rows = {r["id"]: r for r in rows}
        self.tags = tags
        self._groups = groups
        self._by_tag: dict[tuple[str, str], set[str]] = {}
        self._by_key: dict[str, set[str]] = {}
        for node_id, node_tags_ in tags.items():
            for key, value in node_tags_.items():
                self._by_tag.setdefault((key, value), set()).add(node_id)
                self._by_key.setdefault(key, set()).add(node_id)

    @property
    def node_ids(self) -> list[str]:
        return list(self._rows)

    def match(self, specs: list[str], depth: int = 0) -> list[str]:
        """Node ids matching any spec, in registration order (a spec that cannot match, such
        as an unknown group, matches nothing)."""
        found: set[str] = set()
        for spec in specs:
            kind, _, rest = spec.partition(":")
            if spec == "all":
                found.update(self._rows)
            elif wire.NODE_ID_RE.match(spec):
                if spec in self._rows:
                    found.add(spec)
            elif kind == "tag":
                key, _, values = rest.partition("=")
                for value in values.split(","):
                    found.update(self._by_tag.get((key, value), ()))
            elif kind == "tag-key":
                found.update(self._by_key.get(rest, ()))
            elif kind == "platform":
                found.update(
                    n
                    for n, r in self._rows.items()
                    if str(r["platform"] or "").lower() == rest.lower()
                )
            elif kind == "name":
                pattern = re.compile(fnmatch.translate(rest))
                found.update(n for n, r in self._rows.items() if pattern.match(r["name"] or ""))
            elif kind == "ip":
                try:
                    network = ipaddress.ip_network(rest, strict=False)
                except ValueError:
                    continue
                found.update(
                    n for n, r in self._rows.items() if _in_network(r["ip_addresses"], network)
                )
            elif kind == "group" and depth == 0 and rest in self._groups:
                found.update(self.match(self._groups[rest], depth + 1))
        return sorted(found, key=lambda n: (self._rows[n]["registered_at"], n))


async def fleet(conn: AsyncConnection) -> Fleet:
    rows = await conn.execute(
        sa.select(
            nodes.c.id, nodes.c.name, nodes.c.platform, nodes.c.ip_addresses, nodes.c.registered_at
        ).where(nodes.c.deregistered_at.is_(None))
    )
    live = [dict(r) for r in rows.mappings()]
    ids = {r["id"] for r in live}
    tags: dict[str, dict[str, str]] = {n: {} for n in ids}
    for row in await conn.execute(
        sa.select(node_tags.c.node_id, node_tags.c.key, node_tags.c.value)
    ):
        if row.node_id in ids:
            tags[row.node_id][row.key] = row.value
    groups = {
        row.name: list(row.targets)
        for row in await conn.execute(sa.select(node_groups.c.name, node_groups.c.targets))
    }
    return Fleet(live, tags, groups)
