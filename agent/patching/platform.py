"""Which patch baseline operating system this node is, and its PRODUCT filter value, from
``/etc/os-release`` (of the managed root) on Linux; given by the caller on macOS and Windows.

Operating systems are AWS's (UBUNTU, DEBIAN, REDHAT_ENTERPRISE_LINUX, ...) plus Corral's
ARCH and ALPINE.  Products are spelled as AWS spells them (``Ubuntu22.04``, ``Debian12``,
``RedhatEnterpriseLinux9.2``, ``AmazonLinux2023``, ``RockyLinux9.3``, ``AlmaLinux9.3``,
``OracleLinux8.9``, ``CentOS7.9``, ``Suse15.5``); Corral's: ``Arch``, ``Alpine3.19``,
``Fedora40`` (Fedora is patched as REDHAT_ENTERPRISE_LINUX: the same dnf and updateinfo).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeOS:
    operating_system: str  # a baseline's OperatingSystem
    product: str  # the PRODUCT filter value


# os-release ID -> (operating system, product prefix, how many version parts it keeps)
_LINUX: dict[str, tuple[str, str, int]] = {
    "ubuntu": ("UBUNTU", "Ubuntu", 2),
    "debian": ("DEBIAN", "Debian", 1),
    "raspbian": ("RASPBIAN", "Raspbian", 1),
    "rhel": ("REDHAT_ENTERPRISE_LINUX", "RedhatEnterpriseLinux", 2),
    "fedora": ("REDHAT_ENTERPRISE_LINUX", "Fedora", 1),
    "amzn": ("AMAZON_LINUX_2023", "AmazonLinux", 1),
    "centos": ("CENTOS", "CentOS", 2),
    "rocky": ("ROCKY_LINUX", "RockyLinux", 2),
    "almalinux": ("ALMA_LINUX", "AlmaLinux", 2),
    "ol": ("ORACLE_LINUX", "OracleLinux", 2),
    "sles": ("SUSE", "Suse", 2),
    "sled": ("SUSE", "Suse", 2),
    "opensuse-leap": ("SUSE", "OpenSuseLeap", 2),
    "arch": ("ARCH", "Arch", 0),
    "alpine": ("ALPINE", "Alpine", 2),
}


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's KEY=value lines (values shell-quoted) as a dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        found[key] = words[0] if words else ""
    return found


def linux_os(fields: dict[str, str]) -> NodeOS | None:
    """The node's operating system and product, or None for a distribution Corral has no
    baseline for."""
    ids = [fields.get("ID", "").lower(), *fields.get("ID_LIKE", "").lower().split()]
    version = fields.get("VERSION_ID", "")
    for os_id in ids:
        known = _LINUX.get(os_id)
        if known is None:
            continue
        operating_system, prefix, parts = known
        if os_id == "amzn" and version.startswith("2") and version != "2" and len(version) > 1:
            pass  # Amazon Linux 2023 ("2023")
        elif os_id == "amzn":
            operating_system = "AMAZON_LINUX_2"
        if os_id != fields.get("ID", "").lower():
            prefix = fields.get("NAME", prefix).replace(" ", "") or prefix
        kept = ".".join(version.split(".")[:parts]) if parts else ""
        return NodeOS(operating_system, f"{prefix}{kept}")
    return None


def detect_linux(root: str | Path = "/") -> NodeOS | None:
    """linux_os() of ``root``'s etc/os-release (usr/lib/os-release when that is absent)."""
    base = Path(root)
    for relative in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (base / relative).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return linux_os(parse_os_release(text))
    return None
