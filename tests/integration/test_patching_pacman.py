"""Patch Manager's pacman provider against the real pacman: a ``file://`` repository with old
and new versions of five tiny packages (corral-app 2.0-1 depending on corral-lib>=2.0; each
new package built a second apart so build dates tell them apart), and a throw-away root per
test with the old versions installed (tests/integration/pacmanrepo.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.patching.pacman import Patcher
from tests.integration import pacmanrepo

pytestmark = pytest.mark.skipif(
    bool(pacmanrepo.missing_tools()) or os.geteuid() != 0,
    reason="pacman, repo-add and bsdtar (apt-get install pacman-package-manager libarchive-tools)"
    " are needed, and root: pacman -S/-U insist on it",
)

NAMES = ("corral-sec", "corral-fix", "corral-app", "corral-lib", "corral-plain")
OLD = dict.fromkeys(NAMES, "1.0-1")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a root with the old versions installed, the build directory)."""
    base = tmp_path_factory.mktemp("pacman")
    work = base / "build"
    work.mkdir()
    old = [pacmanrepo.build_package(work, name, "1.0-1") for name in NAMES]
    new = [
        pacmanrepo.build_package(
            work,
            name,
            "2.0-1",
            builddate=pacmanrepo.BUILDDATE + i,
            depends=["corral-lib>=2.0"] if name == "corral-app" else [],
        )
        for i, name in enumerate(NAMES)
    ]
    repo = pacmanrepo.make_repo(base / "repo", [*old, *new])
    return pacmanrepo.make_root(base / "root", old, repo), work


@pytest.fixture
def root(built: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "root"
    shutil.copytree(built[0], copy, symlinks=True)
    return copy


def _update(name: str, version: str = "2.0-1") -> Package:
    return Package(name=name, arch="any", version=version)


def test_scan_finds_the_updates_with_build_dates_and_changes_nothing(root: Path) -> None:
    scan = Patcher(str(root)).scan()
    assert scan.product == "Arch"
    assert scan.reboot_required is False
    assert {p.name: p.version for p in scan.installed} == OLD
    assert all(p.installed_time for p in scan.installed)
    got = {u.name: (u.version, u.arch, u.repository, u.release_time) for u in scan.updates}
    assert got == {
        name: ("2.0-1", "any", "corral", float(pacmanrepo.BUILDDATE + i))
        for i, name in enumerate(NAMES)
    }
    assert {(u.classification, u.severity, u.security) for u in scan.updates} == {("", "", False)}
    assert pacmanrepo.installed_versions(root) == OLD


def test_install_installs_exactly_the_chosen_updates(root: Path) -> None:
    patcher = Patcher(str(root))
    patcher.scan()
    outcome = patcher.install([_update("corral-sec"), _update("corral-plain")])
    assert sorted((p.name, p.version) for p in outcome.installed) == [
        ("corral-plain", "2.0-1"),
        ("corral-sec", "2.0-1"),
    ]
    assert (outcome.failed, outcome.reboot_required) == ({}, False)
    assert pacmanrepo.installed_versions(root) == {
        **OLD,
        "corral-sec": "2.0-1",
        "corral-plain": "2.0-1",
    }


def test_install_brings_the_dependencies_along_and_fails_other_versions(root: Path) -> None:
    patcher = Patcher(str(root))
    patcher.scan()
    outcome = patcher.install([_update("corral-app"), _update("corral-fix", "1.5-1")])
    assert sorted(p.key for p in outcome.installed) == ["corral-app.any", "corral-lib.any"]
    assert outcome.failed == {
        "corral-fix.any": "the repositories offer corral-fix 2.0-1, not 1.5-1 "
        "(pacman installs only that)"
    }
    assert pacmanrepo.installed_versions(root) == {
        **OLD,
        "corral-app": "2.0-1",
        "corral-lib": "2.0-1",
    }


def test_a_blocked_dependency_fails_the_install_whole(root: Path) -> None:
    patcher = Patcher(str(root))
    patcher.scan()
    with pytest.raises(PackageError) as caught:
        patcher.install([_update("corral-sec"), _update("corral-app")], blocked=["corral-lib"])
    assert str(caught.value) == (
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-app needs it "
        "(pacman: unable to satisfy dependency 'corral-lib>=2.0' required by corral-app)"
    )
    assert pacmanrepo.installed_versions(root) == OLD


def test_a_held_lock_fails_at_once_with_pacmans_message(root: Path) -> None:
    patcher = Patcher(str(root))
    patcher.scan()
    (root / "var/lib/pacman/db.lck").touch()
    with pytest.raises(PackageError, match=r"^pacman -Sy failed: .*unable to lock database"):
        patcher.scan()
    with pytest.raises(PackageError, match=r"^pacman -S failed: .*unable to lock database"):
        patcher.install([_update("corral-sec")])
    assert pacmanrepo.installed_versions(root) == OLD


def test_an_unreachable_repository_fails_the_scan(root: Path, tmp_path: Path) -> None:
    nowhere = f"file://{tmp_path}/nowhere"
    (root / "etc/pacman.conf").write_text(pacmanrepo.pacman_conf({"corral": nowhere}))
    with pytest.raises(
        PackageError,
        match=r"^pacman -Sy failed: failed retrieving file 'corral.db' from disk : "
        r"Couldn't open file \S+/nowhere/corral.db; failed to synchronize all databases",
    ):
        Patcher(str(root)).scan()


def test_a_baseline_source_adds_a_repository_for_the_call(
    root: Path, built: tuple[Path, Path], tmp_path: Path
) -> None:
    newer = pacmanrepo.build_package(built[1], "corral-plain", "3.0-1", builddate=1710000000)
    extra = pacmanrepo.make_repo(tmp_path / "extra", [newer], name="extra")
    source = Source("extra", ("Arch",), f"[extra]\nServer = {extra.url}\nSigLevel = Never\n")
    # pacman takes a package from the first repository that has it: the node's own first.
    (root / "etc/pacman.conf").write_text(pacmanrepo.pacman_conf({}))
    patcher = Patcher(str(root))
    (plain,) = patcher.scan([source]).updates
    assert (plain.name, plain.version, plain.repository, plain.release_time) == (
        "corral-plain",
        "3.0-1",
        "extra",
        1710000000.0,
    )
    outcome = patcher.install([_update("corral-plain", "3.0-1")], sources=[source])
    assert [(p.name, p.version) for p in outcome.installed] == [("corral-plain", "3.0-1")]
    assert "[extra]" not in (root / "etc/pacman.conf").read_text()
    with pytest.raises(PackageError, match="no usable package repositories configured"):
        Patcher(str(root)).scan()  # without the source the node has no repository
