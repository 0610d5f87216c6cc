"""AWS:Network: one item per network interface (loopback left out): Name, IPV4 and IPV6
(comma-separated when several), SubnetMask (of the first IPv4 address), MacAddress from
psutil on every platform; Gateway and DNSServer from each platform's own source
(``_linux.py``, ``_darwin.py``, ``_windows.py``), passed in as ``gateways`` (interface ->
gateway) and ``dns`` (the servers, for every interface, or interface -> servers)."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from agent.inventory.base import Item


def interfaces(gateways: Mapping[str, str], dns: Mapping[str, list[str]] | list[str]) -> list[Item]:
    import psutil

    items: list[Item] = []
    stats = psutil.net_if_stats()
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        ipv4 = [a for a in addrs if a.family == socket.AF_INET]
        ipv6 = [a for a in addrs if a.family == socket.AF_INET6]
        macs = [a for a in addrs if a.family == psutil.AF_LINK]
        if any(a.address.startswith("127.") for a in ipv4) or name.lower().startswith("lo"):
            continue
        flags = stats.get(name)
        if flags is not None and flags.flags and "loopback" in flags.flags:
            continue
        servers = dns.get(name, []) if isinstance(dns, Mapping) else dns
        item: Item = {
            "Name": name,
            "IPV4": ",".join(a.address for a in ipv4),
            "IPV6": ",".join(a.address.split("%", 1)[0] for a in ipv6),
            "SubnetMask": (ipv4[0].netmask or "") if ipv4 else "",
            "MacAddress": macs[0].address if macs else "",
            "Gateway": gateways.get(name, ""),
            "DNSServer": ",".join(servers),
        }
        items.append({k: v for k, v in item.items() if v})
    return items


def resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` lines of a resolv.conf."""
    servers = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1])
    return servers
