"""Patch Manager's dnf provider against the real dnf 4 in a throw-away install root
(``dnf --installroot`` under tmp_path; nothing of the host's packages is touched), with a
repository built by tests/integration/rpmrepo.py: a security advisory (Important, CVEs), a
bugfix advisory on an epoch package, an update with no advisory, an update that needs a new
package, and an enhancement advisory on an installed version."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching.base import PackageError
from agent.patching.dnf import Patcher, YumPatcher
from agent.patching.model import Package, Source
from agent.tools import Completed, run_tool
from tests.integration import rpmrepo
from tests.integration.rpmrepo import Advisory, Repo

pytestmark = pytest.mark.skipif(
    bool(rpmrepo.missing_tools()),
    reason=f"needs {', '.join(rpmrepo.missing_tools())} (apt-get install dnf createrepo-c rpm)",
)

OLD = {
    "corral-sec": "1.0-1",
    "corral-fix": "1:1.0-1",
    "corral-plain": "1.0-1",
    "corral-dep": "1.0-1",
}
SECURITY = Advisory(
    "CORRAL-2024:0001",
    "security",
    "Important",
    "2024-03-05 10:00:00",
    (("corral-sec", 0, "2.0", "1"),),
    ("CVE-2024-1234", "CVE-2024-5678"),
    "Important: corral-sec security update",
)
BUGFIX = Advisory(
    "CORRAL-2024:0002", "bugfix", "", "2024-04-01 00:00:00", (("corral-fix", 1, "1.1", "1"),)
)
INSTALLED = Advisory(
    "CORRAL-2023:0100",
    "enhancement",
    "Low",
    "2023-11-20 08:30:00",
    (("corral-plain", 0, "1.0", "1"),),
)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, Repo, list[Path]]:
    """The main repository, an extra one (corral-plain 1.7) and the old rpms."""
    work = tmp_path_factory.mktemp("rpms")
    old = [
        rpmrepo.build_rpm(work, "corral-sec", "1.0"),
        rpmrepo.build_rpm(work, "corral-fix", "1.0", epoch=1),
        rpmrepo.build_rpm(work, "corral-plain", "1.0"),
        rpmrepo.build_rpm(work, "corral-dep", "1.0"),
    ]
    new = [
        rpmrepo.build_rpm(work, "corral-sec", "2.0"),
        rpmrepo.build_rpm(work, "corral-fix", "1.1", epoch=1),
        rpmrepo.build_rpm(work, "corral-plain", "1.5"),
        rpmrepo.build_rpm(work, "corral-dep", "2.0", requires=["corral-lib >= 1.0"]),
        rpmrepo.build_rpm(work, "corral-lib", "1.0"),
    ]
    main = rpmrepo.make_repo(work / "repo", [*old, *new], [SECURITY, BUGFIX, INSTALLED])
    extra = rpmrepo.make_repo(work / "extra", [rpmrepo.build_rpm(work, "corral-plain", "1.7")], [])
    return main, extra, old


@pytest.fixture
def root(tmp_path: Path, repos: tuple[Repo, Repo, list[Path]]) -> Path:
    main, _extra, old = repos
    made = rpmrepo.make_root(tmp_path / "root", old, main.url)
    assert rpmrepo.installed_versions(made) == OLD
    return made


def _update(key: str, version: str) -> Package:
    name, _, arch = key.rpartition(".")
    return Package(name=name, arch=arch, version=version)


def test_scan_finds_the_updates_with_their_advisories_and_changes_nothing(root: Path) -> None:
    scan = Patcher(str(root)).scan()
    assert scan.product == "RedhatEnterpriseLinux9.3"
    updates = {u.key: u for u in scan.updates}
    assert {k: u.version for k, u in updates.items()} == {
        "corral-dep.noarch": "2.0-1",
        "corral-fix.noarch": "1:1.1-1",
        "corral-plain.noarch": "1.5-1",
        "corral-sec.noarch": "2.0-1",
    }
    sec = updates["corral-sec.noarch"]
    assert (sec.classification, sec.severity, sec.security) == ("Security", "Important", True)
    assert sec.release_time == 1709632800.0  # 2024-03-05 10:00:00 UTC
    assert (sec.advisories, sec.cves) == (("CORRAL-2024:0001",), ("CVE-2024-1234", "CVE-2024-5678"))
    assert (sec.repository, sec.title) == ("corral", "Important: corral-sec security update")
    fix = updates["corral-fix.noarch"]
    assert (fix.classification, fix.severity, fix.security) == ("Bugfix", "", False)
    assert (fix.release_time, fix.advisories) == (1711929600.0, ("CORRAL-2024:0002",))
    for plain in ("corral-plain.noarch", "corral-dep.noarch"):
        assert (updates[plain].classification, updates[plain].advisories) == ("", ())
    installed = {p.key: p for p in scan.installed}
    assert {k: p.version for k, p in installed.items()} == {
        f"{n}.noarch": v for n, v in OLD.items()
    }
    assert installed["corral-plain.noarch"].classification == "Enhancement"
    assert installed["corral-plain.noarch"].severity == "Low"
    assert installed["corral-sec.noarch"].advisories == ()
    assert all(p.installed_time for p in scan.installed)
    assert not scan.reboot_required
    assert scan.manager_seconds > 0
    assert rpmrepo.installed_versions(root) == OLD


def test_install_of_a_subset_installs_exactly_it(root: Path) -> None:
    outcome = Patcher(str(root)).install(
        [_update("corral-sec.noarch", "2.0-1"), _update("corral-fix.noarch", "1:1.1-1")]
    )
    assert sorted((p.key, p.version) for p in outcome.installed) == [
        ("corral-fix.noarch", "1:1.1-1"),
        ("corral-sec.noarch", "2.0-1"),
    ]
    assert (outcome.failed, outcome.reboot_required) == ({}, False)
    assert rpmrepo.installed_versions(root) == {
        **OLD,
        "corral-sec": "2.0-1",
        "corral-fix": "1:1.1-1",
    }
    assert (root / "usr/share/corral-sec/VERSION").read_text() == "2.0\n"


def test_an_update_brings_the_new_package_it_needs(root: Path) -> None:
    outcome = Patcher(str(root)).install([_update("corral-dep.noarch", "2.0-1")])
    assert sorted((p.key, p.version) for p in outcome.installed) == [
        ("corral-dep.noarch", "2.0-1"),
        ("corral-lib.noarch", "1.0-1"),
    ]
    assert rpmrepo.installed_versions(root) == {**OLD, "corral-dep": "2.0-1", "corral-lib": "1.0-1"}


def test_a_blocked_dependency_fails_the_whole_install(root: Path) -> None:
    updates = [_update("corral-sec.noarch", "2.0-1"), _update("corral-dep.noarch", "2.0-1")]
    with pytest.raises(PackageError) as caught:
        Patcher(str(root)).install(updates, blocked=["corral-lib"])
    message = str(caught.value)
    assert message.startswith(
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-dep needs it (dnf: "
    )
    assert "corral-lib-1.0-1.noarch is filtered out by exclude filtering" in message
    assert "\n" not in message
    assert rpmrepo.installed_versions(root) == OLD


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("url", ["file:///nonexistent/repo", "http://127.0.0.1:{port}/repo"])
def test_an_unreachable_repository_fails_with_dnfs_message(root: Path, url: str) -> None:
    gone = Source("gone", (), rpmrepo.repo_file("gone", url.format(port=_closed_port())))
    patcher = Patcher(str(root))
    expected = r"^dnf makecache failed: Failed to download metadata for repo 'gone': .*\(exit 1\)$"
    with pytest.raises(PackageError, match=expected):
        patcher.scan([gone])
    with pytest.raises(PackageError, match="Failed to download metadata for repo 'gone'"):
        patcher.install([_update("corral-sec.noarch", "2.0-1")], sources=[gone])
    assert rpmrepo.installed_versions(root) == OLD


def test_a_source_is_used_for_that_call_only(
    root: Path, repos: tuple[Repo, Repo, list[Path]]
) -> None:
    extra = Source("extra", (), rpmrepo.repo_file("extra", repos[1].url))
    patcher = Patcher(str(root))
    with_extra = {u.key: (u.version, u.repository) for u in patcher.scan([extra]).updates}
    assert with_extra["corral-plain.noarch"] == ("1.7-1", "extra")
    without = {u.key: u.version for u in patcher.scan().updates}
    assert without["corral-plain.noarch"] == "1.5-1"
    assert sorted(p.name for p in (root / "etc/yum.repos.d").iterdir()) == ["corral.repo"]
    outcome = patcher.install([_update("corral-plain.noarch", "1.7-1")], sources=[extra])
    assert [(p.key, p.version) for p in outcome.installed] == [("corral-plain.noarch", "1.7-1")]


def test_a_held_dnf_lock_fails_at_once_with_dnfs_message(root: Path) -> None:
    # dnf's lock is a pid file: a live process other than dnf (this test) holds it.
    lock = root / "var/lib/dnf/rpmdb_lock.pid"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    with pytest.raises(
        PackageError, match=rf"^dnf install failed: RPMDB already locked by {os.getpid()} "
    ):
        Patcher(str(root)).install([_update("corral-sec.noarch", "2.0-1")])
    assert rpmrepo.installed_versions(root) == OLD


def test_an_unsigned_package_from_a_gpgcheck_repository_is_refused(
    root: Path, repos: tuple[Repo, Repo, list[Path]]
) -> None:
    (root / "etc/yum.repos.d/corral.repo").write_text(
        rpmrepo.repo_file("corral", repos[0].url, gpgcheck=True)
    )
    with pytest.raises(PackageError, match=r"^dnf install failed: .*GPG public keys"):
        Patcher(str(root)).install([_update("corral-sec.noarch", "2.0-1")])
    assert rpmrepo.installed_versions(root) == OLD


def test_yum_runs_the_same_commands_as_yum(root: Path, tmp_path: Path) -> None:
    # As on RHEL 8+, where /usr/bin/yum is dnf: a yum that is this host's dnf.
    shim = tmp_path / "bin"
    shim.mkdir()
    dnf = shutil.which("dnf")
    assert dnf is not None
    (shim / "yum").symlink_to(dnf)
    seen: list[str] = []

    def run(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        seen.append(argv[0])
        return run_tool(argv, {**env, "PATH": f"{shim}:{os.environ['PATH']}"}, timeout)

    patcher = YumPatcher(str(root), run=run)
    updates = {u.key: u for u in patcher.scan().updates}
    assert updates["corral-sec.noarch"].classification == "Security"
    outcome = patcher.install([updates["corral-fix.noarch"]])
    assert [(p.key, p.version) for p in outcome.installed] == [("corral-fix.noarch", "1:1.1-1")]
    assert set(seen) == {"yum", "rpm"}
