"""Webhooks deliver, as the token that made them, only the events that token may read
(issue 9, item 1): a real server POSTs to a real HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.harness import Server, wait_for

pytestmark = pytest.mark.integration


class Receiver:
    """An HTTP server that records what each path was sent."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {}
        received = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.setdefault(self.path, []).append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_token(server: Server, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    with server.api() as api:
        response = api.post("/v1/tokens", json={"name": name, "policy": policy})
    assert response.status_code == 201, response.text
    return response.json()["token_id"], response.json()["secret"]


def hook(server: Server, secret: str, url: str, events: str) -> None:
    with server.api() as api:
        response = api.post(
            "/v1/webhooks",
            json={"url": url, "events": events},
            headers={"authorization": f"Bearer {secret}"},
        )
    assert response.status_code == 201, response.text


def put(server: Server, name: str) -> None:
    with server.api() as api:
        response = api.put("/v1/parameters", json={"name": name, "value": "v"})
    assert response.status_code == 200, response.text


def test_a_webhook_delivers_only_what_its_token_may_read(
    server: Server, receiver: Receiver
) -> None:
    app_only = {
        "Version": "2026-01-01",
        "Statement": [
            {"Effect": "Allow", "Action": "webhooks:Create", "Resource": "*"},
            {"Effect": "Allow", "Action": "parameters:List", "Resource": "parameter/app/*"},
        ],
    }
    token_id, secret = make_token(server, "app-team", app_only)
    hook(server, server.token, receiver.url + "/admin", "parameter.*")
    hook(server, secret, receiver.url + "/team", "parameter.*")
    with server.api() as api:
        listed = api.get("/v1/webhooks").json()["webhooks"]
    assert token_id in {h["created_by"] for h in listed}

    put(server, "/secret/db-password")
    put(server, "/app/db-host")
    wait_for(lambda: len(receiver.got.get("/admin", [])) == 2, 30, "both events to the admin's")
    wait_for(lambda: len(receiver.got.get("/team", [])) == 1, 30, "one event to the team's")
    assert [e["name"] for e in receiver.got["/team"]] == ["/app/db-host"]
    assert [e["name"] for e in receiver.got["/admin"]] == ["/secret/db-password", "/app/db-host"]

    # A revoked token's webhook delivers nothing more.
    with server.api() as api:
        assert api.post(f"/v1/tokens/{token_id}/revoke").status_code == 200
    put(server, "/app/db-port")
    wait_for(lambda: len(receiver.got["/admin"]) == 3, 30, "the admin's third event")
    with server.db() as db:
        wait_for(
            lambda: db.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0] == 0,
            30,
            "the withheld delivery dropped",
        )
    assert [e["name"] for e in receiver.got["/team"]] == ["/app/db-host"]
