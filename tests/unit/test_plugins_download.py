"""aws:downloadContent against a real HTTPS server on loopback (a test CA, trusted through
SSL_CERT_FILE): the hash is required and checked, plain HTTP is refused (redirects too)."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from control_plane.security.ca import CertificateAuthority, create_ca
from tests.unit.test_execution_support import document, run_engine

PAYLOAD = b"#!/bin/sh\necho installed\n" * 1000
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/files/tool.sh":
            self.send_response(200)
            self.send_header("content-length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/to-https":
            self.send_response(302)
            self.send_header("location", "/files/tool.sh")
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/to-http":
            port = self.connection.getsockname()[1]
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{port}/files/tool.sh")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_pem, ca_key_pem = create_ca("Download Test CA")
    ca = CertificateAuthority(
        cert=x509.load_pem_x509_certificate(ca_pem),
        key=serialization.load_pem_private_key(ca_key_pem, password=None),  # type: ignore[arg-type]
    )
    cert_pem, key_pem = ca.issue_server_cert(["127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "server.pem").write_bytes(cert_pem + key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def download(
    name: str, source: Any, destination: str | None = None, kind: str = "HTTPS"
) -> dict[str, Any]:
    inputs: dict[str, Any] = {"sourceType": kind, "sourceInfo": source}
    if destination is not None:
        inputs["destinationPath"] = destination
    return {"action": "aws:downloadContent", "name": name, "inputs": inputs}


def test_downloads_and_checks_the_hash(tmp_path: Path, https_url: str) -> None:
    dest = tmp_path / "dest" / "tool.sh"
    into_dir = tmp_path / "dir"
    into_dir.mkdir()
    outcome = run_engine(
        document(
            download("exact", {"url": f"{https_url}/files/tool.sh", "sha256": DIGEST}, str(dest)),
            download(
                "json-text",
                json.dumps({"url": f"{https_url}/to-https", "sha256": DIGEST.upper()}),
                str(into_dir),
            ),
        ),
        tmp_path / "run",
    )
    assert [s["status"] for s in outcome.steps] == [wire.ST_SUCCESS, wire.ST_SUCCESS]
    assert dest.read_bytes() == PAYLOAD
    assert (into_dir / "to-https").read_bytes() == PAYLOAD
    assert f"sha256 {DIGEST}" in outcome.steps[0]["stdout"]


def test_a_hash_mismatch_leaves_nothing_behind(tmp_path: Path, https_url: str) -> None:
    dest = tmp_path / "tool.sh"
    outcome = run_engine(
        document(
            download("bad", {"url": f"{https_url}/files/tool.sh", "sha256": "0" * 64}, str(dest))
        ),
        tmp_path / "run",
    )
    assert outcome.steps[0]["status"] == wire.ST_FAILED
    assert "sha256 mismatch" in outcome.steps[0]["stderr"]
    assert list(tmp_path.glob("*tool.sh*")) == []


@pytest.mark.parametrize(
    ("source", "kind", "message"),
    [
        ({"url": "http://127.0.0.1:1/x", "sha256": DIGEST}, "HTTPS", "only https:// URLs"),
        ({"url": "https://127.0.0.1:1/x"}, "HTTPS", "sourceInfo.sha256 is required"),
        ({"url": "https://127.0.0.1:1/x", "sha256": "abc"}, "HTTPS", "64 hex digits"),
        ({"sha256": DIGEST}, "HTTPS", "sourceInfo.url is required"),
        ("{not json", "HTTPS", "not a JSON object"),
        ({"url": "https://127.0.0.1:1/x", "sha256": DIGEST}, "S3", "only HTTPS"),
    ],
)
def test_bad_sources_are_refused(tmp_path: Path, source: Any, kind: str, message: str) -> None:
    outcome = run_engine(document(download("d", source, kind=kind)), tmp_path)
    assert outcome.steps[0]["status"] == wire.ST_FAILED
    assert message in outcome.steps[0]["stderr"]


def test_a_redirect_to_plain_http_is_refused(tmp_path: Path, https_url: str) -> None:
    outcome = run_engine(
        document(download("d", {"url": f"{https_url}/to-http", "sha256": DIGEST})), tmp_path
    )
    assert outcome.steps[0]["status"] == wire.ST_FAILED
    assert "only https:// URLs" in outcome.steps[0]["stderr"]


def test_http_errors_and_untrusted_servers_fail(
    tmp_path: Path, https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = run_engine(
        document(download("d", {"url": f"{https_url}/nothing", "sha256": DIGEST})), tmp_path / "a"
    )
    assert "HTTP 404" in outcome.steps[0]["stderr"]
    monkeypatch.delenv("SSL_CERT_FILE")  # verification is on: the test CA is not trusted now
    outcome = run_engine(
        document(download("d", {"url": f"{https_url}/files/tool.sh", "sha256": DIGEST})),
        tmp_path / "b",
    )
    assert outcome.steps[0]["status"] == wire.ST_FAILED
    assert "certificate" in outcome.steps[0]["stderr"].lower()
