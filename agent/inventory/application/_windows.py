"""AWS:Application on Windows: the programs Add/Remove Programs lists, read from the
registry's Uninstall keys with PowerShell (``Get-ItemProperty ... | ConvertTo-Json``):
HKLM's 64-bit view (Architecture x86_64) and its Wow6432Node (i386), as amazon-ssm-agent.

Its rules, applied here: a DisplayName that is not a KB update; no SystemComponent=1; no
ParentKeyName (an update of another program); no ReleaseType Security Update, Update Rollup
or Hotfix; WindowsInstaller=1 entries only when their compressed product code is under
HKLM\\Software\\Classes\\Installer\\Products.  Name (DisplayName), Version (DisplayVersion),
Publisher, InstalledTime (InstallDate yyyyMMdd, as midnight UTC), PackageId (the key's
name: the product code for MSI), URL (URLInfoAbout).  PackageManager "MSI".
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.inventory.application import item, tool_timeout
from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout

UNINSTALL = {
    "x86_64": r"HKLM:\Software\Microsoft\Windows\CurrentVersion\Uninstall\*",
    "i386": r"HKLM:\Software\Wow6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*",
}
PRODUCTS = r"HKLM:\Software\Classes\Installer\Products"
_PROPERTIES = (
    "DisplayName,DisplayVersion,Publisher,InstallDate,URLInfoAbout,SystemComponent,"
    "ParentKeyName,ReleaseType,WindowsInstaller,PSChildName"
)
_PREAMBLE = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; "
_KB = re.compile(r"^KB[0-9]{6}")
_UPDATES = frozenset({"Security Update", "Update Rollup", "Hotfix"})


def uninstall_script(path: str) -> str:
    return (
        _PREAMBLE
        + f"ConvertTo-Json -Depth 2 -InputObject @(Get-ItemProperty '{path}' "
        + f"-ErrorAction SilentlyContinue | Select-Object {_PROPERTIES})"
    )


def products_script() -> str:
    return (
        _PREAMBLE
        + "ConvertTo-Json -InputObject @(Get-ChildItem "
        + f"'{PRODUCTS}' -ErrorAction SilentlyContinue | Select-Object -ExpandProperty PSChildName)"
    )


def _powershell(ctx: CollectContext, script: str) -> Any:
    argv = ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script]
    try:
        done = ctx.run(argv, {}, tool_timeout(ctx))
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"powershell: {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"powershell (installed programs) failed: {done.reason()}")
    text = done.stdout.strip().lstrip("\ufeff")
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError:
        raise CollectError("powershell (installed programs): its output is not JSON") from None


def collect(ctx: CollectContext) -> list[Item]:
    products = _powershell(ctx, products_script())
    known = {p.upper() for p in _as_list(products) if isinstance(p, str)}
    items: list[Item] = []
    for arch, path in UNINSTALL.items():
        for entry in _as_list(_powershell(ctx, uninstall_script(path))):
            if isinstance(entry, dict) and _listed(entry, known):
                items.append(_item(entry, arch))
    return items


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _listed(entry: dict[str, Any], products: set[str]) -> bool:
    name = _text(entry.get("DisplayName"))
    if not name or _KB.match(name):
        return False
    if _text(entry.get("SystemComponent")) not in ("", "0"):
        return False
    if _text(entry.get("ParentKeyName")):
        return False
    if _text(entry.get("ReleaseType")) in _UPDATES:
        return False
    installer = _text(entry.get("WindowsInstaller"))
    if installer in ("", "0"):
        return True
    return installer == "1" and compressed_guid(_text(entry.get("PSChildName"))) in products


def compressed_guid(guid: str) -> str:
    """Windows Installer's packed form of a product code, as the Products key names it:
    the first three groups reversed, each later byte's two hex digits swapped."""
    hexes = guid.strip("{}").replace("-", "").upper()
    if len(hexes) != 32:
        return ""
    head = hexes[7::-1] + hexes[11:7:-1] + hexes[15:11:-1]
    tail = "".join(hexes[i + 1] + hexes[i] for i in range(16, 32, 2))
    return head + tail


def _item(entry: dict[str, Any], arch: str) -> Item:
    date = _text(entry.get("InstallDate"))
    installed = (
        f"{date[:4]}-{date[4:6]}-{date[6:8]}T00:00:00Z"
        if len(date) == 8 and date.isdigit()
        else None
    )
    return item(
        {
            "Name": _text(entry.get("DisplayName")),
            "Version": _text(entry.get("DisplayVersion")),
            "Publisher": _text(entry.get("Publisher")),
            "InstalledTime": installed,
            "PackageId": _text(entry.get("PSChildName")),
            "URL": _text(entry.get("URLInfoAbout")),
            "Architecture": arch,
            "PackageManager": "MSI",
        }
    )
