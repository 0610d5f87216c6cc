"""The outage of issue 17's opening table, rerun: results queued on a node during a server
outage all arrive, intact.

One real server (SQLite) and one real ``corral-agent`` per ``--transports`` value, each
registered directly (no proxy).  ``--commands`` (40) commands are sent to the node, each
``sleep --sleep`` (12 s) and then printing ``--stdout`` (24,000) characters of stdout and
``--stderr`` (8,000) of stderr (``--char``: ``a`` by default; a multi-byte character such as
``é`` is six bytes once JSON-escaped).  ``--stop-after`` (3) seconds after the last send the
server is stopped (SIGTERM, as ``systemctl stop``), and ``--outage`` (14) seconds later it is
started again on the same port and data.  The node's workers finish during the outage and its
outbox holds every result; after the restart they must all arrive.

Then, with a deadline (``--settle``), it waits for every command to be final and prints, per
transport: how many results arrived intact (Success, exit 0, stdout and stderr equal to what
the script printed, read through the output route), how many invocations are final, the rows
in the agent's dead table and its outbox depth.  Exit status 1 unless all are intact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BIN,
    BenchError,
    Proc,
    Server,
    code_under_test,
    install_signal_handlers,
    print_table,
    register_agent,
    running_server,
    wait_until,
    workdir,
)

FINAL = {"Success", "Failed", "Cancelled", "TimedOut", "Undeliverable"}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def script(args: argparse.Namespace) -> list[str]:
    """Sleep, then print the characters (``yes | head -n | tr -d``: any UTF-8 character)."""
    char = shlex.quote(args.char)
    return [
        f"sleep {args.sleep:g}",
        f"yes {char} | head -n {args.stdout} | tr -d '\\n'",
        f"yes {char} | head -n {args.stderr} | tr -d '\\n' >&2",
    ]


def register(server: Server, root: Path, transport: str) -> tuple[Path, str]:
    state_dir = root / f"agent-{transport}"
    node_id = register_agent(server, state_dir)
    with (state_dir / "agent.toml").open("a") as fh:  # otherwise the defaults
        fh.write(f'transport = "{transport}"\n')
    return state_dir, node_id


def outbox_rows(state_dir: Path, table: str) -> int:
    path = state_dir / "outbox.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def one_transport(root: Path, args: argparse.Namespace, transport: str) -> dict[str, Any]:
    root.mkdir()
    with running_server(root) as server:
        state_dir, node_id = register(server, root, transport)
        agent = Proc(
            [str(BIN / "corral-agent"), "run", "--state-dir", str(state_dir)], root, "agent"
        )
        try:
            with server.api(timeout=30) as api:
                wait_until(
                    lambda: (
                        api.get(f"/v1/nodes/{node_id}").json()["status"] == "Online"
                        and (state_dir / "status.json").exists()
                    ),
                    60,
                    "the agent Online",
                    step=0.2,
                )
                ids = []
                for _ in range(args.commands):
                    answer = api.post(
                        "/v1/commands",
                        json={
                            "targets": [node_id],
                            "parameters": {"commands": script(args)},
                            "max_concurrency": "100%",
                        },
                    )
                    if answer.status_code != 201:
                        raise BenchError(f"send: {answer.status_code} {answer.text}")
                    ids.append(answer.json()["command_id"])
                sent = time.monotonic()
                log(f"[{transport}] {len(ids)} commands sent")
            time.sleep(max(0.0, args.stop_after - (time.monotonic() - sent)))
            assert server.proc is not None
            server_args = [str(a) for a in server.proc.popen.args]  # type: ignore[union-attr]
            log(f"[{transport}] stopping the server {time.monotonic() - sent:.1f} s after sending")
            server.proc.stop()
            time.sleep(args.outage)
            server.proc = Proc(server_args, root, "server-2")
            wait_until(server._ready, 60, "the restarted server", step=0.1)
            log(f"[{transport}] server started again after {args.outage:g} s")
            with server.api(timeout=30) as api:
                views = wait_final(api, ids, args.settle)
                intact, problems = judge(api, ids, views, node_id, args)
        finally:
            agent.stop()
        return {
            "transport": transport,
            "commands": len(ids),
            "intact": intact,
            "final": sum(1 for v in views.values() if _final(v)),
            "dead": outbox_rows(state_dir, "dead"),
            "outbox": outbox_rows(state_dir, "outbox"),
            "problems": problems,
        }


def _final(view: dict[str, Any]) -> bool:
    return view["status"] in FINAL and all(i["status"] in FINAL for i in view["invocations"])


def wait_final(api: httpx.Client, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    end = time.monotonic() + timeout
    left = set(ids)
    while left:
        for command_id in sorted(left):
            with contextlib.suppress(httpx.HTTPError):
                answer = api.get(f"/v1/commands/{command_id}")
                if answer.status_code == 200:
                    views[command_id] = answer.json()
                    if _final(views[command_id]):
                        left.discard(command_id)
        if not left or time.monotonic() > end:
            break
        time.sleep(1)
    return views


def judge(
    api: httpx.Client,
    ids: list[str],
    views: dict[str, dict[str, Any]],
    node_id: str,
    args: argparse.Namespace,
) -> tuple[int, list[str]]:
    """Results intact: Success, exit 0, both outputs as printed.  A step's full output may be
    uploaded after its final status (its record then holds a part): wait ``--output-wait``."""
    want = {"stdout": args.char * args.stdout, "stderr": args.char * args.stderr}
    problems: dict[str, str] = {}
    todo = []
    for command_id in ids:
        view = views.get(command_id)
        inv = view["invocations"][0] if view and view["invocations"] else None
        if inv is None or inv["status"] != "Success" or inv["response_code"] != 0:
            state = (inv["status"], inv["status_details"]) if inv else None
            problems[command_id] = f"{state}"
        else:
            todo.append(command_id)
    end = time.monotonic() + args.output_wait
    while todo:
        for command_id in list(todo):
            for stream, text in want.items():
                got = api.get(
                    f"/v1/commands/{command_id}/invocations/{node_id}/output",
                    params={"stream": stream},
                ).text
                if got != text:
                    problems[command_id] = (
                        f"{stream} {len(got)} chars, want {len(text)}: {got[:60]!r}..."
                    )
                    break
            else:
                problems.pop(command_id, None)
                todo.remove(command_id)
        if not todo or time.monotonic() > end:
            break
        time.sleep(1)
    return len(ids) - len(problems), [f"{k}: {v}" for k, v in problems.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=40, help="commands (40)")
    parser.add_argument("--sleep", type=float, default=12, help="each script's sleep, s (12)")
    parser.add_argument("--stdout", type=int, default=24_000, help="stdout characters (24000)")
    parser.add_argument("--stderr", type=int, default=8_000, help="stderr characters (8000)")
    parser.add_argument("--char", default="a", help="the character printed (a)")
    parser.add_argument(
        "--stop-after", type=float, default=3, help="server stopped after sending, s (3)"
    )
    parser.add_argument("--outage", type=float, default=14, help="server away, s (14)")
    parser.add_argument(
        "--transports", default="auto,https", help="agent transports, each in turn (auto,https)"
    )
    parser.add_argument("--settle", type=float, default=120, help="wait for final, s (120)")
    parser.add_argument(
        "--output-wait", type=float, default=60, help="wait for late output blobs, s (60)"
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if len(args.char) != 1 or args.char.isspace():
        parser.error("--char: one character, not a space")
    install_signal_handlers()
    rows: list[dict[str, Any]] = []
    with workdir("outage", args.keep) as root:
        for transport in [t for t in args.transports.split(",") if t]:
            rows.append(one_transport(root / transport, args, transport))
    print_table(
        f"{args.commands} commands on one node, {args.stdout} + {args.stderr} characters of "
        f"{args.char!r} after {args.sleep:g} s; server stopped {args.stop_after:g} s after "
        f"sending, back {args.outage:g} s later",
        ["transport", "intact", "final", "dead rows", "outbox left"],
        [
            [
                r["transport"],
                f"{r['intact']}/{r['commands']}",
                f"{r['final']}/{r['commands']}",
                r["dead"],
                r["outbox"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        for problem in r["problems"][:10]:
            print(f"{r['transport']}: {problem}")
    print(f"code measured: {code_under_test()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["intact"] == r["commands"] for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
