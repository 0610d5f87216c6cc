"""macOS: ``dscl -plist . -readall /Users`` (a property list: RecordName, UniqueID,
PrimaryGroupID, NFSHomeDirectory, UserShell, RealName); system accounts (names starting with
``_``) are left out.  Groups and last logins are not read."""

from __future__ import annotations

import plistlib
from typing import Any

from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout

FIELDS = {
    "Name": "dsAttrTypeStandard:RecordName",
    "Uid": "dsAttrTypeStandard:UniqueID",
    "Gid": "dsAttrTypeStandard:PrimaryGroupID",
    "HomeDirectory": "dsAttrTypeStandard:NFSHomeDirectory",
    "Shell": "dsAttrTypeStandard:UserShell",
    "FullName": "dsAttrTypeStandard:RealName",
}


def collect(ctx: CollectContext) -> list[Item]:
    try:
        done = ctx.run(["dscl", "-plist", ".", "-readall", "/Users"], {}, 30.0)
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"dscl: {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"dscl failed: {done.reason()}")
    try:
        records: Any = plistlib.loads(done.stdout.encode())
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise CollectError(f"dscl's output is not a property list: {exc}") from None
    items: list[Item] = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict):
            continue
        item: Item = {}
        for attribute, key in FIELDS.items():
            values = record.get(key)
            if isinstance(values, list) and values:
                item[attribute] = str(values[0])
        if item.get("Name") and not item["Name"].startswith("_"):
            items.append(item)
    return items
