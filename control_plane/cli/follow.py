"""Following a command to its end (``corral run --wait``, ``corral commands watch``): each
node's result is handed over as soon as that node finishes, in the order nodes finish, so a
slow node does not hold the others back.

The follower listens to ``/v1/events`` for the command; when nodes finish it fetches their
invocations (output included where the token may read it), a batch at a time.  After
connecting, after a keep-alive (the stream was idle) and after a reconnect it catches up from
the invocation list, so an event lost on the way (a slow stream drops events, a restarted
server ends the stream) delays a result, never loses it.  A token without
``events:Subscribe`` follows by polling the invocation list instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from control_plane.cli.errors import ApiError, ConnectionFailed

if TYPE_CHECKING:
    from control_plane.cli.client import ApiClient

FETCH_BATCH = 100
PAGE = 1000
RECONNECT_SECONDS = 1.0
RECONNECT_ATTEMPTS = 120
POLL_FIRST, POLL_MAX = 0.25, 2.0

Handler = Callable[[dict[str, Any]], None]


def sse_batches(chunks: Iterator[bytes]) -> Iterator[list[dict[str, Any] | None]]:
    """The JSON events of a Server-Sent Events stream, as many as have arrived at a time;
    None for a comment (connected, keep-alive)."""
    import json  # not at import time: the CLI starts without it

    buffer = b""
    for chunk in chunks:
        buffer += chunk
        batch: list[dict[str, Any] | None] = []
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            lines = frame.split(b"\n")
            data = [line[5:].strip() for line in lines if line.startswith(b"data:")]
            if data:
                batch.append(json.loads(b"".join(data)))
            elif any(line.startswith(b":") for line in lines):
                batch.append(None)
        if batch:
            yield batch


class Follower:
    """Follows one command; ``on_finished`` gets each node's invocation once, when it ends,
    and ``on_event`` (optional) every status change the stream carries."""

    def __init__(
        self,
        api: ApiClient,
        command_id: str,
        on_finished: Handler,
        on_event: Handler | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._id = command_id
        self._path = f"/v1/commands/{quote(command_id, safe='')}"
        self._on_finished = on_finished
        self._on_event = on_event
        self._sleep = sleep
        self._finished: set[str] = set()
        from agent import wire  # not at import time: it brings json and ssl

        self._terminal = wire.TERMINAL_STATUSES

    def run(self) -> dict[str, Any]:
        """Follow until the command has ended; its final view."""
        for attempt in range(RECONNECT_ATTEMPTS):
            try:
                result = self._follow_stream()
            except ApiError as exc:
                if exc.status != 403:
                    raise
                return self._poll()
            except ConnectionFailed:
                if attempt + 1 == RECONNECT_ATTEMPTS:
                    raise
                self._sleep(RECONNECT_SECONDS)
                continue
            if result is not None:
                return result
        raise ConnectionFailed(self._api.url, "the event stream kept ending")

    def _follow_stream(self) -> dict[str, Any] | None:
        """Listen until the command ends (its view) or the stream ends (None)."""
        stream = self._api.stream("/v1/events", params={"command_id": self._id})
        for batch in sse_batches(stream):
            finished: list[str] = []
            catch_up = False
            for event in batch:
                if event is None:  # connected, or idle for a while
                    catch_up = True
                    continue
                if self._on_event is not None:
                    self._on_event(event)
                node = event.get("node_id")
                if isinstance(node, str) and event.get("status") in self._terminal:
                    finished.append(node)
                if event.get("type") == "command.status_changed":
                    catch_up = catch_up or event.get("status") in self._terminal
            self._fetch(finished)
            if catch_up:
                done = self._catch_up()
                if done is not None:
                    return done
        return None

    def _poll(self) -> dict[str, Any]:
        """Follow without the event stream: catch up at growing intervals."""
        delay = POLL_FIRST
        while (done := self._catch_up()) is None:
            self._sleep(delay)
            delay = min(POLL_MAX, delay * 1.5)
        return done

    def _catch_up(self) -> dict[str, Any] | None:
        """Hand over every finished node not yet handed over; the command's view if it has
        ended."""
        token: str | None = None
        pending = False
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if token:
                params["next_token"] = token
            page = self._api.get(self._path + "/invocations", params=params)
            for inv in page.get("invocations", []):
                if inv["status"] in self._terminal:
                    self._finish(inv)
                else:
                    pending = True
            token = page.get("next_token")
            if not token:
                break
        if pending:
            return None
        command: dict[str, Any] = self._api.get(self._path)
        return command if command.get("completed_at") else None

    def _fetch(self, nodes: list[str]) -> None:
        wanted = [n for n in nodes if n not in self._finished]
        for start in range(0, len(wanted), FETCH_BATCH):
            batch = wanted[start : start + FETCH_BATCH]
            page = self._api.get(self._path + "/invocations", params={"node": batch})
            for inv in page.get("invocations", []):
                if inv["status"] in self._terminal:
                    self._finish(inv)

    def _finish(self, inv: dict[str, Any]) -> None:
        if inv["node_id"] not in self._finished:
            self._finished.add(inv["node_id"])
            self._on_finished(inv)
