"""apt/dpkg (Debian, Ubuntu): ``dpkg-query -W -f=...`` to read what is installed (a machine
format, one ``status<TAB>version`` line per architecture), ``apt-get`` to install and remove
(:class:`Provider`, corral:ensurePackage), and to scan for and install updates
(:class:`Patcher`, Patch Manager).

``root`` other than ``/`` manages the packages of another tree (an image, a chroot, a test's
throw-away root): apt is given its own configuration (``APT_CONFIG``, so none of this host's
``/etc/apt`` is read) with ``Dir`` = root, and dpkg ``--root`` and a log file inside it.  The
tree needs etc/apt/sources.list, var/lib/dpkg/{status,info,updates},
var/lib/apt/lists/partial and var/cache/apt/archives/partial; maintainer scripts run chrooted
into it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from agent.patching.apt_output import (
    INSTALLED,
    SCAN_FORMAT,
    TARGETS_FORMAT,
    UPDATE_FAILED,
    Index,
    Inst,
    add_to_index,
    apt_failure,
    blocked_reason,
    described,
    install_result,
    parse_installed,
    parse_removals,
    parse_simulation,
    parse_targets,
    read_index,
    update_package,
)
from agent.patching.base import (
    PACKAGE_NAME,
    PackageError,
    blocked_by,
    check_name,
    check_version,
)
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.patching.tools import ToolUser
from agent.tools import Completed

_FORMAT = "${db:Status-Status}\t${Version}\n"
LOCK_WAIT_SECONDS = 300
# A root is written into APT_CONFIG's quoted strings: no quote, backslash or line break.
_ROOT_REFUSES = '"\n\\'


class Provider(ToolUser):
    name = "apt"
    root_refuses = _ROOT_REFUSES

    @property
    def _admindir(self) -> Path:
        return self.root / "var/lib/dpkg"

    def installed(self, package: str) -> str | None:
        check_name(package)
        argv = ["dpkg-query", f"--admindir={self._admindir}", "-W", f"-f={_FORMAT}", "--"]
        done = self._tool([*argv, package], {})
        if done.returncode == 1 and "no packages found" in done.stderr:
            return None
        if done.returncode != 0:
            raise PackageError(f"dpkg-query {package} failed: {done.reason()}")
        for line in done.stdout.splitlines():
            status, _, version = line.partition("\t")
            if status in INSTALLED and version:
                return version
        return None

    def install(self, package: str, version: str | None) -> None:
        check_name(package)
        target = package if version is None else f"{package}={check_version(version)}"
        with self._apt_env() as env:
            self._apt(["update"], env, "apt-get update")
            self._apt(
                ["install", "--allow-downgrades", "--", target], env, f"apt-get install {target}"
            )
        now = self.installed(package)
        if now is None or (version is not None and now != version):
            raise PackageError(
                f"apt-get install {target} ended, but {package} is "
                f"{'not installed' if now is None else 'at ' + now}"
            )

    def remove(self, package: str) -> None:
        check_name(package)
        with self._apt_env() as env:
            self._apt(["remove", "--", package], env, f"apt-get remove {package}")
        if self.installed(package) is not None:
            raise PackageError(f"apt-get remove {package} ended, but it is still installed")

    def _apt(self, args: list[str], env: Mapping[str, str], what: str) -> None:
        options = ["-q", "-y", "-o", "Dpkg::Options::=--force-confdef"]
        options += ["-o", "Dpkg::Options::=--force-confold"]
        # Wait for the dpkg lock (unattended-upgrades, another apt) rather than fail at once.
        options += ["-o", f"DPkg::Lock::Timeout={int(min(self.timeout, LOCK_WAIT_SECONDS))}"]
        done = self._tool(["apt-get", *options, *args], env)
        if done.returncode != 0:
            raise PackageError(f"{what} failed: {done.reason()}")

    def _apt_env(self) -> contextlib.AbstractContextManager[dict[str, str]]:
        return apt_environment(self.root)


@contextlib.contextmanager
def apt_environment(root: Path) -> Iterator[dict[str, str]]:
    """The environment apt-get runs in: non-interactive, and for a ``root`` other than ``/``
    an APT_CONFIG (a temporary file, removed after) with ``Dir`` = root and dpkg's --root."""
    env = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
    if root == Path("/"):
        yield env
        return
    text = (
        f'Dir "{root}/";\nDPkg::Options {{ "--root={root}"; "--log={root}/var/log/dpkg.log"; }};\n'
    )
    fd, name = tempfile.mkstemp(prefix="corral-apt-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        yield {**env, "APT_CONFIG": name}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


# --- Patch Manager -------------------------------------------------------------------------

_REBOOT_FILES = ("var/run/reboot-required", "run/reboot-required")
_REBOOT_PACKAGES = re.compile(r"linux-image-.+|libc6|systemd")
# Nothing retried behind the user's back: a failed download fails at once, with apt's message.
_NO_RETRIES = ("-o", "Acquire::Retries=0")
# A held dpkg lock fails at once, with apt's message; configuration files keep local edits.
_INSTALL_OPTIONS = (
    *("-q", "-y", "-o", "DPkg::Lock::Timeout=0", *_NO_RETRIES),
    *("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"),
)


class Patcher(ToolUser):
    """apt as Patch Manager uses it: ``apt-get update`` (the one change a scan makes),
    ``dpkg-query`` for what is installed, ``apt-get -s dist-upgrade`` for each upgradable
    package's candidate, ``apt-get indextargets`` and the lists' Packages files for where
    each version is published (a ``-security`` suite makes it a Security update) and its
    section and priority.  ``install`` runs ``apt-get install name=version ...``, first
    simulated to refuse BLOCKed packages and any removal, never waiting for a dpkg lock
    nor retrying a download."""

    name = "apt"
    root_refuses = _ROOT_REFUSES

    # -- scan --

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        with self._session(sources) as (env, options):
            notes = self._update(env, options)
            installed, broken = self._installed(env)
            done = self._tool(["apt-get", *options, "-s", "-q", "dist-upgrade"], env)
            if done.returncode != 0:
                raise PackageError(f"apt-get -s dist-upgrade failed: {self._why(done)}")
            upgrades = [i for i in parse_simulation(done.stdout) if i.old]
            names = frozenset(p.name for p in installed) | {i.name for i in upgrades}
            index = self._index(env, options, names)
        updates = [update_package(i, index) for i in upgrades]
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=[described(p, index) for p in installed],
            updates=updates,
            reboot_required=self._reboot_pending(),
            notes=notes + broken,
            manager_seconds=self._seconds,
        )

    def _update(self, env: Mapping[str, str], options: list[str]) -> list[str]:
        """``apt-get update``; an index not fetched or not trusted fails the scan."""
        argv = ["apt-get", *options, "-q", *_NO_RETRIES, "-o", "APT::Update::Error-Mode=any"]
        done = self._tool([*argv, "update"], env)
        lines = done.stderr.splitlines()
        if done.returncode != 0 or any(ln.startswith(UPDATE_FAILED) for ln in lines):
            raise PackageError(f"apt-get update failed: {self._why(done)}")
        return [ln.strip() for ln in lines if ln.startswith(("W:", "N:"))]

    def _index(self, env: Mapping[str, str], options: list[str], names: frozenset[str]) -> Index:
        """(name, arch, version) -> its section, priority and the suites publishing it."""
        argv = ["apt-get", *options, "indextargets", f"--format={TARGETS_FORMAT}"]
        done = self._tool([*argv, "Created-By: Packages"], env)
        if done.returncode != 0:
            raise PackageError(f"apt-get indextargets failed: {self._why(done)}")
        index: Index = {}
        for path, published in parse_targets(done.stdout):
            text = read_index(path)
            add_to_index(
                index, self._cat_file(path, env) if text is None else text, published, names
            )
        return index

    def _cat_file(self, path: str, env: Mapping[str, str]) -> str:
        done = self._tool(["/usr/lib/apt/apt-helper", "cat-file", path], env)
        if done.returncode != 0:
            raise PackageError(f"apt-helper cat-file {path} failed: {done.reason()}")
        return done.stdout

    def _installed(self, env: Mapping[str, str]) -> tuple[list[Package], list[str]]:
        admindir = self.root / "var/lib/dpkg"
        done = self._tool(["dpkg-query", f"--admindir={admindir}", "-W", f"-f={SCAN_FORMAT}"], env)
        if done.returncode != 0:
            raise PackageError(f"dpkg-query failed: {done.reason()}")
        installed, notes = parse_installed(done.stdout)
        return [replace(p, installed_time=self._installed_time(p)) for p in installed], notes

    def _installed_time(self, package: Package) -> float | None:
        info = self.root / "var/lib/dpkg/info"
        for name in (f"{package.name}:{package.arch}.list", f"{package.name}.list"):
            with contextlib.suppress(OSError):
                return (info / name).stat().st_mtime
        return None

    def _reboot_pending(self) -> bool:
        return any((self.root / f).exists() for f in _REBOOT_FILES)

    # -- install --

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        if not updates:
            return InstallOutcome(installed=[])
        targets = [self._target(p) for p in updates]
        self._seconds = 0.0
        with self._session(sources) as (env, options):
            before = {p.key: p for p in self._installed(env)[0]}
            pulled, removed = self._simulate(targets, env, options)
            refused = [
                i
                for i in pulled
                if blocked_by(i.name, blocked) or blocked_by(f"{i.name}.{i.arch}", blocked)
            ]
            if refused:
                raise PackageError(self._blocked(refused, updates, env, options))
            if removed:  # apt's -y would go ahead: approved updates never remove a package
                asked = ", ".join(f"{p.name} {p.version}" for p in updates)
                raise PackageError(
                    f"installing {asked} would remove {', '.join(removed)}: "
                    "refused (nothing was installed)"
                )
            argv = ["apt-get", *options, *_INSTALL_OPTIONS, "install", "--", *targets]
            done = self._tool(argv, env)
            after = {p.key: p for p in self._installed(env)[0]}
        changed = [p for k, p in after.items() if before.get(k, Package("")).version != p.version]
        if done.returncode != 0:
            what = ", ".join(f"{p.name} {p.version}" for p in changed)
            half = f"; changed before it failed: {what}" if what else ""
            raise PackageError(f"apt-get install failed: {self._why(done)}{half}")
        installed, failed = install_result(updates, changed, pulled)
        reboot = self._reboot_pending() or any(_REBOOT_PACKAGES.fullmatch(p.name) for p in changed)
        return InstallOutcome(installed=installed, failed=failed, reboot_required=reboot)

    def _simulate(
        self, targets: list[str], env: Mapping[str, str], options: list[str]
    ) -> tuple[list[Inst], list[str]]:
        """What ``apt-get install targets`` would install, and remove."""
        argv = ["apt-get", *options, *_INSTALL_OPTIONS, "-s", "install", "--", *targets]
        done = self._tool(argv, env)
        if done.returncode != 0:
            raise PackageError(f"apt-get install failed: {self._why(done)}")
        return parse_simulation(done.stdout), parse_removals(done.stdout)

    def _blocked(
        self,
        refused: list[Inst],
        updates: Sequence[Package],
        env: Mapping[str, str],
        options: list[str],
    ) -> str:
        """ "X is rejected ... and Y needs it": each requested update simulated alone."""
        alone = [(u.name, self._simulate([self._target(u)], env, options)[0]) for u in updates]
        return blocked_reason(refused, alone)

    @staticmethod
    def _target(package: Package) -> str:
        name, version = check_name(package.name), check_version(package.version)
        if package.arch and package.arch != "all":
            if not PACKAGE_NAME.fullmatch(package.arch):
                raise PackageError(f"invalid architecture {package.arch[:40]!r} of {name}")
            return f"{name}:{package.arch}={version}"
        return f"{name}={version}"

    # -- running apt --

    @contextlib.contextmanager
    def _session(self, sources: Sequence[Source]) -> Iterator[tuple[dict[str, str], list[str]]]:
        """apt's environment, and the options that add ``sources`` for this call only: a
        temporary sources.list.d holding links to the root's own files and one more."""
        with apt_environment(self.root) as env:
            texts = [s.configuration.strip() + "\n" for s in sources if s.configuration.strip()]
            if not texts:
                yield env, []
                return
            with tempfile.TemporaryDirectory(prefix="corral-apt-sources-") as tmp:
                parts = Path(tmp)
                own = self.root / "etc/apt/sources.list.d"
                for entry in sorted(own.glob("*")) if own.is_dir() else ():
                    if entry.suffix in (".list", ".sources"):
                        (parts / entry.name).symlink_to(entry)
                for n, text in enumerate(texts):  # one-line or deb822 (Types: deb ...) format
                    deb822 = any(ln.startswith("Types:") for ln in text.splitlines())
                    (parts / f"zz-corral-patch-{n}.{'sources' if deb822 else 'list'}").write_text(
                        text
                    )
                yield env, ["-o", f"Dir::Etc::sourceparts={parts}"]

    def _why(self, done: Completed) -> str:
        said = apt_failure(done.stdout, done.stderr)
        return f"{said} (exit {done.returncode})" if said else done.reason()
