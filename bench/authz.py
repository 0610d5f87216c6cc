"""What authorization and audit cost: requests per second and latency on a read route
(``GET /v1/nodes/{id}``) and on ``commands:Send`` (``POST /v1/commands``, ``true`` on one
registered node that never polls: the command is stored, queued and audited, not run).

Tokens compared:

* ``admin``: the built-in role (one ``*`` statement);
* ``policy20``: a token whose policy has 20 statements, made to cost the most a real one does:
  17 Allows indexed under the same actions that fail on their resource or their conditions, a
  Deny indexed under the same actions whose resource does not match, an Allow of the document
  with ``IpAddress``, and the deciding Allow with ``StringEquals`` on ``node:tag/team`` and
  ``IpAddress`` on ``source_ip`` (the node's tags are read for every request);
* ``off`` (in-process only): ``Allow.__call__`` replaced by one that hands the route a fixed
  admin caller: no token lookup, rate limit, policy evaluation, request summary or audit entry.
  The route's own per-target checks still run, against the admin role's single statement.
  (Not ``app.dependency_overrides``: the route modules use ``from __future__ import
  annotations``, and FastAPI re-evaluates the annotations of included routers' routes, so the
  app serves other ``Allow`` instances than the ones a walk of its routes finds.)

Two measurements, each in ``--rounds`` rounds that alternate the order of the variants (so a
drift, such as the commands table growing, is shared):

1. over the network: the real ``corral-server serve`` with TLS on loopback, one keep-alive
   client with ``--concurrency`` requests in flight.  Client and server share the 2 cores, so
   the client's own CPU is in these figures;
2. in-process: the same app and database through ``httpx.ASGITransport`` (no TLS, no socket),
   one request at a time, after the server has stopped.  This is where the overhead is read:
   over the network the TLS and client costs make a difference of a few percent vanish.

Budget (issue 5): authorization + audit overhead under 20 % (``policy20`` vs ``off``).

    .venv/bin/python bench/authz.py [--requests 100] [--rounds 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BenchError,
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    median,
    percentile,
    print_table,
    run_main,
    running_server,
    verdict,
    workdir,
)
from fastapi import Request as HttpRequest

from agent import wire
from agent.identity import NodeKey
from control_plane.api.app import create_app
from control_plane.api.authz import Allow, Caller
from control_plane.config import load_config
from control_plane.security.policy import evaluate
from control_plane.security.policy_conditions import ContextValue
from control_plane.services.hub import ControlPlane
from control_plane.services.operators import Operator

BUDGET_OVERHEAD_PERCENT = 20.0
WARMUP = 20
READ = "read: GET /v1/nodes/{id}"
SEND = "commands:Send: POST /v1/commands"
SEND_BODY_EXTRA = {"document": "AWS-RunShellScript", "parameters": {"commands": ["true"]}}


def policy_document() -> dict[str, Any]:
    """20 statements: every one is looked at for nodes:Get and commands:Send, one decides."""
    statements: list[dict[str, Any]] = []
    for i in range(17):
        if i % 2 == 0:  # right action and resource, wrong team and network
            statements.append(
                {
                    "Sid": f"Team{i}",
                    "Effect": "Allow",
                    "Action": ["nodes:Get", "commands:Send"],
                    "Resource": ["node/*"],
                    "Condition": {
                        "StringEquals": {"node:tag/team": f"team-{i}"},
                        "IpAddress": {"source_ip": f"10.{i}.0.0/16"},
                    },
                }
            )
        else:  # right action (by wildcard), other resources
            statements.append(
                {
                    "Sid": f"Other{i}",
                    "Effect": "Allow",
                    "Action": ["nodes:*", "commands:*"],
                    "Resource": [f"node/mi-{i:017x}", f"document/Team{i}-*"],
                }
            )
    statements += [
        {
            "Sid": "NoTokensNoDeadNodes",
            "Effect": "Deny",
            "Action": ["tokens:*", "nodes:Get", "commands:Send"],
            "Resource": ["token/*", "node/mi-dead*"],
        },
        {
            "Sid": "ShellFromLoopback",
            "Effect": "Allow",
            "Action": ["commands:Send"],
            "Resource": ["document/AWS-RunShellScript"],
            "Condition": {"IpAddress": {"source_ip": "127.0.0.0/8"}},
        },
        {
            "Sid": "WebTeam",
            "Effect": "Allow",
            "Action": ["nodes:Get", "commands:Send"],
            "Resource": ["node/*"],
            "Condition": {
                "StringEquals": {"node:tag/team": "web"},
                "IpAddress": {"source_ip": "127.0.0.0/8"},
            },
        },
    ]
    assert len(statements) == 20
    return {"Version": "2026-01-01", "Statement": statements}


# The server --------------------------------------------------------------------------------
def serving(root: Path, start_timeout: float = 60.0) -> contextlib.AbstractContextManager[Server]:
    """``corral-server init``, rate limits raised (a bench is not abuse), ``serve``."""
    return running_server(
        root, start_timeout, settings={"rate_limit_per_second": 100000, "rate_limit_burst": 1000000}
    )


@dataclass
class Fixture:
    node_id: str
    tokens: dict[str, str]  # variant -> secret


def prepare(server: Server) -> Fixture:
    """One node tagged team=web (registered, never polling) and the 20-statement token."""
    with server.api() as api:
        activation = api.post("/v1/activations", json={"tags": {"team": "web"}}).json()
        registered = api.post(
            wire.ROUTE_REGISTER,
            json={
                "activation_id": activation["activation_id"],
                "activation_code": activation["activation_code"],
                "public_key": NodeKey.generate().public_key_b64,
                "hostname": "bench-web-1",
            },
        )
        if registered.status_code != 201:
            raise BenchError(f"registering the node failed: {registered.text}")
        node_id: str = registered.json()["node_id"]
        created = api.post("/v1/tokens", json={"name": "web-team", "policy": policy_document()})
        if created.status_code != 201:
            raise BenchError(f"creating the policy token failed: {created.text}")
        secret, token_id = created.json()["secret"], created.json()["token_id"]
        fixture = Fixture(node_id, {"admin": server.token, "policy20": secret})
    with httpx.Client(base_url=server.url, verify=server.tls(), timeout=30) as client:
        checks = [
            ("GET", f"/v1/nodes/{node_id}", None, 200),
            ("POST", "/v1/commands", send_body(node_id), 201),
            ("GET", f"/v1/tokens/{token_id}", None, 403),  # the Deny is in force
        ]
        for method, path, body, want in checks:
            answer = client.request(
                method, path, json=body, headers=bearer(fixture.tokens["policy20"])
            )
            if answer.status_code != want:
                raise BenchError(
                    f"policy20 {method} {path}: {answer.status_code}, expected {want}: "
                    f"{answer.text[:200]}"
                )
    return fixture


def send_body(node_id: str) -> dict[str, Any]:
    return {"targets": [node_id], "comment": "bench", **SEND_BODY_EXTRA}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# Timing ----------------------------------------------------------------------------------
@dataclass
class Cell:
    latencies: list[float] = field(default_factory=list)
    round_rps: list[float] = field(default_factory=list)  # requests/s of each round
    errors: int = 0
    last_error: str = ""

    @property
    def rps(self) -> float:
        return median(self.round_rps)

    def ms(self, pct: float) -> str:
        return f"{percentile(self.latencies, pct) * 1000:.2f}"


Call = Callable[[], Awaitable[httpx.Response]]


def _nothing() -> None:
    return None


@dataclass
class Variant:
    """A way to call the routes; ``enter``/``leave`` switch the server into it and back."""

    requests: dict[str, Call]
    enter: Callable[[], None] = _nothing
    leave: Callable[[], None] = _nothing


async def timed(request: Call, count: int, concurrency: int, cell: Cell | None) -> None:
    """``count`` requests, ``concurrency`` at a time; latencies and requests/s into ``cell``."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter()
            response = await request()
            elapsed = time.perf_counter() - start
            if cell is None:
                continue
            if response.status_code >= 300:
                cell.errors += 1
                cell.last_error = f"{response.status_code} {response.text[:120]}"
            else:
                cell.latencies.append(elapsed)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    if cell is not None:
        cell.round_rps.append(count / (time.perf_counter() - start))


def requests_for(client: httpx.AsyncClient, node_id: str, token: str | None) -> dict[str, Call]:
    headers = bearer(token) if token else {}
    body = send_body(node_id)
    return {
        READ: lambda: client.get(f"/v1/nodes/{node_id}", headers=headers),
        SEND: lambda: client.post("/v1/commands", json=body, headers=headers),
    }


async def run_rounds(
    variants: dict[str, Variant], args: argparse.Namespace, concurrency: int
) -> dict[tuple[str, str], Cell]:
    """Every (route, variant) ``args.rounds`` times, the variants' order reversed each round."""
    cells: dict[tuple[str, str], Cell] = {}
    names = list(variants)
    for round_no in range(args.rounds + 1):  # round 0 warms up, unmeasured
        order = names if round_no % 2 else names[::-1]
        for route in (READ, SEND):
            for name in order:
                variant = variants[name]
                cell = cells.setdefault((route, name), Cell()) if round_no else None
                variant.enter()
                try:
                    count = args.requests if round_no else WARMUP
                    await timed(variant.requests[route], count, concurrency, cell)
                finally:
                    variant.leave()
    return cells


# Over the network ------------------------------------------------------------------------
async def over_network(
    server: Server, fixture: Fixture, args: argparse.Namespace
) -> dict[tuple[str, str], Cell]:
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=server.url, verify=server.tls(), timeout=60, limits=limits
    ) as client:
        variants = {
            name: Variant(requests_for(client, fixture.node_id, token))
            for name, token in fixture.tokens.items()
        }
        return await run_rounds(variants, args, args.concurrency)


# In-process ------------------------------------------------------------------------------
async def mean_ms(step: Callable[[], Awaitable[object]], count: int) -> float:
    for _ in range(WARMUP):
        await step()
    start = time.perf_counter()
    for _ in range(count):
        await step()
    return (time.perf_counter() - start) / count * 1000


async def breakdown(cp: ControlPlane, fixture: Fixture, count: int) -> list[list[object]]:
    """What the authorization of one request is made of, each piece alone."""
    rows: list[list[object]] = []
    resource = f"node/{fixture.node_id}"
    for name, token in fixture.tokens.items():
        operator = await cp.operators.authenticate(token)
        tags = await cp.nodes.tags_of(fixture.node_id)
        context: dict[str, ContextValue] = {
            "current_time": dt.datetime.now(dt.UTC),
            "secure_transport": True,
            "source_ip": ipaddress.ip_address("127.0.0.1"),
            **{f"node:tag/{k}": v for k, v in tags.items()},
        }
        if not evaluate(operator.policies, "commands:Send", resource, context).allowed:
            raise BenchError(f"{name} is not allowed commands:Send on {resource}")

        async def decide(
            operator: Operator = operator, context: dict[str, ContextValue] = context
        ) -> object:
            return evaluate(operator.policies, "commands:Send", resource, context)

        async def authenticate(token: str = token) -> object:
            return await cp.operators.authenticate(token)

        rows.append([f"token lookup ({name})", f"{await mean_ms(authenticate, count):.3f}"])
        rows.append([f"policy evaluation ({name})", f"{await mean_ms(decide, count):.4f}"])

    async def tags_of() -> object:
        return await cp.nodes.tags_of(fixture.node_id)

    rows.append(["node tags (resource node/{id})", f"{await mean_ms(tags_of, count):.3f}"])
    return rows


async def in_process(
    data_dir: Path, fixture: Fixture, args: argparse.Namespace
) -> tuple[dict[tuple[str, str], Cell], list[list[object]]]:
    cp = ControlPlane(load_config(data_dir))
    app = create_app(cp)
    checked = Allow.__call__
    async with app.router.lifespan_context(app):
        admin = await cp.operators.authenticate(fixture.tokens["admin"])
        loopback = ipaddress.ip_address("127.0.0.1")

        async def unchecked(self: Allow, request: HttpRequest, cp: ControlPlane) -> Caller:
            return Caller(cp, admin, {"source_ip": loopback}, "127.0.0.1", None)

        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://corral.bench") as c:

            def switch_off() -> None:
                Allow.__call__ = unchecked  # type: ignore[method-assign]

            def switch_on() -> None:
                Allow.__call__ = checked  # type: ignore[method-assign]

            variants = {
                "off": Variant(requests_for(c, fixture.node_id, None), switch_off, switch_on)
            }
            for name, token in fixture.tokens.items():
                variants[name] = Variant(requests_for(c, fixture.node_id, token))
            cells = await run_rounds(variants, args, 1)
        return cells, await breakdown(cp, fixture, args.requests)


# Report ----------------------------------------------------------------------------------
def overheads(cell: Cell, base: Cell) -> list[float]:
    """Per round: extra time per request over the baseline's in the same round, in percent
    (rounds pair the variants, so noise that hits a whole round cancels)."""
    return [(b / c - 1) * 100 for b, c in zip(base.round_rps, cell.round_rps, strict=True)]


def report(title: str, cells: dict[tuple[str, str], Cell], base: str, budget: bool) -> list[str]:
    rows: list[list[object]] = []
    missed: list[str] = []
    for (route, name), cell in cells.items():
        if cell.errors:
            missed.append(f"{route} {name}: {cell.errors} errors, last {cell.last_error}")
        row: list[object] = [route, name, f"{cell.rps:.0f}", cell.ms(50), cell.ms(99)]
        if name == base:
            row += ["(base)", "", ""]
        else:
            each = overheads(cell, cells[(route, base)])
            extra = median(each)
            ok = extra <= BUDGET_OVERHEAD_PERCENT
            spread = f"{min(each):+.0f}..{max(each):+.0f}"
            row += [f"{extra:+.1f} %", spread, verdict(ok) if budget else ""]
            if budget and not ok:
                missed.append(f"{route} {name}: {extra:+.1f} % over {base}")
        rows.append(row)
    rows.sort(key=lambda r: (str(r[0]), str(r[1])))
    print_table(
        title,
        ["route", "token", "req/s", "p50 ms", "p99 ms", f"vs {base}", "rounds", "verdict"],
        rows,
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Requests/s and latency with the admin token vs a 20-statement policy "
        "(and, in-process, with authorization and audit off)."
    )
    parser.add_argument("--requests", type=int, default=100, help="per cell and round (100)")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (10)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight over the network (4)"
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="give up after (900)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    install_signal_handlers()

    with deadline(args.max_seconds), workdir("authz", args.keep) as root:
        with serving(root) as server:
            fixture = prepare(server)
            network = asyncio.run(over_network(server, fixture, args))
        local, pieces = asyncio.run(in_process(root / "server", fixture, args))

    each = f"{args.rounds} x {args.requests} requests per row"
    missed = report(
        f"Over the network: TLS on loopback, {args.concurrency} in flight, {each}",
        network,
        "admin",
        budget=False,
    )
    missed += report(
        f"In-process (httpx.ASGITransport, one at a time), {each}; the budget is read here",
        local,
        "off",
        budget=True,
    )
    print_table(f"Pieces, in-process, mean of {args.requests} calls each", ["piece", "ms"], pieces)
    print(
        "\nreq/s: median of the rounds.  vs off/admin: extra time per request over the base "
        "(base req/s / req/s - 1), median of the rounds (range in 'rounds').  "
        f"Budget: authorization + audit <= {BUDGET_OVERHEAD_PERCENT:g} % over off."
    )
    print(f"code measured: {code_under_test()}")
    for line in missed:
        print(f"MISSED: {line}")
    return 0


if __name__ == "__main__":
    run_main(main)
