"""AWS:AWSComponent: the management agent itself, as SSM lists amazon-ssm-agent: one item,
the Corral agent (Name corral-agent, its version, Publisher Corral, this machine's
architecture as AWS:Application reports it)."""

from __future__ import annotations

import platform

from agent.inventory.application import architecture, item
from agent.inventory.base import CollectContext, Item


def collect(ctx: CollectContext) -> list[Item]:
    return [
        item(
            {
                "Name": "corral-agent",
                "ApplicationType": "Corral agent",
                "Publisher": "Corral",
                "Version": ctx.agent_version,
                "Architecture": architecture(platform.machine()),
            }
        )
    ]
