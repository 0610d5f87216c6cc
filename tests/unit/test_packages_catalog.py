"""services/packages/: file names, the directories scanned, the checksum cache, the signing
key file and the upgrade pre-check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control_plane.errors import InvalidRequest, SetupError
from control_plane.services.packages import catalog, package_dirs
from control_plane.services.packages.catalog import Catalog
from control_plane.services.packages.names import parse
from control_plane.services.packages.service import PackageService
from control_plane.services.packages.signing import KEY_FILE, SigningKey
from control_plane.services.packages.updates import check_update


def test_file_names_follow_the_contract() -> None:
    deb = parse("corral-agent_0.2.0~rc1_amd64.deb")
    assert deb is not None
    assert (deb.name, deb.version, deb.arch, deb.format) == (
        "corral-agent",
        "0.2.0~rc1",
        "amd64",
        "deb",
    )
    arch = parse("corral-server_1.0.0-1_aarch64.pkg.tar.zst")
    assert arch is not None and arch.format == "arch"
    for bad in (
        "corral-agent_0.2.0_amd64.tar.gz",
        "other_0.2.0_amd64.deb",
        "corral-agent_v0.2.0_amd64.deb",
        "corral-agent_0.2.0_AMD64.deb",
        "../corral-agent_0.2.0_amd64.deb",
        "corral-agent_0.2.0_amd64.deb/..",
        "corral-agent_0.2.0/../x_amd64.deb",
        "corral-agent_0.2.0_amd64.deb\n",
    ):
        assert parse(bad) is None, bad


def packaged_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sys.prefix as in /opt/corral-server/runtime, with PACKAGE and packages/ beside it."""
    home = tmp_path / "opt" / "corral-server"
    (home / "runtime").mkdir(parents=True)
    (home / "packages").mkdir()
    monkeypatch.setattr(sys, "prefix", str(home / "runtime"))
    return home


def test_a_packaged_server_also_serves_its_bundled_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = packaged_server(tmp_path, monkeypatch)
    configured = tmp_path / "data" / "packages"
    configured.mkdir(parents=True)
    assert package_dirs(configured) == [configured]  # no PACKAGE file: installed with pip
    (home / "PACKAGE").write_text('{"name": "corral-server"}')
    assert package_dirs(configured) == [configured, home / "packages"]

    (home / "packages" / "corral-agent_0.1.0_amd64.deb").write_bytes(b"bundled")
    (home / "packages" / "corral-agent_0.2.0_amd64.deb").write_bytes(b"bundled")
    (configured / "corral-agent_0.2.0_amd64.deb").write_bytes(b"configured")
    files = {f.package.file: f.path for f in Catalog(package_dirs(configured)).files()}
    assert files == {
        "corral-agent_0.1.0_amd64.deb": home / "packages" / "corral-agent_0.1.0_amd64.deb",
        # The same name in packages_dir wins.
        "corral-agent_0.2.0_amd64.deb": configured / "corral-agent_0.2.0_amd64.deb",
    }


def test_checksums_are_computed_once_per_file_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real = catalog._sha256

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(catalog, "_sha256", counting)
    (tmp_path / "corral-agent_0.1.0_amd64.deb").write_bytes(b"a")
    (tmp_path / "corral-agent_0.1.0_x86_64.rpm").write_bytes(b"b")
    (tmp_path / "corral-agent_0.1.0_x86_64.apk").mkdir()  # not a file: skipped
    cat = Catalog([tmp_path])
    for _ in range(3):
        assert len(cat.files()) == 2
    assert cat.find("corral-agent_0.1.0_amd64.deb") is not None
    assert sorted(hashed) == ["corral-agent_0.1.0_amd64.deb", "corral-agent_0.1.0_x86_64.rpm"]
    (tmp_path / "corral-agent_0.1.0_amd64.deb").write_bytes(b"longer")  # new size
    cat.files()
    assert hashed.count("corral-agent_0.1.0_amd64.deb") == 2


def test_the_signing_key_is_made_once_and_a_bad_file_is_a_setup_error(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert SigningKey.load_or_create(tmp_path).public_pem == first.public_pem
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left

    (tmp_path / KEY_FILE).write_text("not a key")
    with pytest.raises(SetupError, match="is not a PEM private key"):
        SigningKey.load_or_create(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / KEY_FILE).write_bytes(other)
    with pytest.raises(SetupError, match="is not an Ed25519 private key"):
        SigningKey.load_or_create(tmp_path)


def test_the_upgrade_pre_check() -> None:
    have = ["0.10.0", "0.9.0"]
    check_update("Corral-UpdateAgent", {"version": "0.9.0"}, have, "/srv/packages")
    check_update("Corral-UpdateAgent", {"version": "latest"}, have, "/srv/packages")
    check_update("AWS-RunShellScript", {"version": "9"}, [], "/srv/packages")  # not an upgrade
    with pytest.raises(InvalidRequest) as refused:
        check_update("Corral-UpdateAgent", {"version": "1.0.0"}, have, "/srv/packages")
    assert refused.value.message == (
        "corral-agent 1.0.0 is not on this server; it has: 0.9.0, 0.10.0"
    )
    with pytest.raises(InvalidRequest) as empty:
        check_update("Corral-UpdateAgent", {"version": "latest"}, [], "/srv/packages")
    assert empty.value.message == (
        "corral-agent latest is not on this server; it has: none (put packages in /srv/packages)"
    )


def test_the_service_checks_upgrades_against_agent_packages_only(tmp_path: Path) -> None:
    (tmp_path / "corral-server_0.5.0_amd64.deb").write_bytes(b"s")
    (tmp_path / "corral-agent_0.4.0_amd64.deb").write_bytes(b"a")
    service = PackageService(tmp_path, [tmp_path])
    assert service.versions() == ["0.4.0"]
    service.check_update("Corral-UpdateAgent", {"version": "0.4.0"})
    with pytest.raises(InvalidRequest, match=r"it has: 0\.4\.0$"):
        service.check_update("Corral-UpdateAgent", {"version": "0.5.0"})
