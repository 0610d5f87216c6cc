"""apt's and dpkg's output read into the model, for the apt Patcher (agent/patching/apt.py):
``apt-get -s`` (the ``Inst`` and ``Remv`` lines of a simulated run), ``dpkg-query -W -f``
lines, ``apt-get indextargets`` lines and the lists' Packages files (where a version is
published, its section and priority), and the one line that says why apt failed.  Also
what the Patcher makes of them: a package as the index or the simulation describes it, what
an install did, the BLOCK refusal's reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.patching.model import Package

# dpkg's db:Status-Status values that mean "the package is there and configured".
INSTALLED = frozenset({"installed", "triggers-awaited", "triggers-pending"})
# One line per installed (name, arch): dpkg's own fields, tab-separated.
SCAN_FORMAT = (
    "${Package}\t${Architecture}\t${Version}\t${db:Status-Status}\t${Section}\t${Priority}\n"
)
# Each Packages index apt knows: its local file and its Release file's fields.
TARGETS_FORMAT = "$(FILENAME)\t$(SUITE)\t$(CODENAME)\t$(ORIGIN)\t$(LABEL)"
# apt-get update's lines that mean an index was not fetched or not trusted: fatal here.
UPDATE_FAILED = ("E:", "W: Failed to fetch", "W: GPG error", "W: Some index files failed")

# dpkg states that are not "installed" yet leave a package on the node, half done.
_BROKEN = frozenset({"half-installed", "unpacked", "half-configured"})
_SECURITY_LABELS = frozenset({"Debian-Security"})
# "Inst name [old] (new Label:Version/archive, Label2/archive2 [arch])", old absent when new.
_INST = re.compile(r"Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*?) ?\[([^\]]*)\]\)")
# "Remv name [version]" (or "Purg" with --purge): a package the run would take off the node.
_REMV = re.compile(r"(?:Remv|Purg) (\S+)(?: \[([^\]]*)\])?")
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


Index = dict[tuple[str, str, str], Stanza]


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


def parse_removals(text: str) -> list[str]:
    """The packages ``apt-get -s`` would remove, as ``name version`` (``name`` when apt
    gives no version)."""
    found = []
    for line in text.splitlines():
        match = _REMV.match(line)
        if match is not None:
            name, version = match.groups()
            found.append(f"{name} {version}" if version else name)
    return found


def parse_installed(text: str) -> tuple[list[Package], list[str]]:
    """dpkg-query ``SCAN_FORMAT`` lines: the installed packages, and notes on the
    half-installed ones."""
    installed, notes = [], []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or not fields[0]:
            continue
        name, arch, version, status, section, priority = fields
        if status in _BROKEN:
            notes.append(f"{name} {version} is {status} (dpkg --configure -a may finish it)")
        if status not in INSTALLED:
            continue
        installed.append(
            Package(name, arch, version, section=section, priority=priority.capitalize())
        )
    return installed, notes


def parse_targets(text: str) -> list[tuple[str, Published]]:
    """``apt-get indextargets --format TARGETS_FORMAT``: (local Packages file, its suite)."""
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


def read_index(path: str) -> str | None:
    """A plain Packages file of apt's lists ("" when absent); None for a compressed one
    (apt's lists may be kept lz4, zst, gz ...: apt-helper cat-file reads those)."""
    if Path(path).suffix in _COMPRESSED:
        return None
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def add_to_index(index: Index, text: str, published: Published, names: frozenset[str]) -> None:
    """The stanzas of one Packages file (``text``, published in ``published``) into
    ``index``: (name, arch, version) -> its section, priority and the suites publishing it."""
    for name, arch, version, section, priority in parse_packages(text, names):
        stanza = index.setdefault((name, arch, version), Stanza(section, priority))
        stanza.published.append(published)


def described(package: Package, index: Index) -> Package:
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


def update_package(inst: Inst, index: Index) -> Package:
    """An upgrade the simulation offers, with what the repositories say of it."""
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


def _simulated(package: Package, inst: Inst | None) -> Package:
    """A package an install changed without being asked (a dependency), with where the
    simulation said its version comes from."""
    secure = inst is not None and any(p.security for p in inst.published)
    return replace(
        package,
        security=secure,
        classification="Security" if secure else "",
        repository=inst.published[0].suite if inst and inst.published else "",
    )


def install_result(
    updates: Sequence[Package], changed: Sequence[Package], pulled: Sequence[Inst]
) -> tuple[list[Package], dict[str, str]]:
    """What ``apt-get install`` did: the packages whose version ``changed`` (an update as
    asked; a dependency as the simulation described it), and why each update that did not
    end at its version failed (by key)."""
    arch = {p.name: p.arch for p in changed}  # an update may name no arch
    asked = {(p.name, p.arch or arch.get(p.name, "")): p for p in updates}
    by_name = {i.name: i for i in pulled}
    now = {(p.name, p.arch): p for p in changed}
    installed = []
    for package in changed:
        update = asked.get((package.name, package.arch))
        if update is not None and update.version == package.version:
            installed.append(update)
        else:  # a dependency it brought
            installed.append(_simulated(package, by_name.get(package.name)))
    failed = {}
    for key, update in asked.items():
        got = now.get(key)
        if got is None or got.version != update.version:
            state = f"at {got.version}" if got else "unchanged"
            failed[update.key] = (
                f"apt-get install ended with {update.name} {state}, not {update.version}"
            )
    return installed, failed


def blocked_reason(refused: Sequence[Inst], alone: Sequence[tuple[str, list[Inst]]]) -> str:
    """ "X is rejected ... and Y needs it" for each BLOCKed package an install would pull
    (``refused``), from what each requested update, simulated alone, would install."""
    asked = {name for name, _ in alone}
    said = []
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


def apt_failure(out: str, err: str) -> str:
    """The line that says why apt failed: its first specific E: line (with the W: GPG
    error behind a "not signed"), else its first failure warning; "" when none."""
    lines = [ln.strip() for ln in (err + "\n" + out).splitlines()]
    errors = [ln for ln in lines if ln.startswith("E:") and not ln.startswith(_GENERIC)]
    warned = [ln for ln in lines if ln.startswith(UPDATE_FAILED[1:])]
    said = errors[0] if errors else (warned[0] if warned else "")
    gpg = next((ln for ln in warned if ln.startswith("W: GPG error")), "")
    if gpg and said != gpg:
        said = f"{said} {gpg}"
    if not said and any(ln.startswith("E:") for ln in lines):
        said = next(ln for ln in lines if ln.startswith("E:"))
    return said[:500]
