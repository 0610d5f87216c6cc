"""The server's scheduler: one loop, run by whichever server holds the lease, that asks each
scheduled job (associations, maintenance windows) what is due and when to look again.

See loop.py for the loop and lease.py for the lease that makes it one loop per fleet."""

from control_plane.services.scheduling.lease import Lease
from control_plane.services.scheduling.loop import ScheduledJob, Scheduler

__all__ = ["Lease", "ScheduledJob", "Scheduler"]
