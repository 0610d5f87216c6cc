"""CA pinning and TLS: `corral login --ca-hash/--ca-file`, the register hint's hash, and
verification against the profile's CA only (a real TLS server on loopback)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import load_config, save_profile

URL = "https://corral.test:8443"
Handler = Callable[[httpx.Request], httpx.Response]
CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def make_cert(cn: str, issuer: CA | None = None) -> CA:
    """A CA (no issuer) or a server certificate for 127.0.0.1 signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(cert: x509.Certificate) -> str:
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_cert("Corral test CA")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    return path


class FakeServer:
    """Serves ``ca_pem`` at /v1/agent/ca and accepts only ``token`` on /v1/login."""

    def __init__(self, ca_pem: str, token: str = "crl_good") -> None:
        self.ca_pem, self.token = ca_pem, token
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/agent/ca":
            assert "authorization" not in request.headers  # the CA is fetched anonymously
            return httpx.Response(200, text=self.ca_pem)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            envelope = {"error": {"code": "unauthorized", "message": "invalid operator token"}}
            return httpx.Response(401, json=envelope)
        if (request.method, request.url.path) != ("POST", "/v1/login"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        return httpx.Response(200, json={"token_id": "tok-1", "name": "ci", "role": "admin"})


def login(server: Handler, *args: str) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(server))
    return CliRunner().invoke(cli, ["login", "--url", URL, *args], obj=runtime)


# -- login --ca-hash ---------------------------------------------------------------------


def test_login_with_matching_hash_saves_the_ca_and_the_profile(config: Path, ca: CA) -> None:
    server = FakeServer(pem(ca[0]))
    result = login(
        server, "--token", "crl_good", "--ca-hash", fingerprint(ca[0]), "--profile", "lab"
    )

    assert result.exit_code == 0, result.output
    saved_ca = config.parent / "lab-ca.pem"
    assert saved_ca.read_text() == pem(ca[0])
    assert stat.S_IMODE(saved_ca.stat().st_mode) == 0o600
    cfg = load_config(config)
    assert cfg.current_profile == "lab"
    assert cfg.profiles["lab"].url == URL
    assert cfg.profiles["lab"].token == "crl_good"
    assert cfg.profiles["lab"].ca_file == str(saved_ca)
    assert [r.url.path for r in server.requests] == ["/v1/agent/ca", "/v1/login"]


def test_login_hash_is_case_insensitive(config: Path, ca: CA) -> None:
    upper = "sha256:" + fingerprint(ca[0]).removeprefix("sha256:").upper()
    result = login(FakeServer(pem(ca[0])), "--token", "crl_good", "--ca-hash", upper)
    assert result.exit_code == 0, result.output
    assert load_config(config).current_profile == "default"


def test_login_refuses_a_ca_with_another_hash(config: Path, ca: CA) -> None:
    impostor, _ = make_cert("Impostor CA")
    server = FakeServer(pem(impostor))

    result = login(server, "--token", "crl_good", "--ca-hash", fingerprint(ca[0]))

    assert result.exit_code == 1
    assert result.stderr.startswith("error: CA hash mismatch")
    assert fingerprint(impostor) in result.stderr
    assert result.stderr.count("\n") == 1
    assert not config.exists()
    assert not (config.parent / "default-ca.pem").exists()
    assert [r.url.path for r in server.requests] == ["/v1/agent/ca"]  # the token never left


def test_login_refuses_a_ca_that_is_not_a_certificate(config: Path) -> None:
    result = login(FakeServer("hello"), "--token", "crl_good", "--ca-hash", "sha256:" + "0" * 64)
    assert result.exit_code == 1
    assert "did not serve a PEM certificate" in result.stderr


def test_login_with_a_rejected_token_saves_nothing(config: Path, ca: CA) -> None:
    result = login(FakeServer(pem(ca[0])), "--token", "crl_bad", "--ca-hash", fingerprint(ca[0]))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {URL} refused the token: invalid operator token (unauthorized)\n"
    )
    assert not config.exists()
    assert not (config.parent / "default-ca.pem").exists()


# -- login --ca-file and usage -----------------------------------------------------------


def test_login_with_ca_file_stores_its_absolute_path(
    config: Path, ca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    monkeypatch.chdir(tmp_path)
    server = FakeServer(pem(ca[0]))

    result = login(server, "--token", "crl_good", "--ca-file", "ca.pem")

    assert result.exit_code == 0, result.output
    assert load_config(config).profiles["default"].ca_file == str(tmp_path / "ca.pem")
    assert [r.url.path for r in server.requests] == ["/v1/login"]


def test_login_reads_the_token_from_stdin(config: Path, ca: CA, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    runtime = Runtime(transport=httpx.MockTransport(FakeServer(pem(ca[0]))))
    args = ["login", "--url", URL, "--token", "-", "--ca-file", str(tmp_path / "ca.pem")]
    result = CliRunner().invoke(cli, args, obj=runtime, input="crl_good\n")
    assert result.exit_code == 0, result.output
    assert load_config(config).profiles["default"].token == "crl_good"


def test_global_profile_option_names_the_login_profile(config: Path, ca: CA) -> None:
    runtime = Runtime(transport=httpx.MockTransport(FakeServer(pem(ca[0]))))
    args = ["--profile", "prod", "login", "--url", URL, "--token", "crl_good"]
    result = CliRunner().invoke(cli, [*args, "--ca-hash", fingerprint(ca[0])], obj=runtime)
    assert result.exit_code == 0, result.output
    assert load_config(config).current_profile == "prod"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--token", "t"], "exactly one of --ca-hash and --ca-file"),
        (["--token", "t", "--ca-hash", "sha256:" + "0" * 64, "--ca-file", "/"], "--ca-file"),
        (["--token", "t", "--ca-hash", "md5:abcd"], "sha256: followed by 64 hex"),
        (["--token", "t", "--ca-hash", "sha256:" + "g" * 64], "sha256: followed by 64 hex"),
        (["--token", "t", "--ca-file", "/nonexistent/ca.pem"], "does not exist"),
        (["--token", "t", "--ca-hash", "sha256:" + "0" * 64, "--profile", "../x"], "--profile"),
        (["--token", "", "--ca-hash", "sha256:" + "0" * 64], "the token is empty"),
    ],
)
def test_login_bad_usage_exits_2(config: Path, args: list[str], fragment: str) -> None:
    server = FakeServer("unused")
    result = login(server, *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert server.requests == []


def test_login_rejects_urls_that_are_not_http(config: Path) -> None:
    runtime = Runtime(transport=httpx.MockTransport(FakeServer("unused")))
    args = ["login", "--url", "corral.test:8443", "--token", "t", "--ca-hash", "sha256:" + "0" * 64]
    result = CliRunner().invoke(cli, args, obj=runtime)
    assert result.exit_code == 2
    assert "not a URL" in result.stderr


# -- the register hint -------------------------------------------------------------------


def test_activation_hint_carries_the_profile_ca_hash(config: Path, ca: CA, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    save_profile("dev", url=URL, token="t", ca_file=str(tmp_path / "ca.pem"), path=config)
    created = {"activation_id": "a1", "activation_code": "c1", "registration_limit": 1}
    runtime = Runtime(transport=httpx.MockTransport(lambda r: httpx.Response(201, json=created)))

    result = CliRunner().invoke(cli, ["activations", "create"], obj=runtime)

    assert result.exit_code == 0, result.output
    expected = f"corral-agent register --url {URL} --id a1 --code c1 --ca-hash {fingerprint(ca[0])}"
    assert expected in result.stdout


# -- real TLS on loopback ----------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"nodes": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed handshakes are what some tests are about


@pytest.fixture
def tls_url(ca: CA, tmp_path: Path) -> Iterator[str]:
    cert, key = make_cert("127.0.0.1", ca)
    (tmp_path / "server.pem").write_text(pem(cert))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_tls_trusts_the_profile_ca(config: Path, ca: CA, tls_url: str, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    save_profile("dev", url=tls_url, token="t", ca_file=str(tmp_path / "ca.pem"), path=config)
    result = CliRunner().invoke(cli, ["nodes", "list", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_real_tls_refuses_a_server_from_another_ca(
    config: Path, tls_url: str, tmp_path: Path
) -> None:
    other, _ = make_cert("Some other CA")
    (tmp_path / "other.pem").write_text(pem(other))
    save_profile("dev", url=tls_url, token="t", ca_file=str(tmp_path / "other.pem"), path=config)

    result = CliRunner().invoke(cli, ["nodes", "list"])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach {tls_url}: TLS verification failed")
    assert result.stderr.count("\n") == 1
