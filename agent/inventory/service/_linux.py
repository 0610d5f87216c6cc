"""systemd: the service unit files (``systemctl list-unit-files --output=json``, which works
without a running systemd) give StartType; the loaded units (``systemctl list-units --all
--output=json``, only where systemd runs) give Status and DisplayName.  Template units
(``name@.service``) and aliases are left out.

StartType, in SSM's (Windows') words: enabled -> Automatic; static, indirect, generated,
transient -> Manual; disabled, masked -> Disabled.  Status: active/running -> Running,
inactive -> Stopped, failed -> Failed, else the unit's sub-state as it is.
"""

from __future__ import annotations

import json
from typing import Any, Final

from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout

START_TYPES: Final = {
    "enabled": "Automatic",
    "enabled-runtime": "Automatic",
    "static": "Manual",
    "indirect": "Manual",
    "generated": "Manual",
    "transient": "Manual",
    "disabled": "Disabled",
    "masked": "Disabled",
    "masked-runtime": "Disabled",
}
STATUSES: Final = {"running": "Running", "dead": "Stopped", "failed": "Failed", "exited": "Stopped"}


def collect(ctx: CollectContext) -> list[Item]:
    root = [] if str(ctx.root) == "/" else [f"--root={ctx.root}"]
    files = _json(ctx, ["systemctl", *root, "list-unit-files", "--type=service"])
    if files is None:
        raise CollectError("systemctl list-unit-files failed: no systemd on this node?")
    units = _json(ctx, ["systemctl", "list-units", "--type=service", "--all"]) if not root else None
    if units is None:
        ctx.warn("AWS:Service: systemd is not running here: no Status, only StartType")
    running = {u.get("unit"): u for u in units or [] if isinstance(u, dict)}
    items: list[Item] = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        unit = str(entry.get("unit_file", ""))
        state = str(entry.get("state", ""))
        if not unit.endswith(".service") or unit.endswith("@.service") or state == "alias":
            continue
        loaded = running.get(unit, {})
        item: Item = {
            "Name": unit.removesuffix(".service"),
            "DisplayName": str(loaded.get("description") or ""),
            "ServiceType": "systemd",
            "StartType": START_TYPES.get(state, state),
            "Status": _status(loaded) if units is not None else "",
        }
        items.append({k: v for k, v in item.items() if v})
    return items


def _status(unit: dict[str, Any]) -> str:
    if not unit:
        return "Stopped"
    sub = str(unit.get("sub") or "")
    return STATUSES.get(sub, sub)


def _json(ctx: CollectContext, argv: list[str]) -> list[Any] | None:
    try:
        done = ctx.run([*argv, "--output=json", "--no-pager"], {"SYSTEMD_COLORS": "0"}, 30.0)
    except (FileNotFoundError, ToolTimeout):
        return None
    if done.returncode != 0:
        return None
    try:
        found = json.loads(done.stdout)
    except ValueError:
        return None
    return found if isinstance(found, list) else None
