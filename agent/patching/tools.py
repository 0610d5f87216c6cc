"""What every package provider does the same way: take the tree it manages (``root``), run
its package manager's commands with a time limit, count the seconds they took, and refuse
a value that is not of the form the command line may be given.

:class:`ToolUser` is the base of each provider (``Patcher(root="/", *, timeout=3600.0,
run=run_tool)``, apt's ``Provider``): a tool that overruns ``timeout`` or cannot be started
becomes PackageError, and the wall time of every command is added to ``_seconds`` (a scan's
or an install's ``manager_seconds``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from agent.patching.base import PackageError
from agent.tools import Completed, Runner, ToolTimeout, run_tool


def check(pattern: re.Pattern[str], value: str, what: str) -> str:
    """``value`` if ``pattern`` matches all of it, else PackageError naming ``what``."""
    if not pattern.fullmatch(value):
        raise PackageError(f"invalid {what} {value[:80]!r}")
    return value


def check_root(root: str, refused: str = "") -> Path:
    """``root`` as a Path: absolute, holding none of the characters in ``refused``."""
    path = Path(root)
    if not path.is_absolute() or any(c in root for c in refused):
        raise PackageError(f"invalid package root {root!r}: an absolute path")
    return path


class ToolUser:
    """A package manager run as commands: ``root`` the tree it manages, ``timeout`` the
    seconds each command may take, ``run`` how commands are run."""

    # Characters a root may not hold (it is written into the manager's options or files).
    root_refuses: ClassVar[str] = "\n"
    # The environment each command runs in unless the call gives its own.
    tool_env: ClassVar[Mapping[str, str]] = {}

    def __init__(self, root: str = "/", *, timeout: float = 3600.0, run: Runner = run_tool):
        self.root = self._checked_root(root)
        self.timeout = timeout
        self._run = run
        self._seconds = 0.0

    @classmethod
    def _checked_root(cls, root: str) -> Path:
        return check_root(root, cls.root_refuses)

    def _tool(
        self, argv: list[str], env: Mapping[str, str] | None = None, *, label: str = ""
    ) -> Completed:
        """Run ``argv`` (in ``env``, else ``tool_env``); an overrun is PackageError (its
        message after ``label:`` when given), as is a tool that cannot be started."""
        started = time.monotonic()
        try:
            return self._run(argv, self.tool_env if env is None else env, self.timeout)
        except ToolTimeout as exc:
            raise PackageError(f"{label}: {exc}" if label else str(exc)) from None
        except OSError as exc:
            raise PackageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        finally:
            self._seconds += time.monotonic() - started
