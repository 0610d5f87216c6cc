"""The upgrade, in order: decide (:func:`decide`, the whole decision table, pure), fetch and
verify (the manifest against the pinned key, both packages against the manifest), install
the new package, restart the agent, wait for it; when it does not come up, install the
previous package again, restart, wait, and fail saying so.

Rollback needs the package of the version installed now.  It is downloaded (and checked)
before anything is installed; when the server does not have it the upgrade is refused,
unless the operator passes ``allowNoRollback`` (then a new agent that does not start leaves
the node without one until someone reinstalls it by hand).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.tools import Completed, Runner, ToolTimeout
from agent.updates.base import (
    PACKAGE_NAME,
    Entry,
    InstalledPackage,
    Installer,
    Stopped,
    UpdateError,
)
from agent.updates.manifest import Manifest
from agent.updates.restart import Restarter
from agent.updates.versions import compare
from agent.updates.watch import AgentStatus, Watcher

PIP_INSTALLED = (
    "this agent was installed with pip, not a package; upgrade it with pip install --upgrade corral"
)
INSTALL_TIMEOUT_SECONDS = 600.0
LATEST = "latest"  # the newest version the server has for this node's format and arch


@dataclass(frozen=True)
class Request:
    version: str
    allow_downgrade: bool = False
    allow_no_rollback: bool = False


@dataclass(frozen=True)
class Plan:
    target: Entry
    previous: Entry | None  # the installed version's package (None: no rollback possible)
    downgrade: bool


@dataclass(frozen=True)
class Done:
    """The end of an upgrade: Success or Failed, and the last line."""

    success: bool
    message: str


def decide(installed: InstalledPackage, manifest: Manifest, request: Request) -> Plan | Done:
    """The decision table, once the manifest is verified (pip-installed and same-version
    are decided before anything is fetched: see :meth:`Upgrade.run`)."""
    name, fmt, arch = installed.name, installed.format, installed.arch
    target = manifest.find(name, request.version, fmt, arch)
    if target is None:
        have = ", ".join(manifest.versions(name, fmt, arch)) or "none"
        return Done(
            False,
            f"version {request.version} is not on the server (it has: {have}) "
            f"for {name} {fmt} {arch}",
        )
    downgrade = compare(request.version, installed.version) < 0
    if downgrade and not request.allow_downgrade:
        return Done(
            False,
            f"{request.version} is older than the installed {installed.version}: "
            "pass allowDowngrade=true to downgrade",
        )
    previous = manifest.find(name, installed.version, fmt, arch)
    if previous is None and not request.allow_no_rollback:
        return Done(
            False,
            f"the server does not have the installed version's package ({name} "
            f"{installed.version} {fmt} {arch}), so a failed upgrade could not be rolled "
            "back: add it to the server's packages, or pass allowNoRollback=true",
        )
    return Plan(target, previous, downgrade)


class Fetcher(Protocol):
    def manifest(self) -> Manifest: ...

    def download(self, entries: list[Entry]) -> list[Path]:
        """Each entry's file, its size and sha256 checked (UpdateError otherwise)."""


@dataclass
class Upgrade:
    installed: InstalledPackage | None
    fetcher: Fetcher
    installer: Callable[[str], Installer]
    restarter: Callable[[], Restarter]
    watcher: Watcher
    run_tool: Runner
    say: Callable[[str], None]
    stopped: Callable[[], bool]
    start_timeout: float = 90.0
    clock: Callable[[], float] = time.time

    def run(self, request: Request) -> Done:
        installed = self.installed
        if installed is None:
            return Done(False, PIP_INSTALLED)
        if installed.name != PACKAGE_NAME:
            return Done(False, f"the PACKAGE file names {installed.name!r}, not {PACKAGE_NAME}")
        if installed.version == request.version:
            return Done(True, f"already at {request.version}")
        tool = self.installer(installed.format)
        manifest = self.fetcher.manifest()
        self.say(f"verified the package manifest's signature ({manifest.key_id})")
        if request.version == LATEST:
            versions = manifest.versions(installed.name, installed.format, installed.arch)
            if not versions:
                return Done(
                    False,
                    f"the server has no {installed.name} package for "
                    f"{installed.format} {installed.arch}",
                )
            request = dataclasses.replace(request, version=versions[-1])
            if request.version == installed.version:
                return Done(True, f"already at {request.version}, the latest on the server")
            self.say(f"the latest version on the server is {request.version}")
        plan = decide(installed, manifest, request)
        if isinstance(plan, Done):
            return plan
        wanted = [plan.target] + ([plan.previous] if plan.previous else [])
        files = self.fetcher.download(wanted)
        for entry in wanted:
            self.say(
                f"downloaded {entry.file} ({entry.size} bytes), sha256 {entry.sha256} verified"
            )
        if plan.previous is None:
            self.say("the server does not have the installed version: rollback is not possible")
        if self.stopped():
            raise Stopped("nothing was installed")
        failure = self._switch(tool, files[0], plan.target.version, plan.downgrade)
        if failure is None:
            return Done(True, f"upgraded from {installed.version} to {plan.target.version}")
        if plan.previous is None:
            return Done(False, f"{failure}; no previous package to roll back to")
        self.say(f"{failure}; rolling back to {installed.version}")
        again = self._switch(tool, files[1], installed.version, downgrade=not plan.downgrade)
        if again is None:
            return Done(False, f"{failure}; rolled back to {installed.version}")
        return Done(False, f"{failure}; the rollback to {installed.version} failed too: {again}")

    def _switch(self, tool: Installer, file: Path, version: str, downgrade: bool) -> str | None:
        """Install ``file``, restart, wait for agent ``version``: None, or what went wrong."""
        argv = tool.argv(file, downgrade=downgrade)
        try:
            done: Completed = self.run_tool(argv, tool.env, INSTALL_TIMEOUT_SECONDS)
        except ToolTimeout as exc:
            return f"installing {file.name} failed: {exc}"
        except OSError as exc:
            return f"installing {file.name} failed: cannot run {argv[0]}: {exc.strerror or exc}"
        if done.returncode != 0:
            return f"installing {file.name} failed: {tool.name}: {done.reason()}"
        self.say(f"installed {file.name} ({' '.join(argv[:-1])})")
        # The runtime's files are the new package's now: a module imported from here on must
        # be read from them as they are (zipimport would read a replaced stdlib zip at the
        # old offsets).  What the flow itself needs was imported before (update_agent.py).
        importlib.invalidate_caches()
        since = self.clock()
        try:
            self.say(self.restarter().restart())
        except UpdateError as exc:
            return f"agent {version} did not start ({exc.message})"
        status, why = self.watcher.wait(version, since, self.start_timeout)
        if status is None:
            return f"agent {version} did not start ({why})"
        self.say(_running(status))
        return None


def _running(status: AgentStatus) -> str:
    return f"agent {status.version} is running (pid {status.pid}) and reached the server"
