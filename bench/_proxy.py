"""A fault-injecting reverse proxy between agents and the server (asyncio, in a thread).

Agents pin the server's CA, so a proxy in the middle must present a certificate that CA
signed.  The benches create the server's data dir themselves, so the proxy can do what an
nginx in front of Corral does: terminate TLS with the server's own ``server.pem`` /
``server.key``, read each HTTP/1.1 request's head, and open a TLS connection of its own to the
server (verified against the CA).  That is what makes a smaller request limit possible: a
request whose ``Content-Length`` (or chunked body) exceeds ``limit_bytes`` is answered
``413 Request Entity Too Large`` by the proxy, as nginx's ``client_max_body_size`` does, with
an HTML body and ``Connection: close``, after the body has been read and discarded.  A
websocket upgrade is forwarded and then relayed as raw bytes: like nginx, the proxy does not
limit websocket frames (the server's own frame limit applies).  Without a certificate the
proxy is a plain TCP relay (no request limit: it cannot read TLS bytes).

Faults, each callable from any thread:

- ``drop()``: close every open connection (TLS close, then FIN), as a proxy restart would;
- ``reset()``: abort every open connection with a TCP RST (SO_LINGER 0);
- ``stall(seconds)``: stop forwarding bytes (both ways, open and new connections) for that
  long, closing nothing: half-open connections, requests that time out;
- ``slice(seconds)``: for that long, forward in pieces of 1-64 bytes with short pauses;
- ``refuse(seconds)``: stop listening for that long (new connections are refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

HEAD_LIMIT = 64 * 1024
DRAIN_SECONDS = 30.0
_413_BODY = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n"
    b"<hr><center>chaos-proxy</center>\r\n</body>\r\n</html>\r\n"
)
_413 = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nServer: chaos-proxy\r\n"
    b"Content-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(_413_BODY)
) + _413_BODY


class ProxyError(Exception):
    pass


class _Conn:
    """One client connection and its upstream."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        cafile: str | None = None,
        limit_bytes: int | None = None,
        seed: int = 0,
        target_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.limit = limit_bytes
        self._rng = random.Random(seed)
        self._server_tls: ssl.SSLContext | None = None
        self._client_tls: ssl.SSLContext | None = None
        if certfile:
            self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_tls.load_cert_chain(certfile, keyfile)
            self._client_tls = ssl.create_default_context(cafile=cafile)
        self.port = 0
        self.stats: Counter[str] = Counter()
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()  # set: bytes flow; cleared by stall()
        self._slice_until = 0.0
        self._stall_until = 0.0
        self._refuse_until = 0.0
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # Lifecycle (caller's thread) ------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close(), timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        async def wrap() -> T:
            return await coro

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrap(), self._loop)
        return future.result(timeout)

    # Faults (any thread) --------------------------------------------------------------------
    def drop(self) -> int:
        """Close every open connection; how many there were."""
        return self._call(self._cut(rst=False))

    def reset(self) -> int:
        """RST every open connection; how many there were."""
        return self._call(self._cut(rst=True))

    def stall(self, seconds: float) -> None:
        self._call(self._stall(seconds))

    def slice(self, seconds: float) -> None:
        self._call(self._slice(seconds))

    def refuse(self, seconds: float) -> None:
        self._call(self._refuse(seconds))

    def normal(self) -> None:
        """End every timed fault now (stall, slice, refuse)."""
        self._call(self._normal())

    # On the loop ----------------------------------------------------------------------------
    async def _start(self) -> None:
        self._flowing.set()
        await self._listen(0)

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            "127.0.0.1",
            port,
            ssl=self._server_tls,
            ssl_handshake_timeout=20 if self._server_tls else None,
            reuse_address=True,
            limit=HEAD_LIMIT,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        """Abort everything and wait for the tasks, so no transport is left unclosed."""
        for timer in self._timers:
            timer.cancel()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for conn in list(self._conns):
            for writer in conn.writers():
                writer.transport.abort()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await asyncio.sleep(0.1)  # the transports' connection_lost callbacks

    def _later(self, seconds: float, action: Callable[[], Any]) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            action()

        handle = self._loop.call_later(seconds, fire)
        self._timers.add(handle)

    async def _cut(self, rst: bool) -> int:
        conns = list(self._conns)
        for conn in conns:
            for writer in conn.writers():
                if rst:
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                    writer.transport.abort()
                else:
                    writer.close()
            for task in conn.tasks:
                task.cancel()
        self.stats["reset" if rst else "dropped"] += len(conns)
        return len(conns)

    async def _stall(self, seconds: float) -> None:
        self._stall_until = max(self._stall_until, time.monotonic() + seconds)
        self._flowing.clear()
        self._later(seconds, self._maybe_flow)

    def _maybe_flow(self) -> None:
        if time.monotonic() >= self._stall_until - 0.01:
            self._flowing.set()

    async def _slice(self, seconds: float) -> None:
        self._slice_until = max(self._slice_until, time.monotonic() + seconds)

    async def _refuse(self, seconds: float) -> None:
        self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
        if self._server is not None:
            self._server.close()
            self._server = None
        self._later(seconds, lambda: self._loop.create_task(self._relisten()))

    async def _relisten(self) -> None:
        if self._server is not None or time.monotonic() < self._refuse_until - 0.01:
            return
        for _ in range(100):  # the port is ours; a TIME_WAIT may hold it for a moment
            try:
                await self._listen(self.port)
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise ProxyError(f"cannot listen on port {self.port} again")

    async def _normal(self) -> None:
        self._stall_until = self._slice_until = self._refuse_until = 0.0
        self._flowing.set()
        if self._server is None:
            await self._relisten()

    # Forwarding -----------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        self.stats["connections"] += 1
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        *self.target,
                        ssl=self._client_tls,
                        server_hostname=self.target[0] if self._client_tls else None,
                        limit=HEAD_LIMIT,
                    ),
                    20,
                )
            except (OSError, TimeoutError, ssl.SSLError):
                self.stats["upstream_unreachable"] += 1
                return  # the client sees its connection closed: as a proxy's 502 would
            conn.upstream = up_writer
            up = asyncio.current_task()
            assert up is not None
            down = asyncio.create_task(self._raw(up_reader, writer))
            conn.tasks = [up, down]
            try:
                if self._server_tls is None:
                    await self._raw(reader, up_writer)
                else:
                    await self._requests(reader, writer, up_writer)
            finally:
                down.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await down
        except (
            OSError,
            ValueError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)
            for w in conn.writers():
                w.close()

    async def _forward(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        await self._flowing.wait()
        if time.monotonic() < self._slice_until:
            self.stats["sliced_writes"] += 1
            view = memoryview(data)
            while view:
                n = self._rng.randint(1, 64)
                writer.write(bytes(view[:n]))
                view = view[n:]
                await writer.drain()
                await asyncio.sleep(self._rng.choice((0.0, 0.0, 0.001, 0.005)))
                await self._flowing.wait()
        else:
            writer.write(data)
            await writer.drain()

    async def _raw(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._forward(writer, data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> None:
        """HTTP/1.1 requests, client -> server, one after the other (keep-alive)."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed between requests (or mid-head)
            headers = _headers(head)
            self.stats["requests"] += 1
            if "upgrade" in headers.get("connection", "").lower() and "upgrade" in headers:
                await self._forward(upstream, head)
                self.stats["upgrades"] += 1
                await self._raw(reader, upstream)
                return
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            length = int(headers.get("content-length", "0") or 0)
            if self.limit is not None and not chunked and length > self.limit:
                await self._refuse_large(reader, client, length)
                return
            await self._forward(upstream, head)
            if chunked:
                if not await self._chunks(reader, client, upstream):
                    return
            else:
                left = length
                while left > 0:
                    data = await reader.read(min(left, 65536))
                    if not data:
                        return
                    left -= len(data)
                    await self._forward(upstream, data)

    async def _chunks(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> bool:
        """Forward a chunked body; False when the connection must end (a 413 was sent)."""
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            total += size
            if self.limit is not None and total > self.limit:
                # Part of the body has gone upstream: abandon that connection, answer here.
                upstream.transport.abort()
                self.stats["413"] += 1
                client.write(_413)
                await client.drain()
                return False
            await self._forward(upstream, line)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    await self._forward(upstream, trailer)
                    if trailer == b"\r\n":
                        return True
            data = await reader.readexactly(size + 2)
            await self._forward(upstream, data)

    async def _refuse_large(
        self, reader: asyncio.StreamReader, client: asyncio.StreamWriter, length: int
    ) -> None:
        """413 at once, then read and discard the body (the client sends all of it before it
        reads an answer), then close."""
        self.stats["413"] += 1
        client.write(_413)
        await client.drain()
        left = length
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while left > 0:
                    data = await reader.read(min(left, 65536))
                    if not data:
                        break
                    left -= len(data)


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out
