"""dnf (RHEL 8+, Fedora, Rocky, Alma, Oracle Linux, Amazon Linux 2023) and yum where yum is
dnf (RHEL/CentOS 8+: the same command line, run as ``yum``): Patch Manager's scan and
install.  yum 3 (Amazon Linux 2, CentOS 7) has no ``repoquery``/``updateinfo`` commands
and is not handled here.

Versions are written ``[epoch:]version-release``, the epoch only when it is not 0, as rpm's
``%|EPOCH?{%{EPOCH}:}:{}|`` and dnf's own NEVRAs write them (``2.0-1``, ``1:1.1-1``); with
the key ``name.arch`` that is AWS's ``name-epoch:version-release.arch`` RHEL name format.

Scan: ``dnf makecache --refresh`` (the metadata cache: the only thing a scan changes), then
from the cache (``-C``): installed packages from ``rpm -qa --qf`` (a machine format),
updates from ``dnf repoquery --upgrades --latest-limit 1 --qf`` (fields split by control
characters), their advisories from ``dnf updateinfo list --updates`` (advisory id, type,
NEVRA columns) and the advisories' metadata from ``dnf updateinfo info --all ID...``
(``Key: value`` blocks: the one human format read here).  Installed packages get the
advisories that name their exact version (``updateinfo list --installed``).  An advisory's
type gives the classification (security -> Security, bugfix -> Bugfix, enhancement ->
Enhancement, newpackage -> Newpackage), its severity as written, its date the release time:
dnf shows the advisory's ``updated`` date when the repository writes one, else ``issued``
(dnf 4 offers no other); dates are read with TZ=UTC.  Several advisories for one update
(intermediate versions): the most urgent gives the metadata, all are advisories.  An update
no advisory covers has classification "".  reboot_required: ``dnf needs-restarting -r``
(dnf-plugins-core) on ``/``; without the plugin, a kernel installed after the newest one is
not the running one; never for another root.  dnf_output.py parses these outputs (rpm_db.py
rpm's).

Install: ``dnf install name-[epoch:]version-release.arch ...`` (never ``upgrade`` of all),
without weak dependencies, ``--exclude=NAME`` for each blocked name so dnf's solver refuses
a transaction that needs one; the refusal becomes "X is rejected ... and Y needs it".

Every call: ``--setopt=exit_on_lock=True`` (dnf 4 otherwise waits for another dnf's lock
forever; with it dnf stops at once: "RPMDB already locked by PID"; an ``rpm`` transaction
holding rpm's own database lock is waited for, bounded by ``timeout``) and
``skip_if_unavailable=False`` for every repository, so an unreachable one fails the call
with dnf's message instead of being skipped silently.  A baseline's sources (``.repo``
text) are written to a temporary directory added to ``reposdir`` for that call only.

``root`` other than ``/`` is passed as ``dnf --installroot`` and ``rpm --root``: both find
the rpm database by rpm's ``%_dbpath`` inside the root, and dnf reads the root's
etc/dnf/dnf.conf and etc/yum.repos.d.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.patching import rpm_db
from agent.patching.base import PackageError, blocked_by
from agent.patching.dnf_output import (
    REPOQUERY,
    Advisory,
    blocked_reason,
    dnf_error,
    parse_updateinfo_info,
    parse_updateinfo_list,
    parse_upgrades,
    with_advisories,
)
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.patching.tools import ToolUser, check
from agent.tools import Completed

# rpm names and versions as dnf is given them (argv, never a shell; no leading "-", no globs).
_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")
# A BLOCK baseline's RejectedPatches entry: a name, or name-version-release.arch, with globs.
_BLOCKED = re.compile(r"[A-Za-z0-9_+*][A-Za-z0-9_.+*:~^-]*")
_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9_.+~^]+-[A-Za-z0-9_.+~^]+")
_ARCH = re.compile(r"[A-Za-z0-9_]*")
_KERNELS = frozenset({"kernel", "kernel-core", "kernel-uek", "kernel-uek-core", "kernel-rt"})
_REBOOT_NAMES = re.compile(r"kernel(-.*)?|glibc|systemd|dbus(-.*)?|linux-firmware|openssl-libs")
_DEFAULT_REPOSDIRS = ("/etc/yum.repos.d", "/etc/yum/repos.d", "/etc/distro.repos.d")


def repo_dirs(config_text: str) -> list[str]:
    """The ``reposdir`` of a dnf.conf/yum.conf ``[main]`` (dnf's defaults when unset)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    with contextlib.suppress(configparser.Error):
        parser.read_string(config_text)
    value = parser.get("main", "reposdir", fallback="")
    dirs = [d for d in re.split(r"[,\s]+", value) if d]
    return dirs or list(_DEFAULT_REPOSDIRS)


def check_source(source: Source) -> str:
    """A source's ``.repo`` text, refused unless it is INI with a repository section."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(source.configuration)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise PackageError(f"source {source.name!r} is not a .repo file: {first}") from None
    if not parser.sections():
        raise PackageError(f"source {source.name!r} is not a .repo file: no [repository] section")
    return source.configuration


class Patcher(ToolUser):
    name = "dnf"
    tool = "dnf"
    config_files: tuple[str, ...] = ("etc/dnf/dnf.conf",)
    root_refuses = "\n,"  # a comma would split the root's reposdir list
    tool_env = {"TZ": "UTC"}

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        with self._reposdir(sources) as extra:
            self._dnf([*extra, "makecache", "--refresh"], "makecache")
            installed = self.installed()
            cached = [*extra, "-C"]
            query = ["repoquery", "--upgrades", "--latest-limit", "1", "--qf", REPOQUERY]
            updates = parse_upgrades(self._dnf([*cached, *query], "repoquery").stdout)
            listing = ["updateinfo", "list"]
            pending = parse_updateinfo_list(
                self._dnf([*cached, *listing, "--updates"], "updateinfo list").stdout
            )
            present = parse_updateinfo_list(
                self._dnf([*cached, *listing, "--installed"], "updateinfo list").stdout
            )
            versions = {(p.name, p.arch, p.version) for p in installed}
            present = [row for row in present if row[1:] in versions]
            ids = list(dict.fromkeys(row[0] for row in [*pending, *present]))
            info = self._advisories(cached, ids)
        by_update: dict[tuple[str, str], list[Advisory]] = {}
        for ident, name, arch, _version in pending:
            if ident in info:
                by_update.setdefault((name, arch), []).append(info[ident])
        by_installed: dict[tuple[str, str, str], list[Advisory]] = {}
        for ident, name, arch, version in present:
            if ident in info:
                by_installed.setdefault((name, arch, version), []).append(info[ident])
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=[
                with_advisories(p, by_installed.get((p.name, p.arch, p.version), []))
                for p in installed
            ],
            updates=[with_advisories(u, by_update.get((u.name, u.arch), [])) for u in updates],
            reboot_required=self._reboot_required(installed),
            manager_seconds=self._seconds,
        )

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        self._seconds = 0.0
        blocked = [check(_BLOCKED, b, "rejected patch") for b in dict.fromkeys(blocked)]
        targets = [_target(u) for u in updates]
        refused = [u.name for u in updates if blocked_by(u.name, blocked)]
        if refused:
            raise PackageError(f"{refused[0]} is rejected (RejectedPatchesAction BLOCK)")
        if not targets:
            return InstallOutcome(installed=[])
        before = {p.key: p.version for p in self.installed()}
        excludes = [f"--exclude={b}" for b in blocked]
        with self._reposdir(sources) as extra:
            argv = [*extra, *excludes, "--setopt=install_weak_deps=False", "install", "--"]
            done = self._tool(self._base([*argv, *targets]))
        if done.returncode != 0:
            message = dnf_error(done)
            reason = blocked_reason(message, blocked) if blocked else None
            raise PackageError(reason or f"{self.tool} install failed: {message}")
        after = self.installed()
        changed = [p for p in after if before.get(p.key) != p.version]
        now = {p.key: p.version for p in after}
        failed = {
            u.key: f"{self.tool} left {u.name} at {now.get(u.key) or 'not installed'}, "
            f"not {u.version}"
            for u in updates
            if now.get(u.key) != u.version
        }
        reboot = any(_REBOOT_NAMES.fullmatch(p.name) for p in changed)
        reboot = reboot or self._reboot_required(after)
        return InstallOutcome(installed=changed, failed=failed, reboot_required=reboot)

    # --- reading the node ----------------------------------------------------------------

    def installed(self) -> list[Package]:
        return rpm_db.installed(self._tool, self.root)

    def _advisories(self, cached: list[str], ids: list[str]) -> dict[str, Advisory]:
        if not ids:
            return {}
        argv = [*cached, "updateinfo", "info", "--all", "--", *ids]
        return parse_updateinfo_info(self._dnf(argv, "updateinfo info").stdout)

    def _reboot_required(self, installed: Sequence[Package]) -> bool:
        if self.root != Path("/"):
            return False  # another tree: its kernel is not the one running
        done = self._tool(self._base(["-C", "needs-restarting", "-r"]))
        said = done.stdout + done.stderr
        if "No such command" not in said:  # the plugin answered (exit 1: reboot needed)
            return done.returncode == 1 and "Reboot is required" in said
        kernels = [p for p in installed if p.name in _KERNELS and p.installed_time]
        if not kernels:
            return False
        newest = max(kernels, key=lambda p: p.installed_time or 0.0)
        running = os.uname().release
        return running != f"{newest.version.partition(':')[2] or newest.version}.{newest.arch}"

    # --- running dnf ---------------------------------------------------------------------

    def _base(self, args: list[str]) -> list[str]:
        root = [] if self.root == Path("/") else [f"--installroot={self.root}"]
        options = ["-y", "-q", "--setopt=exit_on_lock=True"]
        options += ["--setopt=skip_if_unavailable=False", "--setopt=*.skip_if_unavailable=False"]
        return [self.tool, *root, *options, *args]

    @contextlib.contextmanager
    def _reposdir(self, sources: Sequence[Source]) -> Iterator[list[str]]:
        """``--setopt=reposdir=`` the node's repository directories plus a temporary one
        holding ``sources`` (removed after); no option without sources."""
        texts = [check_source(s) for s in sources]
        if not texts:
            yield []
            return
        config = ""
        for relative in self.config_files:
            with contextlib.suppress(OSError):
                config = (self.root / relative).read_text(encoding="utf-8", errors="replace")
                break
        dirs = [str(self.root / d.lstrip("/")) for d in repo_dirs(config)]
        temp = tempfile.mkdtemp(prefix="corral-repos-")
        try:
            for i, text in enumerate(texts):
                Path(temp, f"corral-source-{i}.repo").write_text(text, encoding="utf-8")
            yield [f"--setopt=reposdir={','.join([*dirs, temp])}"]
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _dnf(self, args: list[str], what: str) -> Completed:
        done = self._tool(self._base(args))
        if done.returncode != 0:
            raise PackageError(f"{self.tool} {what} failed: {dnf_error(done)}")
        return done


class YumPatcher(Patcher):
    """yum where it is dnf (RHEL/CentOS 8+: ``/usr/bin/yum`` -> dnf-3): the same commands."""

    name = "yum"
    tool = "yum"
    config_files = ("etc/yum.conf", "etc/dnf/dnf.conf")


def _target(update: Package) -> str:
    """``name-[epoch:]version-release.arch`` as dnf matches a NEVRA."""
    name = check(_NAME, update.name, "package name")
    version = check(_VERSION, update.version, "package version")
    arch = check(_ARCH, update.arch, "architecture")
    return f"{name}-{version}.{arch}" if arch else f"{name}-{version}"
