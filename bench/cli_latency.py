"""Wall time of the command-line tools, median of N runs (default 10) after one warm-up run.

Rows: ``corral --help``; ``corral nodes list`` against a fresh server with 20 registered nodes
(registered through the simulated-agent code, not running; the CLI is pointed at the server
with ``CORRAL_URL``, ``CORRAL_TOKEN`` and ``CORRAL_CA_FILE`` and an empty config dir); and
``corral-agent --help``.  A bare ``python -c pass`` is shown as the floor.  A command that does
not work yet (non-zero exit on the warm-up run) is reported as "unavailable" with its error.

Budget (ARCHITECTURE.md / brief): each command <= 0.4 s.

    .venv/bin/python bench/cli_latency.py [--runs 10] [--nodes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    BIN,
    code_under_test,
    deadline,
    install_signal_handlers,
    median,
    print_table,
    run_main,
    running_server,
    verdict,
    workdir,
)
from _simagent import register_nodes

BUDGET_SECONDS = 0.4
RUN_TIMEOUT = 30.0


@dataclass
class Case:
    label: str
    argv: list[str]
    check: Callable[[str], str | None] | None = None  # stdout -> problem, or None
    budget: bool = True


@dataclass
class Result:
    label: str
    times: list[float]
    problem: str | None = None


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else "(no output)"


def time_case(case: Case, runs: int, env: dict[str, str]) -> Result:
    if not Path(case.argv[0]).exists():
        return Result(case.label, [], f"{case.argv[0]} is not installed")

    def once() -> tuple[float, subprocess.CompletedProcess[str]]:
        start = time.perf_counter()
        done = subprocess.run(
            case.argv,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT,
        )
        return time.perf_counter() - start, done

    try:
        _, warm = once()
        if warm.returncode != 0:
            return Result(
                case.label, [], f"exit {warm.returncode}: {_first_line(warm.stderr or warm.stdout)}"
            )
        if case.check is not None and (problem := case.check(warm.stdout)):
            return Result(case.label, [], problem)
        times: list[float] = []
        for _ in range(runs):
            elapsed, done = once()
            if done.returncode != 0:
                return Result(case.label, times, f"exit {done.returncode} on a timed run")
            times.append(elapsed)
    except subprocess.TimeoutExpired:
        return Result(case.label, [], f"did not finish within {RUN_TIMEOUT:g} s")
    except OSError as exc:
        return Result(case.label, [], f"cannot run: {exc}")
    return Result(case.label, times)


def lists_nodes(node_ids: Sequence[str]) -> Callable[[str], str | None]:
    def check(stdout: str) -> str | None:
        missing = [n for n in node_ids if n not in stdout]
        if missing:
            return f"output lacks {len(missing)} of the {len(node_ids)} registered nodes"
        return None

    return check


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Median wall time of `corral --help`, `corral nodes list` and "
        "`corral-agent --help`."
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (10)")
    parser.add_argument("--nodes", type=int, default=20, help="registered nodes to list (20)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    install_signal_handlers()

    with (
        deadline(300 + args.runs * 4 * RUN_TIMEOUT),
        workdir("cli", args.keep) as root,
        running_server(root) as server,
    ):
        nodes = asyncio.run(register_nodes(server.url, server.ca_file, server.token, args.nodes))
        config_home = root / "cli-config"
        config_home.mkdir()
        env = {
            **os.environ,
            "CORRAL_URL": server.url,
            "CORRAL_TOKEN": server.token,
            "CORRAL_CA_FILE": server.ca_file,
            # No profile from the user's own config can leak in.
            "CORRAL_CONFIG": str(config_home / "config.toml"),
            "XDG_CONFIG_HOME": str(config_home),
            "COLUMNS": "200",
        }
        cases = [
            Case("python -c pass (floor)", [sys.executable, "-c", "pass"], budget=False),
            Case("corral --help", [str(BIN / "corral"), "--help"]),
            Case(
                f"corral nodes list ({args.nodes} nodes)",
                [str(BIN / "corral"), "nodes", "list"],
                check=lists_nodes([n.node_id for n in nodes]),
            ),
            Case("corral-agent --help", [str(BIN / "corral-agent"), "--help"]),
        ]
        results = [(case, time_case(case, args.runs, env)) for case in cases]

    rows: list[list[object]] = []
    for case, result in results:
        if result.problem is not None:
            rows.append([case.label, "unavailable", "", "", "", result.problem])
            continue
        med = median(result.times)
        rows.append(
            [
                case.label,
                f"{med:.3f}",
                f"{min(result.times):.3f}",
                f"{max(result.times):.3f}",
                f"<= {BUDGET_SECONDS:g}" if case.budget else "",
                verdict(med <= BUDGET_SECONDS) if case.budget else "",
            ]
        )
    print_table(
        f"CLI wall time, seconds (median of {args.runs} runs after one warm-up)",
        ["command", "median", "min", "max", "budget", "verdict"],
        rows,
    )
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    run_main(main)
