"""corral:ensureFile through the built-in Corral-EnsureFile document, run by the real engine
on files in the test's directory: created, changed only where they differ (content by an
atomic replace, mode and owner in place), left alone when already as declared; content from
a real HTTPS server on loopback (a test CA, trusted through SSL_CERT_FILE)."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent import wire
from agent.documents import builtin_documents, resolve_parameters
from agent.errors import DocumentError
from agent.plugins import ensure_file
from control_plane.security.ca import CertificateAuthority, create_ca
from tests.unit.test_execution_support import run_engine

DOC = builtin_documents()["Corral-EnsureFile"]
PAYLOAD = b"listen 8080\n" * 500
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
NOBODY, NOGROUP = 65534, 65534


def ensure(tmp_path: Path, **params: str) -> tuple[str, str]:
    """(status, stdout + stderr) of one run of Corral-EnsureFile."""
    outcome = run_engine(DOC.content, tmp_path / "run", params)
    step = outcome.steps[0]
    return step["status"], step["stdout"] + step["stderr"]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".corral"))


def test_creates_then_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    status, out = ensure(
        tmp_path, path=str(path), content="port=80\n", mode="0640", owner="nobody", group="65534"
    )
    digest = hashlib.sha256(b"port=80\n").hexdigest()
    assert status == wire.ST_SUCCESS, out
    assert out == f"{path}: created (8 bytes, sha256 {digest}, mode 0640, owner nobody:nogroup)\n"
    info = path.stat()
    assert (path.read_text(), stat.S_IMODE(info.st_mode)) == ("port=80\n", 0o640)
    assert (info.st_uid, info.st_gid) == (NOBODY, NOGROUP)

    status, out = ensure(
        tmp_path, path=str(path), content="port=80\n", mode="640", owner="65534", group="nogroup"
    )
    assert status == wire.ST_SUCCESS
    assert out == f"{path} already as declared (mode 0640, owner nobody:nogroup); nothing to do\n"
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_ctime_ns) == (
        info.st_ino,
        info.st_mtime_ns,
        info.st_ctime_ns,
    )
    assert leftovers(tmp_path) == []


def test_new_content_replaces_the_file_atomically_keeping_its_mode_and_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.conf"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    os.chown(path, NOBODY, NOGROUP)
    inode = path.stat().st_ino
    status, out = ensure(tmp_path, path=str(path), content="new\n")
    old, new = (hashlib.sha256(t).hexdigest() for t in (b"old\n", b"new\n"))
    assert (status, out) == (
        wire.ST_SUCCESS,
        f"{path}: changed content sha256 {old} -> {new} (4 bytes)\n",
    )
    info = path.stat()
    assert info.st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert (path.read_text(), stat.S_IMODE(info.st_mode), info.st_uid) == ("new\n", 0o600, NOBODY)
    assert leftovers(tmp_path) == []


def test_mode_and_owner_alone_change_in_place(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("secret\n")
    os.chmod(path, 0o644)
    inode = path.stat().st_ino
    status, out = ensure(tmp_path, path=str(path), content="secret\n", mode="0600")
    assert (status, out) == (wire.ST_SUCCESS, f"{path}: changed mode 0644 -> 0600\n")
    status, out = ensure(tmp_path, path=str(path), owner="nobody")
    assert out == f"{path}: changed owner root:root -> nobody:root\n"
    info = path.stat()
    assert (info.st_ino, stat.S_IMODE(info.st_mode), info.st_uid) == (inode, 0o600, NOBODY)
    assert path.read_text() == "secret\n"


def test_without_content_the_content_is_not_managed(tmp_path: Path) -> None:
    path = tmp_path / "marker"
    status, out = ensure(tmp_path, path=str(path), mode="0600")
    empty = hashlib.sha256(b"").hexdigest()
    assert status == wire.ST_SUCCESS
    assert out == f"{path}: created (0 bytes, sha256 {empty}, mode 0600, owner root:root)\n"
    path.write_text("written by someone else\n")
    _, out = ensure(tmp_path, path=str(path), mode="0600")
    assert out == f"{path} already as declared (mode 0600, owner root:root); nothing to do\n"
    assert path.read_text() == "written by someone else\n"


def test_absent_removes_then_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.conf"
    path.write_text("x\n")
    assert ensure(tmp_path, path=str(path), state="absent") == (
        wire.ST_SUCCESS,
        f"{path}: removed (2 bytes)\n",
    )
    assert not path.exists()
    assert ensure(tmp_path, path=str(path), state="absent") == (
        wire.ST_SUCCESS,
        f"{path} already absent; nothing to do\n",
    )


@pytest.mark.parametrize("state", ["present", "absent"])
def test_what_is_not_a_regular_file_is_refused(tmp_path: Path, state: str) -> None:
    target = tmp_path / "target"
    target.write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    (tmp_path / "dir").mkdir()
    content = {"content": "x"} if state == "present" else {}
    status, out = ensure(tmp_path, path=str(link), state=state, **content)
    assert status == wire.ST_FAILED
    assert ("is a symbolic link" if state == "present" else "not a regular file") in out
    status, out = ensure(tmp_path, path=str(tmp_path / "dir"), state=state, **content)
    assert status == wire.ST_FAILED and "not a regular file" in out
    assert link.is_symlink() and target.read_text() == "keep\n"


class Handler(BaseHTTPRequestHandler):
    gets: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).gets.append(self.path)
        if self.path == "/app.conf":
            self.send_response(200)
            self.send_header("content-length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/to-http":
            port = self.connection.getsockname()[1]
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{port}/app.conf")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_pem, ca_key_pem = create_ca("EnsureFile Test CA")
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
    Handler.gets.clear()
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_source_url_fetched_only_when_the_file_differs(tmp_path: Path, https: str) -> None:
    path = tmp_path / "app.conf"
    path.write_text("old\n")
    url = f"{https}/app.conf"
    status, out = ensure(tmp_path, path=str(path), sourceUrl=url, sha256=DIGEST.upper())
    assert status == wire.ST_SUCCESS, out
    assert f"-> {DIGEST} ({len(PAYLOAD)} bytes)" in out
    assert path.read_bytes() == PAYLOAD
    status, out = ensure(tmp_path, path=str(path), sourceUrl=url, sha256=DIGEST)
    assert (status, out) == (
        wire.ST_SUCCESS,
        f"{path} already as declared (mode 0644, owner root:root); nothing to do\n",
    )
    assert Handler.gets == ["/app.conf"]  # the second run did not download


def test_a_wrong_hash_or_a_large_file_leaves_the_file_as_it_was(
    tmp_path: Path, https: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.conf"
    path.write_text("old\n")
    status, out = ensure(tmp_path, path=str(path), sourceUrl=f"{https}/app.conf", sha256="0" * 64)
    assert status == wire.ST_FAILED
    assert f"sha256 mismatch for {https}/app.conf: expected {'0' * 64}, got {DIGEST}" in out
    monkeypatch.setattr(ensure_file, "MAX_SOURCE_BYTES", 1000)
    status, out = ensure(tmp_path, path=str(path), sourceUrl=f"{https}/app.conf", sha256=DIGEST)
    assert status == wire.ST_FAILED and "larger than" in out and "not fetched" in out
    status, out = ensure(tmp_path, path=str(path), sourceUrl=f"{https}/to-http", sha256=DIGEST)
    assert status == wire.ST_FAILED and "only https:// URLs are allowed" in out
    status, out = ensure(tmp_path, path=str(path), sourceUrl=f"{https}/gone", sha256=DIGEST)
    assert status == wire.ST_FAILED and "HTTP 404" in out
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"path": "relative/x", "content": "x"}, "path must be absolute"),
        ({"path": "/tmp/../etc/passwd", "content": "x"}, "must name a file"),
        ({"path": "/tmp/x/", "content": "x"}, "must name a file"),
        ({"path": "/no/such/dir/x", "content": "x"}, "directory /no/such/dir does not exist"),
        ({"path": "{d}/x", "content": "x", "sourceUrl": "https://h/x"}, "not both"),
        ({"path": "{d}/x", "sha256": "0" * 64}, "sha256 goes with sourceUrl"),
        ({"path": "{d}/x", "sourceUrl": "https://h/x"}, "sha256 is required"),
        ({"path": "{d}/x", "sourceUrl": "http://h/x", "sha256": "0" * 64}, "only https://"),
        ({"path": "{d}/x", "state": "absent", "content": "x"}, "state absent takes only a path"),
        ({"path": "{d}/x", "state": "gone"}, "state must be present or absent"),
        ({"path": "{d}/x", "mode": "999"}, "mode must be octal"),
        ({"path": "{d}/x", "mode": "u+rw"}, "mode must be octal"),
        ({"path": "{d}/x", "owner": "no-such-user-zz"}, "no user named no-such-user-zz"),
        ({"path": "{d}/x", "group": "no-such-group-zz"}, "no group named no-such-group-zz"),
        ({"path": "{d}/x", "owner": "$(reboot)"}, "invalid owner"),
        ({"path": "{d}/x", "content": 5}, "content must be a string"),
    ],
)
def test_bad_inputs_change_nothing(tmp_path: Path, inputs: dict[str, Any], message: str) -> None:
    """The plugin checks its inputs itself: a user's own document may call the action."""
    from tests.unit.test_ensure_package import context

    if isinstance(inputs.get("path"), str):
        inputs = {**inputs, "path": inputs["path"].replace("{d}", str(tmp_path))}
    ctx = context(tmp_path)
    result = ensure_file.EnsureFile().execute(ctx, inputs, {})
    assert result.status == wire.ST_FAILED
    assert message in result.message and "\n" not in result.message
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"path": "etc/passwd"}, "parameters.path"),
        ({"path": "/etc/../root/.ssh/authorized_keys"}, "parameters.path"),
        ({"path": "/etc/x\n"}, "parameters.path"),
        ({"path": "/etc/x", "sourceUrl": "file:///etc/shadow"}, "parameters.sourceUrl"),
        ({"path": "/etc/x", "sha256": "abc"}, "parameters.sha256"),
        ({"path": "/etc/x", "mode": "rwx"}, "parameters.mode"),
        ({"path": "/etc/x", "owner": "root;reboot"}, "parameters.owner"),
        ({"path": "/etc/x", "group": "-g"}, "parameters.group"),
        ({"path": "/etc/x", "state": "latest"}, "parameters.state"),
    ],
)
def test_the_document_refuses_bad_parameters(params: dict[str, Any], where: str) -> None:
    with pytest.raises(DocumentError, match=where):
        resolve_parameters(DOC, params)
