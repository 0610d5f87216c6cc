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
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.patching.base import PACKAGE_NAME, PackageError, check_name, check_version
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.tools import Completed, Runner, ToolTimeout, run_tool

# dpkg's db:Status-Status values that mean "the package is there and configured".
_INSTALLED = frozenset({"installed", "triggers-awaited", "triggers-pending"})
_FORMAT = "${db:Status-Status}\t${Version}\n"
LOCK_WAIT_SECONDS = 300


class Provider:
    name = "apt"

    def __init__(self, root: str = "/", *, timeout: float = 3600.0, run: Runner = run_tool):
        self.root = check_root(root)
        self.timeout = timeout
        self._run = run

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
            if status in _INSTALLED and version:
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

    def _tool(self, argv: list[str], env: Mapping[str, str]) -> Completed:
        try:
            return self._run(argv, env, self.timeout)
        except ToolTimeout as exc:
            raise PackageError(str(exc)) from None
        except OSError as exc:
            raise PackageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None

    def _apt_env(self) -> contextlib.AbstractContextManager[dict[str, str]]:
        return apt_environment(self.root)


def check_root(root: str) -> Path:
    path = Path(root)
    if not path.is_absolute() or any(c in root for c in '"\n\\'):
        raise PackageError(f"invalid package root {root!r}: an absolute path")
    return path


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

# One line per installed (name, arch): dpkg's own fields, tab-separated.
_SCAN_FORMAT = (
    "${Package}\t${Architecture}\t${Version}\t${db:Status-Status}\t${Section}\t${Priority}\n"
)
# Each Packages index apt knows: its local file and its Release file's fields.
_TARGETS_FORMAT = "$(FILENAME)\t$(SUITE)\t$(CODENAME)\t$(ORIGIN)\t$(LABEL)"
# dpkg states that are not "installed" yet leave a package on the node, half done.
_BROKEN = frozenset({"half-installed", "unpacked", "half-configured"})
_REBOOT_FILES = ("var/run/reboot-required", "run/reboot-required")
_REBOOT_PACKAGES = re.compile(r"linux-image-.+|libc6|systemd")
_SECURITY_LABELS = frozenset({"Debian-Security"})
# "Inst name [old] (new Label:Version/archive, Label2/archive2 [arch])", old absent when new.
_INST = re.compile(r"Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*?) ?\[([^\]]*)\]\)")
# apt-get update's lines that mean an index was not fetched or not trusted: fatal here.
_UPDATE_FAILED = ("E:", "W: Failed to fetch", "W: GPG error", "W: Some index files failed")
# A held dpkg lock fails at once, with apt's message; configuration files keep local edits.
_INSTALL_OPTIONS = (
    *("-q", "-y", "-o", "DPkg::Lock::Timeout=0"),
    *("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"),
)
_COMPRESSED = frozenset({".lz4", ".zst", ".gz", ".xz", ".bz2", ".lzma"})
_GENERIC = ("E: Some index files failed", "E: Unable to acquire the dpkg frontend lock")


@dataclass(frozen=True)
class Published:
    """Where one package version is published: a suite and that suite's Release fields."""

    suite: str
    codename: str = ""
    origin: str = ""
    label: str = ""

    @property
    def security(self) -> bool:
        names = (self.suite, self.codename)
        return any(n.endswith("-security") for n in names) or bool(
            {self.origin, self.label} & _SECURITY_LABELS
        )


@dataclass(frozen=True)
class Inst:
    """One package a simulated apt-get run would install or upgrade."""

    name: str
    arch: str
    old: str  # the installed version, "" for a package new to the node
    version: str
    published: tuple[Published, ...]  # the suites publishing ``version``, with their Label


@dataclass
class Stanza:
    """What the repositories say of one (name, arch, version)."""

    section: str = ""
    priority: str = ""
    published: list[Published] = field(default_factory=list)


def parse_simulation(text: str) -> list[Inst]:
    """The ``Inst`` lines of ``apt-get -s`` (install, upgrade, dist-upgrade)."""
    found = []
    for line in text.splitlines():
        match = _INST.match(line)
        if match is None:
            continue
        name, old, version, release, arch = match.groups()
        published = []
        for part in filter(None, (p.strip() for p in release.split(", "))):
            # Label:Version/Archive, Label:Archive, Version/Archive or the site
            label, _, rest = part.partition(":") if ":" in part else ("", "", part)
            published.append(Published(rest.rpartition("/")[2], label=label))
        found.append(Inst(name.partition(":")[0], arch, old or "", version, tuple(published)))
    return found


def parse_installed(text: str) -> tuple[list[Package], list[str]]:
    """dpkg-query ``_SCAN_FORMAT`` lines: the installed packages, and notes on the
    half-installed ones."""
    installed, notes = [], []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or not fields[0]:
            continue
        name, arch, version, status, section, priority = fields
        if status in _BROKEN:
            notes.append(f"{name} {version} is {status} (dpkg --configure -a may finish it)")
        if status not in _INSTALLED:
            continue
        installed.append(
            Package(name, arch, version, section=section, priority=priority.capitalize())
        )
    return installed, notes


def parse_targets(text: str) -> list[tuple[str, Published]]:
    """``apt-get indextargets --format _TARGETS_FORMAT``: (local Packages file, its suite)."""
    found = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 5 and fields[0]:
            found.append((fields[0], Published(*fields[1:])))
    return found


def parse_packages(text: str, wanted: frozenset[str]) -> Iterator[tuple[str, str, str, str, str]]:
    """(name, arch, version, section, priority) of each Packages stanza naming a wanted
    package (the others are skipped after their first line)."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if key == "Package" and value not in wanted:
                break
            if sep and key in ("Package", "Architecture", "Version", "Section", "Priority"):
                fields[key] = value.strip()
        name, version = fields.get("Package"), fields.get("Version")
        if name in wanted and name and version:
            arch = fields.get("Architecture", "")
            yield name, arch, version, fields.get("Section", ""), fields.get("Priority", "")


def apt_failure(out: str, err: str) -> str:
    """The line that says why apt failed: its first specific E: line (with the W: GPG
    error behind a "not signed"), else its first failure warning; "" when none."""
    lines = [ln.strip() for ln in (err + "\n" + out).splitlines()]
    errors = [ln for ln in lines if ln.startswith("E:") and not ln.startswith(_GENERIC)]
    warned = [ln for ln in lines if ln.startswith(_UPDATE_FAILED[1:])]
    said = errors[0] if errors else (warned[0] if warned else "")
    gpg = next((ln for ln in warned if ln.startswith("W: GPG error")), "")
    if gpg and said != gpg:
        said = f"{said} {gpg}"
    if not said and any(ln.startswith("E:") for ln in lines):
        said = next(ln for ln in lines if ln.startswith("E:"))
    return said[:500]


def read_index(path: str) -> str | None:
    """A plain Packages file of apt's lists ("" when absent); None for a compressed one
    (apt's lists may be kept lz4, zst, gz ...: apt-helper cat-file reads those)."""
    if Path(path).suffix in _COMPRESSED:
        return None
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class Patcher:
    """apt as Patch Manager uses it: ``apt-get update`` (the one change a scan makes),
    ``dpkg-query`` for what is installed, ``apt-get -s dist-upgrade`` for each upgradable
    package's candidate, ``apt-get indextargets`` and the lists' Packages files for where
    each version is published (a ``-security`` suite makes it a Security update) and its
    section and priority.  ``install`` runs ``apt-get install name=version ...``, first
    simulated to refuse BLOCKed packages, never waiting for a dpkg lock."""

    name = "apt"

    def __init__(self, root: str = "/", *, timeout: float = 3600.0, run: Runner = run_tool):
        self.root = check_root(root)
        self.timeout = timeout
        self._run = run
        self._seconds = 0.0

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
        updates = [self._update_package(i, index) for i in upgrades]
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=[self._described(p, index) for p in installed],
            updates=updates,
            reboot_required=self._reboot_pending(),
            notes=notes + broken,
            manager_seconds=self._seconds,
        )

    def _update(self, env: Mapping[str, str], options: list[str]) -> list[str]:
        """``apt-get update``; an index not fetched or not trusted fails the scan."""
        argv = ["apt-get", *options, "-q", "-o", "APT::Update::Error-Mode=any", "update"]
        done = self._tool(argv, env)
        lines = done.stderr.splitlines()
        if done.returncode != 0 or any(ln.startswith(_UPDATE_FAILED) for ln in lines):
            raise PackageError(f"apt-get update failed: {self._why(done)}")
        return [ln.strip() for ln in lines if ln.startswith(("W:", "N:"))]

    def _index(
        self, env: Mapping[str, str], options: list[str], names: frozenset[str]
    ) -> dict[tuple[str, str, str], Stanza]:
        """(name, arch, version) -> its section, priority and the suites publishing it."""
        argv = ["apt-get", *options, "indextargets", f"--format={_TARGETS_FORMAT}"]
        done = self._tool([*argv, "Created-By: Packages"], env)
        if done.returncode != 0:
            raise PackageError(f"apt-get indextargets failed: {self._why(done)}")
        index: dict[tuple[str, str, str], Stanza] = {}
        for path, published in parse_targets(done.stdout):
            text = read_index(path)
            if text is None:
                text = self._cat_file(path, env)
            for name, arch, version, section, priority in parse_packages(text, names):
                stanza = index.setdefault((name, arch, version), Stanza(section, priority))
                stanza.published.append(published)
        return index

    def _cat_file(self, path: str, env: Mapping[str, str]) -> str:
        done = self._tool(["/usr/lib/apt/apt-helper", "cat-file", path], env)
        if done.returncode != 0:
            raise PackageError(f"apt-helper cat-file {path} failed: {done.reason()}")
        return done.stdout

    @staticmethod
    def _described(package: Package, index: dict[tuple[str, str, str], Stanza]) -> Package:
        """An installed package with what the repositories say of its version."""
        stanza = index.get((package.name, package.arch, package.version))
        if stanza is None or not stanza.published:
            return package
        secure = [p for p in stanza.published if p.security]
        return replace(
            package,
            repository=(secure or stanza.published)[0].suite,
            security=bool(secure),
            classification="Security" if secure else "",
            section=package.section or stanza.section,
            priority=package.priority or stanza.priority.capitalize(),
        )

    @staticmethod
    def _update_package(inst: Inst, index: dict[tuple[str, str, str], Stanza]) -> Package:
        stanza = index.get((inst.name, inst.arch, inst.version))
        if stanza is not None and stanza.published:
            published = stanza.published
        else:  # not in an index we could read: what the simulation said
            published, stanza = list(inst.published), Stanza()
        secure = [p for p in published if p.security]
        return Package(
            inst.name,
            inst.arch,
            inst.version,
            classification="Security" if secure else "",
            repository=(secure or published)[0].suite if published else "",
            section=stanza.section,
            priority=stanza.priority.capitalize(),
            security=bool(secure),
        )

    def _installed(self, env: Mapping[str, str]) -> tuple[list[Package], list[str]]:
        admindir = self.root / "var/lib/dpkg"
        done = self._tool(["dpkg-query", f"--admindir={admindir}", "-W", f"-f={_SCAN_FORMAT}"], env)
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
            pulled = self._simulate(targets, env, options)
            refused = [i for i in pulled if {i.name, f"{i.name}.{i.arch}"} & set(blocked)]
            if refused:
                raise PackageError(self._blocked(refused, updates, env, options))
            argv = ["apt-get", *options, *_INSTALL_OPTIONS, "install", "--", *targets]
            done = self._tool(argv, env)
            after = {p.key: p for p in self._installed(env)[0]}
        changed = [p for k, p in after.items() if before.get(k, Package("")).version != p.version]
        if done.returncode != 0:
            what = ", ".join(f"{p.name} {p.version}" for p in changed)
            half = f"; changed before it failed: {what}" if what else ""
            raise PackageError(f"apt-get install failed: {self._why(done)}{half}")
        return self._outcome(updates, changed, pulled)

    def _simulate(
        self, targets: list[str], env: Mapping[str, str], options: list[str]
    ) -> list[Inst]:
        argv = ["apt-get", *options, *_INSTALL_OPTIONS, "-s", "install", "--", *targets]
        done = self._tool(argv, env)
        if done.returncode != 0:
            raise PackageError(f"apt-get install failed: {self._why(done)}")
        return parse_simulation(done.stdout)

    def _blocked(
        self,
        refused: list[Inst],
        updates: Sequence[Package],
        env: Mapping[str, str],
        options: list[str],
    ) -> str:
        """ "X is rejected ... and Y needs it": each requested update simulated alone."""
        asked = {u.name for u in updates}
        said = []
        alone = [(u.name, self._simulate([self._target(u)], env, options)) for u in updates]
        for name in dict.fromkeys(i.name for i in refused):
            needers = [u for u, pulled in alone if u != name and name in {i.name for i in pulled}]
            if name in asked:
                why = "the install asked for it"
            elif needers:
                why = f"{', '.join(needers)} {'need' if len(needers) > 1 else 'needs'} it"
            else:
                why = f"{', '.join(sorted(asked))} together need it"
            said.append(f"{name} is rejected (RejectedPatchesAction BLOCK) and {why}")
        return "; ".join(said) + "; nothing was installed"

    def _outcome(
        self, updates: Sequence[Package], changed: list[Package], pulled: list[Inst]
    ) -> InstallOutcome:
        arch = {p.name: p.arch for p in changed}  # an update may name no arch
        asked = {(p.name, p.arch or arch.get(p.name, "")): p for p in updates}
        by_name = {i.name: i for i in pulled}
        now = {(p.name, p.arch): p for p in changed}
        installed = []
        for package in changed:
            update = asked.get((package.name, package.arch))
            if update is not None and update.version == package.version:
                installed.append(update)
                continue
            inst = by_name.get(package.name)
            secure = inst is not None and any(p.security for p in inst.published)
            installed.append(
                replace(
                    package,
                    security=secure,
                    classification="Security" if secure else "",
                    repository=inst.published[0].suite if inst and inst.published else "",
                )
            )
        failed = {}
        for key, update in asked.items():
            got = now.get(key)
            if got is None or got.version != update.version:
                state = f"at {got.version}" if got else "unchanged"
                failed[update.key] = (
                    f"apt-get install ended with {update.name} {state}, not {update.version}"
                )
        reboot = self._reboot_pending() or any(_REBOOT_PACKAGES.fullmatch(p.name) for p in changed)
        return InstallOutcome(installed=installed, failed=failed, reboot_required=reboot)

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

    def _tool(self, argv: list[str], env: Mapping[str, str]) -> Completed:
        started = time.monotonic()
        try:
            return self._run(argv, env, self.timeout)
        except ToolTimeout as exc:
            raise PackageError(str(exc)) from None
        except OSError as exc:
            raise PackageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        finally:
            self._seconds += time.monotonic() - started
