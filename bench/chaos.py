"""Fault injection: a real server, real agents, a stream of commands and faults drawn at random;
then every result is checked (issue 17).

Setup: ``corral-server`` on a free loopback port (SQLite), a fault proxy in front of it
(bench/_proxy.py: it terminates TLS with the server's own certificate, so it can refuse
requests over ``--proxy-limit`` with a 413 as nginx would), ``--agents`` real ``corral-agent``
processes registered *through the proxy* (their server URL is the proxy's), every other one on
``transport = "https"`` (long-poll; the proxy's request limit applies to it) and the rest on
the default ``auto`` (the websocket channel: the proxy relays its frames unlimited).

The stream: ``--commands`` commands sent over ``--duration`` seconds, each to one node (one in
five to two or three): no output, a few lines, 24 KB to 200 KB of stdout and up to 20 KB of
stderr (beyond the record: blob uploads), failing scripts (exit 1-99), sleeping ones (1-8 s)
and three-step documents.  Each step first makes a directory ``runs/<tag>/<node>.s<step>.<pid>``
(a directory, not a line in a file: a full-disk fault limits file sizes, not mkdir), then prints
lines derived from the command's tag (an ASCII line with one multi-byte character, repeated), so
what it printed is known here byte for byte.

The faults: ``--faults`` of them at random times (``--kinds``, weights in KINDS):

- ``agent_kill9``: SIGKILL the agent process (its workers live on), restart it 0.2-3 s later;
- ``worker_kill9``: SIGKILL a running document worker (found by the journal's worker.json);
  its command may end Failed: such a result is excused, not counted as lost;
- ``server_kill9``: SIGKILL the server, start it again 0.5-6 s later on the same data dir and
  port;
- ``agent_stop`` / ``server_stop``: SIGSTOP for 1-25 s (agent) or 1-12 s (server), SIGCONT;
- ``proxy_drop`` / ``proxy_reset``: close (FIN) or abort (RST) every proxied connection;
- ``proxy_stall``: no byte forwarded for 1-15 s, nothing closed;
- ``proxy_slice``: bytes forwarded 1-64 at a time for 2-10 s;
- ``proxy_refuse``: the proxy stops listening for 1-8 s (connection refused);
- ``disk_full``: RLIMIT_FSIZE set to 0 (prlimit, no privileges) on the agent, its fork server
  and its workers for 2-8 s: every write that would grow a file fails (EFBIG), as on a full
  disk; results of commands running then may honestly fail: excused;
- ``clock_jump``: the agent's wall clock (``time.time``/``time_ns`` of the agent, its fork
  server and workers: a ``sitecustomize`` on their PYTHONPATH adds an offset read from a file)
  jumps by +-5 min to +-1 day for 3-15 s.  Not the system clock (that needs CAP_SYS_TIME and
  would hit the whole machine), not C-level clocks (OpenSSL, ``datetime.now``); faketime is
  not installed here.

An agent or the server that exits without being killed is restarted after a second (as
systemd's ``Restart=`` would) and listed under "unexpected exits".

At the end every fault is ended, the server and agents are up, and the harness waits
(``--settle``) for every command and invocation to be final, then checks, per invocation:
**hanging** (not final), **doubled** (a step ran more than once), **lost** (the final status
or exit code is not the script's and no fault excuses it, or the status is right but an
output differs from what the script printed: fetched through the output route, blobs
included, waiting for late blob uploads), and per agent **dead** (rows in its outbox's dead
table).  Exit status 1 if any of the four is non-zero.  The seed is printed at the start and
the end; it fixes the command stream and the fault schedule (kinds, times, durations, targets
drawn); which worker a worker kill hits depends on what runs at that moment.

This file is the command line; the pieces: ``_chaos_stream.py`` (the commands),
``_chaos_run.py`` (the fleet and the faults), ``_chaos_checks.py`` (the verdict and report).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from _chaos_checks import check, reconcile, report, wait_final
from _chaos_run import KINDS, Chaos
from _chaos_stream import COMMAND_KINDS, log, make_stream
from _common import (
    BenchError,
    CpuCgroup,
    install_signal_handlers,
    running_server,
    stop_all,
    wait_until,
    workdir,
)
from _proxy import FaultProxy


# Main ---------------------------------------------------------------------------------------
def kill_leftovers(root: Path) -> None:
    """Workers and scripts outlive their agent by design: SIGKILL whatever still runs with our
    clock file in its environment or a working directory under ``root``."""
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            mine = Path(proc.cwd()).is_relative_to(root) or str(root) in proc.environ().get(
                "CORRAL_CHAOS_CLOCK", ""
            )
            if mine:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        except (psutil.Error, OSError):
            continue


def run_all(args: argparse.Namespace) -> int:
    log(
        f"chaos: seed {args.seed}, {args.agents} agents, {args.commands} commands, "
        f"{args.faults} faults over {args.duration:g} s"
    )
    specs = make_stream(
        random.Random(f"commands-{args.seed}"),
        args.commands,
        args.agents,
        args.duration,
        args.command_kinds,
    )
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(workdir("chaos", args.keep))
        stack.callback(kill_leftovers, root)
        cgroup = CpuCgroup.create("corral-chaos")
        if cgroup is not None:
            stack.callback(cgroup.remove)
        server = stack.enter_context(
            running_server(
                root, settings={"rate_limit_per_second": 100000, "rate_limit_burst": 1000000}
            )
        )
        proxy = FaultProxy(
            int(server.listen.rsplit(":", 1)[1]),
            certfile=str(server.data_dir / "server.pem"),
            keyfile=str(server.data_dir / "server.key"),
            cafile=server.ca_file,
            limit_bytes=args.proxy_limit,
            seed=args.seed,
        )
        stack.enter_context(proxy)
        chaos = Chaos(args, root, server, proxy, cgroup)

        def stop_agents() -> None:
            procs = [n.proc for n in chaos.nodes if n.proc is not None]
            for proc in procs:
                _cont(proc.pid)
            stop_all(procs, timeout=15)

        stack.callback(chaos.events.close)
        stack.callback(stop_agents)
        stack.callback(lambda: _cont(server.proc.pid) if server.proc else None)
        chaos.setup()
        log(
            f"chaos: {args.agents} agents up behind the proxy {proxy.url} (limit "
            f"{args.proxy_limit} B); running the schedule (events: {root / 'events.log'})"
        )
        chaos.run(specs)
        log("chaos: faults over; waiting for every command to be final")
        with server.api(timeout=30) as api:
            wait_until(lambda: server._ready(), 90, "the server after the faults", step=0.2)
            reconcile(api, specs)
            views = wait_final(api, specs, args.settle)
            verdict = check(chaos, api, specs, views)
        return report(chaos, specs, verdict, args)


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _kinds(known: dict[str, int]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        kinds = [k.strip() for k in text.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in known]
        if unknown or not kinds:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
        return kinds

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fault injection: real server and agents, commands and random faults; "
        "counts lost, doubled, hanging and dead results (exit 1 if any)."
    )
    parser.add_argument("--agents", type=int, default=6, help="real agents (6)")
    parser.add_argument("--commands", type=int, default=300, help="commands sent (300)")
    parser.add_argument("--faults", type=int, default=120, help="faults injected (120)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of the schedule (2 s per fault)"
    )
    parser.add_argument(
        "--kinds", type=_kinds(KINDS), default=list(KINDS), help=f"faults ({','.join(KINDS)})"
    )
    parser.add_argument(
        "--command-kinds",
        type=_kinds(COMMAND_KINDS),
        default=list(COMMAND_KINDS),
        help=f"commands ({','.join(COMMAND_KINDS)})",
    )
    parser.add_argument(
        "--proxy-limit",
        type=int,
        default=256 * 1024,
        help="the proxy's request body limit, bytes (262144; the server's is 1 MiB)",
    )
    parser.add_argument(
        "--settle", type=float, default=300, help="wait for every command final, s (300)"
    )
    parser.add_argument(
        "--output-wait", type=float, default=60, help="wait for late output blobs, s (60)"
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="print each event")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    if args.duration is None:
        args.duration = max(30.0, 2.0 * args.faults)
    if args.agents < 1 or args.commands < 0 or args.faults < 0:
        parser.error("--agents must be >= 1, --commands and --faults >= 0")
    install_signal_handlers()
    try:
        return run_all(args)
    finally:
        log(f"chaos: seed {args.seed}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
