"""Session Manager (the issue's bench): a real `corral-server` (TLS on loopback, run-as default
``nobody``, rate limits raised) and a real `corral-agent` on this machine, beside `ssh` to a
throw-away sshd of our own on loopback (skipped, with the reason, if it cannot run).

- Relay throughput, MB/s (10^6 bytes/s, first byte to EOF), ``--size-mb 1024``:
  ``head -c SIZE /dev/zero`` through `corral session start --document
  Corral-StartNonInteractiveCommand` (stdout a pipe this process reads), and through `corral
  session port-forward` (a TCP source on the node's side sends SIZE bytes to the client);
  the same through ``ssh host head -c`` and ``ssh -L``, and the TCP source read directly.
  With the server's and the agent's CPU per GiB and the client's (the CLI, ssh).
  Budget: >= 50 MB/s through port forwarding.
- Keystroke echo latency, p50/p99 of ``--samples 300``: the `corral session start` CLI (and
  ``ssh -tt host /bin/sh``) in a pseudo-terminal this process types at, one byte at a time
  (``x``, then an erase: the line never grows), timed until the echo is back.  The session's
  shell is ``nobody``'s, /bin/sh (nologin is not in /etc/shells): the echo is the node's
  terminal's, as for ``ssh ... /bin/sh``.  Budget: p99 < 5 ms.
- Relay memory per idle session: ``--idle 200`` shell sessions opened from this process with
  the CLI's own stream code (an Endpoint over a TLS websocket each) to the real agent (a
  shell each), every prompt received; the server's RSS (psutil, its process tree) before and
  after (after ``--warm 10`` sessions opened and closed, so one-time costs are not counted),
  divided by N; its CPU while they idle; its RSS after they are closed.  Budget: < 200 KB.
- ``--concurrent 100`` of those sessions typing at once, ``--echoes 50`` bytes each
  (``--gap-ms 10`` apart): total time, per-session echo p99 (median and worst), all samples'
  p50/p99; one session alone first, the same client code, as the baseline.

    .venv/bin/python bench/sessions.py [--quick] [--size-mb 1024] [--samples 300]
        [--idle 200] [--concurrent 100] [--echoes 50] [--no-ssh] [--keep]

``--quick``: 64 MB, 100 samples, 50 idle, 20 concurrent x 20 echoes (well under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from _common import (
    BIN,
    BenchError,
    Proc,
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    median,
    percentile,
    print_table,
    raise_open_file_limit,
    register_agent,
    running_server,
    tree_cpu_seconds,
    tree_rss,
    verdict,
    wait_until,
    workdir,
)
from _sessions_ends import (
    Opened,
    Source,
    Ssh,
    Stream,
    Terminal,
    close_shell,
    command_stream,
    echo,
    echo_latency,
    forwarded_stream,
    open_shell,
    pull,
    sshd,
)

FORWARD_BUDGET_MB_S = 50.0
ECHO_BUDGET_MS = 5.0
IDLE_BUDGET_KB = 200.0
GIB = 1024**3
PROMPT = b"$ "  # nobody's /bin/sh


# The node ------------------------------------------------------------------------------------
def start_agent(root: Path, server: Server, max_sessions: int) -> tuple[Proc, str]:
    state = root / "agent"
    state.mkdir()
    (state / "agent.toml").write_text(f"max_sessions = {max_sessions}\nkill_grace_seconds = 1\n")
    node_id = register_agent(server, state)
    proc = Proc([str(BIN / "corral-agent"), "run", "--state-dir", str(state)], root, "agent")
    with server.api() as api:

        def online() -> bool:
            if not proc.alive():
                raise BenchError(f"the agent exited: {proc.stderr_tail()}")
            return bool(api.get(f"/v1/nodes/{node_id}").json().get("status") == "Online")

        wait_until(online, 60, "the node to be Online")
    return proc, node_id


def cli_env(server: Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_URL=server.url, CORRAL_TOKEN=server.token, CORRAL_CA_FILE=server.ca_file,
               CORRAL_CONFIG="/nonexistent/corral.toml", TERM="xterm-256color")  # fmt: skip
    return env


# Throughput ----------------------------------------------------------------------------------
class Cpu:
    """CPU seconds of the server, the agent (process trees) and of reaped children (the
    client: the CLI, ssh) over a block."""

    def __init__(self, server: Server, agent: Proc) -> None:
        self.procs = {"server": server.psutil_process(), "agent": psutil.Process(agent.pid)}
        self.used: dict[str, float] = {}

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        before = {k: tree_cpu_seconds(p) for k, p in self.procs.items()}
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        yield
        self.used = {k: tree_cpu_seconds(p) - before[k] for k, p in self.procs.items()}
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.used["client"] = now.ru_utime + now.ru_stime - kids.ru_utime - kids.ru_stime


def throughput(args: argparse.Namespace, ctx: dict[str, Any]) -> list[list[object]]:
    server, node_id, ssh, cpu = ctx["server"], ctx["node_id"], ctx["ssh"], ctx["cpu"]
    size = args.size_mb * 1024 * 1024
    env = cli_env(server)
    corral = str(BIN / "corral")
    source = Source(size)
    logs = server.data_dir.parent
    rows: list[list[object]] = []
    ctx["forward_mb_s"] = float("nan")

    def row(label: str, run: Callable[[], Stream], budget: str = "") -> Stream | None:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        try:
            with cpu.measure():
                got = run()
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            rows.append([label, "failed", "", "", str(exc).splitlines()[0][:120]])
            return None
        per_gib = {k: f"{v * GIB / size:.1f}" for k, v in cpu.used.items()}
        used = " / ".join(per_gib.get(k, "-") for k in ("server", "agent", "client"))
        if "ssh" in label:
            used = f"- / - / {per_gib['client']}"
        elif "direct" in label:
            used = "-"
        rows.append([label, f"{got.mb_s():.1f}", f"{got.total:.2f}", used, budget])
        return got

    try:
        cmd = f"head -c {size} /dev/zero"
        doc = ["--document", "Corral-StartNonInteractiveCommand", "--param", f"command={cmd}"]
        row("corral session start (NonInteractiveCommand)",
            lambda: command_stream([corral, "session", "start", node_id, *doc], env, size,
                                   logs / "cli-throughput.err"))  # fmt: skip
        fwd = [corral, "session", "port-forward", node_id, "--remote-port", str(source.port),
               "--local-port", "0"]  # fmt: skip
        got = row("corral session port-forward",
                  lambda: forwarded_stream(fwd, env, size, None, logs / "cli-forward.err"),
                  f">= {FORWARD_BUDGET_MB_S:g} MB/s")  # fmt: skip
        if got is not None:
            ctx["forward_mb_s"] = got.mb_s()
            rows[-1][-1] += f" {verdict(got.mb_s() >= FORWARD_BUDGET_MB_S)}"
        if ssh is not None:
            row(f"ssh host '{cmd.split(' /')[0]} ...'",
                lambda: command_stream([*ssh.argv, cmd], env, size,
                                       logs / "ssh-throughput.err"))  # fmt: skip
            local = _free()
            fwd_ssh = [*ssh.argv[:-1], "-N", "-o", "ExitOnForwardFailure=yes",
                       "-L", f"{local}:127.0.0.1:{source.port}", ssh.argv[-1]]  # fmt: skip
            row(
                "ssh -L",
                lambda: forwarded_stream(fwd_ssh, env, size, local, logs / "ssh-forward.err"),
            )
        row("direct (the TCP source, no forwarding)", lambda: pull(source.port))
    finally:
        source.close()
    return rows


def _free() -> int:
    from _common import free_port

    return free_port()


# Echo latency --------------------------------------------------------------------------------
def echo_rows(args: argparse.Namespace, ctx: dict[str, Any]) -> list[list[object]]:
    server, node_id, ssh = ctx["server"], ctx["node_id"], ctx["ssh"]
    rows: list[list[object]] = []
    env = cli_env(server)
    gap = args.gap_ms / 1000
    tries: list[tuple[str, list[str], bytes, bytes]] = [
        ("corral session start (shell)", [str(BIN / "corral"), "session", "start", node_id],
         PROMPT, b"\r~."),
    ]  # fmt: skip
    if ssh is not None:
        tries.append(("ssh -tt host /bin/sh", [*ssh.argv[:-1], "-tt", ssh.argv[-1], "/bin/sh"],
                      b"# ", b"exit\r"))  # fmt: skip
    for label, argv, prompt, bye in tries:
        print(f"  echo: {label} ...", file=sys.stderr, flush=True)
        term = Terminal(argv, env)
        try:
            term.expect(prompt, 60)
            times = [t * 1000 for t in echo_latency(term, args.samples, gap)]
        except BenchError as exc:
            rows.append([label, "failed", "", "", "", str(exc)[:120]])
            continue
        finally:
            term.close(bye)
        p99 = percentile(times, 99)
        budget = ""
        if label.startswith("corral"):
            ctx["echo_p99"] = p99
            budget = f"< {ECHO_BUDGET_MS:g} ms {verdict(p99 < ECHO_BUDGET_MS)}"
        rows.append([label, f"{percentile(times, 50):.2f}", f"{p99:.2f}", f"{max(times):.2f}",
                     len(times), budget])  # fmt: skip
    return rows


# Idle sessions and concurrent echo -----------------------------------------------------------
async def _gather(n: int, limit: int, make: Callable[[], Awaitable[Opened]]) -> list[Opened]:
    gate = asyncio.Semaphore(limit)

    async def one() -> Opened:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _rss(proc: psutil.Process, samples: int = 5) -> float:
    values = []
    for _ in range(samples):
        values.append(tree_rss(proc))
        time.sleep(0.1)
    return median(values)


async def many(args: argparse.Namespace, ctx: dict[str, Any]) -> list[list[object]]:
    import httpx

    server, node_id = ctx["server"], ctx["node_id"]
    srv, agent = server.psutil_process(), psutil.Process(ctx["agent"].pid)
    n = max(args.idle, args.concurrent)
    rows: list[list[object]] = []
    headers = {"authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(
        base_url=server.url, verify=server.tls(), headers=headers, timeout=60
    ) as api:

        def make() -> Awaitable[Opened]:
            return open_shell(api, server, node_id, PROMPT)

        warm = await _gather(args.warm, 10, make)
        await asyncio.gather(*(close_shell(o) for o in warm))
        await asyncio.sleep(3)
        before, agent_before = _rss(srv), tree_rss(agent)
        t0 = time.perf_counter()
        opened = await _gather(n, 20, make)
        open_s = time.perf_counter() - t0
        try:
            await asyncio.sleep(3)
            cpu0, w0 = tree_cpu_seconds(srv), time.perf_counter()
            after, agent_after = _rss(srv), tree_rss(agent)
            await asyncio.sleep(args.idle_seconds)
            idle_cpu = 100 * (tree_cpu_seconds(srv) - cpu0) / (time.perf_counter() - w0)
            per = (after - before) / n / 1024
            ctx["idle_kb"] = per
            rows += [
                ["sessions opened (POST, attach, prompt; 20 at a time)", f"{n} in {open_s:.1f} s",
                 f"{1000 * open_s / n:.0f} ms each"],
                ["server RSS before / with them open", f"{before / 2**20:.1f} / "
                 f"{after / 2**20:.1f} MB", f"after {args.warm} opened and closed"],
                ["server RSS per idle session", f"{per:.0f} KB",
                 f"< {IDLE_BUDGET_KB:g} KB {verdict(per < IDLE_BUDGET_KB)}"],
                ["agent tree RSS per idle session (daemon + the shell)",
                 f"{(agent_after - agent_before) / n / 1024:.0f} KB", ""],
                [f"server CPU with them idle ({args.idle_seconds:g} s)", f"{idle_cpu:.1f} %",
                 "of one core"],
            ]  # fmt: skip
            rows += await concurrent(args, opened[: args.concurrent], srv, ctx)
        finally:
            await asyncio.gather(*(close_shell(o) for o in opened), return_exceptions=True)
        await asyncio.sleep(3)
        closed = _rss(srv)
        rows.append(["server RSS after closing them all", f"{closed / 2**20:.1f} MB",
                     f"{(closed - before) / n / 1024:+.0f} KB per session left"])  # fmt: skip
        again = await _gather(n, 20, make)  # kept for good (a leak), or reused?
        await asyncio.sleep(3)
        held = _rss(srv)
        await asyncio.gather(*(close_shell(o) for o in again), return_exceptions=True)
        await asyncio.sleep(3)
        rows.append([f"the same again: {n} open / closed", f"{held / 2**20:.1f} / "
                     f"{_rss(srv) / 2**20:.1f} MB", "a second round"])  # fmt: skip
    return rows


async def concurrent(
    args: argparse.Namespace, opened: list[Opened], srv: psutil.Process, ctx: dict[str, Any]
) -> list[list[object]]:
    gap = args.gap_ms / 1000
    alone = opened[0]
    await echo(alone, args.echoes * 2, gap)
    solo = [t * 1000 for t in alone.echoes]
    for o in opened:
        o.echoes.clear()
    me, agent = psutil.Process(), psutil.Process(ctx["agent"].pid)
    cpu0, mine0, agent0 = tree_cpu_seconds(srv), sum(me.cpu_times()[:2]), tree_cpu_seconds(agent)
    t0 = time.perf_counter()
    await asyncio.gather(*(echo(o, args.echoes, gap) for o in opened))
    total = time.perf_counter() - t0
    cpu, mine = tree_cpu_seconds(srv) - cpu0, sum(me.cpu_times()[:2]) - mine0
    agent_cpu = tree_cpu_seconds(agent) - agent0
    p99s = [percentile([t * 1000 for t in o.echoes], 99) for o in opened]
    every = [t * 1000 for o in opened for t in o.echoes]
    ctx["concurrent_p99"] = median(p99s)
    floor = args.echoes * gap
    return [
        ["one session alone (same client code): echo p50 / p99",
         f"{percentile(solo, 50):.2f} / {percentile(solo, 99):.2f} ms", f"{len(solo)} samples"],
        [f"{len(opened)} sessions typing at once, {args.echoes} bytes each: total",
         f"{total:.2f} s", f"{floor:.2f} s of it the {args.gap_ms:g} ms gaps"],
        ["  per-session echo p99: median / worst",
         f"{median(p99s):.2f} / {max(p99s):.2f} ms", ""],
        ["  all samples: p50 / p99 / max",
         f"{percentile(every, 50):.2f} / {percentile(every, 99):.2f} / {max(every):.2f} ms",
         f"{len(every)} samples"],
        ["  CPU meanwhile: server / agent / this process (the clients)",
         f"{100 * cpu / total:.0f} / {100 * agent_cpu / total:.0f} / {100 * mine / total:.0f} %",
         "of one core (2 cores)"],
    ]  # fmt: skip


# Main ----------------------------------------------------------------------------------------
def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: well under a minute")
    parser.add_argument("--size-mb", type=int, help="MiB through each stream (1024; quick 64)")
    parser.add_argument("--samples", type=int, help="echo samples per terminal (300; quick 100)")
    parser.add_argument("--idle", type=int, help="idle sessions (200; quick 50)")
    parser.add_argument("--concurrent", type=int, help="sessions typing at once (100; quick 20)")
    parser.add_argument("--echoes", type=int, help="bytes each of those types (50; quick 20)")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="between keystrokes (10)")
    parser.add_argument("--warm", type=int, default=10, help="sessions opened first (10)")
    parser.add_argument("--idle-seconds", type=float, help="idle CPU window (10; quick 3)")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh comparison")
    parser.add_argument("--no-recording", action="store_true",
                        help="session_recording = false on the server (to compare)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--max-seconds", type=float, default=1200, help="give up after (1200)")
    args = parser.parse_args()
    quick = {"size_mb": 64, "samples": 100, "idle": 50, "concurrent": 20, "echoes": 20,
             "idle_seconds": 3.0}  # fmt: skip
    full = {"size_mb": 1024, "samples": 300, "idle": 200, "concurrent": 100, "echoes": 50,
            "idle_seconds": 10.0}  # fmt: skip
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse()
    install_signal_handlers()
    raise_open_file_limit(65536)
    if os.geteuid() != 0:
        sys.exit("the sessions run as nobody: run the bench as root")
    ctx: dict[str, Any] = {}
    skipped: list[str] = []
    settings: dict[str, Any] = {
        "session_run_as_default_user": "nobody",
        "rate_limit_per_second": 100000,  # the default 20/s per token would measure the limiter
        "rate_limit_burst": 1000000,
    }
    if args.no_recording:
        settings["session_recording"] = False
    with (
        deadline(args.max_seconds),
        workdir("sessions", args.keep) as root,
        running_server(root, settings=settings) as server,
        contextlib.ExitStack() as stack,
    ):
        agent, node_id = start_agent(root, server, max(args.idle, args.concurrent) + 20)
        stack.callback(agent.stop)
        ctx.update(server=server, node_id=node_id, agent=agent, cpu=Cpu(server, agent), ssh=None)
        if args.no_ssh:
            skipped.append("ssh: --no-ssh")
        else:
            try:
                ctx["ssh"] = stack.enter_context(sshd(root))
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                skipped.append(f"ssh: {exc}")
        ssh: Ssh | None = ctx["ssh"]
        print(f"server {server.url}, node {node_id}", file=sys.stderr, flush=True)
        tput = throughput(args, ctx)
        echoes = echo_rows(args, ctx)
        print(f"  {max(args.idle, args.concurrent)} sessions ...", file=sys.stderr, flush=True)
        idle = asyncio.run(many(args, ctx))
    if args.no_recording:
        print("\nsession_recording = false (--no-recording)")
    print_table(
        f"Throughput: {args.size_mb} MiB of zeros, loopback (MB/s = 10^6 bytes/s, first byte "
        "to EOF)",
        ["path", "MB/s", "wall s", "CPU s/GiB: server / agent / client", "budget"],
        tput,
    )
    print_table(
        f"Keystroke echo, one byte at a time every {args.gap_ms:g} ms, through a PTY (ms)",
        ["terminal", "p50", "p99", "max", "samples", "budget"],
        echoes,
    )
    print_table("Sessions held open (shells, real agent; clients: the CLI's stream code in "
                "this process)", ["figure", "value", "note"], idle)  # fmt: skip
    if ssh is not None:
        print(f"\nssh: {ssh.version}, cipher {ssh.cipher}; corral: TLS (the server's CA)")
    for line in skipped:
        print(f"skipped: {line}")
    print(f"\ncode measured: {code_under_test()}")


if __name__ == "__main__":
    main()
