"""The agent package: its size, the packaged agent's cold start and its idle memory.

Builds the agent .deb with ``packaging/build deb --only agent`` (or takes ``--deb``), unpacks
it into a throw-away root (what dpkg installs: the vendored runtime, the wrapper, the unit and
the config) and reports:

* the .deb's size and the installed size (apparent bytes, and ``du`` blocks, of the tree);
* cold start: from spawning ``corral-agent run`` to its first contact with a real server on
  loopback (the daemon writes status.json after each successful exchange; the file is gone
  before the start), median of ``--starts`` starts, for the packaged agent and the
  pip-installed one (this virtualenv);
* idle PSS of each (psutil ``memory_full_info().pss`` of the process tree, median of
  ``--samples`` one second apart, once the idle fork server has been stopped), and RSS.
  PSS divides a shared library's pages among the processes mapping it: the pip-installed
  agent shares its libpython and libcrypto with every other process using them (on a busy
  build machine, many), the packaged agent's are its own.  RSS compares the two without that
  (on a node where the agent is the only Python, PSS is about RSS for both), so the budget
  is checked on RSS: PSS here measures how many other Pythons the build machine runs.

The packaged agent runs from the unpacked tree's interpreter (``runtime/bin/python3.11 -I``):
the same files as under /opt/corral-agent, where its ``$ORIGIN`` RPATH finds its libraries.

Budgets (issue 15): installed < 30 MB, cold start < 1 s, the packaged agent's memory <= the
pip-installed one's (RSS, see above).

    .venv/bin/python bench/package_size.py [--deb dist/corral-agent_0.1.0_amd64.deb]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _common import (
    BIN,
    MB,
    BenchError,
    Proc,
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
    tree_memory,
    verdict,
    wait_until,
    workdir,
)

REPO = Path(__file__).resolve().parents[1]
INSTALLED_BUDGET_MB = 30.0
COLD_START_BUDGET_S = 1.0


def build_deb(out: Path) -> Path:
    result = run_cli(
        [
            sys.executable,
            str(REPO / "packaging" / "build"),
            "deb",
            "--only",
            "agent",
            "--out",
            str(out),
        ],
        timeout=900,
    )
    if result.returncode != 0:
        raise BenchError(f"packaging/build failed: {result.stderr.strip()}")
    debs = sorted(out.glob("corral-agent_*.deb"))
    if len(debs) != 1:
        raise BenchError(f"expected one agent .deb in {out}, found {debs}")
    return debs[0]


def unpack(deb: Path, root: Path) -> int:
    """The tree dpkg installs; returns the control file's Installed-Size in bytes."""
    result = run_cli(["dpkg-deb", "-x", str(deb), str(root)])
    if result.returncode != 0:
        raise BenchError(f"dpkg-deb -x failed: {result.stderr.strip()}")
    size = run_cli(["dpkg-deb", "-f", str(deb), "Installed-Size"]).stdout.strip()
    return int(size or 0) * 1024


def tree_size(root: Path) -> tuple[int, int]:
    """(apparent bytes, du bytes) of the files under root."""
    apparent = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir())
    du = subprocess.run(["du", "-s", "-B1", str(root)], capture_output=True, text=True)
    return apparent, int(du.stdout.split()[0])


def cold_start(command: list[str], state_dir: Path, log_dir: Path, name: str) -> float:
    """Seconds from the spawn to the first successful exchange (status.json written)."""
    status = state_dir / "status.json"
    status.unlink(missing_ok=True)
    t0 = time.monotonic()
    agent = Proc([*command, "run", "--state-dir", str(state_dir)], log_dir, name)
    try:

        def contacted() -> bool:
            if not agent.alive():
                raise BenchError(f"{name} exited:\n{agent.stderr_tail()}")
            return status.exists()

        wait_until(contacted, 30.0, f"{name}'s first contact", step=0.005)
        return time.monotonic() - t0
    finally:
        agent.stop()


def idle_pss(
    command: list[str], state_dir: Path, log_dir: Path, name: str, samples: int
) -> tuple[float, float, int]:
    """(median PSS, median RSS of the idle tree, processes in it), fork server stopped."""
    agent = Proc([*command, "run", "--state-dir", str(state_dir)], log_dir, name)
    try:
        status = state_dir / "status.json"
        status.unlink(missing_ok=True)
        wait_until(lambda: status.exists(), 30.0, f"{name}'s first contact")
        proc = psutil.Process(agent.pid)
        wait_until(lambda: not proc.children(), 120.0, f"{name}'s idle fork server to stop")
        values: list[float] = []
        rss: list[float] = []
        count = 1
        for _ in range(samples):
            rows = tree_memory(proc)
            values.append(sum(r.pss for r in rows))
            rss.append(sum(r.rss for r in rows))
            count = len(rows)
            time.sleep(1.0)
        if not agent.alive():
            raise BenchError(f"{name} exited while sampled:\n{agent.stderr_tail()}")
        return median(values), median(rss), count
    finally:
        agent.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deb", type=Path, help="an agent .deb (default: build one)")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per agent (5)")
    parser.add_argument("--samples", type=int, default=5, help="PSS samples per agent (5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    install_signal_handlers()

    with deadline(1200), workdir("package", args.keep) as root:
        if args.deb and not args.deb.is_file():
            raise BenchError(f"--deb {args.deb}: no such file")
        deb = args.deb.resolve() if args.deb else build_deb(root / "dist")
        deb_size = deb.stat().st_size
        tree = root / "installed"
        control_size = unpack(deb, tree)
        apparent, du = tree_size(tree)
        runtime = tree / "opt" / "corral-agent" / "runtime"
        packaged = [str(runtime / "bin" / "python3.11"), "-I", "-m", "agent"]
        version = run_cli([*packaged, "--version"]).stdout.strip()
        pip = [str(BIN / "corral-agent")]
        run_cli([sys.executable, "-m", "compileall", "-q", str(REPO / "agent")])

        starts: dict[str, list[float]] = {"packaged": [], "pip": []}
        pss: dict[str, tuple[float, float, int]] = {}
        with running_server(root) as server:
            for name, command in (("packaged", packaged), ("pip", pip)):
                state_dir = root / f"agent-{name}"
                register_agent(server, state_dir, program=command)
                (state_dir / "agent.toml").write_text("fork_server_idle_seconds = 3\n")
                for i in range(args.starts):
                    starts[name].append(cold_start(command, state_dir, root, f"{name}-{i}"))
                pss[name] = idle_pss(command, state_dir, root, f"{name}-idle", args.samples)

    cold = median(starts["packaged"])
    print_table(
        f"agent package {deb.name} ({version})",
        ["figure", "value", "budget", "verdict"],
        [
            [".deb size (MB)", mb(deb_size), "", ""],
            [
                "installed, apparent (MB)",
                mb(apparent),
                f"< {INSTALLED_BUDGET_MB:g}",
                verdict(apparent / MB < INSTALLED_BUDGET_MB),
            ],
            ["installed, du (MB)", mb(du), "", ""],
            ["Installed-Size in the .deb (MB)", mb(control_size), "", ""],
            [
                "cold start to first contact, packaged (s, median)",
                f"{cold:.3f}",
                f"< {COLD_START_BUDGET_S:g}",
                verdict(cold < COLD_START_BUDGET_S),
            ],
            [
                "cold start to first contact, pip-installed (s, median)",
                f"{median(starts['pip']):.3f}",
                "",
                "",
            ],
            [
                f"idle PSS, packaged ({pss['packaged'][2]} process) (MB)",
                mb(pss["packaged"][0]),
                "",
                "",
            ],
            [f"idle PSS, pip-installed ({pss['pip'][2]} process) (MB)", mb(pss["pip"][0]), "", ""],
            [
                "idle RSS, packaged (MB)",
                mb(pss["packaged"][1]),
                "<= pip",
                verdict(pss["packaged"][1] <= pss["pip"][1]),
            ],
            ["idle RSS, pip-installed (MB)", mb(pss["pip"][1]), "", ""],
        ],
    )
    print(
        "cold starts (s): "
        + ", ".join(f"{k} " + " ".join(f"{v:.3f}" for v in vs) for k, vs in starts.items())
    )
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    run_main(main)
