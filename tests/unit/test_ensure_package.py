"""corral:ensurePackage and the apt provider, for real: tiny .deb packages built here with
dpkg-deb, a flat apt repository in the test's directory, and a throw-away dpkg root that
apt-get and dpkg work in (``Provider(root=...)``).  Nothing on this machine's own package
database changes, and no network is used."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.documents import builtin_documents, resolve_parameters
from agent.errors import DocumentError
from agent.patching import PackageError, package_provider, provider_name
from agent.patching.apt import Provider
from agent.plugins.base import PluginResult, StepContext
from agent.plugins.ensure_package import EnsurePackage
from agent.plugins.output import CappedOutput
from agent.tools import Completed

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("dpkg-deb", "apt-get", "dpkg-query")),
    reason="needs apt-get, dpkg-deb and dpkg-query (Debian, Ubuntu)",
)

PACKAGE = "corral-hello"


def build_deb(out: Path, name: str, version: str, work: Path) -> Path:
    """A package with no dependencies, no maintainer scripts and one small file."""
    tree = work / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Corral tests <tests@corral.invalid>\n"
        f"Description: a test package of Corral ({version})\n"
    )
    doc = tree / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "version").write_text(version + "\n")
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def write_index(repo: Path) -> None:
    """A flat repository's Packages and Release (what dpkg-scanpackages would write)."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
        ).stdout.strip()
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        "Origin: corral-tests\nLabel: corral-tests\nSuite: ./\nCodename: corral-tests\n"
        "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )


def build_repo(repo: Path, work: Path, versions: tuple[str, ...] = ("1.0-1", "2.0-1")) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    for version in versions:
        build_deb(repo, PACKAGE, version, work)
    write_index(repo)
    return repo


def make_root(root: Path, repo: Path) -> Path:
    """An empty dpkg/apt tree (the layout apt and dpkg expect under /)."""
    for sub in (
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    (root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("apt-repo")
    return build_repo(base / "repo", base / "build")


@pytest.fixture
def root(tmp_path: Path, repo: Path) -> Path:
    return make_root(tmp_path / "root", repo)


def context(tmp_path: Path, seconds: float = 120.0) -> StepContext:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    n = len(list(out.iterdir()))
    return StepContext(
        command_id="test",
        step_name="ensure",
        work_dir=tmp_path,
        stdout=CappedOutput(out / f"{n}.stdout"),
        stderr=CappedOutput(out / f"{n}.stderr"),
        deadline=time.monotonic() + seconds,
        platform="Linux",
    )


def ensure(tmp_path: Path, root: Path, **inputs: Any) -> tuple[PluginResult, str]:
    ctx = context(tmp_path)
    plugin = EnsurePackage(lambda seconds: Provider(str(root), timeout=seconds))
    result = plugin.execute(ctx, inputs, {})
    if result.message:
        ctx.stderr.note(result.message)
    return result, ctx.stdout.path.read_text() + ctx.stderr.path.read_text()


def status_file(root: Path) -> bytes:
    return (root / "var/lib/dpkg/status").read_bytes()


def test_present_installs_the_newest_then_changes_nothing(tmp_path: Path, root: Path) -> None:
    result, out = ensure(tmp_path, root, name=PACKAGE, state="present")
    assert result.status == wire.ST_SUCCESS, out
    assert out == f"installed package {PACKAGE} 2.0-1 (apt)\n"
    assert (root / "usr/share/doc" / PACKAGE / "version").read_text() == "2.0-1\n"
    before = status_file(root)

    result, out = ensure(tmp_path, root, name=PACKAGE, state="present")
    assert result.status == wire.ST_SUCCESS, out
    assert out == f"package {PACKAGE} 2.0-1 already present; nothing to do\n"
    assert status_file(root) == before


def test_a_version_is_installed_exactly_up_or_down(tmp_path: Path, root: Path) -> None:
    result, out = ensure(tmp_path, root, name=PACKAGE, version="1.0-1")
    assert (result.status, out) == (wire.ST_SUCCESS, f"installed package {PACKAGE} 1.0-1 (apt)\n")
    result, out = ensure(tmp_path, root, name=PACKAGE, version="1.0-1")
    assert out == f"package {PACKAGE} 1.0-1 already present; nothing to do\n"
    result, out = ensure(tmp_path, root, name=PACKAGE, version="2.0-1")
    assert out == f"changed package {PACKAGE} from 1.0-1 to 2.0-1 (apt)\n"
    result, out = ensure(tmp_path, root, name=PACKAGE, version="1.0-1")
    assert out == f"changed package {PACKAGE} from 2.0-1 to 1.0-1 (apt)\n"
    # present without a version: whatever is installed will do
    result, out = ensure(tmp_path, root, name=PACKAGE)
    assert out == f"package {PACKAGE} 1.0-1 already present; nothing to do\n"


def test_absent_removes_then_changes_nothing(tmp_path: Path, root: Path) -> None:
    result, out = ensure(tmp_path, root, name=PACKAGE, state="absent")
    assert out == f"package {PACKAGE} already absent; nothing to do\n"
    ensure(tmp_path, root, name=PACKAGE)
    result, out = ensure(tmp_path, root, name=PACKAGE, state="absent")
    assert (result.status, out) == (wire.ST_SUCCESS, f"removed package {PACKAGE} 2.0-1\n")
    assert not (root / "usr/share/doc" / PACKAGE / "version").exists()
    assert Provider(str(root)).installed(PACKAGE) is None
    before = status_file(root)
    result, out = ensure(tmp_path, root, name=PACKAGE, state="absent")
    assert out == f"package {PACKAGE} already absent; nothing to do\n"
    assert status_file(root) == before


def test_what_apt_cannot_do_fails_the_step_with_apts_reason(tmp_path: Path, root: Path) -> None:
    result, out = ensure(tmp_path, root, name="corral-missing")
    assert result.status == wire.ST_FAILED
    assert "apt-get install corral-missing failed: E: Unable to locate package" in out
    result, out = ensure(tmp_path, root, name=PACKAGE, version="9.9-1")
    assert result.status == wire.ST_FAILED
    assert "E: Version '9.9-1' for 'corral-hello' was not found" in out
    assert Provider(str(root)).installed(PACKAGE) is None


class Refusing:
    """A runner that must not be called: bad input is refused before any tool runs."""

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        raise AssertionError(f"ran {argv}")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"name": "-oDir=/tmp"}, "invalid package name '-oDir=/tmp'"),
        ({"name": "Hello"}, "invalid package name 'Hello'"),
        ({"name": "a"}, "invalid package name 'a'"),
        ({"name": "hello;reboot"}, "invalid package name"),
        ({"name": "hello", "version": "latest"}, "invalid package version 'latest'"),
        ({"name": "hello", "version": "1.0 -y"}, "invalid package version"),
        ({"name": "hello", "state": "purged"}, "state must be present or absent, not 'purged'"),
        ({"name": "hello", "version": "1.0", "state": "absent"}, "version goes with state present"),
        ({"name": 5}, "name must be a string"),
    ],
)
def test_bad_inputs_fail_before_anything_runs(
    tmp_path: Path, inputs: dict[str, Any], message: str
) -> None:
    ctx = context(tmp_path)
    plugin = EnsurePackage(lambda s: Provider("/", timeout=s, run=Refusing()))
    result = plugin.execute(ctx, inputs, {})
    assert result.status == wire.ST_FAILED
    assert message in result.message
    assert "\n" not in result.message


def test_the_provider_refuses_bad_names_itself() -> None:
    provider = Provider("/", run=Refusing())
    with pytest.raises(PackageError, match="invalid package name"):
        provider.installed("--admindir=/x")
    with pytest.raises(PackageError, match="invalid package version"):
        provider.install("ok-name", "$(reboot)")
    with pytest.raises(PackageError, match="invalid package name"):
        provider.remove("../etc")
    with pytest.raises(PackageError, match="invalid package root"):
        Provider("relative/root")


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"name": "hello; rm -rf /"}, "parameters.name"),
        ({"name": "--force-all"}, "parameters.name"),
        ({"name": "hello", "version": "1.0; reboot"}, "parameters.version"),
        ({"name": "hello", "state": "latest"}, "parameters.state"),
    ],
)
def test_the_document_refuses_what_could_inject(params: dict[str, Any], where: str) -> None:
    doc = builtin_documents()["Corral-EnsurePackage"]
    with pytest.raises(DocumentError, match=where):
        resolve_parameters(doc, params)
    assert resolve_parameters(doc, {"name": "libc6", "version": "1:2.36-9+deb12u4~bpo"})


def test_the_registry_picks_apt_here_and_says_when_there_is_none() -> None:
    assert provider_name() == "apt"
    assert package_provider().name == "apt"
    with pytest.raises(PackageError, match="no supported package manager on this node"):
        provider_name(which=lambda tool: None)


def test_a_tool_that_overruns_is_killed_with_its_children(tmp_path: Path) -> None:
    from agent.tools import ToolTimeout, run_tool

    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    with pytest.raises(ToolTimeout, match="sh did not finish within 1 s"):
        run_tool(["sh", "-c", script], {}, 1.0)
    child = int(pid_file.read_text())
    stat_file = Path(f"/proc/{child}/stat")

    def dead() -> bool:  # gone, or a zombie waiting for init to reap it: killed either way
        try:
            return stat_file.read_text().split(") ")[1][0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    # SIGKILL was sent to the group; the kernel ends the child a moment later.
    deadline = time.monotonic() + 10
    while not dead() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead()
