"""From ``Get-CimInstance Win32_Processor`` (ConvertTo-Json) and the OS's service pack."""

from __future__ import annotations

from typing import Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.powershell import PREAMBLE, as_list, powershell_json, text

SCRIPT: Final = (
    PREAMBLE
    + "ConvertTo-Json -InputObject @{Cpu = @(Get-CimInstance Win32_Processor | Select-Object "
    + "Name,NumberOfCores,NumberOfLogicalProcessors,MaxClockSpeed); "
    + "Os = (Get-CimInstance Win32_OperatingSystem | Select-Object CSDVersion)}"
)


def collect(ctx: CollectContext) -> list[Item]:
    found = powershell_json(ctx, SCRIPT, "Win32_Processor")
    cpus = [c for c in as_list((found or {}).get("Cpu")) if isinstance(c, dict)]
    if not cpus:
        return []
    cores = sum(int(c.get("NumberOfCores") or 0) for c in cpus)
    logical = sum(int(c.get("NumberOfLogicalProcessors") or 0) for c in cpus)
    os_info = (found or {}).get("Os") or {}
    item: Item = {
        "CPUModel": text(cpus[0].get("Name")).strip(),
        "CPUs": str(logical),
        "CPUCores": str(cores),
        "CPUSockets": str(len(cpus)),
        "CPUSpeedMHz": text(cpus[0].get("MaxClockSpeed")),
        "CPUHyperThreadEnabled": "true" if logical > cores else "false",
        "OSServicePack": text(os_info.get("CSDVersion") if isinstance(os_info, dict) else None),
    }
    return [{k: v for k, v in item.items() if v}]
