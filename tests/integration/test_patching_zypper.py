"""Patch Manager's zypper provider against the real zypper: a repository with old and new
versions of five tiny packages and patches in its updateinfo (corral-sec: security,
important, a CVE; corral-fix: recommended, moderate; corral-app + corral-lib: feature, low,
corral-app 2.0 requiring corral-lib >= 2.0; corral-plain: no patch), and a throw-away root
per test with the old versions installed (tests/integration/zypprepo.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.patching.base import PackageError
from agent.patching.model import Package
from agent.patching.zypper import Patcher
from tests.integration import zypprepo

pytestmark = pytest.mark.skipif(
    bool(zypprepo.missing_tools()),
    reason=f"{', '.join(zypprepo.missing_tools())} not installed "
    "(apt-get install zypper rpm createrepo-c)",
)

NAMES = ("corral-sec", "corral-fix", "corral-app", "corral-lib", "corral-plain")
OLD = dict.fromkeys(NAMES, "1.0-1")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the old versions installed and the repository added (copied per test)."""
    base = tmp_path_factory.mktemp("zypper")
    work = base / "build"
    work.mkdir()
    old = [zypprepo.build_rpm(work, name, "1.0") for name in NAMES]
    new = [
        zypprepo.build_rpm(
            work, name, "2.0", requires=["corral-lib >= 2.0"] if name == "corral-app" else []
        )
        for name in NAMES
    ]
    patches = [
        zypprepo.Patch(
            "CORRAL-SU-2024:0001",
            "security",
            "important",
            1709251200,
            (("corral-sec", "2.0", "1"),),
            ("CVE-2024-0001",),
            "Security update for corral-sec",
        ),
        zypprepo.Patch(
            "CORRAL-RU-2024:0002",
            "recommended",
            "moderate",
            1709337600,
            (("corral-fix", "2.0", "1"),),
        ),
        zypprepo.Patch(
            "CORRAL-FU-2024:0003",
            "feature",
            "low",
            1709424000,
            (("corral-app", "2.0", "1"), ("corral-lib", "2.0", "1")),
        ),
    ]
    repo = zypprepo.make_repo(base / "repo", [*old, *new], patches)
    return zypprepo.make_root(base / "root", old, repo.url)


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "root"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def _update(name: str, version: str = "2.0-1") -> Package:
    return Package(name=name, arch="noarch", version=version)


def test_scan_finds_the_updates_with_their_patch_metadata_and_changes_nothing(root: Path) -> None:
    scan = Patcher(str(root)).scan()
    assert scan.product == "Suse15.5"
    assert scan.reboot_required is False
    assert scan.manager_seconds > 0
    assert {p.name: p.version for p in scan.installed} == OLD
    assert all(p.installed_time for p in scan.installed)
    got = {
        u.name: (u.version, u.classification, u.severity, u.release_time, u.advisories, u.cves)
        for u in scan.updates
    }
    assert got == {
        "corral-sec": (
            "2.0-1",
            "Security",
            "Important",
            1709251200.0,
            ("CORRAL-SU-2024:0001",),
            ("CVE-2024-0001",),
        ),
        "corral-fix": (
            "2.0-1",
            "Recommended",
            "Moderate",
            1709337600.0,
            ("CORRAL-RU-2024:0002",),
            (),
        ),
        "corral-app": ("2.0-1", "Feature", "Low", 1709424000.0, ("CORRAL-FU-2024:0003",), ()),
        "corral-lib": ("2.0-1", "Feature", "Low", 1709424000.0, ("CORRAL-FU-2024:0003",), ()),
        "corral-plain": ("2.0-1", "", "", None, (), ()),
    }
    assert {(u.arch, u.repository) for u in scan.updates} == {("noarch", "corral")}
    assert next(u for u in scan.updates if u.name == "corral-sec").security
    assert zypprepo.installed_versions(root) == OLD


def test_a_pending_reboot_is_reported(root: Path) -> None:
    (root / "run").mkdir(exist_ok=True)
    (root / "run/reboot-needed").touch()
    assert Patcher(str(root)).scan().reboot_required is True


def test_install_installs_exactly_the_chosen_updates(root: Path) -> None:
    outcome = Patcher(str(root)).install([_update("corral-sec"), _update("corral-plain")])
    assert sorted((p.name, p.version) for p in outcome.installed) == [
        ("corral-plain", "2.0-1"),
        ("corral-sec", "2.0-1"),
    ]
    assert outcome.failed == {}
    assert outcome.reboot_required is False
    assert zypprepo.installed_versions(root) == {
        **OLD,
        "corral-sec": "2.0-1",
        "corral-plain": "2.0-1",
    }


def test_install_brings_the_dependencies_along(root: Path) -> None:
    outcome = Patcher(str(root)).install([_update("corral-app")])
    assert sorted(p.key for p in outcome.installed) == ["corral-app.noarch", "corral-lib.noarch"]
    assert zypprepo.installed_versions(root) == {
        **OLD,
        "corral-app": "2.0-1",
        "corral-lib": "2.0-1",
    }


def _locks(root: Path) -> str:
    argv = ["zypper", "--root", str(root), "--non-interactive", "locks"]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_blocked_dependency_fails_the_install_whole(root: Path) -> None:
    subprocess.run(
        ["zypper", "--root", str(root), "--non-interactive", "--quiet", "addlock", "corral-fix"],
        check=True,
        timeout=60,
    )
    with pytest.raises(PackageError) as caught:
        Patcher(str(root)).install(
            [_update("corral-sec"), _update("corral-app")], blocked=["corral-lib", "corral-fix"]
        )
    assert str(caught.value).startswith(
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-app needs it (zypper: "
    )
    assert zypprepo.installed_versions(root) == OLD
    locks = _locks(root)
    assert "corral-lib" not in locks  # the lock taken for the call is gone
    assert "corral-fix" in locks  # the node's own lock stays


def test_a_version_the_repository_lacks_fails_with_zyppers_message(root: Path) -> None:
    with pytest.raises(PackageError, match=r"No provider of 'corral-sec\.noarch=9\.0-1' found"):
        Patcher(str(root)).install([_update("corral-sec", "9.0-1"), _update("corral-plain")])
    assert zypprepo.installed_versions(root) == OLD


@pytest.fixture
def holder(root: Path) -> Iterator[None]:
    """Another process holding zypp's lock (its pid in the root's run/zypp.pid)."""
    with subprocess.Popen(["sleep", "600"]) as proc:
        (root / "run").mkdir(exist_ok=True)
        (root / "run/zypp.pid").write_text(f"{proc.pid}\n")
        try:
            yield
        finally:
            proc.kill()


@pytest.mark.usefixtures("holder")
def test_a_held_lock_fails_at_once_with_zyppers_message(root: Path) -> None:
    patcher = Patcher(str(root))
    with pytest.raises(PackageError, match=r"System management is locked by the application"):
        patcher.scan()
    with pytest.raises(PackageError, match=r"\(exit 7\)$"):
        patcher.install([_update("corral-sec")])
    assert zypprepo.installed_versions(root) == OLD


def test_an_unreachable_repository_fails_the_scan(tmp_path: Path) -> None:
    root = zypprepo.make_root(tmp_path / "root", [], f"file://{tmp_path}/nowhere")
    with pytest.raises(
        PackageError,
        # zypper's words, cut where the reason is cut (a long tmp path leaves less of it).
        match=r"^zypper refresh failed: Repository 'corral' is invalid\. "
        r"\[corral\|file:\S+/nowhere\]",
    ):
        Patcher(str(root)).scan()
