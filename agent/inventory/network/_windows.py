"""Windows: default routes (``Get-NetRoute``) and DNS servers per interface
(``Get-DnsClientServerAddress``), as ConvertTo-Json writes them."""

from __future__ import annotations

from typing import Any, Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.network import interfaces
from agent.inventory.powershell import PREAMBLE, as_list, powershell_json, text

SCRIPT: Final = (
    PREAMBLE
    + "ConvertTo-Json -Depth 3 -InputObject @{Routes = @(Get-NetRoute -DestinationPrefix "
    + "'0.0.0.0/0','::/0' -ErrorAction SilentlyContinue | Select-Object InterfaceAlias,NextHop); "
    + "Dns = @(Get-DnsClientServerAddress | Select-Object InterfaceAlias,ServerAddresses)}"
)


def collect(ctx: CollectContext) -> list[Item]:
    found: Any = powershell_json(ctx, SCRIPT, "Get-NetRoute") or {}
    gateways: dict[str, str] = {}
    for route in as_list(found.get("Routes")):
        if isinstance(route, dict) and text(route.get("NextHop")) not in ("", "0.0.0.0", "::"):
            alias = text(route.get("InterfaceAlias"))
            hop = text(route.get("NextHop"))
            gateways[alias] = f"{gateways[alias]},{hop}" if alias in gateways else hop
    dns: dict[str, list[str]] = {}
    for entry in as_list(found.get("Dns")):
        if isinstance(entry, dict):
            alias = text(entry.get("InterfaceAlias"))
            dns.setdefault(alias, []).extend(text(s) for s in as_list(entry.get("ServerAddresses")))
    return interfaces(gateways, dns)
