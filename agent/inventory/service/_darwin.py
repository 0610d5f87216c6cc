"""launchd: ``launchctl list`` (PID, last exit status, label; tab-separated): a job with a
PID is Running, else Stopped.  launchd has no start type to report."""

from __future__ import annotations

from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout


def collect(ctx: CollectContext) -> list[Item]:
    try:
        done = ctx.run(["launchctl", "list"], {}, 30.0)
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"launchctl: {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"launchctl list failed: {done.reason()}")
    items: list[Item] = []
    for line in done.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2]:
            continue
        pid, _status, label = fields
        items.append(
            {"Name": label, "ServiceType": "launchd",
             "Status": "Stopped" if pid.strip() == "-" else "Running"}
        )  # fmt: skip
    return items
