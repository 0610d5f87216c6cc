"""One gathering: which types the step asked for, each type's collector run in turn, the
custom inventory read, everything cleaned.  A collector that fails costs its own type only.

The step's inputs are AWS-GatherSoftwareInventory's parameters (SSM's names, each "Enabled"
or "Disabled"; ``files`` and ``windowsRegistry`` hold JSON specs), plus Corral's
``listeningPorts`` and ``users``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent import wire
from agent.inventory import content, registry, schema
from agent.inventory.base import CollectContext, CollectError, Item

# Input name -> the type it enables (customInventory, files and windowsRegistry apart).
SWITCHES: Final[dict[str, str]] = {
    "applications": schema.APPLICATION,
    "awsComponents": schema.AWS_COMPONENT,
    "networkConfig": schema.NETWORK,
    "windowsUpdates": schema.WINDOWS_UPDATE,
    "instanceDetailedInformation": schema.INSTANCE_DETAILED_INFORMATION,
    "services": schema.SERVICE,
    "windowsRoles": schema.WINDOWS_ROLE,
    "listeningPorts": schema.LISTENING_PORT,
    "users": schema.USER,
}
SPECS: Final = ("files", "windowsRegistry")
KNOWN_INPUTS: Final = frozenset({*SWITCHES, *SPECS, "customInventory", "billingInfo"})
MAX_SPECS_CHARS: Final = 64 * 1024


class GatherInputError(ValueError):
    """The step's inputs are wrong (one line naming the input)."""


@dataclass
class Plan:
    types: list[str]  # built-in types to gather, InstanceInformation first
    custom: bool
    files: list[dict[str, Any]] = field(default_factory=list)
    registry: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Gathered:
    types: dict[str, list[Item]] = field(default_factory=dict)
    errors: list[wire.InventoryError] = field(default_factory=list)
    custom_complete: bool = False
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def error(self, source: str, reason: str) -> None:
        self.errors.append(wire.InventoryError(source=source[:200], reason=reason[:500]))


def plan(inputs: Mapping[str, Any]) -> Plan:
    """What the step asks for; GatherInputError naming a bad input."""
    unknown = sorted(set(inputs) - KNOWN_INPUTS)
    if unknown:
        raise GatherInputError(
            f"unknown input {unknown[0][:40]!r} (known: {', '.join(sorted(KNOWN_INPUTS))})"
        )
    types = [schema.INSTANCE_INFORMATION]
    for name, type_name in SWITCHES.items():
        if _switch(inputs, name):
            types.append(type_name)
    found = Plan(types, _switch(inputs, "customInventory"))
    found.files = _specs(inputs, "files")
    found.registry = _specs(inputs, "windowsRegistry")
    if found.files:
        types.append(schema.FILE)
    if found.registry:
        types.append(schema.WINDOWS_REGISTRY)
    return found


def _switch(inputs: Mapping[str, Any], name: str) -> bool:
    value = inputs.get(name, "Enabled")
    if value not in ("Enabled", "Disabled"):
        raise GatherInputError(f"{name} must be Enabled or Disabled, not {str(value)[:40]!r}")
    return bool(value == "Enabled")


def _specs(inputs: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    raw = inputs.get(name, "")
    if raw in ("", None, []):
        return []
    if isinstance(raw, str):
        if len(raw) > MAX_SPECS_CHARS:
            raise GatherInputError(f"{name}: at most {MAX_SPECS_CHARS} characters of JSON")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise GatherInputError(f"{name} is not JSON (a list of objects)") from None
    if not isinstance(raw, list) or not all(isinstance(spec, dict) for spec in raw):
        raise GatherInputError(f"{name} must be a JSON list of objects")
    return list(raw)


def gather(
    step: Plan,
    ctx: CollectContext,
    *,
    stopped: Callable[[], bool] = lambda: False,
    custom: Callable[[CollectContext], tuple[dict[str, list[Item]], list[str]]] | None = None,
) -> Gathered:
    """Run each planned type's collector for this platform; then the custom inventory."""
    out = Gathered()
    for type_name in step.types:
        if stopped():
            break
        started = time.process_time()
        try:
            collect = registry.collector(type_name, ctx.platform)
            if collect is None:
                continue  # not gathered on this platform (AWS:WindowsUpdate on Linux)
            raw = collect(ctx)
        except CollectError as exc:
            out.error(type_name, str(exc))
            continue
        except Exception as exc:  # a collector's own bug costs its type, not the gathering
            out.error(type_name, f"internal error: {type(exc).__name__}: {exc}")
            continue
        finally:
            out.cpu_seconds[type_name] = time.process_time() - started
        items, cut = content.clean(type_name, list(raw))
        if cut:
            ctx.warn(f"{type_name}: {cut} items over {schema.MAX_ITEMS_PER_TYPE} left out")
        out.types[type_name] = items
    if step.custom and not stopped() and custom is not None and ctx.custom_dir is not None:
        started = time.process_time()
        found, errors = custom(ctx)
        out.cpu_seconds["Custom:*"] = time.process_time() - started
        for reason in errors:
            out.error("custom", reason)
        for type_name, raw in found.items():
            out.types[type_name], _ = content.clean(type_name, raw)
        # A bad file may have held a type the server has: drop nothing this time.
        out.custom_complete = not errors
    return out
