"""Windows services: ``Get-Service`` as ConvertTo-Json writes it (enums turned to names in
the script: Windows PowerShell 5.1 writes them as numbers)."""

from __future__ import annotations

from typing import Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.powershell import PREAMBLE, as_list, powershell_json, text

SCRIPT: Final = (
    PREAMBLE
    + "ConvertTo-Json -InputObject @(Get-Service | ForEach-Object { [ordered]@{ "
    + "Name = $_.Name; DisplayName = $_.DisplayName; Status = $_.Status.ToString(); "
    + "StartType = $_.StartType.ToString(); ServiceType = $_.ServiceType.ToString(); "
    + "DependentServices = @($_.DependentServices | ForEach-Object Name) -join ' '; "
    + "ServicesDependedOn = @($_.ServicesDependedOn | ForEach-Object Name) -join ' ' } })"
)
FIELDS: Final = (
    "Name", "DisplayName", "Status", "StartType", "ServiceType", "DependentServices",
    "ServicesDependedOn",
)  # fmt: skip


def collect(ctx: CollectContext) -> list[Item]:
    items: list[Item] = []
    for entry in as_list(powershell_json(ctx, SCRIPT, "Get-Service")):
        if isinstance(entry, dict) and entry.get("Name"):
            item = {f: text(entry.get(f)) for f in FIELDS}
            items.append({k: v for k, v in item.items() if v})
    return items
