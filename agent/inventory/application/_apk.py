"""apk's installed packages, read from its database file /lib/apk/db/installed: records
separated by blank lines, one ``X:value`` line per field (P name, V version, A arch,
T description, U url, m maintainer, o origin; F/R/Z... list the files, not used here).

apk records no install time: InstalledTime is left out.  PackageId is the package's file
name (name-version.apk).
"""

from __future__ import annotations

from agent.inventory.application import architecture, item
from agent.inventory.base import CollectContext, CollectError, Item

INSTALLED = "/lib/apk/db/installed"
_WANTED = frozenset("PVATUmo")


def present(ctx: CollectContext) -> bool:
    return ctx.path(INSTALLED).is_file()


def collect(ctx: CollectContext) -> list[Item]:
    try:
        text = ctx.path(INSTALLED).read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise CollectError(f"apk: cannot read {INSTALLED}: {exc.strerror}") from None
    items: list[Item] = []
    for number, record in enumerate(text.split("\n\n"), 1):
        fields: dict[str, str] = {}
        for line in record.split("\n"):
            if len(line) >= 2 and line[1] == ":" and line[0] in _WANTED:
                fields.setdefault(line[0], line[2:])
        if not fields:
            continue
        name, version = fields.get("P", ""), fields.get("V", "")
        if not name or not version:
            ctx.warn(f"apk: {INSTALLED}: record {number} has no P: or V: line; skipped")
            continue
        items.append(
            item(
                {
                    "Name": name,
                    "Version": version,
                    "Architecture": architecture(fields.get("A", "")),
                    "Summary": fields.get("T"),
                    "URL": fields.get("U"),
                    "Publisher": fields.get("m"),
                    "PackageId": f"{name}-{version}.apk",
                    "PackageManager": "apk",
                }
            )
        )
    return items
