from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Agent, Server


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A started server; ``@pytest.mark.server_config("key = value", ...)`` adds lines to
    its config.toml's [server] table first."""
    srv = Server(tmp_path)
    marker = request.node.get_closest_marker("server_config")
    if marker is not None:
        with (srv.data_dir / "config.toml").open("a") as fh:
            fh.writelines(f"{line}\n" for line in marker.args)
    try:
        srv.start()  # a start that fails half-way still gets stopped below
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_agent(tmp_path: Path, server: Server) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(name: str = "a") -> Agent:
        agent = Agent(tmp_path, server, name)
        # Short backoff so tests that stop the server do not wait a minute.
        agent.configure(backoff_cap_seconds=2, backoff_base_seconds=0.2)
        agents.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in agents:
            agent.stop()
