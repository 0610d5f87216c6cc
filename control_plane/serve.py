"""Running the server: uvicorn with the data dir's TLS certificate, and one owner of signals.

Shutdown (SIGTERM or Ctrl-C): stop accepting, answer held long-polls at once, let in-flight
requests finish within the grace period, then cancel what is left, flush, close the database
and return normally (exit 0).  A second signal forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Generator

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from agent import wire
from control_plane.api.app import create_app
from control_plane.config import ServerConfig, parse_listen
from control_plane.services.hub import ControlPlane
from control_plane.store import migrate

log = logging.getLogger("corral.server")


class CorralServer(uvicorn.Server):
    """uvicorn's server, but signals are ours: no re-raise after shutdown, exit code 0."""

    def __init__(self, config: uvicorn.Config, cp: ControlPlane) -> None:
        super().__init__(config)
        self.cp = cp
        self.on_shutdown: list[Callable[[], None]] = []

    def request_shutdown(self) -> None:
        if self.should_exit:
            log.warning("second signal: forcing exit")
            self.force_exit = True
            return
        log.info("shutting down")
        self.should_exit = True
        self.cp.begin_shutdown()
        for hook in self.on_shutdown:
            hook()

    async def _wait_tasks_to_complete(self) -> None:
        # uvicorn has asked every connection to close.  An idle keep-alive HTTP connection
        # then closes its TLS transport, which waits for the client's close_notify: an idle
        # client (an open CLI session, a bench's pool) never sends one, and every restart
        # would take timeout_graceful_shutdown.  Nothing is in flight on those: drop them.
        # (Channels closed with 1012 finish their closing handshake; requests in flight are
        # waited for, as before.)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if hasattr(connection, "cycle") and transport is not None and transport.is_closing():
                transport.abort()
        await super()._wait_tasks_to_complete()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_shutdown)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


class ChannelProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, but a shutdown never fails on a closing channel.

    At shutdown uvicorn sends 1012 on every open websocket.  A channel whose agent had just
    sent its own close frame is already CLOSING; websockets then raises InvalidState from
    ``send_close`` and uvicorn lets it end the whole server (exit 1 in the middle of a
    restart: seen with 10,000 nodes connected).  Such a channel has nothing to announce."""

    def shutdown(self) -> None:
        try:
            super().shutdown()
        except InvalidState:
            self.transport.close()


# asyncio's TLS layer gives every connection a 256 KiB read buffer (Python 3.11's
# SSLProtocol.max_size): measured, 325 KB of server memory per connected node.  TLS records
# are at most 16 KiB, so 32 KiB loses nothing but memory; 10,000 idle nodes then fit.
TLS_READ_BUFFER = 32 * 1024


def build_server(config: ServerConfig, listen: str | None = None) -> CorralServer:
    from asyncio import sslproto

    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    host, port = parse_listen(listen or config.listen)
    cp = ControlPlane(config)
    uv_config = uvicorn.Config(
        create_app(cp),
        host=host,
        port=port,
        ssl_certfile=str(config.cert_file),
        ssl_keyfile=str(config.key_file),
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(config.shutdown_grace_seconds),
        timeout_keep_alive=int(config.poll_hold_seconds) + 10,
        backlog=4096,
        lifespan="on",
        # The control channel (/v1/agent/connect): a frame at most the wire's size; pings every
        # 20 s (channel_ping_seconds) find a half-open connection within 40 s; no compression
        # (its buffers cost ~64 KB per connection and the frames are small JSON).
        ws=ChannelProtocol,
        ws_max_size=wire.MAX_FRAME_BYTES,
        ws_ping_interval=config.channel_ping_seconds,
        ws_ping_timeout=config.channel_ping_seconds,
        ws_per_message_deflate=False,
    )
    return CorralServer(uv_config, cp)


def run(config: ServerConfig, listen: str | None = None) -> None:
    migrate.upgrade(config.sync_database_url)
    server = build_server(config, listen)
    asyncio.run(server.serve())
