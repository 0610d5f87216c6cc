"""pacman (Arch Linux): Patch Manager's scan and install.

Scan: ``pacman -Sy`` (the sync databases: the only thing a scan changes), installed packages
from ``pacman -Qi`` (name, version, architecture, install date), updates from ``pacman -Qu``
with their repository, architecture and build date from ``pacman -Si``.  pacman 6.0's
``--print-format`` has no build date, and its ``-Qi``/``-Si`` dates are ``strftime("%c")``
in local time: pacman runs here with ``LC_ALL=C`` and ``TZ=UTC`` so they parse exactly.
Arch publishes no security metadata with its packages: classification and severity are ""
(a baseline's CLASSIFICATION/SEVERITY rules do not match them; docs/patching.md), the
release time is the package's build date.

Install: ``pacman -S --needed`` of exactly the asked names.  pacman installs the version its
sync database has (the last scan's): an update asked at another version is not installed
and is reported failed.  Each blocked name is passed as ``--ignore``: a target that needs it
then fails the whole transaction, reported as "X is rejected ... and Y needs it".  A held
lock (db.lck) fails at once with pacman's own "unable to lock database".  A reboot is
required after a kernel (linux, linux-lts, linux-zen, linux-hardened) changed; a scan of
``/`` reports one pending when a kernel package is installed but the running kernel's
/usr/lib/modules/<release> is gone (pacman keeps no flag of its own).

``root`` other than ``/`` is managed whole: its etc/pacman.conf, var/lib/pacman database,
package cache, log, keyring and hooks (``--root``/``--dbpath``/``--config`` ...), nothing
of this host's.  A baseline's extra repositories (``[name]`` / ``Server = ...`` text) are
appended to a temporary copy of that pacman.conf for the call.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from agent.patching.base import PackageError
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.patching.tools import ToolUser, check
from agent.tools import Completed

# Arch package names: lower case letters, digits and @ . _ + -, not starting with - or .
_NAME = re.compile(r"[a-z0-9@_+][a-z0-9@._+-]*")
_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9._+~]+-[0-9.]+")
_KERNELS = frozenset({"linux", "linux-lts", "linux-zen", "linux-hardened"})
_FIELD = re.compile(r"^(\S[^:]*?)\s*: (.*)$")
_UNSATISFIED = (
    re.compile(r"unable to satisfy dependency '([^']+)' required by (\S+)"),
    re.compile(r'cannot resolve "([^"]+)", a dependency of "([^"]+)"'),
)
_ENV = {"LC_ALL": "C", "TZ": "UTC"}


# --- parsers ---------------------------------------------------------------------------


def parse_info(stdout: str) -> list[dict[str, str]]:
    """``pacman -Qi``/``-Si``: one dict per package (continuation lines joined)."""
    found: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in stdout.splitlines():
        if not line.strip():
            if fields:
                found.append(fields)
            fields, key = {}, ""
            continue
        match = _FIELD.match(line)
        if match:
            key = match.group(1)
            fields[key] = match.group(2).strip()
        elif key:
            fields[key] = f"{fields[key]} {line.strip()}".strip()
    if fields:
        found.append(fields)
    return found


def parse_date(text: str) -> float | None:
    """A ``%c`` date in the C locale, UTC (``Fri Mar  1 00:00:00 2024``)."""
    try:
        when = datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return when.replace(tzinfo=UTC).timestamp()


def _arch(fields: dict[str, str]) -> str:
    return fields.get("Architecture", "")


def parse_installed(stdout: str) -> list[Package]:
    """``pacman -Qi``: every installed package with its install date."""
    found = [
        Package(
            name=f["Name"],
            arch=_arch(f),
            version=f.get("Version", ""),
            installed_time=parse_date(f.get("Install Date", "")),
        )
        for f in parse_info(stdout)
        if f.get("Name")
    ]
    return sorted(found, key=lambda p: p.name)


def parse_sync(stdout: str) -> dict[str, Package]:
    """``pacman -Si NAME...``: name -> the sync database's package (the first repository
    that has it, as pacman chooses), build date as release time."""
    found: dict[str, Package] = {}
    for f in parse_info(stdout):
        name = f.get("Name", "")
        if name and name not in found:
            found[name] = Package(
                name=name,
                arch=_arch(f),
                version=f.get("Version", ""),
                repository=f.get("Repository", ""),
                release_time=parse_date(f.get("Build Date", "")),
                title=f.get("Description", ""),
            )
    return found


def parse_upgradable(stdout: str) -> dict[str, str]:
    """``pacman -Qu``: name -> the newer version (``name old -> new [ignored]``)."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "->":
            found[words[0]] = words[3]
    return found


def pacman_error(done: Completed) -> str:
    """pacman's ``error:`` lines on one line, with the exit code."""
    said = [
        ln.strip().removeprefix("error:").strip()
        for ln in done.stderr.splitlines()
        if ln.startswith("error:")
    ]
    if not said:
        return done.reason()
    return f"{'; '.join(said)[:400]} (exit {done.returncode})"


def blocked_reason(done: Completed, blocked: Sequence[str]) -> str | None:
    """The refusal when a target needs a blocked (``--ignore``d) package."""
    text = f"{done.stdout}\n{done.stderr}"
    for pattern in _UNSATISFIED:
        for dependency, needer in pattern.findall(text):
            name = re.split(r"[<>=]", dependency, maxsplit=1)[0]
            if name in blocked:
                return (
                    f"{name} is rejected (RejectedPatchesAction BLOCK) and {needer} needs it "
                    f"(pacman: unable to satisfy dependency '{dependency}' required by {needer})"
                )
    return None


def kernel_replaced(
    installed: Sequence[Package],
    release: str | None = None,
    modules: Path = Path("/usr/lib/modules"),
) -> bool:
    """pacman keeps no reboot flag: a kernel package is installed but the running kernel's
    modules are gone (an upgrade removed them), so the node waits for a reboot."""
    if not any(p.name in _KERNELS for p in installed):
        return False
    return not (modules / (release or os.uname().release)).is_dir()


# --- the provider ----------------------------------------------------------------------


class Patcher(ToolUser):
    name = "pacman"
    tool_env = _ENV

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        with self._config(sources) as config:
            self._pacman(config, ["-Sy"], "pacman -Sy")
            installed = self.installed(config)
            done = self._tool(self._argv(config, ["-Qu"]))
            if done.returncode != 0 and (done.stdout.strip() or done.stderr.strip()):
                raise PackageError(f"pacman -Qu failed: {pacman_error(done)}")
            upgradable = parse_upgradable(done.stdout)
            sync = self._sync(config, sorted(upgradable))
        updates = [
            sync.get(name) or Package(name=name, version=version)
            for name, version in sorted(upgradable.items())
        ]
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=installed,
            updates=updates,
            reboot_required=self.root == Path("/") and kernel_replaced(installed),
            notes=[],
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
        for package in updates:
            check(_NAME, package.name, "package name")
            check(_VERSION, package.version, "package version")
        for name in blocked:
            check(_NAME, name, "package name")
        failed: dict[str, str] = {}
        with self._config(sources) as config:
            before = {p.name: p.version for p in self.installed(config)}
            sync = self._sync(config, sorted({u.name for u in updates}))
            targets = []
            for update in updates:
                offered = sync.get(update.name)
                if offered is None:
                    failed[update.key] = f"{update.name} is in no sync database"
                elif offered.version != update.version:
                    failed[update.key] = (
                        f"the repositories offer {update.name} {offered.version}, not "
                        f"{update.version} (pacman installs only that)"
                    )
                else:
                    targets.append(update.name)
            if not targets:
                return InstallOutcome(installed=[], failed=failed)
            ignore = [arg for name in dict.fromkeys(blocked) for arg in ("--ignore", name)]
            argv = self._argv(config, ["-S", "--needed", *ignore, "--", *targets])
            done = self._tool(argv)
            if done.returncode != 0:
                reason = blocked_reason(done, blocked) if blocked else None
                raise PackageError(reason or f"pacman -S failed: {pacman_error(done)}")
            after = self.installed(config)
        changed = [p for p in after if before.get(p.name) != p.version]
        now = {p.name: p.version for p in after}
        for update in updates:
            if update.key not in failed and now.get(update.name) != update.version:
                left = now.get(update.name) or "not installed"
                failed[update.key] = f"pacman left {update.name} at {left}, not {update.version}"
        reboot = any(p.name in _KERNELS for p in changed)
        return InstallOutcome(installed=changed, failed=failed, reboot_required=reboot)

    # --- reading the node --------------------------------------------------------------

    def installed(self, config: Path | None = None) -> list[Package]:
        done = self._tool(self._argv(config or self._conf_path(), ["-Qi"]))
        if done.returncode != 0:
            raise PackageError(f"pacman -Qi failed: {pacman_error(done)}")
        return parse_installed(done.stdout)

    def _sync(self, config: Path, names: Sequence[str]) -> dict[str, Package]:
        if not names:
            return {}
        done = self._tool(self._argv(config, ["-Si", "--", *names]))
        # Exit 1 when some name is in no sync database; the others are still printed.
        if done.returncode != 0 and not done.stdout.strip():
            raise PackageError(f"pacman -Si failed: {pacman_error(done)}")
        return parse_sync(done.stdout)

    # --- running pacman ----------------------------------------------------------------

    def _conf_path(self) -> Path:
        return self.root / "etc/pacman.conf"

    @contextlib.contextmanager
    def _config(self, sources: Sequence[Source]) -> Iterator[Path]:
        """The root's pacman.conf, or a temporary copy with ``sources`` appended."""
        if not sources:
            yield self._conf_path()
            return
        try:
            text = self._conf_path().read_text(encoding="utf-8")
        except OSError as exc:
            raise PackageError(f"cannot read {self._conf_path()}: {exc.strerror}") from None
        extra = "".join(f"\n{s.configuration.strip()}\n" for s in sources)
        fd, name = tempfile.mkstemp(prefix="corral-pacman-", suffix=".conf")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + extra)
            yield Path(name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _argv(self, config: Path, args: list[str]) -> list[str]:
        argv = ["pacman", "--noconfirm", "--config", str(config)]
        if self.root != Path("/"):
            root = self.root
            argv += ["--root", str(root), "--dbpath", str(root / "var/lib/pacman")]
            argv += ["--cachedir", str(root / "var/cache/pacman/pkg")]
            argv += ["--logfile", str(root / "var/log/pacman.log")]
            argv += ["--gpgdir", str(root / "etc/pacman.d/gnupg")]
            argv += ["--hookdir", str(root / "etc/pacman.d/hooks")]
        return [*argv, *args]

    def _pacman(self, config: Path, args: list[str], what: str) -> Completed:
        done = self._tool(self._argv(config, args))
        if done.returncode != 0:
            raise PackageError(f"{what} failed: {pacman_error(done)}")
        return done
