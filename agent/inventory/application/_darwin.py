"""AWS:Application on macOS: Homebrew's installed formulae and casks, from
``brew info --json=v2 --installed`` (Homebrew's machine format).

Homebrew refuses to run as root, so when the agent is root brew runs as the owner of its
prefix (``sudo -u OWNER -H``).  A Mac without Homebrew has no items (and a warning).
Formula: Name (name), Version (the installed version, the linked one when several),
InstalledTime (its install time), Summary (desc), URL (homepage), Publisher (tap),
ApplicationType "Formula".  Cask: Name (token), Version (installed), InstalledTime
(installed_time), Summary (desc, else its display name), URL, Publisher (tap),
ApplicationType "Cask".  PackageManager "brew".
"""

from __future__ import annotations

import json
from typing import Any

from agent.inventory.application import item, rfc3339, tool_timeout
from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout, as_owner

# Apple silicon's prefix, then Intel's.
PREFIXES = ("/opt/homebrew", "/usr/local")


def collect(ctx: CollectContext) -> list[Item]:
    brew = next((p for p in PREFIXES if ctx.path(p + "/bin/brew").is_file()), None)
    if brew is None:
        ctx.warn("brew: Homebrew is not installed (no /opt/homebrew or /usr/local/bin/brew)")
        return []
    argv = as_owner(
        ctx.path(brew + "/bin/brew"), [brew + "/bin/brew", "info", "--json=v2", "--installed"]
    )
    env = {
        "HOMEBREW_NO_AUTO_UPDATE": "1",
        "HOMEBREW_NO_ANALYTICS": "1",
        "HOMEBREW_NO_ENV_HINTS": "1",
    }
    try:
        done = ctx.run(argv, env, tool_timeout(ctx))
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"brew info: {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"brew info failed: {done.reason()}")
    try:
        found = json.loads(done.stdout)
    except ValueError:
        raise CollectError("brew info: its output is not JSON") from None
    if not isinstance(found, dict):
        raise CollectError("brew info: expected a JSON object with formulae and casks")
    items: list[Item] = []
    for formula in _list(found.get("formulae")):
        got = _formula(formula)
        if got is None:
            ctx.warn(f"brew: formula {str(formula.get('name'))[:80]!r} without a version; skipped")
        else:
            items.append(got)
    for cask in _list(found.get("casks")):
        got = _cask(cask)
        if got is None:
            ctx.warn(f"brew: cask {str(cask.get('token'))[:80]!r} without a version; skipped")
        else:
            items.append(got)
    return items


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> str | None:
    return rfc3339(value) if isinstance(value, int) and value > 0 else None


def _formula(formula: dict[str, Any]) -> Item | None:
    installed = _list(formula.get("installed"))
    linked = _text(formula.get("linked_keg"))
    chosen = next((i for i in installed if i.get("version") == linked), None)
    if chosen is None and installed:
        chosen = installed[-1]
    if chosen is None or not _text(chosen.get("version")):
        return None
    return item(
        {
            "Name": _text(formula.get("name")),
            "Version": _text(chosen.get("version")),
            "InstalledTime": _time(chosen.get("time")),
            "Summary": _text(formula.get("desc")),
            "URL": _text(formula.get("homepage")),
            "Publisher": _text(formula.get("tap")),
            "ApplicationType": "Formula",
            "PackageManager": "brew",
        }
    )


def _cask(cask: dict[str, Any]) -> Item | None:
    version = _text(cask.get("installed"))
    if not version:
        return None
    names = cask.get("name")
    display = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    return item(
        {
            "Name": _text(cask.get("token")),
            "Version": version,
            "InstalledTime": _time(cask.get("installed_time")),
            "Summary": _text(cask.get("desc")) or display,
            "URL": _text(cask.get("homepage")),
            "Publisher": _text(cask.get("tap")),
            "ApplicationType": "Cask",
            "PackageManager": "brew",
        }
    )
