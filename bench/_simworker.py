"""A bench worker process of simulated agents (bench/_simagent.py), driven by JSON lines on
stdin: ``python bench/_simworker.py worker --url ... --ca-file ...``.  poll_capacity.py and
fanout.py start several."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import ssl
import sys
import time
from typing import Any

import httpx
from _simagent import SimAgent, SimChannelAgent, SimNode, Stats

from agent import wire


# The worker process --------------------------------------------------------------------------
class Worker:
    def __init__(
        self, url: str, ca_file: str, per_client: int, wait: float, ramp: int, transport: str
    ) -> None:
        self._url = url
        self._transport = transport
        self._ws_url = "wss://" + url.split("://", 1)[1].rstrip("/") + wire.ROUTE_CONNECT
        self._tls = ssl.create_default_context(cafile=ca_file)
        self._per_client = per_client
        self._wait = wait
        self._gate = asyncio.Semaphore(ramp)
        self._clients: list[tuple[httpx.AsyncClient, int]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = Stats()

    def _client(self) -> httpx.AsyncClient:
        """The newest client while it has room, else a new one."""
        if self._clients and self._clients[-1][1] < self._per_client:
            client, used = self._clients[-1]
            self._clients[-1] = (client, used + 1)
            return client
        # An agent makes one request at a time, so a connection per agent (and a spare) holds
        # every poll.  No more: httpcore's pool scans every connection on every request, and
        # idle surplus connections make that scan quadratic.
        # Keep-alive expiry below the server's (poll hold + 10 s) so no request is sent on a
        # connection the server is closing.
        pool = self._per_client + 2
        client = httpx.AsyncClient(
            base_url=self._url,
            verify=self._tls,
            timeout=httpx.Timeout(15.0, read=self._wait + 15.0, pool=self._wait + 15.0),
            limits=httpx.Limits(
                max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=25.0
            ),
        )
        self._clients.append((client, 1))
        return client

    async def add(self, tg: asyncio.TaskGroup, nodes: list[SimNode]) -> dict[str, Any]:
        start = time.monotonic()

        async def start_one(node: SimNode) -> bool:
            agent: SimAgent
            if self._transport == "websocket":
                agent = SimChannelAgent(node, self._client(), self.stats, self._ws_url, self._tls)
                agent.gate = self._gate
            else:
                agent = SimAgent(node, self._client(), self.stats)
            self.stats.agents += 1
            async with self._gate:
                for attempt in range(5):
                    try:
                        await agent.connect()
                        break
                    except Exception as exc:  # any failure to connect counts, and is retried
                        self.stats.error("connect", exc)
                        await asyncio.sleep(random.uniform(0, 2**attempt))
                else:
                    return False
            self.stats.connected += 1
            task = tg.create_task(agent.run(self._wait), name=f"agent-{node.node_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True

        async def progress() -> None:
            while True:
                await asyncio.sleep(10)
                s = self.stats
                print(
                    f"worker: {s.connected}/{s.agents} connected, {s.polls} polls, "
                    f"{s.errors} errors "
                    f"({s.last_error or '-'})",
                    file=sys.stderr,
                    flush=True,
                )

        reporter = asyncio.create_task(progress())
        try:
            results = await asyncio.gather(*(start_one(n) for n in nodes))
        finally:
            reporter.cancel()
        failed = [n.node_id for n, ok in zip(nodes, results, strict=True) if not ok]
        return {
            "connected": len(nodes) - len(failed),
            "failed": failed,
            "seconds": round(time.monotonic() - start, 2),
        }

    def report(self) -> dict[str, Any]:
        s = self.stats
        return {
            "agents": s.agents,
            "connected": s.connected,
            "live": s.live,
            "polls": s.polls,
            "pongs": s.pongs,
            "commands": s.commands,
            "updates": s.updates,
            "errors": s.errors,
            "error_kinds": s.error_kinds,
            "last_error": s.last_error,
            "cpu": time.process_time(),
        }

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        for client, _ in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()


async def worker_main(args: argparse.Namespace) -> None:
    worker = Worker(
        args.url, args.ca_file, args.agents_per_client, args.wait, args.ramp, args.transport
    )

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        async with asyncio.TaskGroup() as tg:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    break
                command = json.loads(line)
                if command["cmd"] == "add":
                    nodes = [SimNode(n, k) for n, k in command["nodes"]]
                    reply(await worker.add(tg, nodes))
                elif command["cmd"] == "stats":
                    reply(worker.report())
                elif command["cmd"] == "stop":
                    break
            worker.cancel_all()
    finally:
        await worker.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated Corral agents (a bench worker).")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run simulated agents, driven by JSON lines on stdin")
    w.add_argument("--url", required=True)
    w.add_argument("--ca-file", required=True)
    w.add_argument("--agents-per-client", type=int, default=20)
    w.add_argument("--wait", type=float, default=wire.POLL_HOLD_SECONDS)
    w.add_argument("--ramp", type=int, default=50, help="agents connecting at once")
    w.add_argument(
        "--transport", choices=["https", "websocket"], default="https", help="how agents connect"
    )
    args = parser.parse_args()
    from _common import raise_open_file_limit

    raise_open_file_limit(1 << 20)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker_main(args))


if __name__ == "__main__":
    main()
