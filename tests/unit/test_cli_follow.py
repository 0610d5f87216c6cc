"""The CLI's command follower (``run --wait``, ``commands watch``): results in the order nodes
finish, and none lost when events are (a dropped event, a broken stream, no events at all)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.cli.errors import ApiError, ConnectionFailed
from control_plane.cli.follow import Follower, sse_batches

CMD = "c-1"


def frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def finished(node: str) -> dict[str, Any]:
    return {"type": "command.invocation_status_changed", "command_id": CMD, "node_id": node,
            "status": "Success", "status_details": "Success"}  # fmt: skip


DONE = {"type": "command.status_changed", "command_id": CMD, "status": "Success",
        "status_details": "Success"}  # fmt: skip


class FakeApi:
    """The server as the follower sees it: invocations with statuses, scripted streams."""

    url = "https://corral.test"

    def __init__(self, statuses: dict[str, str], streams: list[Any]) -> None:
        self.statuses = statuses
        self.streams = streams
        self.gets: list[tuple[str, Any]] = []

    def inv(self, node: str) -> dict[str, Any]:
        return {"command_id": CMD, "node_id": node, "status": self.statuses[node], "steps": []}

    def get(self, path: str, *, params: Any = None) -> Any:
        self.gets.append((path, params))
        if path.endswith("/invocations"):
            nodes = (params or {}).get("node") or list(self.statuses)
            return {"invocations": [self.inv(n) for n in nodes], "next_token": None}
        done = all(s != "InProgress" for s in self.statuses.values())
        return {"command_id": CMD, "status": "Success", "completed_at": "now" if done else None}

    def stream(self, path: str, *, params: Any = None) -> Iterator[bytes]:
        script = self.streams.pop(0)
        if isinstance(script, Exception):
            raise script
        for item in script:
            if callable(item):
                item()
            else:
                yield item


def test_sse_batches_groups_what_arrived_together() -> None:
    chunks = [b": connected\n\n", frame(finished("a")) + frame(finished("b"))[:10],
              frame(finished("b"))[10:] + b": keepalive\n\n"]  # fmt: skip
    batches = list(sse_batches(iter(chunks)))
    assert batches == [[None], [finished("a")], [finished("b"), None]]


def test_nodes_are_handed_over_in_the_order_they_finish() -> None:
    api = FakeApi({"a": "InProgress", "b": "InProgress"}, [])

    def finish(node: str) -> Any:
        return lambda: api.statuses.__setitem__(node, "Success")

    api.streams.append([b": connected\n\n", finish("b"), frame(finished("b")), finish("a"),
                        frame(finished("a")), frame(DONE)])  # fmt: skip
    seen: list[str] = []
    result = Follower(api, CMD, lambda inv: seen.append(inv["node_id"])).run()  # type: ignore[arg-type]
    assert seen == ["b", "a"] and result["completed_at"]


def test_a_lost_event_is_caught_up_at_the_next_keepalive() -> None:
    api = FakeApi({"a": "InProgress"}, [])
    api.streams.append([b": connected\n\n", lambda: api.statuses.update(a="Failed"),
                        b": keepalive\n\n"])  # fmt: skip
    seen: list[str] = []
    result = Follower(api, CMD, lambda inv: seen.append(inv["status"])).run()  # type: ignore[arg-type]
    assert seen == ["Failed"] and result["completed_at"]


def test_a_broken_stream_reconnects_and_catches_up() -> None:
    api = FakeApi({"a": "InProgress"}, [])
    api.streams += [
        [b": connected\n\n", lambda: api.statuses.update(a="Success")],  # ends: server restart
        ConnectionFailed("https://corral.test", "refused"),
        [b": connected\n\n"],
    ]
    sleeps: list[float] = []
    seen: list[str] = []
    Follower(api, CMD, lambda inv: seen.append(inv["node_id"]), sleep=sleeps.append).run()  # type: ignore[arg-type]
    assert seen == ["a"] and sleeps == [1.0]


def test_without_events_subscribe_it_polls() -> None:
    api = FakeApi({"a": "InProgress"}, [ApiError(403, "forbidden", "may not events:Subscribe")])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            api.statuses["a"] = "Success"

    seen: list[str] = []
    Follower(api, CMD, lambda inv: seen.append(inv["node_id"]), sleep=sleep).run()  # type: ignore[arg-type]
    assert seen == ["a"] and sleeps == [0.25, 0.375, 0.5625]


def test_other_refusals_are_errors() -> None:
    api = FakeApi({"a": "InProgress"}, [ApiError(404, "not_found", "command c-1 not found")])
    with pytest.raises(ApiError):
        Follower(api, CMD, lambda inv: None).run()  # type: ignore[arg-type]
