"""The agent upgrading itself (``corral:updateAgent``, agent/plugins/update_agent.py).

One module per concern::

    base.py       what is installed (the PACKAGE file), a manifest entry, UpdateError
    versions.py   version comparison (dpkg's rules: digits compare as numbers, ``~`` sorts first)
    manifest.py   the signed manifest: Ed25519 over the exact body bytes, the pinned key
    server.py     the package routes of the server, over the agent's CA-pinned TLS and token
    download.py   a package streamed to ``<state_dir>/updates/``, size and SHA-256 checked
    deb.py, rpm.py, apk.py, pacman.py   one installer per package format
    restart.py    how the running agent is restarted (systemd, or SIGTERM + a supervisor)
    watch.py      waiting for the new agent to be up (its status file)
    flow.py       the upgrade: decide, download, verify, install, restart, watch, roll back

``installer(format)`` below is the one registry: package format -> installer, each module
imported only when chosen.
"""

from __future__ import annotations

import importlib

from agent.updates.base import Installer, UpdateError

# PACKAGE's "format" -> the module holding ``Installer``.  ``arch`` is packaging/build's name
# for the pacman format.
INSTALLERS: dict[str, str] = {
    "deb": "agent.updates.deb",
    "rpm": "agent.updates.rpm",
    "apk": "agent.updates.apk",
    "arch": "agent.updates.pacman",
    "pacman": "agent.updates.pacman",
}


def installer(fmt: str) -> Installer:
    module = INSTALLERS.get(fmt)
    if module is None:
        known = ", ".join(sorted(INSTALLERS))
        raise UpdateError(
            f"this agent's package format {fmt[:40]!r} is not one Corral installs ({known})"
        )
    made: Installer = importlib.import_module(module).Installer()
    return made


__all__ = ["INSTALLERS", "Installer", "UpdateError", "installer"]
