"""``corral-server dev``: a server and one local agent in the foreground, for trying Corral.

Data lives in ``./.corral-dev`` (created if missing, reused on the next run).  The agent is
registered through a real activation, like any node.  Unlike ``init``, dev mode keeps the admin
token in ``.corral-dev/dev/admin_token`` (mode 0600) so it can show it again, as
``vault server -dev`` shows its root token; never use dev mode for a real fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import click

from control_plane.config import load_config, parse_listen, url_for
from control_plane.datadir import init_data_dir, is_initialized
from control_plane.errors import SetupError
from control_plane.security.ca import ca_hash, write_private
from control_plane.serve import CorralServer, build_server
from control_plane.store import migrate

AGENT_STOP_SECONDS = 12.0


INVENTORY_ASSOCIATION = "corral-inventory"

def _agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def run_dev(data_dir: Path, listen: str) -> None:
    dev_dir = data_dir / "dev"
    token_file = dev_dir / "admin_token"
    if not is_initialized(data_dir):
        result = init_data_dir(data_dir, [], listen=listen)
        dev_dir.mkdir(mode=0o700, exist_ok=True)
        write_private(token_file, result.admin_token.encode())
    dev_dir.mkdir(mode=0o700, exist_ok=True)
    known = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None
    config = load_config(data_dir)
    migrate.upgrade(config.sync_database_url)
    server = build_server(config, listen)
    host, port = parse_listen(listen)
    url = url_for(host, port)
    asyncio.run(_run(server, data_dir, token_file, known, url))


async def _ensure_token(server: CorralServer, token_file: Path, known: str | None) -> str:
    if known:
        return known
    _, secret = await server.cp.operators.create_token("dev-admin", "admin")
    write_private(token_file, secret.encode())
    return secret


async def _register_agent(server: CorralServer, agent_dir: Path, url: str, hash_: str) -> None:
    activation = await server.cp.activations.create(
        name="dev-agent", description="corral-server dev", tags={"env": "dev"}
    )
    proc = await asyncio.create_subprocess_exec(
        *_agent_cmd(
            "register",
            "--url",
            url,
            "--id",
            activation["activation_id"],
            "--code",
            activation["activation_code"],
            "--ca-hash",
            hash_,
            "--state-dir",
            str(agent_dir),
        ),
        stdin=subprocess.DEVNULL,
    )
    if await proc.wait() != 0:
        raise SetupError("the local agent could not register; see the message above")


async def _run(
    server: CorralServer, data_dir: Path, token_file: Path, known: str | None, url: str
) -> None:
    config = server.cp.config
    agent_dir = data_dir / "agent"
    registered = (agent_dir / "state.json").exists()
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # startup failed: raise its error
            return
        await asyncio.sleep(0.05)
    hash_ = ca_hash(config.ca_file.read_bytes())
    token = await _ensure_token(server, token_file, known)
    from control_plane.cli.profiles import save_profile

    profile_path = save_profile("dev", url=url, token=token, ca_file=str(config.ca_file))
    agent: asyncio.subprocess.Process | None = None
    try:
        if not registered:
            await _register_agent(server, agent_dir, url, hash_)
            await _enable_inventory(server)
        # The agent gets its own process group: dev mode decides when it stops.
        agent = await asyncio.create_subprocess_exec(
            *_agent_cmd("run", "--state-dir", str(agent_dir)),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        server.on_shutdown.append(lambda: _stop(agent))
        node_id = json.loads((agent_dir / "state.json").read_text())["node_id"]
        _banner(url, hash_, token, config.ca_file, profile_path, data_dir, node_id)
        await serving
    finally:
        if agent is not None and agent.returncode is None:
            _stop(agent)
            try:
                async with asyncio.timeout(AGENT_STOP_SECONDS):
                    await agent.wait()
            except TimeoutError:
                agent.kill()
                await agent.wait()
        if not serving.done():
            server.request_shutdown()
            await serving


async def _enable_inventory(server: CorralServer) -> None:
    """Inventory on from the start, as ``corral inventory enable`` makes it: the
    ``corral-inventory`` association, every node, every 30 minutes (applied at once)."""
    from control_plane.services.associations.model import Spec

    spec = Spec(
        name=INVENTORY_ASSOCIATION,
        document="AWS-GatherSoftwareInventory",
        document_version=None,
        targets=["all"],
        schedule="rate(30 minutes)",
        max_errors="100%",
    )
    await server.cp.associations.create(spec, requested_by="dev")


def _stop(agent: asyncio.subprocess.Process | None) -> None:
    if agent is not None and agent.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            agent.send_signal(signal.SIGTERM)


def _banner(
    url: str, hash_: str, token: str, ca_file: Path, profile: Path, data_dir: Path, node_id: str
) -> None:
    lines = [
        "",
        "Corral is running in dev mode (one server, one local agent). Ctrl-C stops both.",
        "",
        f"  URL:          {url}",
        f"  CA hash:      {hash_}",
        f"  CA file:      {ca_file}",
        f"  Admin token:  {token}",
        f"  Data:         {data_dir}",
        f"  CLI profile:  dev (saved in {profile})",
        f"  Local node:   {node_id}",
        "",
        "Try, from another terminal:",
        "  corral nodes list",
        f"  corral nodes ping {node_id}",
        "  corral run --targets all --wait -- uptime",
        f"  corral inventory show {node_id}",
        "  corral inventory list --type AWS:Application --filter Name^=openssl",
        "  corral params put /demo/greeting --value hello",
        "  corral audit list --since 1h",
        "  corral activations create --limit 5 --tag team=web",
        "",
    ]
    click.echo("\n".join(lines), err=True)
