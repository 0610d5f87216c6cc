"""Run Command fan-out: `echo hi` on every node, from the request to every result stored.

Two phases, each against its own fresh server (``corral-server`` on SQLite, loopback):

1. ``--real`` (50) real agents: one activation with that limit, ``corral-agent register`` per
   node (its own ``--state-dir``), ``corral-agent run`` per node.  Sending waits until the
   server lists every node Online *and* every agent's ``status.json`` shows a ``last_contact``
   after it started (it has answered a poll; Online alone is true for 70 s after registering).
2. ``--sim`` (1000) simulated agents in one process (bench/_simagent.py: real HTTPS long-polls,
   the real wire protocol; a run_command is answered InProgress then Success, no process).

Each run: subscribe to ``GET /v1/events`` (Server-Sent Events) first, then ``t0`` = the wall
clock just before ``POST /v1/commands`` (``AWS-RunShellScript``, ``commands: ["echo hi"]``,
``targets: ["all"]``: the phase's server knows only its fleet, and node ids are limited to 50
per command as in SSM) on an already-open connection, then wait until every node's terminal
``command.invocation_status_changed`` event has arrived (a ``GET /v1/commands/{id}`` after
``--safety-poll`` s without an event guards against lost events).  Per node, in seconds
after ``t0``:

* ``started``: the invocation's ``started_at``, which the agent reports in its InProgress
  ``invocation_update`` (read from the server's database after the run, since the API's
  timestamps have whole seconds only);
* ``stored``: the arrival here of the node's terminal event (what an operator following the
  command sees; the server publishes it after committing the result).  If an event was lost,
  the invocation's ``updated_at`` (the server's clock when it stored the result) stands in;
  the ``lost ev`` column counts those.

``all stored`` is the latest ``stored``; ``completed`` is the command's ``completed_at``.
``waves`` are the dispatcher rounds that sent run_command messages and how many each sent:
SSM's ramp-up (one node, then two more per acknowledgement) shows there.

Resources over the run (``t0`` until all stored): the server's CPU (its process tree) and peak
RSS; the agents' CPU and peak RSS summed over all their processes.  Agents run in a
CPU-accounting cgroup of their own when one can be made (root on Linux), which also counts
the short-lived document workers and shells a process-tree walk misses; otherwise their CPU
is sampled from the process trees (``agents CPU`` then says ``sampled``).  Summed RSS counts
pages shared between an agent and its fork server once per process.  ``bench CPU`` is this
script's own (the observer), ``machine %`` all CPUs busy over the run (100 % = every core).

Budgets (issue): 50 real nodes all results stored within 1 s (aim 0.5 s); 1,000 simulated
nodes within 5 s.  ``--concurrency`` takes several values (``100%,50``: ``--max-concurrency
100%`` and the default 50); a value that means the same limit as an earlier one for this
fleet (50 of 50 nodes is 100 %) is run once.

    .venv/bin/python bench/fanout.py [--real 50] [--sim 1000] [--runs 3] [--keep]

This file is the command line; the pieces: ``_fanout_run.py`` (one run: events, fleet, times),
``_fanout_phases.py`` (real and simulated agents), ``_fanout_report.py`` (the tables).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from _common import (
    DeadlineExceeded,
    deadline,
    install_signal_handlers,
    raise_open_file_limit,
    run_main,
    workdir,
)
from _fanout_phases import real_phase, sim_phase
from _fanout_report import machine_load, report
from _fanout_run import Run


# Main --------------------------------------------------------------------------------------
def _concurrency_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    for value in values:
        number = value[:-1] if value.endswith("%") else value
        if not number.isdigit() or int(number) == 0:
            raise argparse.ArgumentTypeError(f"{value!r}: N or N%")
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    try:
        with deadline(seconds):
            yield
    except DeadlineExceeded:
        print(f"stopped after --max-seconds {seconds:g}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run Command fan-out latency: `echo hi` on real agents, then simulated ones."
    )
    parser.add_argument("--real", type=int, default=50, help="real agents (50; 0 skips)")
    parser.add_argument("--sim", type=int, default=1000, help="simulated agents (1000; 0 skips)")
    parser.add_argument(
        "--sim-procs", type=int, default=1, help="processes for the simulated agents (1)"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=["100%", "50"],
        help="max_concurrency values, comma-separated (100%%,50); the first decides the budget",
    )
    parser.add_argument("--runs", type=int, default=3, help="commands per value (3)")
    parser.add_argument(
        "--transports",
        type=lambda text: [t for t in text.split(",") if t],
        default=["websocket", "https"],
        help="how the agents connect, each measured in turn (websocket,https)",
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="pause before each command, s (2)"
    )
    parser.add_argument("--run-timeout", type=float, default=60.0, help="limit per command, s (60)")
    parser.add_argument(
        "--safety-poll",
        type=float,
        default=1.0,
        help="GET the command after this long without an event (events lost?), s (1)",
    )
    parser.add_argument(
        "--rss-interval", type=float, default=0.05, help="RSS sampling period, s (0.05)"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=180.0, help="real agents up and polling, s (180)"
    )
    parser.add_argument(
        "--register-parallel", type=int, default=4, help="`corral-agent register` at once (4)"
    )
    parser.add_argument(
        "--no-cgroup",
        action="store_true",
        help="do not count the agents' CPU in a cgroup; sample their process trees",
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="overall limit (900)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    parser.add_argument(
        "--profile", default="", metavar="DIR", help="py-spy the server over each run into DIR"
    )
    args = parser.parse_args()
    install_signal_handlers()
    fd_limit = raise_open_file_limit(1 << 20)  # inherited by the server and the agents
    if fd_limit < 4 * max(args.real, args.sim) + 200:
        print(f"warning: the open-file limit is only {fd_limit}", file=sys.stderr)

    args.load_before = machine_load()
    runs: list[Run] = []
    try:
        with workdir("fanout", args.keep) as root, _bounded(args.max_seconds):
            for transport in args.transports:
                if args.real > 0:
                    real_phase(root / f"real-{transport}", args, runs, transport)
            for transport in args.transports:
                if args.sim > 0:
                    sim_phase(root / f"sim-{transport}", args, runs, transport)
    finally:
        if runs:  # also what was measured before an error or a signal
            report(runs, args)
    return 0


if __name__ == "__main__":
    run_main(main)
