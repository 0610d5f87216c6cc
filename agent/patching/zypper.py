"""zypper (SLES, openSUSE): Patch Manager's scan and install through zypper's machine
format (``--xmlout``) and rpm's query format.

Scan: ``zypper refresh`` (the metadata cache, the only thing a scan changes), installed
packages from ``rpm -qa --qf``, updates from ``zypper list-updates`` and their metadata from
the patches (``zypper list-patches``) that update them.  A patch names its packages only in
``zypper info -t patch`` (its ``Conflicts``: ``corral-sec < 2.0-1``): the one human format
read here.  A patch's category gives the classification (security -> Security,
recommended -> Recommended, optional, feature, document, yast likewise), its severity
capitalized (Critical, Important, Moderate, Low), its issue date the release time.  Several
patches updating one package: the most urgent gives the metadata, all are advisories.  An
update no patch covers has classification "".

Install: ``zypper install name.arch=version ...`` (never ``update``/``patch``), with
``--no-recommends`` so only what the packages require comes along.  Blocked names are locked
(``zypper addlock``) for that one call and unlocked after (locks the node already had are
left alone): zypper's solver then refuses a transaction that needs one, and the refusal is
turned into "X is rejected ... and Y needs it".  ``ZYPP_LOCK_TIMEOUT=0``: a held lock
(another zypper, YaST: exit 7) fails at once with zypper's own message.

``root`` other than ``/`` is passed as ``zypper --root`` and ``rpm --root`` (with the rpm
database found in that root: Debian's own rpm would otherwise use ~/.rpmdb).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.patching import rpm_db
from agent.patching.base import PackageError
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.platform import detect_linux
from agent.patching.tools import ToolUser, check
from agent.tools import Completed

CATEGORIES = {
    "security": "Security",
    "recommended": "Recommended",
    "optional": "Optional",
    "feature": "Feature",
    "document": "Document",
    "yast": "Yast",
}
# Most urgent first: the patch whose metadata a package update gets.
_CATEGORY_RANK = ("security", "recommended", "optional", "feature", "yast", "document")
_SEVERITY_RANK = ("critical", "important", "moderate", "low")

# rpm names and editions as zypper is given them (argv, never a shell; no leading "-").
_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")
_EDITION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9_.+~^]+(?:-[A-Za-z0-9_.+~^]+)?")

EXIT_LOCKED = 7  # ZYPPER_EXIT_ZYPP_LOCKED
EXIT_REBOOT = 102  # ZYPPER_EXIT_INF_REBOOT_NEEDED
EXIT_RESTART = 103  # ZYPPER_EXIT_INF_RESTART_NEEDED (zypper updated itself)
EXIT_SKIPPED = 106  # ZYPPER_EXIT_INF_REPOS_SKIPPED
_DONE = frozenset({0, EXIT_REBOOT, EXIT_RESTART, EXIT_SKIPPED})
_REBOOT_NAMES = re.compile(r"kernel-.*|glibc|systemd|dbus-1|libopenssl.*")


@dataclass(frozen=True)
class Patch:
    """One ``zypper list-patches`` entry; ``packages`` from ``zypper info -t patch``."""

    name: str
    category: str
    severity: str
    issued: float | None
    summary: str
    cves: tuple[str, ...]
    status: str
    packages: tuple[str, ...] = ()  # "name" or "name.arch" as zypper writes them


# --- parsers (zypper's output -> model) ---------------------------------------


def _xml(stdout: str) -> ET.Element | None:
    start = stdout.find("<stream")
    if start < 0:
        return None
    try:
        return ET.fromstring(stdout[start:])
    except ET.ParseError:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def zypper_error(done: Completed) -> str:
    """zypper's own error messages (``<message type="error">``, a solver problem) on one
    line with the exit code; else the tool's stderr/stdout reason."""
    doc = _xml(done.stdout)
    said: list[str] = []
    if doc is not None:
        said = [_one_line(m.text or "") for m in doc.iter("message") if m.get("type") == "error"]
        said += [_one_line(p) for p in problems(done.stdout)]
    said = [s for s in said if s]
    if not said:
        return done.reason()
    return f"{'; '.join(said)[:400]} (exit {done.returncode})"


def problems(stdout: str) -> list[str]:
    """The solver's problem statements (``Problem: ...`` lines of a prompt)."""
    doc = _xml(stdout)
    if doc is None:
        return []
    found = []
    for prompt in doc.iter("prompt"):
        text = prompt.findtext("description") or ""
        found += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("Problem:")]
    return found


def parse_updates(stdout: str) -> list[Package]:
    """``zypper --xmlout list-updates``: the newest candidate of each upgradable package."""
    doc = _xml(stdout)
    if doc is None:
        raise PackageError("zypper list-updates: no XML in its output")
    found = []
    for update in doc.iter("update"):
        if update.get("kind", "package") != "package":
            continue
        source = update.find("source")
        found.append(
            Package(
                name=update.get("name", ""),
                arch=update.get("arch", ""),
                version=update.get("edition", ""),
                repository=source.get("alias", "") if source is not None else "",
                title=_one_line(update.findtext("summary") or ""),
            )
        )
    return sorted(found, key=lambda p: (p.name, p.arch))


def parse_patches(stdout: str) -> list[Patch]:
    """``zypper --xmlout list-patches``: each patch's category, severity, date and CVEs."""
    doc = _xml(stdout)
    if doc is None:
        raise PackageError("zypper list-patches: no XML in its output")
    found = []
    for update in doc.iter("update"):
        if update.get("kind") != "patch":
            continue
        date = update.find("issue-date")
        stamp = date.get("time_t", "") if date is not None else ""
        cves = [
            i.get("id", "") for i in update.iter("issue") if i.get("type") == "cve" and i.get("id")
        ]
        found.append(
            Patch(
                name=update.get("name", ""),
                category=update.get("category", ""),
                severity=update.get("severity", ""),
                issued=float(stamp) if stamp.isdigit() else None,
                summary=_one_line(update.findtext("summary") or ""),
                cves=tuple(dict.fromkeys(cves)),
                status=update.get("status", ""),
            )
        )
    return found


_INFO_HEADER = re.compile(r"^Information for patch (.+):$", re.MULTILINE)
_COUNT = re.compile(r"\[(\d+)\]")


def parse_patch_packages(text: str) -> dict[str, tuple[str, ...]]:
    """``zypper info -t patch A B ...``: patch name -> the package names in its
    ``Conflicts`` (``corral-sec < 2.0-1``, or ``[2]`` and one per indented line)."""
    found: dict[str, tuple[str, ...]] = {}
    heads = list(_INFO_HEADER.finditer(text))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        lines = text[head.end() : end].splitlines()
        names: list[str] = []
        for j, line in enumerate(lines):
            key, sep, value = line.partition(":")
            if not sep or key.strip() != "Conflicts":
                continue
            value = value.strip()
            count = _COUNT.fullmatch(value)
            if count:
                entries = [ln.strip() for ln in lines[j + 1 : j + 1 + int(count.group(1))]]
            else:
                entries = [value]
            names = [e.split()[0] for e in entries if e and not e.startswith("srcpackage:")]
        found[head.group(1)] = tuple(names)
    return found


def _rank(patch: Patch) -> tuple[int, int]:
    cats, sevs = _CATEGORY_RANK, _SEVERITY_RANK
    category = cats.index(patch.category) if patch.category in cats else len(cats)
    severity = sevs.index(patch.severity.lower()) if patch.severity.lower() in sevs else len(sevs)
    return category, severity


def with_patches(package: Package, patches: Iterable[Patch]) -> Package:
    """``package`` with the metadata of the patches that name it (the most urgent first)."""
    mine = sorted(
        (p for p in patches if {package.name, f"{package.name}.{package.arch}"} & set(p.packages)),
        key=_rank,
    )
    if not mine:
        return package
    best = mine[0]
    cves = tuple(dict.fromkeys(c for p in mine for c in p.cves))
    return replace(
        package,
        classification=CATEGORIES.get(best.category, best.category.capitalize()),
        severity=best.severity.capitalize() if best.severity.lower() != "unspecified" else "",
        release_time=best.issued,
        security=best.category == "security",
        advisories=tuple(p.name for p in mine),
        cves=cves,
        title=best.summary or package.title,
    )


def blocked_reason(stdout: str, blocked: Sequence[str]) -> str | None:
    """The one-line refusal when the solver's problem is a locked (blocked) package."""
    for problem in problems(stdout):
        words = set(re.findall(r"[A-Za-z0-9_.+-]+", problem))
        hit = [b for b in blocked if b in words or any(w.startswith(f"{b}-") for w in words)]
        if not hit:
            continue
        needer = re.match(
            r"Problem: (?:the to be installed |nothing provides )?(\S+) requires", problem
        )
        who = _nevra_name(needer.group(1)) if needer else "the install"
        return (
            f"{hit[0]} is rejected (RejectedPatchesAction BLOCK) and {who} needs it "
            f"(zypper: {problem.removeprefix('Problem: ')})"
        )
    return None


def _nevra_name(nevra: str) -> str:
    parts = nevra.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else nevra


# --- the provider ----------------------------------------------------------------------


class Patcher(ToolUser):
    name = "zypper"
    tool_env = {"ZYPP_LOCK_TIMEOUT": "0"}

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        extra = _plus_repos(sources)
        self._zypper([*extra, "refresh"], "zypper refresh")
        installed = self.installed()
        updates = parse_updates(
            self._zypper([*extra, "--no-refresh", "list-updates"], "zypper list-updates").stdout
        )
        patches = parse_patches(
            self._zypper([*extra, "--no-refresh", "list-patches"], "zypper list-patches").stdout
        )
        patches = self._with_packages([p for p in patches if p.status != "applied"], extra)
        node = detect_linux(self.root)
        return Scan(
            product=node.product if node else "",
            installed=installed,
            updates=[with_patches(u, patches) for u in updates],
            reboot_required=self._needs_rebooting(),
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
        for name in blocked:
            check(_NAME, name, "package name")
        targets = [_target(u) for u in updates]
        if not targets:
            return InstallOutcome(installed=[])
        before = {p.key: p.version for p in self.installed()}
        extra = _plus_repos(sources)
        locked = self._locks()
        added = [b for b in dict.fromkeys(blocked) if b not in locked]
        if added:
            self._zypper(["addlock", "--", *added], "zypper addlock")
        try:
            argv = [*extra, "install", "--no-recommends", "--auto-agree-with-licenses", "--"]
            done = self._tool(self._base([*argv, *targets]))
        finally:
            if added:
                self._zypper(["removelock", "--", *added], "zypper removelock")
        if done.returncode not in _DONE:
            reason = blocked_reason(done.stdout, blocked) if blocked else None
            raise PackageError(reason or f"zypper install failed: {zypper_error(done)}")
        after = self.installed()
        changed = [p for p in after if before.get(p.key) != p.version]
        now = {p.key: p.version for p in after}
        failed = {
            u.key: f"zypper left {u.name} at {now.get(u.key) or 'not installed'}, not {u.version}"
            for u in updates
            if now.get(u.key) != u.version
        }
        notes = ["zypper skipped a repository it could not read"] if done.returncode == 106 else []
        reboot = done.returncode == EXIT_REBOOT or self._needs_rebooting()
        reboot = reboot or any(_REBOOT_NAMES.fullmatch(p.name) for p in changed)
        return InstallOutcome(installed=changed, failed=failed, reboot_required=reboot, notes=notes)

    # --- reading the node --------------------------------------------------------------

    def installed(self) -> list[Package]:
        return rpm_db.installed(self._tool, self.root, find_db=True)

    def _with_packages(self, patches: list[Patch], extra: list[str]) -> list[Patch]:
        if not patches:
            return []
        argv = ["zypper", *self._root_args(), "--non-interactive", *extra, "--no-refresh"]
        done = self._tool([*argv, "info", "-t", "patch", "--", *(p.name for p in patches)])
        if done.returncode != 0:
            raise PackageError(f"zypper info -t patch failed: {zypper_error(done)}")
        names = parse_patch_packages(done.stdout)
        return [replace(p, packages=names.get(p.name, ())) for p in patches]

    def _locks(self) -> set[str]:
        doc = _xml(self._zypper(["locks"], "zypper locks").stdout)
        if doc is None:
            return set()
        return {lock.findtext("name") or "" for lock in doc.iter("lock")}

    def _needs_rebooting(self) -> bool:
        done = self._tool(self._base(["needs-rebooting"]))
        return done.returncode == EXIT_REBOOT

    # --- running zypper ----------------------------------------------------------------

    def _root_args(self) -> list[str]:
        return [] if self.root == Path("/") else ["--root", str(self.root)]

    def _base(self, args: list[str]) -> list[str]:
        return ["zypper", *self._root_args(), "--non-interactive", "--xmlout", *args]

    def _zypper(self, args: list[str], what: str) -> Completed:
        done = self._tool(self._base(args))
        if done.returncode not in _DONE:
            raise PackageError(f"{what} failed: {zypper_error(done)}")
        return done


def _target(update: Package) -> str:
    name = check(_NAME, update.name, "package name")
    version = check(_EDITION, update.version, "package version")
    return f"{name}.{update.arch}={version}" if update.arch else f"{name}={version}"


def _plus_repos(sources: Sequence[Source]) -> list[str]:
    """A baseline's extra repositories (.repo text) as ``--plus-repo URL`` for this call."""
    urls = []
    for source in sources:
        for line in source.configuration.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() == "baseurl" and value.strip():
                urls += ["--plus-repo", value.strip()]
    return urls
