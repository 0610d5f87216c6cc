"""Maintenance Windows, as SSM's: a schedule, a duration and a cutoff; targets and tasks
registered with the window; tasks run through Run Command in priority order while the window
is open.

model.py   fields, rules, statuses and views      service.py  create, register, read
job.py     the scheduled job (starts, follows)    runner.py   one task through Run Command
pseudo.py  {{WINDOW_ID}} and the other pseudo parameters
"""

from control_plane.services.windows.job import WindowJob
from control_plane.services.windows.service import WindowService

__all__ = ["WindowJob", "WindowService"]
