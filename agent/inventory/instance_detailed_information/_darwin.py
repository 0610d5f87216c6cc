"""From ``sysctl -n`` of machdep.cpu.brand_string, hw.logicalcpu, hw.physicalcpu,
hw.packages and hw.cpufrequency (Apple silicon has no frequency: left out)."""

from __future__ import annotations

from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout

KEYS = ("machdep.cpu.brand_string", "hw.logicalcpu", "hw.physicalcpu", "hw.packages")


def collect(ctx: CollectContext) -> list[Item]:
    values = [_sysctl(ctx, key, required=True) for key in KEYS]
    model, logical, physical, packages = values
    item: Item = {
        "CPUModel": model,
        "CPUs": logical,
        "CPUCores": physical,
        "CPUSockets": packages,
        "CPUHyperThreadEnabled": "true" if int(logical or 0) > int(physical or 0) else "false",
    }
    hertz = _sysctl(ctx, "hw.cpufrequency", required=False)
    if hertz.isdigit():
        item["CPUSpeedMHz"] = str(int(hertz) // 1_000_000)
    return [{k: v for k, v in item.items() if v}]


def _sysctl(ctx: CollectContext, key: str, *, required: bool) -> str:
    try:
        done = ctx.run(["sysctl", "-n", key], {}, 10.0)
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"sysctl: {exc}") from None
    if done.returncode != 0:
        if required:
            raise CollectError(f"sysctl -n {key} failed: {done.reason()}")
        return ""
    return done.stdout.strip()
