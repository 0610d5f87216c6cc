"""What every inventory collector is, and what it is given.

A collector gathers one inventory type (agent/inventory/schema.py) on this node: a module
with ``collect(ctx) -> list[Item]``, one per type and platform, chosen in registry.py.  It
reads the native tools' machine interfaces or their database files (never a human-formatted
listing where a machine format exists), through ``ctx.root`` for files (so a
test can point it at a throw-away root) and ``ctx.run`` for tools (so a test can replay output
recorded from a tool that cannot run here).  It returns the type's items: dicts of the type's
attributes to strings; an attribute it cannot know is left out.

A collector raises :class:`CollectError` (one line: what could not be read and why) when
its source fails; the gathering reports it and goes on with the other types.  A per-item
problem (one unreadable file, one malformed record) is a ``ctx.warn`` and that item is
skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.tools import Completed

Item = dict[str, str]
# argv, extra environment, timeout (s) -> the finished tool; raises ToolTimeout on overrun,
# FileNotFoundError when the tool is not on this node.
Run = Callable[[list[str], Mapping[str, str], float], Completed]


class CollectError(Exception):
    """A type's source could not be read (the tool failed, the database is damaged)."""


@dataclass(frozen=True)
class FileSpec:
    """One entry of AWS-GatherSoftwareInventory's ``files`` parameter (SSM's shape)."""

    path: str
    patterns: tuple[str, ...] = ("*",)
    recursive: bool = False
    dir_scan_limit: int = 5_000  # SSM's default
    dir_depth_limit: int = 32  # Corral's
    file_scan_limit: int = 500  # SSM's FileCountLimit, here per spec
    sha256: bool = False  # Corral's: also hash each file (bounded by SHA256_MAX_BYTES)


@dataclass
class CollectContext:
    platform: str  # Linux | MacOS | Windows
    run: Run
    root: Path = Path("/")  # where the node's files are (tests: a throw-away root)
    node_id: str = ""
    agent_version: str = ""
    files: tuple[FileSpec, ...] = ()  # AWS:File's specs, checked against file_roots
    file_roots: tuple[str, ...] = ()  # where AWS:File may look (agent.toml)
    custom_dir: Path | None = None  # the agent's inventory/custom/ folder
    registry: tuple[Mapping[str, Any], ...] = ()  # AWS:WindowsRegistry's specs (Windows)
    deadline: float | None = None  # time.monotonic() by which to stop
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        """A problem with one item or one source file, reported in the step's output."""
        if len(self.warnings) < 100:
            self.warnings.append(text[:500])

    def path(self, absolute: str) -> Path:
        """``absolute`` (a path on the node, "/var/lib/dpkg/status") under ``root``."""
        return self.root / absolute.lstrip("/")


# A collector: the type's items on this node; CollectError when its source fails.
Collect = Callable[[CollectContext], list[Item]]
