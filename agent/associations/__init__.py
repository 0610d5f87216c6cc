"""State Manager on the node: the associations that apply to it, kept in the state dir, and
the local scheduler that runs a scheduled one by itself while the server is out of reach.

- store.py: the set the server sent last (``associations.json``) and, per association, the
  last scheduled slot handled (``association_slots.json``); both written atomically, an
  unreadable one moved aside and reported (agent/state_recovery.py).
- scheduler.py: the local scheduler.  A run it starts is an ordinary command of the journal
  (its id is ``wire.association_command_id``, the server's for the same slot): it is run once,
  and reported through the outbox like any other.

``agent.schedules`` (the expression library) is imported only once an association with a
schedule is held: an agent without any keeps its idle footprint.
"""

from agent.associations.scheduler import LocalScheduler
from agent.associations.store import AssociationStore, open_store

__all__ = ["AssociationStore", "LocalScheduler", "open_store"]
