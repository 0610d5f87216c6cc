"""The agent's CPU per command: one real agent, `true` sent again and again, one at a time.

Starts a server and one registered ``corral-agent run`` in a CPU-accounting cgroup of its own
(root on Linux; otherwise its process tree is sampled, which misses the short-lived workers
and shells), for each ``--transports`` value.  After a warm-up, ``--commands`` commands
(``AWS-RunShellScript``, ``true``) are sent one after the other, each waiting for its result
to be stored.  The agent's CPU over them, minus what the scripts themselves cost (``sh -c
true`` run here the same number of times, measured with ``RUSAGE_CHILDREN``), divided by the
count is the agent's CPU per command: from the message received to the result acknowledged,
with the document worker, the journal, the outbox and the upload, the script excluded.
``--profile DIR`` samples the agent (and its workers) with py-spy into DIR.

Budget (issue 10): <= 8 ms per command.

    .venv/bin/python bench/agent_cpu.py [--commands 100] [--transports websocket,https]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from _common import (
    BIN,
    BenchError,
    CpuCgroup,
    Proc,
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    median,
    percentile,
    print_table,
    process_tree,
    register_agent,
    run_main,
    running_server,
    tree_cpu_seconds,
    verdict,
    wait_until,
    workdir,
)
from agent_footprint import compile_agent, wait_online_and_answering

BUDGET_MS = 8.0


def script_cpu(count: int) -> float:
    """CPU seconds of ``sh -c true`` run ``count`` times (what the scripts cost)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(count):
        subprocess.run(["sh", "-c", "true"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_one(server: Server, api: Any, node_id: str, timeout: float) -> float:
    """Send `true`, wait for its result; the wall seconds."""
    started = time.monotonic()
    sent = api.post(
        "/v1/commands", json={"targets": [node_id], "parameters": {"commands": ["true"]}}
    )
    if sent.status_code != 201:
        raise BenchError(f"POST /v1/commands: {sent.status_code} {sent.text}")
    command_id = sent.json()["command_id"]

    def done() -> bool:
        shown = api.get(f"/v1/commands/{command_id}").json()
        if shown.get("completed_at") and shown["status"] != "Success":
            raise BenchError(f"command {command_id} ended {shown['status']}")
        return bool(shown.get("completed_at"))

    wait_until(done, timeout, f"command {command_id}", step=0.005)
    return time.monotonic() - started


def measure(root: Path, transport: str, args: argparse.Namespace) -> dict[str, Any]:
    root.mkdir()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            running_server(root, settings={"rate_limit_per_second": 100000,
                                           "rate_limit_burst": 1000000})
        )  # fmt: skip
        state_dir = root / "agent"
        node_id = register_agent(server, state_dir)
        with (state_dir / "agent.toml").open("a") as fh:
            fh.write(f'transport = "{transport}"\n')
        cgroup = None if args.no_cgroup else CpuCgroup.create(f"corral-bench-cpu-{transport}")
        if cgroup is not None:
            stack.callback(cgroup.remove)
        agent = Proc(
            [str(BIN / "corral-agent"), "run", "--state-dir", str(state_dir)],
            root,
            "agent",
            cgroup,
        )
        stack.callback(agent.stop)
        wait_online_and_answering(server, node_id, agent, 60.0)
        proc = psutil.Process(agent.pid)

        def agent_cpu() -> float:
            if cgroup is not None:
                used = cgroup.cpu_seconds()
                if used is not None:
                    return used
            return tree_cpu_seconds(proc)

        with server.api() as api:
            for _ in range(args.warmup):
                run_one(server, api, node_id, 30)
            spy = _profile(proc.pid, root, transport, args)
            lasting = process_tree(proc)  # the daemon and its fork server
            own0 = [_cpu(p) for p in lasting]
            cpu0 = agent_cpu()
            walls = [run_one(server, api, node_id, 30) for _ in range(args.commands)]
            cpu = agent_cpu() - cpu0
            own = [_cpu(p) - c for p, c in zip(lasting, own0, strict=True)]
            _stop(spy)
        scripts = script_cpu(args.commands)
        return {
            "transport": transport,
            "commands": args.commands,
            "agent_cpu_ms": 1000 * cpu / args.commands,
            "script_ms": 1000 * scripts / args.commands,
            "per_command_ms": 1000 * (cpu - scripts) / args.commands,
            "daemon_ms": 1000 * own[0] / args.commands,
            "fork_server_ms": 1000 * sum(own[1:]) / args.commands,
            "workers_ms": 1000 * (cpu - scripts - sum(own)) / args.commands,
            "wall_p50_ms": 1000 * median(walls),
            "wall_p99_ms": 1000 * percentile(walls, 99),
            "how": "cgroup" if cgroup is not None else "sampled (misses workers)",
        }


def _profile(pid: int, root: Path, transport: str, args: argparse.Namespace) -> Any:
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"agent-{transport}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[profile] {out}", file=sys.stderr)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--format", "raw",
         "--rate", "500", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return proc


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(t.user + t.system)


def _stop(proc: Any) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description="The agent's CPU per command (`true`).")
    parser.add_argument("--commands", type=int, default=100, help="commands measured (100)")
    parser.add_argument("--warmup", type=int, default=5, help="commands before measuring (5)")
    parser.add_argument(
        "--transports",
        type=lambda text: [t for t in text.split(",") if t],
        default=["websocket", "https"],
        help="each measured in turn (websocket,https)",
    )
    parser.add_argument("--no-cgroup", action="store_true", help="sample the process tree")
    parser.add_argument("--profile", default="", metavar="DIR", help="py-spy the agent into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    compile_agent()  # as installed: .pyc (the fork server and any new worker start faster)
    install_signal_handlers()
    rows = []
    with deadline(600), workdir("agentcpu", args.keep) as root:
        for transport in args.transports:
            print(f"[{transport}] measuring {args.commands} commands ...", file=sys.stderr)
            result = measure(root / transport, transport, args)
            rows.append(
                [
                    result["transport"],
                    result["commands"],
                    f"{result['agent_cpu_ms']:.1f}",
                    f"{result['script_ms']:.1f}",
                    f"{result['per_command_ms']:.1f}",
                    f"{result['daemon_ms']:.1f}",
                    f"{result['fork_server_ms']:.1f}",
                    f"{result['workers_ms']:.1f}",
                    f"{result['wall_p50_ms']:.0f}",
                    f"{result['wall_p99_ms']:.0f}",
                    result["how"],
                    f"{verdict(result['per_command_ms'] <= BUDGET_MS)} (<= {BUDGET_MS:g} ms)",
                ]
            )
    print_table(
        "The agent's CPU per command (`true`, one at a time; agent = agent + fork server + "
        "workers + shells)",
        ["transport", "commands", "agent CPU ms", "script ms", "per command ms",
         "of it: daemon", "fork server", "workers", "wall p50 ms", "wall p99 ms", "measured",
         "budget"],
        rows,
    )  # fmt: skip
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    run_main(main)
