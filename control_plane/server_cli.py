"""``corral-server``: init, serve, migrate, dev."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from agent import logs
from control_plane.errors import CorralError

DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path), required=True, help="Server data directory."
)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="auto",
    help="auto: journald's format under systemd, else text.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str) -> None:
    """Corral control plane."""
    ctx.obj = {"debug": debug}
    logs.configure(log_format, logging.DEBUG if debug else logging.INFO)


@cli.command()
@DATA_DIR
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Name or address for the server certificate (repeatable).",
)
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to serve on."
)
@click.option("--force", is_flag=True, help="Replace an existing server in DATA_DIR.")
@click.option(
    "--audit-retention",
    default="365d",
    show_default=True,
    help="Keep audit entries this long (e.g. 365d, 90d); written to the config.",
)
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def init(
    data_dir: Path,
    hostnames: tuple[str, ...],
    listen: str,
    force: bool,
    audit_retention: str,
    output: str,
) -> None:
    """Create the CA, server certificate, first admin token, config and database."""
    from control_plane.datadir import init_data_dir

    result = init_data_dir(
        data_dir, list(hostnames), force=force, listen=listen, audit_retention=audit_retention
    )
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "url": result.url,
                    "admin_token": result.admin_token,
                    "ca_hash": result.ca_hash,
                    "ca_file": result.ca_file,
                },
                indent=2,
            )
        )
        return
    click.echo(f"Initialized {data_dir.resolve()}")
    click.echo(f"  URL:          {result.url}")
    click.echo(f"  CA file:      {result.ca_file}")
    click.echo(f"  CA hash:      {result.ca_hash}")
    click.echo(f"  Admin token:  {result.admin_token}")
    click.echo("The admin token is shown once; it is stored only as a hash.")
    click.echo(f"Next: corral-server serve --data-dir {data_dir}")


@cli.command()
@DATA_DIR
@click.option(
    "--listen",
    default=None,
    help="HOST:PORT (default from config, 127.0.0.1:8443); IPv6 as [::1]:8443.",
)
@click.option(
    "--audit-retention",
    default=None,
    help="Keep audit entries this long (e.g. 365d); overrides the config's audit_retention.",
)
def serve(data_dir: Path, listen: str | None, audit_retention: str | None) -> None:
    """Run the server (migrates the database first)."""
    import dataclasses

    from control_plane.config import duration_seconds, load_config
    from control_plane.serve import run

    config = load_config(data_dir.resolve())
    if audit_retention is not None:
        duration_seconds(audit_retention)
        config = dataclasses.replace(config, audit_retention=audit_retention)
    run(config, listen)


@cli.command()
@DATA_DIR
def migrate(data_dir: Path) -> None:
    """Bring the database schema up to date."""
    from control_plane.config import load_config
    from control_plane.store import migrate as store_migrate

    config = load_config(data_dir.resolve())
    store_migrate.upgrade(config.sync_database_url)
    click.echo(f"database at revision {store_migrate.current_revision(config.sync_database_url)}")


@cli.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path(".corral-dev"), show_default=True
)
@click.option("--listen", default="127.0.0.1:8443", show_default=True)
def dev(data_dir: Path, listen: str) -> None:
    """Server + one local agent, in the foreground (like `vault server -dev`)."""
    from control_plane.dev import run_dev

    run_dev(data_dir.resolve(), listen)


@cli.group()
def keys() -> None:
    """The SecureString key ring (keyring.json in the data dir, mode 0600, or CORRAL_KEYRING /
    CORRAL_KEYRING_FILE)."""


@keys.command("list")
@DATA_DIR
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def keys_list(data_dir: Path, output: str) -> None:
    """The keys (never their material): which is current, which are retired."""
    from control_plane.security.keyring import KeyRing

    ring = KeyRing.load(data_dir.resolve())
    listed = ring.list()
    if output == "json":
        click.echo(json.dumps(listed, indent=2, default=str))
        return
    if not listed:
        click.echo(f"no keys ({ring.source}); create one with: corral-server keys create")
    for key in listed:
        mark = "current" if key["current"] else key["state"]
        click.echo(f"{key['key_id']}  {key['created_at']}  {mark}")


@keys.command("create")
@DATA_DIR
def keys_create(data_dir: Path) -> None:
    """Add a new key and make it current (older keys stay for reading)."""
    from control_plane.security.keyring import KeyRing

    key = KeyRing.load(data_dir.resolve()).create()
    click.echo(f"created key {key.key_id}; new SecureString values use it")


@keys.command("rotate")
@DATA_DIR
@click.option("--rewrap", is_flag=True, help="Re-wrap every stored value's data key too.")
def keys_rotate(data_dir: Path, rewrap: bool) -> None:
    """A new current key; old values stay readable (with --rewrap, moved to the new key)."""
    import asyncio

    from control_plane.config import load_config
    from control_plane.security.keyring import KeyRing

    config = load_config(data_dir.resolve())
    ring = KeyRing.load(config.data_dir)
    key = ring.rotate()
    click.echo(f"rotated: key {key.key_id} is current")
    if rewrap:
        count = asyncio.run(_rewrap(config, ring))
        click.echo(f"re-wrapped {count} SecureString value(s) under {key.key_id}")


async def _rewrap(config: Any, ring: Any) -> int:
    from control_plane.services.clock import system_clock
    from control_plane.services.events import EventBus
    from control_plane.services.parameters.service import ParameterService
    from control_plane.store.db import Database

    db = Database(config.async_database_url)
    try:
        return await ParameterService(db, system_clock, EventBus(), lambda: ring).rewrap_all()
    finally:
        await db.close()


@cli.group()
def packages() -> None:
    """The agent and server packages this server hands out to nodes (docs/install.md)."""


@packages.command("list")
@DATA_DIR
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def packages_list(data_dir: Path, output: str) -> None:
    """What the signed manifest lists: each package file, its sha256 and size, and the key
    nodes pin to check it."""
    from control_plane.config import load_config
    from control_plane.services.packages.service import PackageService, package_dirs
    from control_plane.services.packages.signing import KEY_FILE

    config = load_config(data_dir.resolve())
    service = PackageService(config.data_dir, package_dirs(config.packages_path))
    files = service.catalog.files()
    # Listing changes nothing: a data dir without the key yet gets it at the server's start.
    made = (config.data_dir / KEY_FILE).exists()
    key_id = service.signing_key().key_id if made else None
    if output == "json":
        listed = {
            "directories": [str(d) for d in service.catalog.dirs],
            "signing_key": key_id,
            "packages": [f.entry() | {"path": str(f.path)} for f in files],
        }
        click.echo(json.dumps(listed, indent=2))
        return
    where = ", ".join(str(d) for d in service.catalog.dirs)
    if not files:
        click.echo(f"no packages in {where}; copy packaging/build's dist/ files there")
        return
    click.echo(f"{'FILE':<44} {'VERSION':<12} {'FORMAT':<7} {'ARCH':<8} {'SIZE':>10}  SHA256")
    for f in files:
        p = f.package
        row = f"{p.file:<44} {p.version:<12} {p.format:<7} {p.arch:<8} {f.size:>10}"
        click.echo(f"{row}  {f.sha256}")
    signed = f"signed with {key_id}" if key_id else "no signing key yet (made at start)"
    click.echo(f"from {where}; {signed}")


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted")
    except CorralError as exc:
        if debug:
            raise
        _fail(exc.message)
    except OSError as exc:
        if debug:
            raise
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the entry point: no traceback reaches a user without --debug
        if debug:
            raise
        _fail(f"unexpected failure: {type(exc).__name__}: {exc} (run with --debug for details)")


if __name__ == "__main__":
    main()
