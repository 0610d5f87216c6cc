"""What the heartbeat says about this host: platform, version, addresses, boot time.

Bounded where it is made, so a heartbeat is always a small message: at most MAX_ADDRESSES
addresses (a host with thousands of them reports the first, IPv4 first), each text at most
MAX_TEXT_CHARS characters.
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import sys
from typing import Any

from agent import __version__

MAX_ADDRESSES = 64
MAX_TEXT_CHARS = 256


def platform_type() -> str:
    """SSM's PlatformType: Linux, Windows or MacOS."""
    if sys.platform == "win32":
        return "Windows"
    if sys.platform == "darwin":
        return "MacOS"
    return "Linux"


def platform_name_version() -> tuple[str, str]:
    kind = platform_type()
    if kind == "Linux":
        import distro

        return distro.name() or "Linux", distro.version(best=True) or platform.release()
    if kind == "MacOS":
        return "macOS", platform.mac_ver()[0]
    return platform.system(), platform.version()


def ip_addresses() -> list[str]:
    import psutil

    out: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = addr.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not ip.is_loopback and not ip.is_link_local:
                out.append(text)
    return sorted(set(out), key=lambda a: (":" in a, a))[:MAX_ADDRESSES]


def collect() -> dict[str, Any]:
    import psutil

    name, version = platform_name_version()
    return {
        "agent_version": __version__,
        "hostname": socket.gethostname()[:MAX_TEXT_CHARS],
        "platform": platform_type(),
        "platform_name": name[:MAX_TEXT_CHARS],
        "platform_version": version[:MAX_TEXT_CHARS],
        "ip_addresses": ip_addresses(),
        "boot_time": psutil.boot_time(),
    }
