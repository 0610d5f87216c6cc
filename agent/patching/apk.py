"""apk (Alpine Linux) as Patch Manager uses it.

Scan: ``apk update`` (refreshes the index cache, the only change), ``apk list --installed``
and ``apk list --upgradable`` (``name-version arch {origin} (license) [installed]`` /
``[upgradable from: name-oldversion]``: unlike ``apk version -l '<'`` or ``apk info -v`` they
carry the architecture).  apk has no security metadata: classification and severity are ""
(docs/patching.md: only rules that do not filter on them approve apk updates).  release_time
is the package's build time, the ``t:`` field of the APKINDEX files in apk's cache
(``var/cache/apk/APKINDEX.*.tar.gz``, or ``etc/apk/cache``) and of ``lib/apk/db/installed``;
repository is the index's URL as ``apk update`` prints it beside the index's description.

Install: ``apk upgrade NAME...`` upgrades exactly the named packages (and what they need)
without touching ``/etc/apk/world``; ``apk add --upgrade NAME=VERSION`` would write each name
into world pinned at that version (later upgrades would keep it there) and mark dependencies
as explicitly wanted.  So ``apk upgrade --simulate NAME...`` runs first: it must upgrade each
named package to exactly its approved version (else that package goes in ``failed`` and the
rest is simulated again) and no BLOCKed name (else PackageError, nothing installed).  A
package that is a kernel (``linux-lts``, ``linux-virt`` ...) asks for a reboot.  apk never
waits for its lock: "Unable to lock database" comes back at once as PackageError.

Alpine's apk cannot run on this project's Debian machines (Debian 12 has no apk-tools, and
building an index needs abuild's signing), so the tests replay output recorded from apk-tools
2.14 (tests/fixtures/patching/apk/) through the ``run`` seam: the agreed fallback.
"""

from __future__ import annotations

import contextlib
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.patching.base import PackageError
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.patching.tools import ToolUser, check
from agent.tools import Completed

# apk package names: letters, digits and + _ . - (never a leading "-": no option injection).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+_.-]*")
# apk versions: 1.2.3, 1.2.4_git20230717, 3.1.4-r5, 1.0_rc1-r0 ...
VERSION = re.compile(r"[0-9][A-Za-z0-9+_.~]*(?:-r[0-9]+)?")
# "busybox-1.36.1-r19 x86_64 {busybox} (GPL-2.0-only) [upgradable from: busybox-1.36.1-r15]"
_LIST = re.compile(r"^(?P<pkg>\S+) (?P<arch>\S+) \{[^}]*\} \(.*\) \[(?P<state>[^]]*)\]$")
_NAME_VERSION = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-r[0-9]+)$")
# "(2/3) Upgrading libssl3 (3.1.4-r2 -> 3.1.4-r5)", "(1/3) Installing newdep (1.0-r0)"
_CHANGE = re.compile(r"^\(\d+/\d+\) (?P<what>[A-Z][\w ]*?) (?P<name>\S+) \((?P<versions>[^)]*)\)$")
# "v3.19.1-390-g8a7b8b5b2c2 [https://dl-cdn.alpinelinux.org/alpine/v3.19/main]"
_REPOSITORY = re.compile(r"^(?P<description>\S+) \[(?P<url>[^]]+)\]$")
KERNELS = re.compile(r"linux-(lts|virt|edge|stable|rpi[0-9]*)")
_CACHES = ("var/cache/apk", "etc/apk/cache")
_INSTALLED_DB = "lib/apk/db/installed"


@dataclass(frozen=True)
class _Change:
    what: str  # Upgrading, Installing, Downgrading, Replacing, Purging ...
    old: str
    new: str


class Patcher(ToolUser):
    name = "apk"
    root_refuses = ""

    # scan ------------------------------------------------------------------------------

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        repositories = self._update(sources)
        times = _build_times(self._indexes(), repositories)
        installed_times = _build_times([self.root / _INSTALLED_DB], {})
        installed = [
            _package(name, version, arch, installed_times)
            for name, version, arch, _ in self._list("--installed", sources)
        ]
        updates = [
            _package(name, version, arch, times)
            for name, version, arch, _ in self._list("--upgradable", sources)
        ]
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=installed,
            updates=updates,
            manager_seconds=self._seconds,
        )

    def _update(self, sources: Sequence[Source]) -> dict[str, str]:
        """``apk update``: index description -> repository URL."""
        done = self._apk(["update"], sources)
        if done.returncode != 0:
            raise PackageError(f"apk update failed: {_said(done)}")
        found: dict[str, str] = {}
        for line in done.stdout.splitlines():
            match = _REPOSITORY.match(line.strip())
            if match:
                found[match["description"]] = match["url"]
        return found

    def _list(self, which: str, sources: Sequence[Source]) -> list[tuple[str, str, str, str]]:
        """``apk list WHICH``: (name, version, arch, what was installed before) per line."""
        done = self._apk(["list", which], sources)
        if done.returncode != 0:
            raise PackageError(f"apk list {which} failed: {_said(done)}")
        found = []
        for line in done.stdout.splitlines():
            match = _LIST.match(line.strip())
            split = _NAME_VERSION.match(match["pkg"]) if match else None
            if match is None or split is None:
                continue
            before = match["state"].removeprefix("upgradable from: ")
            old = _NAME_VERSION.match(before)
            found.append(
                (split["name"], split["version"], match["arch"], old["version"] if old else "")
            )
        return found

    def _indexes(self) -> list[Path]:
        found: list[Path] = []
        for cache in _CACHES:
            with contextlib.suppress(OSError):
                found += sorted((self.root / cache).glob("APKINDEX.*.tar.gz"))
        return found

    # install ---------------------------------------------------------------------------

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        self._seconds = 0.0
        wanted = {check(NAME, u.name, "apk package name"): u for u in updates}
        for update in updates:
            check(VERSION, update.version, "apk package version")
        failed: dict[str, str] = {}
        changes: dict[str, _Change] = {}
        while wanted:
            changes = self._simulate(list(wanted), sources)
            self._refuse_blocked(changes, list(wanted), blocked, sources)
            wrong = {
                name: _mismatch(update, changes.get(name))
                for name, update in wanted.items()
                if _mismatch(update, changes.get(name))
            }
            if not wrong:
                break
            for name, reason in wrong.items():
                failed[wanted.pop(name).key] = reason
        if not wanted:
            return InstallOutcome(installed=[], failed=failed)
        before = {(n, a): v for n, v, a, _ in self._list("--installed", sources)}
        done = self._apk(["upgrade", *wanted], sources)
        if done.returncode != 0:
            raise PackageError(f"apk upgrade {' '.join(wanted)} failed: {_said(done)}")
        after = self._list("--installed", sources)
        changed = [
            Package(name=n, arch=a, version=v) for n, v, a, _ in after if before.get((n, a)) != v
        ]
        now = {n: v for n, v, _, _ in after}
        for name, update in wanted.items():
            if now.get(name) != update.version:
                failed[update.key] = (
                    f"apk upgrade ended, but {name} is at {now.get(name) or 'nothing'}, "
                    f"not {update.version}"
                )
        return InstallOutcome(
            installed=changed,
            failed=failed,
            reboot_required=any(KERNELS.fullmatch(p.name) for p in changed),
        )

    def _simulate(self, names: list[str], sources: Sequence[Source]) -> dict[str, _Change]:
        done = self._apk(["upgrade", "--simulate", *names], sources)
        if done.returncode != 0:
            raise PackageError(f"apk upgrade --simulate {' '.join(names)} failed: {_said(done)}")
        return _changes(done.stdout)

    def _refuse_blocked(
        self,
        changes: dict[str, _Change],
        names: list[str],
        blocked: Sequence[str],
        sources: Sequence[Source],
    ) -> None:
        hit = sorted(set(blocked) & set(changes))
        if not hit:
            return
        # Which of the requested packages pulls the blocked one in: simulate each alone.
        needing = [n for n in names if n in hit] or [
            n for n in names if set(hit) & set(self._simulate([n], sources))
        ]
        raise PackageError(
            f"{', '.join(hit)} {'is' if len(hit) == 1 else 'are'} rejected "
            f"(RejectedPatchesAction BLOCK) and {', '.join(needing or names)} "
            f"need{'s' if len(needing) == 1 else ''} it"
        )

    # running apk -----------------------------------------------------------------------

    def _apk(self, args: list[str], sources: Sequence[Source]) -> Completed:
        argv = ["apk"]
        if self.root != Path("/"):
            argv += ["--root", str(self.root)]
        for url in _repositories(sources):
            argv += ["--repository", url]
        return self._tool([*argv, *args])


def _repositories(sources: Sequence[Source]) -> list[str]:
    """A Source's configuration is /etc/apk/repositories text: one URL (or path) a line."""
    urls = []
    for source in sources:
        for line in source.configuration.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                if line.startswith("-") or any(c.isspace() for c in line):
                    raise PackageError(f"patch source {source.name!r}: invalid line {line[:80]!r}")
                urls.append(line)
    return urls


def _said(done: Completed) -> str:
    """apk's own error on one line: its ERROR lines (with the indented details that follow
    "unable to select packages:"), else what Completed.reason() finds."""
    lines = [ln.rstrip() for ln in done.stderr.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith(("ERROR:", "WARNING:"))]
    if not errors:
        return done.reason()
    first = errors[0]
    said = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith(" "):
            break
        said.append(line.strip())
    text = " ".join(said)
    return f"{text[:300]} (exit {done.returncode})"


def _changes(stdout: str) -> dict[str, _Change]:
    found: dict[str, _Change] = {}
    for line in stdout.splitlines():
        match = _CHANGE.match(line.strip())
        if match is None:
            continue
        old, arrow, new = match["versions"].partition(" -> ")
        found[match["name"]] = _Change(match["what"], old if arrow else "", new if arrow else old)
    return found


def _mismatch(update: Package, change: _Change | None) -> str:
    if change is None:
        return f"apk plans no change to {update.name} (not upgradable to {update.version})"
    if change.new != update.version:
        return f"apk would install {update.name} {change.new}, not the approved {update.version}"
    return ""


def _build_times(
    files: Iterable[Path], repositories: dict[str, str]
) -> dict[str, tuple[float, str]]:
    """``name-version`` -> (build time, repository URL) from APKINDEX files (a gzipped tar
    holding APKINDEX and DESCRIPTION) or from the installed database (plain text)."""
    found: dict[str, tuple[float, str]] = {}
    for path in files:
        text, description = _index_text(path)
        url = repositories.get(description, "")
        for name, version, built in _records(text):
            found.setdefault(f"{name}-{version}", (built, url))
    return found


def _index_text(path: Path) -> tuple[str, str]:
    try:
        if not path.name.endswith(".tar.gz"):
            return path.read_text(encoding="utf-8", errors="replace"), ""
        parts: dict[str, str] = {}
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.name in ("APKINDEX", "DESCRIPTION"):
                    data = archive.extractfile(member)
                    if data is not None:
                        parts[member.name] = data.read().decode("utf-8", "replace")
        return parts.get("APKINDEX", ""), parts.get("DESCRIPTION", "").strip()
    except (OSError, tarfile.TarError, EOFError):
        return "", ""


def _records(text: str) -> Iterable[tuple[str, str, float]]:
    """(P, V, t) of each blank-line separated record."""
    for block in text.split("\n\n"):
        fields = dict(
            (line[:1], line[2:]) for line in block.splitlines() if len(line) > 1 and line[1] == ":"
        )
        if fields.get("P") and fields.get("V") and fields.get("t", "").isdigit():
            yield fields["P"], fields["V"], float(fields["t"])


def _package(name: str, version: str, arch: str, times: dict[str, tuple[float, str]]) -> Package:
    built, url = times.get(f"{name}-{version}", (None, ""))
    return Package(name=name, arch=arch, version=version, release_time=built, repository=url)
