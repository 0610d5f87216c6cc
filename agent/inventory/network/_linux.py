"""Linux: default gateways from /proc/net/route (and /proc/net/ipv6_route), DNS servers from
/etc/resolv.conf."""

from __future__ import annotations

import ipaddress
import socket
import struct

from agent.inventory.base import CollectContext, Item
from agent.inventory.network import interfaces, resolv_conf


def collect(ctx: CollectContext) -> list[Item]:
    return interfaces(gateways(ctx), dns(ctx))


def gateways(ctx: CollectContext) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        table = ctx.path("/proc/net/route").read_text()
    except OSError:
        table = ""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "00000000" and fields[2] != "00000000":
            found.setdefault(fields[0], socket.inet_ntoa(struct.pack("<L", int(fields[2], 16))))
    try:
        table6 = ctx.path("/proc/net/ipv6_route").read_text()
    except OSError:
        table6 = ""
    for line in table6.splitlines():
        fields = line.split()
        if (
            len(fields) == 10
            and fields[0] == "0" * 32
            and fields[1] == "00"
            and fields[4] != "0" * 32
        ):
            gateway = str(ipaddress.IPv6Address(bytes.fromhex(fields[4])))
            iface = fields[9]
            found[iface] = f"{found[iface]},{gateway}" if iface in found else gateway
    return found


def dns(ctx: CollectContext) -> list[str]:
    try:
        return resolv_conf(ctx.path("/etc/resolv.conf").read_text(errors="replace"))
    except OSError:
        return []
