"""The command lock for this OS, chosen here and nowhere else."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from agent.execution._lock_windows import is_locked, try_lock
else:
    from agent.execution._lock_posix import is_locked, try_lock

__all__ = ["is_locked", "try_lock"]
