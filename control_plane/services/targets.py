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
