"""macOS: the default gateway from ``route -n get default`` (its ``gateway:`` and
``interface:`` lines), DNS servers from ``scutil --dns`` (resolver #1's nameservers)."""

from __future__ import annotations

from agent.inventory.base import CollectContext, Item
from agent.inventory.network import interfaces
from agent.tools import ToolTimeout


def collect(ctx: CollectContext) -> list[Item]:
    return interfaces(gateways(_run(ctx, ["route", "-n", "get", "default"])),
                      dns(_run(ctx, ["scutil", "--dns"])))  # fmt: skip


def _run(ctx: CollectContext, argv: list[str]) -> str:
    try:
        done = ctx.run(argv, {}, 10.0)
    except (FileNotFoundError, ToolTimeout) as exc:
        ctx.warn(f"AWS:Network: {argv[0]}: {exc}")
        return ""
    return done.stdout if done.returncode == 0 else ""


def gateways(route: str) -> dict[str, str]:
    values = {}
    for line in route.splitlines():
        key, _, value = line.strip().partition(":")
        values[key.strip()] = value.strip()
    if values.get("gateway") and values.get("interface"):
        return {values["interface"]: values["gateway"]}
    return {}


def dns(scutil: str) -> list[str]:
    servers: list[str] = []
    in_first = False
    for line in scutil.splitlines():
        stripped = line.strip()
        if stripped.startswith("resolver #"):
            if in_first:
                break
            in_first = stripped == "resolver #1"
        elif in_first and stripped.startswith("nameserver["):
            servers.append(stripped.split(":", 1)[1].strip())
    return servers
