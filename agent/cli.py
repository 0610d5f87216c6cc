"""``corral-agent``: register, run, status, outbox, run-document.  argparse keeps the node's
start-up small, and nothing heavy is imported before ``run`` has forked its fork server."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, logs
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.execution.forkserver import ForkServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral-agent", description="Corral node agent.")
    parser.add_argument("--version", action="version", version=f"corral-agent {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reg = sub.add_parser("register", help="register this node with an activation")
    reg.add_argument("--url", required=True, help="server URL, https://HOST:PORT")
    reg.add_argument("--id", required=True, dest="activation_id", help="activation id")
    reg.add_argument("--code", required=True, dest="activation_code", help="activation code")
    reg.add_argument("--ca-hash", required=True, help="sha256:HEX of the server's CA certificate")
    reg.add_argument(
        "--name", default="", help="node name (default: the activation's, else the hostname)"
    )
    reg.add_argument("--state-dir", type=Path, default=None)
    reg.add_argument("--force", action="store_true", help="replace an existing registration")
    reg.add_argument("--output", choices=["table", "json"], default="table")

    run = sub.add_parser("run", help="run the agent daemon in the foreground")
    run.add_argument("--state-dir", type=Path, default=None)
    run.add_argument("--log-format", choices=logs.FORMATS, default="auto")

    status = sub.add_parser("status", help="show this node's registration and outbox")
    status.add_argument("--state-dir", type=Path, default=None)
    status.add_argument("--output", choices=["table", "json"], default="table")

    outbox = sub.add_parser("outbox", help="look at the outbox's dead messages, send them again")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    list_dead = outbox_sub.add_parser(
        "list-dead", help="the messages the server rejected (or unreadable), with the reason"
    )
    retry_dead = outbox_sub.add_parser(
        "retry-dead",
        help="put dead messages back in the outbox (the running agent sends them)",
    )
    retry_dead.add_argument("ids", nargs="*", metavar="ID", help="only these (default: all)")
    for action in (list_dead, retry_dead):
        action.add_argument("--state-dir", type=Path, default=None)
        action.add_argument("--output", choices=["table", "json"], default="table")

    doc = sub.add_parser(
        "run-document",
        help="run a document on this node now, without a server, and print each step's result",
    )
    doc.add_argument("file", type=Path, help="the document (JSON or YAML)")
    doc.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value; repeat a name for a StringList",
    )
    doc.add_argument("--output", choices=["table", "json"], default="table")
    doc.add_argument(
        "--timeout",
        type=_seconds,
        default=3600,
        metavar="SECONDS",
        help="execution timeout of the whole document (default 3600)",
    )
    return parser


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _register(args: argparse.Namespace) -> int:
    import asyncio

    from agent.config import load_config
    from agent.registration import RegisterRequest, register

    config = load_config(args.state_dir)
    reg = asyncio.run(
        register(
            config,
            RegisterRequest(
                url=args.url,
                activation_id=args.activation_id,
                activation_code=args.activation_code,
                ca_hash=args.ca_hash,
                name=args.name,
                force=args.force,
            ),
        )
    )
    if args.output == "json":
        print(json.dumps({"node_id": reg.node_id}))
    else:
        print(f"Registered as {reg.node_id} with {reg.url}")
        print(f"Start the agent: corral-agent run --state-dir {config.state_dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_config

    config = load_config(args.state_dir)
    forkserver = _fork_server(config)  # it preloads while the daemon starts
    from agent import daemon
    from agent.execution.launcher import Launcher
    from agent.execution.settings import worker_settings

    logs.configure(args.log_format, logging.DEBUG if args.debug else logging.INFO)
    launcher = Launcher(
        worker_settings(config),
        forkserver,
        fork_server_idle_seconds=config.fork_server_idle_seconds,
    )
    try:
        return daemon.run(config, launcher)
    finally:
        launcher.close()


def _fork_server(config: AgentConfig) -> ForkServer | None:
    """The process document workers are forked from (agent/execution/forkserver.py)."""
    if not config.fork_server or not hasattr(os, "fork"):
        return None
    from agent.execution.forkserver import ForkServer, ForkServerError

    try:
        return ForkServer.start()
    except (OSError, ForkServerError) as exc:
        print(f"warning: no fork server ({exc}); workers start as new processes", file=sys.stderr)
        return None


def _run_document(args: argparse.Namespace) -> int:
    from agent.execution import local

    return local.main(args.file, args.param, args.output, args.timeout)


def _status(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.status import collect

    info = collect(load_config(args.state_dir))
    if args.output == "json":
        print(json.dumps(info, indent=2))
        return 0
    held = info.pop("associations")
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key.replace('_', ' '):<{width}}  {value if value is not None else '-'}")
    if isinstance(held, str) or not held:
        print(f"{'associations':<{width}}  {held or 'none'}")
        return 0
    print(f"{'associations':<{width}}  {len(held)}")
    rows = [("NAME", "SCHEDULE", "NEXT LOCAL RUN", "LAST SLOT", "BY")]
    for a in held:
        schedule = a["schedule"] or "-"
        if a["schedule"] and a["timezone"] != "UTC":
            schedule += f" {a['timezone']}"
        next_run = a["next_run"] or ("server only" if a["schedule"] else "-")
        rows.append((a["name"], schedule, next_run, a["last_slot"] or "-", a["handled_by"] or "-"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    for row in rows:
        print(
            "  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _outbox(args: argparse.Namespace) -> int:
    """``outbox list-dead`` / ``outbox retry-dead``: on the file itself, while the agent runs
    or not (SQLite waits for the daemon's write to end)."""
    from agent.config import load_config
    from agent.outbox import Outbox

    config = load_config(args.state_dir)
    if not config.outbox_file.exists():
        dead_rows, moved = [], 0
    else:
        box = Outbox(config.outbox_file)
        try:
            if args.outbox_command == "list-dead":
                dead_rows = [row.as_json() for row in box.list_dead()]
            else:
                moved = box.retry_dead(args.ids or None)
        finally:
            box.close()
    if args.outbox_command == "retry-dead":
        if args.output == "json":
            print(json.dumps({"moved": moved}))
        else:
            print(f"{moved} message{'s' if moved != 1 else ''} back in the outbox")
        return 0
    if args.output == "json":
        print(json.dumps(dead_rows, indent=2))
        return 0
    from agent.status import iso

    for row in dead_rows:
        print(f"{row['id']}  {row['type']}  {iso(row['dead_at'])}  {row['reason']}")
    if not dead_rows:
        print("no dead messages")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    handlers = {
        "register": _register,
        "run": _run,
        "status": _status,
        "outbox": _outbox,
        "run-document": _run_document,
    }
    try:
        code = handlers[args.command](args)
    except AgentError as exc:
        if args.debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the entry point: no traceback reaches a user without --debug
        if args.debug:
            raise
        print(
            f"error: unexpected failure: {type(exc).__name__}: {exc} (run with --debug)",
            file=sys.stderr,
        )
        code = 1
    sys.exit(code)
