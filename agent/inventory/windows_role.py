"""AWS:WindowsRole: the roles, role services and features of Windows Server
(``Get-WindowsFeature``, as ConvertTo-Json writes it), one item each, with
amazon-ssm-agent's attributes: Name, DisplayName, Description, Installed ("True"/"False"),
InstalledState (Installed, Available, Removed, ...), FeatureType (Role, Role Service,
Feature), Path, SubFeatures and DependsOn (space-separated, as SSM's agent writes them),
ServerComponentDescriptor, Parent.

The two enums are turned into their names in the script (Windows PowerShell 5.1 would write
their numbers).  A node without Get-WindowsFeature (client Windows: it is a Windows Server
cmdlet) has no roles to report: the source fails with that reason.
"""

from __future__ import annotations

import re
from typing import Any, Final

from agent.inventory.base import CollectContext, CollectError, Item
from agent.inventory.powershell import PREAMBLE, as_list, powershell_json, text

NO_CMDLET_EXIT: Final = 3
SCRIPT: Final = (
    PREAMBLE
    + "if (-not (Get-Command Get-WindowsFeature -ErrorAction SilentlyContinue)) "
    + f"{{ exit {NO_CMDLET_EXIT} }}; "
    + "ConvertTo-Json -Depth 2 -InputObject @(Get-WindowsFeature | Select-Object "
    + "Name,DisplayName,Description,Installed,"
    + "@{n='InstallState';e={[string]$_.InstallState}},"
    + "@{n='FeatureType';e={[string]$_.FeatureType}},"
    + "Path,SubFeatures,ServerComponentDescriptor,DependsOn,Parent)"
)


def collect(ctx: CollectContext) -> list[Item]:
    try:
        found = powershell_json(ctx, SCRIPT, "Get-WindowsFeature")
    except CollectError as exc:
        if re.search(rf"\bexit {NO_CMDLET_EXIT}\)?$", str(exc)):
            raise CollectError(
                "Get-WindowsFeature is not on this node (a Windows Server cmdlet)"
            ) from None
        raise
    items: list[Item] = []
    for entry in as_list(found):
        if not isinstance(entry, dict) or not text(entry.get("Name")):
            ctx.warn("AWS:WindowsRole: Get-WindowsFeature gave an entry without a Name")
            continue
        item: Item = {
            "Name": text(entry.get("Name")),
            "DisplayName": text(entry.get("DisplayName")),
            "Description": text(entry.get("Description")),
            "Installed": text(entry.get("Installed")),
            "InstalledState": text(entry.get("InstallState")),
            "FeatureType": text(entry.get("FeatureType")),
            "Path": text(entry.get("Path")),
            "SubFeatures": _joined(entry.get("SubFeatures")),
            "ServerComponentDescriptor": text(entry.get("ServerComponentDescriptor")),
            "DependsOn": _joined(entry.get("DependsOn")),
            "Parent": text(entry.get("Parent")),
        }
        items.append({k: v for k, v in item.items() if v})
    return items


def _joined(value: Any) -> str:
    """A string array as PowerShell interpolates it ("a b c"), as SSM's agent reports it."""
    return " ".join(text(v) for v in as_list(value) if v is not None)
