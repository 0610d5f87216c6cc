"""The apt Patcher against the real apt-get and dpkg: a repository with a ``stable`` and a
``stable-security`` suite built here (tests/integration/aptrepo.py), a throw-away root with
the old versions installed.  Nothing on this machine's own package database changes, and no
network is used (the closed port is on loopback)."""

from __future__ import annotations

import fcntl
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.patching.apt import Patcher
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from tests.integration import aptrepo
from tests.integration.aptrepo import Deb

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("dpkg-deb", "apt-get", "dpkg-query", "apt-ftparchive")),
    reason="needs apt-get, dpkg-deb, dpkg-query and apt-ftparchive (Debian, Ubuntu)",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("apt-patch-repo")
    return aptrepo.build_repo(base / "repo", base / "build")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, repo: Path) -> Path:
    return aptrepo.patch_root(tmp_path_factory.mktemp("apt-patch-template") / "root", repo)


@pytest.fixture
def root(tmp_path: Path, template: Path) -> Path:
    return aptrepo.copy_root(template, tmp_path / "root")


def status(root: Path) -> bytes:
    return (root / "var/lib/dpkg/status").read_bytes()


def versions(root: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Package} ${Version}\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def updates(root: Path) -> dict[str, Package]:
    return {p.name: p for p in Patcher(str(root)).scan().updates}


def test_scan_finds_the_updates_with_their_metadata_and_changes_nothing(root: Path) -> None:
    before = status(root)
    scan = Patcher(str(root)).scan()
    assert status(root) == before
    assert versions(root) == aptrepo.OLD_VERSIONS

    found = {p.name: p for p in scan.updates}
    assert sorted(found) == [
        "corral-app",
        "corral-base",
        "corral-lib",
        "corral-tool",
        "linux-image-corral",
    ]
    base = found["corral-base"]
    assert (base.version, base.arch, base.classification, base.security) == (
        "1.0-2",
        "all",
        "Security",
        True,
    )
    assert (base.repository, base.section, base.priority) == (
        "stable-security",
        "libs",
        "Important",
    )
    assert base.release_time is None
    tool = found["corral-tool"]
    assert (tool.version, tool.classification, tool.security, tool.repository) == (
        "1.1-1",
        "",
        False,
        "stable",
    )
    assert (tool.section, tool.priority) == ("utils", "Optional")
    assert (found["corral-app"].section, found["corral-app"].priority) == ("admin", "Extra")
    assert found["linux-image-corral"].classification == "Security"

    installed = {p.name: p for p in scan.installed}
    assert {n: p.version for n, p in installed.items()} == aptrepo.OLD_VERSIONS
    # the installed corral-tool 1.0-1 was itself a security fix; corral-base 1.0-1 was not
    assert (installed["corral-tool"].classification, installed["corral-tool"].security) == (
        "Security",
        True,
    )
    assert installed["corral-tool"].repository == "stable-security"
    assert (installed["corral-base"].classification, installed["corral-base"].security) == (
        "",
        False,
    )
    assert installed["corral-static"].priority == "Standard"
    assert all(p.installed_time for p in scan.installed)
    assert scan.product == "Debian12"
    assert scan.reboot_required is False
    assert scan.manager_seconds > 0


def test_scan_tells_a_reboot_is_already_pending(root: Path) -> None:
    (root / "var/run").mkdir(parents=True, exist_ok=True)
    (root / "var/run/reboot-required").touch()
    assert Patcher(str(root)).scan().reboot_required is True


def test_install_of_a_subset_installs_exactly_it(root: Path) -> None:
    tool = updates(root)["corral-tool"]
    outcome = Patcher(str(root)).install([tool])
    assert outcome.installed == [tool]
    assert (outcome.failed, outcome.reboot_required) == ({}, False)
    assert versions(root) == {**aptrepo.OLD_VERSIONS, "corral-tool": "1.1-1"}


def test_install_brings_the_dependencies_an_update_needs(root: Path) -> None:
    app = updates(root)["corral-app"]
    outcome = Patcher(str(root)).install([app])
    assert {p.name: p.version for p in outcome.installed} == {
        "corral-app": "2.0-1",
        "corral-lib": "2.0-1",
        "corral-extra": "1.0-1",
    }
    assert next(p for p in outcome.installed if p.name == "corral-app") == app
    assert outcome.failed == {}
    assert versions(root) == {
        **aptrepo.OLD_VERSIONS,
        "corral-app": "2.0-1",
        "corral-lib": "2.0-1",
        "corral-extra": "1.0-1",
    }


def test_a_kernel_update_asks_for_a_reboot(root: Path) -> None:
    kernel = updates(root)["linux-image-corral"]
    outcome = Patcher(str(root)).install([kernel])
    assert outcome.installed == [kernel]
    assert outcome.reboot_required is True


@pytest.mark.parametrize("rejected", ["corral-lib", "corral-l*"])
def test_a_blocked_dependency_fails_the_whole_install(root: Path, rejected: str) -> None:
    found = updates(root)
    before = status(root)
    with pytest.raises(PackageError) as caught:
        Patcher(str(root)).install(
            [found["corral-tool"], found["corral-app"]], blocked=[rejected]
        )
    assert str(caught.value) == (
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-app needs it; "
        "nothing was installed"
    )
    assert status(root) == before


def test_a_version_apt_does_not_have_fails_with_apts_reason(root: Path) -> None:
    with pytest.raises(PackageError, match=r"E: Version '9\.9-1' for 'corral-tool' was not found"):
        Patcher(str(root)).install([Package("corral-tool", "all", "9.9-1")])
    assert versions(root) == aptrepo.OLD_VERSIONS


@pytest.fixture
def dpkg_locked(root: Path) -> Iterator[None]:
    """The dpkg frontend lock held (as another apt would hold it) by this process."""
    with (root / "var/lib/dpkg/lock-frontend").open("a+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def test_a_held_dpkg_lock_fails_at_once_with_apts_message(root: Path, dpkg_locked: None) -> None:
    tool = updates(root)["corral-tool"]  # a scan does not need the dpkg lock
    before = status(root)
    with pytest.raises(PackageError, match=r"E: Could not get lock .*/lock-frontend\. It is held"):
        Patcher(str(root)).install([tool])
    assert status(root) == before


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_unreachable_repository_fails_the_scan_with_apts_message(
    root: Path, refused_port: int
) -> None:
    sources = root / "etc/apt/sources.list"
    sources.write_text("deb [trusted=yes] file:/nonexistent stable main\n")
    with pytest.raises(PackageError, match=r"apt-get update failed: E: Failed to fetch file:/non"):
        Patcher(str(root)).scan()
    sources.write_text(f"deb http://127.0.0.1:{refused_port}/debian stable main\n")
    with pytest.raises(PackageError, match=rf"Could not connect to 127.0.0.1:{refused_port}"):
        Patcher(str(root)).scan()


def test_a_repository_signed_by_an_untrusted_key_fails_the_scan(
    root: Path, repo: Path, tmp_path: Path
) -> None:
    if shutil.which("gpg") is None:
        pytest.skip("needs gpg to sign the repository")
    signed = tmp_path / "signed"
    shutil.copytree(repo, signed)
    aptrepo.sign_repo(signed, "stable-security", tmp_path / "gpg")
    (root / "etc/apt/sources.list").write_text(
        aptrepo.sources_list(repo, ["stable"])
        + aptrepo.sources_list(signed, ["stable-security"], trusted=False)
    )
    with pytest.raises(PackageError) as caught:
        Patcher(str(root)).scan()
    message = str(caught.value)
    assert message.startswith(
        f"apt-get update failed: E: The repository 'file:{signed} stable-security InRelease' "
        "is not signed."
    )
    assert "NO_PUBKEY" in message
    assert "\n" not in message


def test_a_baselines_source_is_used_for_that_call_only(root: Path, repo: Path) -> None:
    (root / "etc/apt/sources.list").write_text(aptrepo.sources_list(repo, ["stable"]))
    (root / "etc/apt/sources.list.d/own.list").write_text("# the node's own, kept\n")
    parts = sorted((root / "etc/apt/sources.list.d").iterdir())
    security = Source(
        "security",
        ("Debian12",),
        aptrepo.sources_list(repo, ["stable-security"]),
    )
    patcher = Patcher(str(root))
    assert "corral-base" not in updates(root)

    found = {p.name: p for p in patcher.scan([security]).updates}
    assert (found["corral-base"].version, found["corral-base"].security) == ("1.0-2", True)
    outcome = patcher.install([found["corral-base"]], sources=[security])
    assert [p.version for p in outcome.installed] == ["1.0-2"]
    assert sorted((root / "etc/apt/sources.list.d").iterdir()) == parts

    with pytest.raises(PackageError, match="apt-get update failed: E: Failed to fetch"):
        patcher.scan([Source("gone", (), "deb [trusted=yes] file:/nonexistent stable main")])
    assert sorted((root / "etc/apt/sources.list.d").iterdir()) == parts


# A node where two updates would take a package off it: corral-new 2.0-1 Breaks the
# installed corral-old, corral-rival 2.0-1 Conflicts with it (apt's -y would remove it).
REMOVING = {"corral-new": "Breaks", "corral-rival": "Conflicts"}
REMOVING_PACKAGES = (
    Deb("corral-old", "1.0-1", "stable"),
    Deb("corral-new", "1.0-1", "stable"),
    Deb("corral-new", "2.0-1", "stable"),
    Deb("corral-rival", "1.0-1", "stable"),
    Deb("corral-rival", "2.0-1", "stable"),
)


def add_field(deb: Path, field: str, work: Path) -> None:
    """Rebuild ``deb`` with one more control field (``Breaks: corral-old``)."""
    work.mkdir(parents=True, exist_ok=True)
    tree = work / deb.stem
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, capture_output=True)
    control = tree / "DEBIAN/control"
    control.write_text(control.read_text() + field + "\n")
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def removing_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("apt-removing")
    pool = base / "repo/pool"
    pool.mkdir(parents=True)
    for deb in REMOVING_PACKAGES:
        path = aptrepo.build_deb(pool, deb, base / "build")
        if deb.version == "2.0-1":
            add_field(path, f"{REMOVING[deb.name]}: corral-old", base / "rebuild")
    aptrepo.write_suite(base / "repo", "stable", REMOVING_PACKAGES, aptrepo.native_arch())
    root = aptrepo.make_root(base / "root", aptrepo.sources_list(base / "repo", ["stable"]))
    olds = [pool / d.filename for d in REMOVING_PACKAGES if d.version == "1.0-1"]
    aptrepo.install_debs(root, olds)
    return root


@pytest.mark.parametrize("name", sorted(REMOVING))
def test_an_update_that_would_remove_a_package_is_refused(
    name: str, removing_template: Path, tmp_path: Path
) -> None:
    root = aptrepo.copy_root(removing_template, tmp_path / "root")
    Patcher(str(root)).scan()  # the lists, as before any install
    before = status(root)
    with pytest.raises(PackageError) as caught:
        Patcher(str(root)).install([Package(name, "all", "2.0-1")])
    assert str(caught.value) == (
        f"installing {name} 2.0-1 would remove corral-old 1.0-1: refused (nothing was installed)"
    )
    assert status(root) == before
    assert versions(root) == {"corral-old": "1.0-1", "corral-new": "1.0-1", "corral-rival": "1.0-1"}
