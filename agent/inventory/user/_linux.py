"""Linux: /etc/passwd and /etc/group (read as files, under ``ctx.root``), last logins from
/var/log/lastlog (a record of ``struct lastlog`` per uid: a 32-bit time, the line, the host;
absent on distributions that dropped it, then LastLogin is left out)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

from agent.inventory.base import CollectContext, CollectError, Item
from agent.inventory.user import rfc3339

LASTLOG: Final = struct.Struct("=i32s256s")  # ll_time, ll_line, ll_host (glibc, 292 bytes)
MAX_LASTLOG_UID: Final = 1 << 20  # lastlog is sparse, indexed by uid: look no further


def collect(ctx: CollectContext) -> list[Item]:
    try:
        passwd = ctx.path("/etc/passwd").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CollectError(f"cannot read /etc/passwd: {exc.strerror}") from None
    by_gid, by_user = _groups(ctx)
    lastlog = ctx.path("/var/log/lastlog")
    items: list[Item] = []
    for number, line in enumerate(passwd.splitlines(), 1):
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
            ctx.warn(f"Corral:User: /etc/passwd line {number} is not name:x:uid:gid:...")
            continue
        name, _, uid, gid, gecos, home, shell = fields
        groups = sorted({by_gid.get(gid, ""), *by_user.get(name, [])} - {""})
        item: Item = {
            "Name": name,
            "Uid": uid,
            "Gid": gid,
            "Groups": ",".join(groups),
            "HomeDirectory": home,
            "Shell": shell,
            "FullName": gecos.split(",", 1)[0],
            "LastLogin": _last_login(lastlog, int(uid)),
        }
        items.append({k: v for k, v in item.items() if v})
    return items


def _groups(ctx: CollectContext) -> tuple[dict[str, str], dict[str, list[str]]]:
    """gid -> group name, and user -> the groups naming it as a member."""
    by_gid: dict[str, str] = {}
    by_user: dict[str, list[str]] = {}
    try:
        text = ctx.path("/etc/group").read_text(encoding="utf-8", errors="replace")
    except OSError:
        ctx.warn("Corral:User: /etc/group cannot be read: no groups")
        text = ""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 4:
            continue
        by_gid[fields[2]] = fields[0]
        for user in filter(None, fields[3].split(",")):
            by_user.setdefault(user, []).append(fields[0])
    return by_gid, by_user


def _last_login(path: Path, uid: int) -> str:
    if uid >= MAX_LASTLOG_UID:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(uid * LASTLOG.size)
            record = fh.read(LASTLOG.size)
    except OSError:
        return ""
    if len(record) < LASTLOG.size:
        return ""
    seconds = LASTLOG.unpack(record)[0]
    return rfc3339(seconds) if seconds > 0 else ""
