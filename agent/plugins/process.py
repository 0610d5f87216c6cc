"""The child-process runner for this OS, chosen here and nowhere else."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from agent.plugins._process_windows import ProcessRunner
else:
    from agent.plugins._process_posix import ProcessRunner

__all__ = ["ProcessRunner"]
