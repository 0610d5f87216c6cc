"""State Manager: associations (a document, its parameters, targets and a schedule) that the
control plane applies to nodes and that each agent enforces by itself while offline.

model.py      what an association is made of and the rules it must follow
service.py    create / update / list / show / versions / delete / run now / executions
runs.py       starting one run: a Run Command command stored with its execution and slot
job.py        the scheduler job: due runs, targets re-evaluated, node sets sent, results
node_sets.py  the ``associations`` message each node keeps (agent/associations/)
"""

from control_plane.services.associations.job import AssociationJob
from control_plane.services.associations.model import Spec
from control_plane.services.associations.runs import Runs
from control_plane.services.associations.service import AssociationService

__all__ = ["AssociationJob", "AssociationService", "Runs", "Spec"]
