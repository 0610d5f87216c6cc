"""rpm's installed packages: ``rpm -qa --dbpath <db> --qf`` with fields separated by
ASCII unit separators and records by record separators (no value can hold either).

Attributes as amazon-ssm-agent's rpm query: Name, Publisher (Vendor), Version, Release,
Epoch (left out when the package has none), InstalledTime (RFC 3339 UTC), ApplicationType
(Group), Architecture, URL, Summary, PackageId (the source rpm's file name).
"""

from __future__ import annotations

from agent.inventory.application import architecture, item, rfc3339, tool_timeout
from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import ToolTimeout

# Where distributions keep the database: Fedora 36+/RHEL 9 under /usr/lib/sysimage (with
# /var/lib/rpm a link to it), the others /var/lib/rpm.
DB_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")
_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")
_TAGS = (
    "NAME",
    "VENDOR",
    "VERSION",
    "RELEASE",
    "EPOCH",
    "INSTALLTIME",
    "GROUP",
    "ARCH",
    "URL",
    "SUMMARY",
    "SOURCERPM",
)
FS, RS = "\x1f", "\x1e"
QUERY = FS.join(f"%{{{tag}}}" for tag in _TAGS) + RS
_NONE = "(none)"


def database(ctx: CollectContext) -> str | None:
    """The node's rpm database directory (as a path on the node), if there is one."""
    for directory in DB_DIRS:
        if any(ctx.path(f"{directory}/{name}").is_file() for name in _DB_FILES):
            return directory
    return None


def present(ctx: CollectContext) -> bool:
    return database(ctx) is not None


def collect(ctx: CollectContext) -> list[Item]:
    db = database(ctx)
    if db is None:
        raise CollectError("rpm: no rpm database found")
    argv = ["rpm", "-qa", "--dbpath", str(ctx.path(db)), "--qf", QUERY]
    try:
        done = ctx.run(argv, {}, tool_timeout(ctx))
    except FileNotFoundError:
        raise CollectError(f"rpm: a database is in {db} but rpm is not installed") from None
    except ToolTimeout as exc:
        raise CollectError(f"rpm: {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"rpm -qa failed: {done.reason()}")
    items: list[Item] = []
    for record in done.stdout.split(RS):
        if not record.strip():
            continue
        values = record.lstrip("\n").split(FS)
        if len(values) != len(_TAGS):
            ctx.warn(f"rpm: a record with {len(values)} fields instead of {len(_TAGS)}; skipped")
            continue
        got = {tag: ("" if v == _NONE else v) for tag, v in zip(_TAGS, values, strict=True)}
        installed = got["INSTALLTIME"]
        items.append(
            item(
                {
                    "Name": got["NAME"],
                    "Publisher": got["VENDOR"],
                    "Version": got["VERSION"],
                    "Release": got["RELEASE"],
                    "Epoch": got["EPOCH"],
                    "InstalledTime": rfc3339(int(installed)) if installed.isdigit() else None,
                    "ApplicationType": got["GROUP"],
                    "Architecture": architecture(got["ARCH"]),
                    "URL": got["URL"],
                    "Summary": got["SUMMARY"].split("\n", 1)[0],
                    "PackageId": got["SOURCERPM"],
                    "PackageManager": "rpm",
                }
            )
        )
    return items
