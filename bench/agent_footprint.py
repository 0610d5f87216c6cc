"""Idle footprint of one real agent: RSS, PSS and USS of each of its processes, and its CPU.

Starts a server, registers one agent with ``corral-agent register``, runs ``corral-agent run``
(with ``fork_server_idle_seconds = --release-after`` in its agent.toml), waits until the node
is Online *and* answers a ping (so the daemon's loops and its control channel are up), and
reports two states of the process tree:

* just started: the daemon and its fork server (which forks document workers);
* idle: once the fork server has gone unused for ``--release-after`` seconds the agent stops
  it (the next command starts it again, ~0.1 s), and the tree is the daemon alone.  The idle
  figures are sampled with psutil every second over ``--seconds``, CPU end to end.

PSS (proportional set size) divides each shared page among the processes that map it, so the
processes' PSS add up to what the tree costs the machine; USS is what a process alone holds.
The agent's modules are compiled to .pyc first, as an installed agent's are (pip and the
packages compile them): the CI environment sets PYTHONDONTWRITEBYTECODE, without which every
start would compile the agent again and keep the garbage.

Budget (issue 10): idle agent, whole tree, PSS <= 25 MB and CPU < 0.05 % of a core.

Also prints the ten slowest imports by cumulative time of ``import agent.daemon``
(``python -X importtime``) as a hint of where the resident memory comes from.

    .venv/bin/python bench/agent_footprint.py [--seconds 60] [--release-after 20]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from _common import (
    BIN,
    MB,
    BenchError,
    Proc,
    ProcMemory,
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    mb,
    median,
    print_table,
    register_agent,
    run_cli,
    run_main,
    running_server,
    sample_tree,
    tree_memory,
    verdict,
    wait_until,
    workdir,
)

PSS_BUDGET_MB = 25.0
CPU_BUDGET_PERCENT = 0.05
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def wait_online_and_answering(server: Server, node_id: str, agent: Proc, timeout: float) -> float:
    """Online in the node list and a ping answered; returns the ping's rtt_ms."""
    with server.api() as api:

        def online() -> bool:
            if not agent.alive():
                raise BenchError(f"the agent exited:\n{agent.stderr_tail()}")
            node: dict[str, Any] = api.get(f"/v1/nodes/{node_id}").json()
            return node.get("status") == "Online"

        wait_until(online, timeout, "the node to be Online")
        end = time.monotonic() + timeout
        while True:
            response = api.post(f"/v1/nodes/{node_id}/ping", json={"timeout_seconds": 10})
            if response.status_code == 200:
                rtt: float = response.json()["rtt_ms"]
                return rtt
            if time.monotonic() > end or not agent.alive():
                raise BenchError(f"the agent does not answer pings: {response.text}")
            time.sleep(0.2)


def import_hint(cwd: Path, top: int = 10) -> list[tuple[int, int, str, int]]:
    """(cumulative us, self us, module, depth) of the slowest imports of agent.daemon.

    Run outside the repository so that ``-c`` (cwd first on sys.path) imports the same code
    as the agent processes do (PYTHONPATH, else the installed package)."""
    result = run_cli([sys.executable, "-X", "importtime", "-c", "import agent.daemon"], cwd=cwd)
    if result.returncode != 0:
        raise BenchError(f"importing agent.daemon failed: {result.stderr[-500:]}")
    rows: list[tuple[int, int, str, int]] = []
    for line in result.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            self_us, cumulative, indent, name = match.groups()
            rows.append((int(cumulative), int(self_us), name, (len(indent) - 1) // 2))
    rows.sort(reverse=True)
    return rows[:top]


def compile_agent() -> None:
    """.pyc for the agent's modules, as an installed agent has them."""
    import agent

    source = Path(agent.__file__).parent
    result = run_cli([sys.executable, "-m", "compileall", "-q", str(source)])
    if result.returncode != 0:
        raise BenchError(f"compileall failed: {result.stdout[-300:]}{result.stderr[-300:]}")


def memory_rows(rows: list[ProcMemory]) -> list[list[object]]:
    out: list[list[object]] = [[r.pid, r.name, mb(r.rss), mb(r.pss), mb(r.uss)] for r in rows]
    total = sum(r.pss for r in rows)
    out.append(["", "whole tree", mb(sum(r.rss for r in rows)), mb(total), ""])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Measure one idle corral-agent's memory (per process) and CPU.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="idle sampling window (60)")
    parser.add_argument("--interval", type=float, default=1.0, help="RSS sample period (1)")
    parser.add_argument(
        "--release-after",
        type=float,
        default=20.0,
        help="fork_server_idle_seconds for the agent (20; the default config says 300)",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="wait after the first ping, before sampling (5)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state)")
    args = parser.parse_args()
    install_signal_handlers()
    compile_agent()

    budget = args.seconds + args.settle + 2 * args.release_after + 240
    with deadline(budget), workdir("footprint", args.keep) as root:
        with running_server(root) as server:
            state_dir = root / "agent"
            node_id = register_agent(server, state_dir)
            (state_dir / "agent.toml").write_text(
                f"fork_server_idle_seconds = {args.release_after}\n", encoding="utf-8"
            )
            agent = Proc(
                [str(BIN / "corral-agent"), "run", "--state-dir", str(state_dir)], root, "agent"
            )
            try:
                rtt = wait_online_and_answering(server, node_id, agent, 60.0)
                time.sleep(args.settle)
                proc = psutil.Process(agent.pid)
                started = tree_memory(proc)
                print("waiting for the agent to stop its idle fork server ...", file=sys.stderr)
                wait_until(
                    lambda: not proc.children(),
                    2 * args.release_after + 90,
                    "the idle fork server to be stopped",
                )
                time.sleep(args.settle)
                print(
                    f"sampling agent pid {agent.pid} ({node_id}) for {args.seconds:g} s ...",
                    file=sys.stderr,
                )
                sample = sample_tree(proc, args.seconds, args.interval)
                idle = tree_memory(proc)
                if not agent.alive():
                    raise BenchError(f"the agent exited while sampled:\n{agent.stderr_tail()}")
            finally:
                code = agent.stop()
                if code not in (0, None):
                    print(f"agent exited with {code}:\n{agent.stderr_tail()}", file=sys.stderr)
        hint_dir = root / "import-hint"  # not root: its agent/ (the state dir) would shadow
        hint_dir.mkdir()
        hint = import_hint(hint_dir)

    headers = ["pid", "process", "RSS MB", "PSS MB", "USS MB"]
    print_table("corral-agent just started (daemon + fork server)", headers, memory_rows(started))
    print_table(
        f"corral-agent idle (fork server stopped after {args.release_after:g} s unused)",
        headers,
        memory_rows(idle),
    )
    pss = sum(r.pss for r in idle)
    print_table(
        f"idle agent against the budget ({len(sample.rss)} samples over "
        f"{sample.wall_seconds:.0f} s, after a ping of {rtt:.1f} ms)",
        ["figure", "value", "budget", "verdict"],
        [
            [
                "PSS, whole tree (MB)",
                mb(pss),
                f"<= {PSS_BUDGET_MB:g}",
                verdict(pss / MB <= PSS_BUDGET_MB),
            ],
            [
                "PSS just started, with the fork server (MB)",
                mb(sum(r.pss for r in started)),
                "",
                "",
            ],
            ["RSS median over the window (MB)", mb(median(sample.rss)), "", ""],
            [
                "CPU (% of one core, avg)",
                f"{sample.cpu_percent:.3f}",
                f"< {CPU_BUDGET_PERCENT:g}",
                verdict(sample.cpu_percent < CPU_BUDGET_PERCENT),
            ],
            ["CPU time in window (ms)", f"{sample.cpu_seconds * 1000:.0f}", "", ""],
        ],
    )
    print_table(
        "Import hint: slowest imports of `import agent.daemon` (python -X importtime, cumulative)",
        ["module", "cumulative ms", "self ms", "depth"],
        [[name, f"{cum / 1000:.1f}", f"{own / 1000:.1f}", depth] for cum, own, name, depth in hint],
    )
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    run_main(main)
