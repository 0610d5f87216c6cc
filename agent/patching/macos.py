"""macOS as Patch Manager uses it: Apple's ``softwareupdate`` and Homebrew.

Product: ``sw_vers -productVersion`` spelled as AWS's macOS PRODUCT values, the release's
name and version run together (AWS documents ``Mojave10.14.1``, ``Catalina10.15.1``; the
later names ``BigSur11.x``, ``Monterey12.x``, ``Ventura13.x``, ``Sonoma14.x``, ``Sequoia15.x``
follow the same rule: UNCONFIRMED against AWS's list for 11 and later).  A release this
module does not know is ``macOS<version>``.

Classification is AWS's for macOS: the package manager that offers the update
(``softwareupdate``, ``brew``, ``brew cask``; AWS also has ``installer``, which lists no
updates).  Whether an update is a security update (AWS-MacOSDefaultPatchBaseline approves
"operating system patches classified as Security"; rules without EnableNonSecurity only
those) is ``security``: true for softwareupdate items whose title or label says "Security
Update", "Security Response" (Rapid Security Responses) or "Background Security
Improvement"; Apple marks nothing else, so a security-only point release (macOS 13.6.8) is
not.  Homebrew has no security metadata: ``security`` false, severity "".

Scan: ``softwareupdate --list`` (``* Label: L`` then ``Title: T, Version: V, Size: S,
Recommended: YES, Action: restart,``), ``brew update`` (Homebrew's metadata), ``brew
outdated --json=v2`` (pinned formulae are left out, with a note) and ``brew info --json=v2
--installed`` (installed formulae and casks).  softwareupdate lists no installed software:
``installed`` holds Homebrew's.

Install: ``softwareupdate --install LABEL...`` (then ``softwareupdate --list`` again: an item
still listed failed, unless its Action is restart: staged, waiting for the restart) and
``brew upgrade --formula NAME...`` / ``brew upgrade --cask NAME...`` (Homebrew installs the
newest version; a newer one than approved is reported in notes).  BLOCKed names: ``brew
upgrade --dry-run`` must not list one (Homebrew upgrades outdated dependencies too);
softwareupdate items have no dependencies.  Homebrew refuses to run as root, so when the
agent is root brew runs as the owner of its prefix (``sudo -n -u OWNER -H``), as the
inventory's collector does; a Mac without Homebrew is scanned with softwareupdate alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.patching.base import PackageError
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.tools import ToolUser
from agent.tools import Completed, as_owner

SOFTWAREUPDATE = "softwareupdate"
BREW = "brew"
CASK = "brew cask"
# Apple silicon's prefix, then Intel's.
BREW_PREFIXES = ("opt/homebrew", "usr/local")
BREW_ENV = {
    "HOMEBREW_NO_AUTO_UPDATE": "1",
    "HOMEBREW_NO_ANALYTICS": "1",
    "HOMEBREW_NO_ENV_HINTS": "1",
    "HOMEBREW_NO_INSTALL_CLEANUP": "1",
}
# major (or 10.minor) -> the release's name as AWS spells products (no spaces).
RELEASES = {
    "10.14": "Mojave",
    "10.15": "Catalina",
    "11": "BigSur",
    "12": "Monterey",
    "13": "Ventura",
    "14": "Sonoma",
    "15": "Sequoia",
    "26": "Tahoe",
}
SECURITY = re.compile(
    r"security update|security response|background security improvement", re.IGNORECASE
)
_LABEL = re.compile(r"^\* Label: (?P<label>.+?)\s*$")
_FIELD = re.compile(r"(?P<key>Title|Version|Size|Recommended|Action): (?P<value>[^,]*)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@+_.-]*(?:/[A-Za-z0-9@+_.-]+)*")
# "openssl@3 3.3.0 -> 3.3.1" in brew upgrade --dry-run
_WOULD = re.compile(r"^(?P<name>\S+) (?P<old>\S+(?:, \S+)*) -> (?P<new>\S+)$")


@dataclass(frozen=True)
class _Item:
    """One softwareupdate item."""

    label: str
    title: str
    version: str
    restart: bool


class Patcher(ToolUser):
    name = "macos"
    root_refuses = ""

    # scan ------------------------------------------------------------------------------

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        notes = ["macOS takes no patch sources; ignored"] if sources else []
        product = self._product()
        updates = [_update(item) for item in self._list()]
        installed: list[Package] = []
        brew = self._brew_argv()
        if brew is None:
            notes.append("Homebrew is not installed: softwareupdate only")
        else:
            self._brew_ok(brew, ["update", "--quiet"], "brew update")
            updates += self._outdated(brew, notes)
            installed = list(self._brew_installed(brew).values())
        return Scan(
            product=product,
            installed=installed,
            updates=updates,
            notes=notes,
            manager_seconds=self._seconds,
        )

    def _product(self) -> str:
        done = self._tool(["sw_vers", "-productVersion"], {})
        version = done.stdout.strip()
        if done.returncode != 0 or not version:
            raise PackageError(f"sw_vers failed: {done.reason()}")
        parts = version.split(".")
        release = RELEASES.get(".".join(parts[:2])) or RELEASES.get(parts[0])
        return f"{release or 'macOS'}{version}"

    def _list(self) -> list[_Item]:
        done = self._tool([SOFTWAREUPDATE, "--list"], {})
        if done.returncode != 0:
            raise PackageError(f"softwareupdate --list failed: {_su_error(done)}")
        return parse_list(done.stdout)

    def _outdated(self, brew: list[str], notes: list[str]) -> list[Package]:
        found = _json(self._brew_ok(brew, ["outdated", "--json=v2"], "brew outdated"), "outdated")
        updates = []
        for key, classification in (("formulae", BREW), ("casks", CASK)):
            for entry in _objects(found.get(key)):
                name, current = entry.get("name"), entry.get("current_version")
                if not isinstance(name, str) or not isinstance(current, str):
                    continue
                if entry.get("pinned") is True:
                    notes.append(f"brew: {name} is pinned at {entry.get('pinned_version')}")
                    continue
                updates.append(Package(name=name, version=current, classification=classification))
        return updates

    def _brew_installed(self, brew: list[str]) -> dict[str, Package]:
        done = self._brew_ok(brew, ["info", "--json=v2", "--installed"], "brew info")
        found = _json(done, "info")
        installed: dict[str, Package] = {}
        for formula in _objects(found.get("formulae")):
            kegs = _objects(formula.get("installed"))
            linked = formula.get("linked_keg")
            keg = next((k for k in kegs if k.get("version") == linked), kegs[-1] if kegs else None)
            name = formula.get("name")
            if keg is not None and isinstance(name, str) and isinstance(keg.get("version"), str):
                installed[name] = Package(
                    name=name,
                    version=keg["version"],
                    classification=BREW,
                    installed_time=_seconds(keg.get("time")),
                )
        for cask in _objects(found.get("casks")):
            token, version = cask.get("token"), cask.get("installed")
            if isinstance(token, str) and isinstance(version, str):
                installed[token] = Package(
                    name=token,
                    version=version,
                    classification=CASK,
                    installed_time=_seconds(cask.get("installed_time")),
                )
        return installed

    # install ---------------------------------------------------------------------------

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        self._seconds = 0.0
        for update in updates:
            if update.classification != SOFTWAREUPDATE and not _NAME.fullmatch(update.name):
                raise PackageError(f"invalid Homebrew name {update.name[:80]!r}")
            if update.classification == SOFTWAREUPDATE and (
                not update.name.strip() or update.name.startswith("-")
            ):
                raise PackageError(f"invalid softwareupdate label {update.name[:80]!r}")
        labels = [u for u in updates if u.classification == SOFTWAREUPDATE]
        formulae = [u for u in updates if u.classification == BREW]
        casks = [u for u in updates if u.classification == CASK]
        outcome = InstallOutcome(installed=[])
        for other in updates:
            if other.classification not in (SOFTWAREUPDATE, BREW, CASK):
                outcome.failed[other.key] = f"unknown macOS classification {other.classification!r}"
        brew = self._brew_argv() if formulae or casks else None
        if (formulae or casks) and brew is None:
            for update in [*formulae, *casks]:
                outcome.failed[update.key] = "Homebrew is not installed"
            formulae, casks = [], []
        if brew is not None and blocked:
            self._refuse_blocked(brew, formulae, casks, blocked)
        if labels:
            self._softwareupdate(labels, outcome)
        if brew is not None:
            self._brew_upgrade(brew, formulae, casks, outcome)
        return outcome

    def _softwareupdate(self, labels: list[Package], outcome: InstallOutcome) -> None:
        offered = {item.label: item for item in self._list()}
        chosen = []
        for update in labels:
            if update.name in offered:
                chosen.append(update)
            else:
                outcome.failed[update.key] = "softwareupdate does not offer it (any more)"
        if not chosen:
            return
        done = self._tool([SOFTWAREUPDATE, "--install", *(u.name for u in chosen)], {})
        said = f"{done.stdout}\n{done.stderr}"
        if done.returncode != 0:
            raise PackageError(f"softwareupdate --install failed: {_su_error(done)}")
        left = {item.label for item in self._list()}
        for update in chosen:
            item = offered[update.name]
            refused = re.search(rf"^{re.escape(update.name)}: (.+)$", said, re.MULTILINE)
            if refused:
                outcome.failed[update.key] = f"softwareupdate: {refused.group(1).strip()}"
            elif update.name in left and not item.restart:
                outcome.failed[update.key] = "softwareupdate still lists it after the install"
            else:
                outcome.installed.append(update.with_version(item.version))
                outcome.reboot_required |= item.restart

    def _refuse_blocked(
        self,
        brew: list[str],
        formulae: list[Package],
        casks: list[Package],
        blocked: Sequence[str],
    ) -> None:
        for kind, chosen in (("--formula", formulae), ("--cask", casks)):
            if not chosen:
                continue
            names = [u.name for u in chosen]
            done = self._brew_ok(
                brew, ["upgrade", "--dry-run", kind, *names], "brew upgrade --dry-run"
            )
            would = {
                m["name"]
                for m in (_WOULD.match(ln.strip()) for ln in done.stdout.splitlines())
                if m
            }
            hit = sorted(set(blocked) & would)
            if hit:
                needing = [n for n in names if n not in hit] or names
                raise PackageError(
                    f"{', '.join(hit)} {'is' if len(hit) == 1 else 'are'} rejected "
                    f"(RejectedPatchesAction BLOCK) and {', '.join(needing)} "
                    f"need{'s' if len(needing) == 1 else ''} it"
                )

    def _brew_upgrade(
        self,
        brew: list[str],
        formulae: list[Package],
        casks: list[Package],
        outcome: InstallOutcome,
    ) -> None:
        if not formulae and not casks:
            return
        before = self._brew_installed(brew)
        errors: list[str] = []
        for kind, chosen in (("--formula", formulae), ("--cask", casks)):
            if chosen:
                done = self._tool([*brew, "upgrade", kind, *(u.name for u in chosen)], BREW_ENV)
                if done.returncode != 0:
                    errors.append(_brew_error(done))
        after = self._brew_installed(brew)
        changed = [p for name, p in after.items() if before.get(name, p).version != p.version]
        changed += [p for name, p in after.items() if name not in before]
        if errors and not changed:
            raise PackageError(f"brew upgrade failed: {errors[0]}")
        outcome.installed += changed
        for update in [*formulae, *casks]:
            now = after.get(update.name)
            if now is None or now.version == before.get(update.name, now).version:
                outcome.failed[update.key] = errors[0] if errors else "brew upgraded nothing"
            elif now.version != update.version:
                outcome.notes.append(
                    f"brew installed {update.name} {now.version}, newer than the approved "
                    f"{update.version} (Homebrew installs the newest version)"
                )

    # running the tools -----------------------------------------------------------------

    def _brew_argv(self) -> list[str] | None:
        """brew's argv prefix (``sudo -n -u OWNER -H`` when we are root and brew is not), or
        None without Homebrew."""
        for prefix in BREW_PREFIXES:
            brew = self.root / prefix / "bin/brew"
            if brew.is_file():
                return as_owner(brew, [str(brew)])
        return None

    def _brew_ok(self, brew: list[str], args: list[str], what: str) -> Completed:
        done = self._tool([*brew, *args], BREW_ENV)
        if done.returncode != 0:
            raise PackageError(f"{what} failed: {_brew_error(done)}")
        return done


def parse_list(stdout: str) -> list[_Item]:
    """``softwareupdate --list``'s items (macOS 11 and later: ``* Label:`` lines, each
    followed by a tab-indented ``Title: ..., Version: ..., ...`` line)."""
    items: list[_Item] = []
    label: str | None = None
    for line in stdout.splitlines():
        found = _LABEL.match(line.strip())
        if found:
            label = found["label"]
            continue
        if label is None or "Title:" not in line:
            continue
        fields = {m["key"]: m["value"].strip() for m in _FIELD.finditer(line)}
        items.append(
            _Item(
                label=label,
                title=fields.get("Title", label),
                version=fields.get("Version", ""),
                restart=fields.get("Action", "").lower() in ("restart", "shut down"),
            )
        )
        label = None
    return items


def _update(item: _Item) -> Package:
    return Package(
        name=item.label,
        version=item.version,
        classification=SOFTWAREUPDATE,
        security=bool(SECURITY.search(item.title) or SECURITY.search(item.label)),
        title=item.title,
    )


def _su_error(done: Completed) -> str:
    """softwareupdate's own message: its last stderr line that is not its banner."""
    banner = ("Software Update Tool", "Finding available software")
    said = [
        ln.strip() for ln in done.stderr.splitlines() if ln.strip() and ln.strip() not in banner
    ]
    return f"{said[-1][:300]} (exit {done.returncode})" if said else done.reason()


def _brew_error(done: Completed) -> str:
    """Homebrew's ``Error:`` line (stderr), else Completed.reason()."""
    for line in done.stderr.splitlines():
        if line.startswith("Error:"):
            return f"{line.strip()[:300]} (exit {done.returncode})"
    return done.reason()


def _json(done: Completed, what: str) -> dict[str, Any]:
    try:
        found = json.loads(done.stdout)
    except ValueError:
        raise PackageError(f"brew {what}: its output is not JSON") from None
    if not isinstance(found, dict):
        raise PackageError(f"brew {what}: expected a JSON object with formulae and casks")
    return found


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int) and value > 0 else None
