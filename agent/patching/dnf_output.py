"""dnf's output read into the model, for the dnf Patcher (agent/patching/dnf.py):
``dnf repoquery --qf REPOQUERY`` records (fields split by a control character, as rpm_db.py
splits rpm's), ``dnf updateinfo list`` columns and ``dnf updateinfo info`` blocks (the
one human format read), dnf's error as one line, and what the Patcher makes of them: a
package with its advisories' metadata, the BLOCK refusal's reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from agent.patching.model import Package
from agent.patching.rpm_db import FS
from agent.tools import Completed

CLASSIFICATIONS = {
    "security": "Security",
    "bugfix": "Bugfix",
    "enhancement": "Enhancement",
    "newpackage": "Newpackage",
}
_TYPE_RANK = ("security", "bugfix", "enhancement", "newpackage")
_SEVERITY_RANK = ("critical", "important", "moderate", "low")

REPOQUERY = FS.join(("%{name}", "%{arch}", "%{epoch}", "%{version}", "%{release}", "%{repoid}"))
_NOISE = re.compile(r"Unable to detect release version|Last metadata expiration check")


@dataclass(frozen=True)
class Advisory:
    """One ``dnf updateinfo info`` block."""

    id: str
    type: str  # security, bugfix, enhancement, newpackage (as dnf writes it)
    severity: str
    issued: float | None  # dnf's date: updated if written, else issued
    title: str
    cves: tuple[str, ...]


def evr(epoch: str, version: str, release: str) -> str:
    """``[epoch:]version-release``, the epoch left out when it is 0 or absent."""
    head = f"{epoch}:" if epoch not in ("", "0", "(none)") else ""
    return f"{head}{version}-{release}"


def split_nevra(nevra: str) -> tuple[str, str, str] | None:
    """``name-[epoch:]version-release.arch`` -> (name, arch, [epoch:]version-release)."""
    rest, dot, arch = nevra.rpartition(".")
    parts = rest.rsplit("-", 2)
    if not dot or len(parts) != 3 or not all(parts):
        return None
    name, version, release = parts
    epoch, colon, bare = version.partition(":")
    return (name, arch, evr(epoch, bare, release) if colon else f"{version}-{release}")


def parse_upgrades(stdout: str) -> list[Package]:
    """``dnf repoquery --upgrades --qf REPOQUERY``: one line per candidate."""
    found = {}
    for line in stdout.splitlines():
        fields = line.split(FS)
        if len(fields) != 6 or not fields[0]:
            continue
        name, arch, epoch, version, release, repo = fields
        package = Package(
            name=name, arch=arch, version=evr(epoch, version, release), repository=repo
        )
        found[package.key] = package
    return sorted(found.values(), key=lambda p: (p.name, p.arch))


def parse_updateinfo_list(stdout: str) -> list[tuple[str, str, str, str]]:
    """``dnf updateinfo list``: (advisory id, name, arch, version) per line; the type column
    (``Important/Sec.``, ``bugfix``) is left to ``updateinfo info``."""
    found = []
    for line in stdout.splitlines():
        words = line.split()
        if words[:1] == ["i"]:  # ``-v`` marks installed advisories
            words = words[1:]
        if len(words) < 3:
            continue
        nevra = split_nevra(words[2])
        if nevra is not None:
            found.append((words[0], *nevra))
    return found


_KEY = re.compile(r"^\s*([^:]*?)\s*: ?(.*)$")


def parse_updateinfo_info(stdout: str) -> dict[str, Advisory]:
    """``dnf updateinfo info``: blocks of ``Key: value`` lines (``      : more`` continues a
    value) under a ``====``-framed title."""
    found: dict[str, Advisory] = {}
    blocks: list[tuple[str, dict[str, list[str]]]] = []
    title_lines: list[str] = []
    in_title = False
    key = ""
    for line in stdout.splitlines():
        if line.startswith("====="):
            in_title = not in_title
            if in_title:
                title_lines = []
            else:
                blocks.append((" ".join(t.strip() for t in title_lines), {}))
            continue
        if in_title:
            title_lines.append(line)
            continue
        match = _KEY.match(line)
        if match is None or not blocks:
            continue
        fields = blocks[-1][1]
        name, value = match.groups()
        if name:
            key = name
        if key:
            fields.setdefault(key, []).append(value.strip())
    for title, fields in blocks:
        ident = " ".join(fields.get("Update ID", [])).strip()
        if not ident:
            continue
        severity = " ".join(fields.get("Severity", [])).strip()
        found[ident] = Advisory(
            id=ident,
            type=" ".join(fields.get("Type", [])).strip().lower(),
            severity="" if severity.lower() in ("", "none", "unknown") else severity,
            issued=parse_date(" ".join(fields.get("Updated", fields.get("Issued", [])))),
            title=title,
            cves=tuple(dict.fromkeys(c for v in fields.get("CVEs", []) for c in v.split() if c)),
        )
    return found


def parse_date(text: str) -> float | None:
    """dnf's ``YYYY-MM-DD HH:MM:SS`` (read with TZ=UTC) as epoch seconds."""
    for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _rank(advisory: Advisory) -> tuple[int, int]:
    types, sevs = _TYPE_RANK, _SEVERITY_RANK
    kind = types.index(advisory.type) if advisory.type in types else len(types)
    severity = sevs.index(advisory.severity.lower()) if advisory.severity.lower() in sevs else 4
    return kind, severity


def with_advisories(package: Package, advisories: Sequence[Advisory]) -> Package:
    """``package`` with the metadata of ``advisories`` (the most urgent first)."""
    if not advisories:
        return package
    mine = sorted(advisories, key=_rank)
    best = mine[0]
    return replace(
        package,
        classification=CLASSIFICATIONS.get(best.type, best.type.capitalize()),
        severity=best.severity,
        release_time=best.issued,
        security=best.type == "security",
        advisories=tuple(dict.fromkeys(a.id for a in mine)),
        cves=tuple(dict.fromkeys(c for a in mine for c in a.cves)),
        title=best.title or package.title,
    )


def dnf_error(done: Completed) -> str:
    """dnf's own error on one line: its ``Error:`` line with the solver's problem lines, a
    lock, a GPG refusal; else the tool's reason (release-version warnings skipped)."""
    lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines()]
    lines = [ln for ln in lines if ln and not _NOISE.search(ln)]
    said: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Error:"):
            said = [line.removeprefix("Error:").strip()]
            said += [ln.lstrip("- ") for ln in lines[i + 1 :] if _problem_line(ln)]
            break
    if not said:
        said = [ln for ln in lines if "already locked by" in ln][:1]
    gpg = [ln.split(". ")[0] for ln in lines if _gpg_line(ln)]
    said += [g for g in gpg if g not in said]
    said = [s for s in said if s] or lines[:1]
    if not said:
        return done.reason()
    return f"{'; '.join(said)[:500]} (exit {done.returncode})"


def _problem_line(line: str) -> bool:
    return line.startswith(("Problem", "- ", "package ", "cannot install", "nothing provides"))


def _gpg_line(line: str) -> bool:
    return bool(
        re.search(r"GPG|[Pp]ublic key|not signed|Problem repository|signature", line)
        and "This is a good thing" not in line
        and "You have enabled checking" not in line
    )


def blocked_reason(message: str, blocked: Sequence[str]) -> str | None:
    """The one-line refusal when dnf's solver problem is an excluded (blocked) package."""
    words = set(re.findall(r"[A-Za-z0-9_.+:-]+", message))
    hit = [b for b in blocked if b in words or any(_named(w, b) for w in words)]
    if not hit:
        return None
    needer = re.search(r"package (\S+) requires", message)
    who = (split_nevra(needer.group(1)) or (needer.group(1),))[0] if needer else "the install"
    return f"{hit[0]} is rejected (RejectedPatchesAction BLOCK) and {who} needs it (dnf: {message})"


def _named(word: str, name: str) -> bool:
    nevra = split_nevra(word)
    return nevra is not None and nevra[0] == name
