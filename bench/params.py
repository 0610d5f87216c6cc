"""Parameter Store on SQLite: put, get and get-by-path latency (p50/p99) and throughput,
String vs SecureString, over the HTTPS API of a real ``corral-server serve`` on loopback.

Data set: ``--count 1000`` String parameters under ``/bench/plain`` and as many SecureStrings
under ``/bench/secure`` (``p0000`` ...; values of ``--value-bytes 64``, random text).

Phases, each with the admin token and one keep-alive connection per client:

1. put, creating every parameter (version 1), one client;
2. put with ``overwrite`` (versions 2, 3, ...), once per ``--clients`` value (``1,8``): the
   same ``--count`` names, shared out between that many concurrent clients;
3. get of ``--gets 1000`` random names per type, per ``--clients`` value: String as is,
   SecureString with ``decrypt=true`` (and without, to show what the decryption costs);
4. get-by-path of each path, ``recursive=true`` (``decrypt=true`` for SecureString), one
   client, ``--path-runs 10`` times after one warm-up; every answer must hold all ``--count``
   parameters with the values that were put.

Client and server share the machine's cores, so the client's own CPU is in the latencies;
``srv CPU ms/req`` (the server's process-tree CPU over the phase, per request) is the cost on
the server alone.  The server rate-limits each token (20 requests/s, burst 100 by default):
the bench writes ``rate_limit_per_second = 100000`` and ``rate_limit_burst = 1000000`` under
``[server]`` in the data dir's ``config.toml`` before starting the server.

    .venv/bin/python bench/params.py [--count 1000] [--clients 1,8] [--gets 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import secrets
import string
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BenchError,
    Server,
    code_under_test,
    deadline,
    install_signal_handlers,
    percentile,
    print_table,
    running_server,
    tree_cpu_seconds,
    workdir,
)

PLAIN = "/bench/plain"
SECURE = "/bench/secure"
RATE_LIMITS = {"rate_limit_per_second": 100000, "rate_limit_burst": 1000000}
REQUEST_TIMEOUT = 60.0


# The server --------------------------------------------------------------------------------
def serving(root: Path, start_timeout: float = 60.0) -> contextlib.AbstractContextManager[Server]:
    """``corral-server init``, rate limits raised (a bench is not abuse), ``serve``."""
    return running_server(root, start_timeout, settings=RATE_LIMITS)


# Measuring ---------------------------------------------------------------------------------
@dataclass
class Row:
    operation: str
    clients: int
    latencies: list[float]  # seconds, one per request
    wall: float  # seconds, first request sent to last answer
    server_cpu: float  # seconds of the server's process tree over the phase

    def cells(self) -> list[object]:
        n = len(self.latencies)
        return [
            self.operation,
            self.clients,
            n,
            f"{percentile(self.latencies, 50) * 1000:.1f}",
            f"{percentile(self.latencies, 99) * 1000:.1f}",
            f"{n / self.wall:.0f}" if self.wall else "",
            f"{self.server_cpu / n * 1000:.2f}" if n else "",
        ]


Request = Callable[[httpx.Client], httpx.Response]


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def measure(
    server: Server,
    operation: str,
    requests: Sequence[tuple[Request, Callable[[httpx.Response], None]]],
    clients: int,
) -> Row:
    """Send ``requests`` over ``clients`` threads (each with its own keep-alive connection,
    warmed with one ``/readyz`` first); each request's check runs after its timing."""
    connections = [server.api(timeout=REQUEST_TIMEOUT) for _ in range(clients)]
    try:
        for client in connections:
            client.get("/readyz").raise_for_status()
        shares = [requests[i::clients] for i in range(clients)]
        latencies: list[list[float]] = [[] for _ in range(clients)]
        start = threading.Barrier(clients + 1)

        stop = threading.Event()  # set on the way out: Ctrl-C, a deadline, a failed check

        def work(i: int) -> None:
            client, mine, out = connections[i], shares[i], latencies[i]
            try:
                start.wait()
            except threading.BrokenBarrierError:
                return
            for send, check in mine:
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                response = send(client)
                out.append(time.perf_counter() - t0)
                check(response)

        proc = server.psutil_process()
        with ThreadPoolExecutor(clients, thread_name_prefix="bench-client") as pool:
            futures = [pool.submit(work, i) for i in range(clients)]
            try:
                cpu0 = tree_cpu_seconds(proc)
                start.wait()
                t0 = time.perf_counter()
                for future in futures:
                    future.result()
                wall = time.perf_counter() - t0
                cpu = tree_cpu_seconds(proc) - cpu0
            finally:
                stop.set()
                start.abort()
    finally:
        for client in connections:
            client.close()
    return Row(operation, clients, [x for part in latencies for x in part], wall, cpu)


# The work ----------------------------------------------------------------------------------
def random_value(rng: random.Random, size: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.:=+"
    return "".join(rng.choice(alphabet) for _ in range(size))


def names(path: str, count: int) -> list[str]:
    return [f"{path}/p{i:04d}" for i in range(count)]


def put_request(name: str, value: str, kind: str, overwrite: bool) -> Request:
    body = {"name": name, "value": value, "type": kind, "overwrite": overwrite}
    return lambda client: client.put("/v1/parameters", json=body)


def check_put(name: str, version: int) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        got = expect(response, 200, f"put {name}")
        if got.get("version") != version:
            raise BenchError(f"put {name}: version {got.get('version')}, expected {version}")

    return check


def get_request(name: str, decrypt: bool) -> Request:
    params = {"name": name, "decrypt": "true" if decrypt else "false"}
    return lambda client: client.get("/v1/parameters/get", params=params)


def check_get(name: str, value: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        if expect(response, 200, f"get {name}").get("value") != value:
            raise BenchError(f"get {name}: the value is not the one put")

    return check


def by_path_request(path: str, decrypt: bool) -> Request:
    params = {
        "path": path,
        "recursive": "true",
        "decrypt": "true" if decrypt else "false",
        "limit": "1000",  # one page holds the 1,000 parameters of a path
    }
    return lambda client: client.get("/v1/parameters/by-path", params=params)


def check_by_path(path: str, values: dict[str, str]) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        found = expect(response, 200, f"get-by-path {path}")["parameters"]
        got = {p["name"]: p["value"] for p in found}
        if got != values:
            missing = len(set(values) - set(got))
            wrong = sum(1 for n in values if n in got and got[n] != values[n])
            raise BenchError(
                f"get-by-path {path}: {len(got)} parameters, {missing} missing, {wrong} wrong"
            )

    return check


def put_phase(
    server: Server,
    label: str,
    values: dict[str, str],
    kind: str,
    clients: int,
    version: int,
) -> Row:
    reqs = [
        (put_request(n, v, kind, overwrite=version > 1), check_put(n, version))
        for n, v in values.items()
    ]
    return measure(server, label, reqs, clients)


def run(args: argparse.Namespace, server: Server) -> list[Row]:
    rng = random.Random(args.seed)
    kinds = {"String": PLAIN, "SecureString": SECURE}
    values = {
        kind: {n: random_value(rng, args.value_bytes) for n in names(path, args.count)}
        for kind, path in kinds.items()
    }
    rows: list[Row] = []
    version = {kind: 1 for kind in kinds}

    for kind in kinds:
        print(f"put {args.count} {kind} (create) ...", file=sys.stderr)
        rows.append(put_phase(server, f"put {kind} (create)", values[kind], kind, 1, 1))
    for clients in args.clients:
        for kind in kinds:
            version[kind] += 1
            # New values each round, so every put really changes the parameter.
            values[kind] = {n: random_value(rng, args.value_bytes) for n in values[kind]}
            print(f"put {args.count} {kind} (overwrite, {clients} clients) ...", file=sys.stderr)
            label = f"put {kind} (overwrite)"
            rows.append(put_phase(server, label, values[kind], kind, clients, version[kind]))

    gets = [
        ("get String", "String", False),
        ("get SecureString, decrypt", "SecureString", True),
        ("get SecureString, no decrypt (****)", "SecureString", False),
    ]
    for clients in args.clients:
        for label, kind, decrypt in gets:
            picked = rng.choices(list(values[kind]), k=args.gets)
            shown = values[kind] if decrypt or kind == "String" else dict.fromkeys(picked, "****")
            reqs = [(get_request(n, decrypt), check_get(n, shown[n])) for n in picked]
            print(f"{label}: {args.gets} gets, {clients} clients ...", file=sys.stderr)
            rows.append(measure(server, label, reqs, clients))

    for kind, path in kinds.items():
        decrypt = kind == "SecureString"
        label = f"get-by-path {path} ({args.count}{', decrypt' if decrypt else ''})"
        req = (by_path_request(path, decrypt), check_by_path(path, values[kind]))
        print(f"{label}: {args.path_runs} runs ...", file=sys.stderr)
        measure(server, label, [req], 1)  # warm-up, not counted
        rows.append(measure(server, label, [req] * args.path_runs, 1))
    return rows


def client_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or any(c < 1 or c > 64 for c in counts):
        raise argparse.ArgumentTypeError("client counts are 1 to 64")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Parameter Store put / get / get-by-path latency and throughput on SQLite, "
        "String vs SecureString, against a real server."
    )
    parser.add_argument("--count", type=int, default=1000, help="parameters per type (1000)")
    parser.add_argument(
        "--clients",
        type=client_counts,
        default=[1, 8],
        help="concurrent clients for overwrite puts and gets, comma-separated (1,8)",
    )
    parser.add_argument("--gets", type=int, default=1000, help="gets per row (1000)")
    parser.add_argument("--path-runs", type=int, default=10, help="get-by-path runs per path (10)")
    parser.add_argument("--value-bytes", type=int, default=64, help="size of each value (64)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (random)")
    parser.add_argument(
        "--max-seconds", type=float, default=1200, help="give up after this long (1200)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    if not 1 <= args.count <= 1000:
        parser.error("--count: 1 to 1000 (get-by-path answers at most 1000 parameters)")
    if not 1 <= args.value_bytes <= 4096 or args.gets < 1 or args.path_runs < 1:
        parser.error("--value-bytes is 1 to 4096; --gets and --path-runs at least 1")
    args.seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    install_signal_handlers()

    with (
        deadline(args.max_seconds),
        workdir("params", args.keep) as root,
        serving(root) as server,
    ):
        print(
            f"server {server.url}, data dir {server.data_dir}; rate limits raised for the bench: "
            "rate_limit_per_second = 100000, rate_limit_burst = 1000000 under [server] "
            "in config.toml",
            file=sys.stderr,
        )
        rows = run(args, server)

    print_table(
        f"Parameter Store on SQLite, {args.count} parameters per type, {args.value_bytes}-byte "
        f"values (seed {args.seed}); latencies in ms",
        ["operation", "clients", "requests", "p50", "p99", "req/s", "srv CPU ms/req"],
        [row.cells() for row in rows],
    )
    print(
        "rate limits raised for the bench: rate_limit_per_second = 100000, "
        "rate_limit_burst = 1000000 under [server] in config.toml"
    )
    print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # everything started is stopped by now (the contexts' finally)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
