"""A session's processes for this OS (spawning, the terminal, who runs them, killing them),
chosen here and nowhere else."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from agent.sessions._process_windows import (
        command_argv,
        end_session,
        open_terminal,
        resolve_user,
        set_terminal_size,
        spawn_in_terminal,
        spawn_piped,
    )
else:
    from agent.sessions._process_posix import (
        command_argv,
        end_session,
        open_terminal,
        resolve_user,
        set_terminal_size,
        spawn_in_terminal,
        spawn_piped,
    )

__all__ = [
    "command_argv",
    "end_session",
    "open_terminal",
    "resolve_user",
    "set_terminal_size",
    "spawn_in_terminal",
    "spawn_piped",
]
