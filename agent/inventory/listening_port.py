"""Corral:ListeningPort: every socket listening for connections (TCP in LISTEN, UDP bound),
from psutil on every platform: Protocol (tcp, tcp6, udp, udp6), Address, Port, and the
process's name, id and user where this agent may see them (another user's process needs
root: its details are then left out)."""

from __future__ import annotations

import socket

from agent.inventory.base import CollectContext, CollectError, Item


def collect(ctx: CollectContext) -> list[Item]:
    import psutil

    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError) as exc:
        raise CollectError(f"cannot list sockets: {exc}") from None
    seen: set[tuple[str, str, int]] = set()
    owners: dict[int, tuple[str, str]] = {}
    items: list[Item] = []
    for conn in connections:
        tcp = conn.type == socket.SOCK_STREAM
        if tcp and conn.status != psutil.CONN_LISTEN:
            continue
        if not tcp and (conn.raddr or not conn.laddr):
            continue
        if not conn.laddr:
            continue
        protocol = ("tcp" if tcp else "udp") + ("6" if conn.family == socket.AF_INET6 else "")
        key = (protocol, conn.laddr.ip, conn.laddr.port)
        if key in seen:
            continue
        seen.add(key)
        item: Item = {"Protocol": protocol, "Address": conn.laddr.ip, "Port": str(conn.laddr.port)}
        if conn.pid:
            item["ProcessId"] = str(conn.pid)
            name, user = owners.get(conn.pid) or _owner(conn.pid)
            owners[conn.pid] = (name, user)
            item.update({k: v for k, v in (("ProcessName", name), ("User", user)) if v})
        items.append(item)
    return sorted(items, key=lambda i: (i["Protocol"], int(i["Port"]), i["Address"]))


def _owner(pid: int) -> tuple[str, str]:
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return process.name(), process.username()
    except (psutil.Error, KeyError):  # gone, not ours to see, or a uid without a name
        return "", ""
