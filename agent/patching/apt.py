"""apt/dpkg (Debian, Ubuntu): ``dpkg-query -W -f=...`` to read what is installed (a machine
format, one ``status<TAB>version`` line per architecture), ``apt-get`` to install and remove.

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
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.patching.base import PackageError, check_name, check_version
from agent.tools import Completed, Runner, ToolTimeout, run_tool

# dpkg's db:Status-Status values that mean "the package is there and configured".
_INSTALLED = frozenset({"installed", "triggers-awaited", "triggers-pending"})
_FORMAT = "${db:Status-Status}\t${Version}\n"
LOCK_WAIT_SECONDS = 300


class Provider:
    name = "apt"

    def __init__(self, root: str = "/", *, timeout: float = 3600.0, run: Runner = run_tool):
        path = Path(root)
        if not path.is_absolute() or any(c in root for c in '"\n\\'):
            raise PackageError(f"invalid package root {root!r}: an absolute path")
        self.root = path
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

    @contextlib.contextmanager
    def _apt_env(self) -> Iterator[dict[str, str]]:
        env = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
        if self.root == Path("/"):
            yield env
            return
        root = str(self.root)
        text = (
            f'Dir "{root}/";\n'
            f'DPkg::Options {{ "--root={root}"; "--log={root}/var/log/dpkg.log"; }};\n'
        )
        fd, name = tempfile.mkstemp(prefix="corral-apt-", suffix=".conf")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            yield {**env, "APT_CONFIG": name}
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
