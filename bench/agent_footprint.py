"""Idle footprint of one real agent: RSS of its process tree and its CPU, over a window.

Starts a server, registers one agent with ``corral-agent register``, runs ``corral-agent run``,
waits until the node is Online *and* answers a ping (so the daemon's loops are up), lets it
settle, then samples the agent's whole process tree with psutil every second.

Budget (ARCHITECTURE.md): idle RSS <= 35 MB (aim 25 MB), idle CPU ~0 (< 0.1 % of a core).

Also prints the ten slowest imports by cumulative time of ``import agent.daemon``
(``python -X importtime``) as a hint of where the resident memory comes from.

    .venv/bin/python bench/agent_footprint.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
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
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    mb,
    median,
    print_table,
    run_cli,
    running_server,
    sample_tree,
    tree_uss,
    verdict,
    wait_until,
    workdir,
)

RSS_BUDGET_MB = 35.0
RSS_AIM_MB = 25.0
CPU_BUDGET_PERCENT = 0.1
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def register_agent(server: Server, state_dir: Path) -> str:
    activation = server.create_activation(1)
    result = run_cli(
        [
            str(BIN / "corral-agent"),
            "register",
            "--url",
            server.url,
            "--id",
            activation["activation_id"],
            "--code",
            activation["activation_code"],
            "--ca-hash",
            server.ca_hash,
            "--state-dir",
            str(state_dir),
            "--output",
            "json",
        ]
    )
    if result.returncode != 0:
        raise BenchError(f"corral-agent register failed: {result.stderr.strip()}")
    node_id: str = json.loads(result.stdout)["node_id"]
    return node_id


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Measure one idle corral-agent's RSS (process tree) and CPU.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling window (60)")
    parser.add_argument("--interval", type=float, default=1.0, help="RSS sample period (1)")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="wait after the first ping, before sampling (5)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state)")
    args = parser.parse_args()
    install_signal_handlers()

    with deadline(args.seconds + args.settle + 180), workdir("footprint", args.keep) as root:
        with running_server(root) as server:
            state_dir = root / "agent"
            node_id = register_agent(server, state_dir)
            agent = Proc(
                [str(BIN / "corral-agent"), "run", "--state-dir", str(state_dir)], root, "agent"
            )
            try:
                rtt = wait_online_and_answering(server, node_id, agent, 60.0)
                time.sleep(args.settle)
                proc = psutil.Process(agent.pid)
                print(
                    f"sampling agent pid {agent.pid} ({node_id}) for {args.seconds:g} s ...",
                    file=sys.stderr,
                )
                sample = sample_tree(proc, args.seconds, args.interval)
                uss = tree_uss(proc)
                if not agent.alive():
                    raise BenchError(f"the agent exited while sampled:\n{agent.stderr_tail()}")
            finally:
                code = agent.stop()
                if code not in (0, None):
                    print(f"agent exited with {code}:\n{agent.stderr_tail()}", file=sys.stderr)
        hint = import_hint(root)

    rss_med = median(sample.rss)
    print_table(
        f"corral-agent idle footprint ({len(sample.rss)} samples over "
        f"{sample.wall_seconds:.0f} s, after a ping of {rtt:.1f} ms)",
        ["figure", "value", "budget", "verdict"],
        [
            ["RSS min (MB)", mb(min(sample.rss)), "", ""],
            [
                "RSS median (MB)",
                mb(rss_med),
                f"<= {RSS_BUDGET_MB:g} (aim {RSS_AIM_MB:g})",
                verdict(rss_med / MB <= RSS_BUDGET_MB),
            ],
            [
                "RSS max (MB)",
                mb(max(sample.rss)),
                f"<= {RSS_BUDGET_MB:g}",
                verdict(max(sample.rss) / MB <= RSS_BUDGET_MB),
            ],
            ["USS at end (MB, private)", mb(uss), "", ""],
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
        "RSS hint: slowest imports of `import agent.daemon` (python -X importtime, cumulative)",
        ["module", "cumulative ms", "self ms", "depth"],
        [[name, f"{cum / 1000:.1f}", f"{own / 1000:.1f}", depth] for cum, own, name, depth in hint],
    )
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
