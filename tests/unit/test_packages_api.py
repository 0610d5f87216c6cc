"""/v1/packages: who may read the packages, the signed manifest, the files, bad names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.documents import builtin_documents, parse_document
from tests.unit.conftest import Api, RunApi, ServerDir, assert_error

ROUTES = (
    "/v1/packages/manifest",
    "/v1/packages/manifest.sig",
    "/v1/packages/signing-key",
    "/v1/packages/files/corral-agent_0.1.0_amd64.deb",
)


def put(server_dir: ServerDir, name: str, data: bytes = b"") -> Path:
    """A fake package file (any bytes) in the server's default packages_dir."""
    directory = server_dir.path / "packages"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(data or name.encode())
    return path


def activation_header(activation: dict[str, Any]) -> dict[str, str]:
    return {"x-corral-activation": f"{activation['activation_id']}:{activation['activation_code']}"}


async def token(api: Api, name: str, **body: Any) -> dict[str, str]:
    response = await api.client.post("/v1/tokens", json={"name": name, **body}, headers=api.admin)
    assert response.status_code == 201, response.text
    return {"authorization": f"Bearer {response.json()['secret']}"}


def verify(manifest: bytes, signature_b64: str, key_pem: str) -> None:
    key = serialization.load_pem_public_key(key_pem.encode())
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(base64.b64decode(signature_b64), manifest)  # raises if it does not verify


def test_every_kind_of_credential_reads_every_route(run_api: RunApi, server_dir: ServerDir) -> None:
    put(server_dir, "corral-agent_0.1.0_amd64.deb", b"deb bytes")

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        activation = await api.create_activation(registration_limit=1)
        viewer = await token(api, "viewer", role="viewer")
        for headers in (api.admin, node.auth, activation_header(activation), viewer):
            for route in ROUTES:
                response = await api.client.get(route, headers=headers)
                assert response.status_code == 200, (route, headers.keys(), response.text)
        # Reading with an activation does not use it up: it still registers a node.
        registered = await api.register(activation)
        assert registered.status_code == 201, registered.text

    run_api(scenario)


def test_without_a_credential_or_the_action_it_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        no_packages = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": "nodes:List", "Resource": "*"}],
        }
        other = await token(api, "other", policy=no_packages)
        for route in ROUTES:
            assert_error(await api.client.get(route), 401, "unauthorized")
            message = assert_error(await api.client.get(route, headers=other), 403, "forbidden")
            assert "packages:Read" in message
            forged = {"authorization": "Bearer nat.forged.token"}
            assert (await api.client.get(route, headers=forged)).status_code == 401

    run_api(scenario)


@pytest.mark.parametrize("case", ["expired", "used up", "wrong code", "unknown", "malformed"])
def test_an_unusable_activation_is_refused(run_api: RunApi, case: str) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=1, expires_in_seconds=3600)
        if case == "expired":
            api.clock.advance(3601)
        elif case == "used up":
            assert (await api.register(activation)).status_code == 201
        elif case == "wrong code":
            activation["activation_code"] = "A" * 20
        elif case == "unknown":
            activation["activation_id"] = "0" * 8
        headers = activation_header(activation)
        if case == "malformed":
            headers = {"x-corral-activation": activation["activation_id"]}
        for route in ROUTES:
            message = assert_error(
                await api.client.get(route, headers=headers), 403, "activation_invalid"
            )
            assert "\n" not in message
        if case == "expired":
            assert "expired" in message
        if case == "used up":
            assert "registration limit" in message
        denied = await api.client.get(
            "/v1/audit", params={"action": "packages:Read"}, headers=api.admin
        )
        outcomes = {e["outcome"] for e in denied.json()["entries"]}
        assert outcomes == {"denied"}

    run_api(scenario)


def test_the_manifest_is_signed_and_lists_every_package_file(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    names = [
        "corral-agent_0.10.0_amd64.deb",
        "corral-agent_0.9.0_amd64.deb",
        "corral-agent_0.9.0_x86_64.rpm",
        "corral-agent_0.9.0_aarch64.pkg.tar.zst",
        "corral-server_0.9.0_x86_64.apk",
    ]
    for name in names:
        put(server_dir, name)
    put(server_dir, "notes.txt")  # not a package file: never listed
    put(server_dir, "corral-agent_0.9.0_amd64.tar.gz")

    async def scenario(api: Api) -> None:
        response = await api.client.get("/v1/packages/manifest", headers=api.admin)
        assert response.status_code == 200
        body = response.content
        signature = response.headers["x-corral-signature"]
        key_pem = (await api.client.get("/v1/packages/signing-key", headers=api.admin)).text
        verify(body, signature, key_pem)
        sig = await api.client.get("/v1/packages/manifest.sig", headers=api.admin)
        assert sig.text.strip() == signature
        with pytest.raises(InvalidSignature):
            verify(body.replace(b"0.9.0", b"0.9.1", 1), signature, key_pem)

        manifest = json.loads(body)
        # Canonical JSON: what a verifier hashes is exactly the sorted, compact form.
        assert body == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        raw = serialization.load_pem_public_key(key_pem.encode()).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert manifest["schema"] == 1
        assert manifest["key_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
        files = [p["file"] for p in manifest["packages"]]
        # By name, then version (0.9.0 before 0.10.0), format, arch.
        assert files == [
            "corral-agent_0.9.0_aarch64.pkg.tar.zst",
            "corral-agent_0.9.0_amd64.deb",
            "corral-agent_0.9.0_x86_64.rpm",
            "corral-agent_0.10.0_amd64.deb",
            "corral-server_0.9.0_x86_64.apk",
        ]
        first = manifest["packages"][0]
        assert first == {
            "name": "corral-agent",
            "version": "0.9.0",
            "format": "arch",
            "arch": "aarch64",
            "file": "corral-agent_0.9.0_aarch64.pkg.tar.zst",
            "sha256": hashlib.sha256(first["file"].encode()).hexdigest(),
            "size": len(first["file"]),
        }

    run_api(scenario)


def test_the_manifest_follows_the_directory(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        async def manifest() -> dict[str, Any]:
            response = await api.client.get("/v1/packages/manifest", headers=api.admin)
            verify(response.content, response.headers["x-corral-signature"], key)
            return dict(json.loads(response.content))

        key = (await api.client.get("/v1/packages/signing-key", headers=api.admin)).text
        assert (await manifest())["packages"] == []  # no packages_dir yet: an empty manifest
        path = put(server_dir, "corral-agent_0.1.0_amd64.deb", b"one")
        (entry,) = (await manifest())["packages"]
        assert entry["sha256"] == hashlib.sha256(b"one").hexdigest()
        put(server_dir, "corral-agent_0.2.0_amd64.deb")
        assert len((await manifest())["packages"]) == 2
        # A rebuilt file (new content, new mtime) gets its new checksum.
        path.write_bytes(b"rebuilt")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        first = (await manifest())["packages"][0]
        assert first["sha256"] == hashlib.sha256(b"rebuilt").hexdigest()
        path.unlink()
        assert [p["version"] for p in (await manifest())["packages"]] == ["0.2.0"]

    run_api(scenario)


def test_packages_dir_setting_is_used(server_dir: ServerDir, run_api: RunApi) -> None:
    elsewhere = server_dir.path.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "corral-agent_0.3.0_arm64.deb").write_bytes(b"x")
    with (server_dir.path / "config.toml").open("a") as fh:
        fh.write(f'packages_dir = "{elsewhere}"\n')

    async def scenario(api: Api) -> None:
        response = await api.client.get("/v1/packages/manifest", headers=api.admin)
        assert [p["file"] for p in response.json()["packages"]] == ["corral-agent_0.3.0_arm64.deb"]

    run_api(scenario)


def test_a_file_streams_with_its_checksum(run_api: RunApi, server_dir: ServerDir) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    put(server_dir, "corral-agent_0.1.0_amd64.deb", data)

    async def scenario(api: Api) -> None:
        response = await api.client.get(
            "/v1/packages/files/corral-agent_0.1.0_amd64.deb", headers=api.admin
        )
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["x-corral-sha256"] == hashlib.sha256(data).hexdigest()
        assert response.headers["content-type"] == "application/octet-stream"

    run_api(scenario)


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fconfig.toml",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "config.toml",
        "corral-agent_0.1.0_amd64.deb%00.txt",
        "corral-agent_0.1.0_amd64.deb%2F..%2F..%2Fconfig.toml",
        "corral-agent_..%2F..%2Fx_amd64.deb",
        "corral-agent_9.9.9_amd64.deb",  # a valid name the server does not have
        "x" * 300,
    ],
)
def test_names_outside_the_packages_are_not_found(
    run_api: RunApi, server_dir: ServerDir, name: str
) -> None:
    put(server_dir, "corral-agent_0.1.0_amd64.deb")
    (server_dir.path / "packages" / "config.toml").write_text("secret")

    async def scenario(api: Api) -> None:
        response = await api.client.get(f"/v1/packages/files/{name}", headers=api.admin)
        message = assert_error(response, 404, "not_found")
        assert "\n" not in message and "secret" not in response.text

    run_api(scenario)


def test_the_signing_key_is_private_and_made_when_missing(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    key_file = server_dir.path / "package-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600  # made by init
    first = key_file.read_bytes()
    key_file.unlink()

    async def scenario(api: Api) -> str:
        assert key_file.exists()  # made at start, before any request
        return (await api.client.get("/v1/packages/signing-key", headers=api.admin)).text

    pem = run_api(scenario)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_bytes() != first
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    # A server restart keeps the key (nodes pin it).
    assert run_api(scenario) == pem


def _update_agent_document(api: Api) -> None:
    """The built-in Corral-UpdateAgent when the agent ships it, else a stand-in with the same
    name and ``version`` parameter (what the pre-check looks at)."""
    if "Corral-UpdateAgent" in builtin_documents():
        return
    stand_in = parse_document(
        json.dumps(
            {
                "schemaVersion": "2.2",
                "description": "stand-in",
                "parameters": {"version": {"type": "String"}},
                "mainSteps": [
                    {
                        "action": "aws:runShellScript",
                        "name": "update",
                        "inputs": {"runCommand": ["echo {{ version }}"]},
                    }
                ],
            }
        )
    )
    api.cp.documents._builtins["Corral-UpdateAgent"] = stand_in


def test_an_upgrade_to_a_version_the_server_lacks_is_refused(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    put(server_dir, "corral-agent_0.1.0_amd64.deb")
    put(server_dir, "corral-agent_0.10.0_x86_64.rpm")
    put(server_dir, "corral-server_0.3.0_amd64.deb")  # a server package is no agent version

    async def scenario(api: Api) -> None:
        _update_agent_document(api)
        await api.new_node()

        async def send(version: str) -> httpx.Response:
            return await api.client.post(
                "/v1/commands",
                json={
                    "targets": ["all"],
                    "document": "Corral-UpdateAgent",
                    "parameters": {"version": version},
                },
                headers=api.admin,
            )

        for missing in ("0.3.0", "0.2.0"):
            message = assert_error(await send(missing), 400, "invalid_request")
            assert message == (
                f"corral-agent {missing} is not on this server; it has: 0.1.0, 0.10.0"
            )
        listed = await api.client.get("/v1/commands", headers=api.admin)
        assert listed.json()["commands"] == []
        assert (await send("0.10.0")).status_code == 201

    run_api(scenario)


def test_corral_server_packages_list_shows_what_the_manifest_serves(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    from click.testing import CliRunner

    from control_plane.server_cli import cli

    put(server_dir, "corral-agent_0.10.0_amd64.deb", b"newer")
    put(server_dir, "corral-agent_0.9.0_amd64.deb", b"older")
    put(server_dir, "notes.txt", b"never served")
    runner = CliRunner()
    listed = runner.invoke(cli, ["packages", "list", "--data-dir", str(server_dir.path)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == [
        "corral-agent_0.9.0_amd64.deb",
        "corral-agent_0.10.0_amd64.deb",
    ]
    assert hashlib.sha256(b"older").hexdigest() in lines[1]
    assert "notes.txt" not in listed.output
    as_json = runner.invoke(
        cli, ["packages", "list", "--data-dir", str(server_dir.path), "--output", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    listing = json.loads(as_json.output)

    async def scenario(api: Api) -> None:
        manifest = (await api.client.get("/v1/packages/manifest", headers=api.admin)).json()
        assert [p["file"] for p in manifest["packages"]] == [p["file"] for p in listing["packages"]]
        assert manifest["key_id"] == listing["signing_key"]
        assert lines[-1].endswith(f"signed with {manifest['key_id']}")

    run_api(scenario)
