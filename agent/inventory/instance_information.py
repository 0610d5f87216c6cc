"""AWS:InstanceInformation: this node as the agent sees it (one item), from agent.facts (the
heartbeat's facts), with SSM's values for what Corral has no other word for."""

from __future__ import annotations

import socket

from agent import facts
from agent.inventory.base import CollectContext, Item


def collect(ctx: CollectContext) -> list[Item]:
    name, version = facts.platform_name_version()
    addresses = facts.ip_addresses()
    ipv4 = [a for a in addresses if ":" not in a]
    item: Item = {
        "AgentType": "corral-agent",
        "AgentVersion": ctx.agent_version,
        "ComputerName": socket.gethostname(),
        "InstanceId": ctx.node_id,
        "IpAddress": (ipv4 or addresses or [""])[0],
        "PlatformName": name,
        "PlatformType": ctx.platform,
        "PlatformVersion": version,
        "ResourceType": "ManagedInstance",
        "AgentStatus": "Active",
        "InstanceStatus": "Active",
    }
    return [{k: v for k, v in item.items() if v}]
