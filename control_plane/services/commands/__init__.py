"""Run Command: send a document to many nodes and follow it.

service.py       sending (checked whole, stored, handed to the dispatcher), reading, cancelling
dispatcher.py    the fan-out: rate and error control, delivery, timeouts, final statuses
state.py         one command's per-node statuses and its overall status
reports.py       what agents report (invocation_update), stored in the channel's group commit
late_results.py  a result that arrives after the invocation ended
views.py         what the API shows of a command and its invocations (output per permission)
nesting.py       nested documents (aws:runDocument), authorized and embedded at send
rate.py          max-concurrency / max-errors values
"""

from control_plane.services.commands.service import CommandService, Planned

__all__ = ["CommandService", "Planned"]
