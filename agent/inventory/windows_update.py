"""AWS:WindowsUpdate: the hotfixes Windows lists (``Get-HotFix``, as ConvertTo-Json writes
it), one item each: HotFixId, Description, InstalledTime (RFC3339 UTC), InstalledBy, as
amazon-ssm-agent's windowsUpdate gatherer.
"""

from __future__ import annotations

from typing import Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.powershell import PREAMBLE, as_list, date, powershell_json, text

SCRIPT: Final = (
    PREAMBLE
    + "ConvertTo-Json -InputObject @(Get-HotFix -ErrorAction SilentlyContinue | "
    + "Select-Object HotFixID,Description,InstalledOn,InstalledBy)"
)


def collect(ctx: CollectContext) -> list[Item]:
    items: list[Item] = []
    for entry in as_list(powershell_json(ctx, SCRIPT, "Get-HotFix")):
        if not isinstance(entry, dict):
            ctx.warn("AWS:WindowsUpdate: Get-HotFix gave an entry that is not an object")
            continue
        hotfix = text(entry.get("HotFixID")).strip()
        if not hotfix:
            continue
        item: Item = {
            "HotFixId": hotfix,
            "Description": text(entry.get("Description")),
            "InstalledTime": date(entry.get("InstalledOn")),
            "InstalledBy": text(entry.get("InstalledBy")),
        }
        items.append({k: v for k, v in item.items() if v})
    return items
