"""Windows: ``Get-LocalUser`` (Name, SID, FullName, LastLogon, Enabled) as ConvertTo-Json
writes it; the Uid is the SID's last part (the RID), Groups from ``Get-LocalGroupMember``
for each local group."""

from __future__ import annotations

from typing import Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.powershell import PREAMBLE, as_list, date, powershell_json, text

SCRIPT: Final = (
    PREAMBLE
    + "$groups = @{}; foreach ($g in Get-LocalGroup) { foreach ($m in @(Get-LocalGroupMember "
    + "-Group $g -ErrorAction SilentlyContinue)) { $n = $m.Name.Split('\\')[-1]; "
    + "$groups[$n] = @($groups[$n]) + $g.Name } }; "
    + "ConvertTo-Json -InputObject @(Get-LocalUser | ForEach-Object { [ordered]@{ "
    + "Name = $_.Name; Sid = $_.SID.Value; FullName = $_.FullName; LastLogon = $_.LastLogon; "
    + "Groups = (@($groups[$_.Name]) | Where-Object { $_ }) -join ',' } })"
)


def collect(ctx: CollectContext) -> list[Item]:
    items: list[Item] = []
    for entry in as_list(powershell_json(ctx, SCRIPT, "Get-LocalUser")):
        if not isinstance(entry, dict) or not entry.get("Name"):
            continue
        item: Item = {
            "Name": text(entry.get("Name")),
            "Uid": text(entry.get("Sid")).rsplit("-", 1)[-1],
            "Groups": text(entry.get("Groups")),
            "FullName": text(entry.get("FullName")),
            "LastLogin": date(entry.get("LastLogon")),
        }
        items.append({k: v for k, v in item.items() if v})
    return items
