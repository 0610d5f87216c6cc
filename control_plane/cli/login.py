"""``corral login``: pin the server's CA, check the token, save a profile."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from control_plane.cli.context import Runtime, output_option, pass_runtime
from control_plane.cli.errors import ApiError, CaHashMismatch, LoginRefused, one_line
from control_plane.cli.output import emit_message
from control_plane.cli.profiles import DEFAULT_PROFILE, PROFILE_NAME_RE, Profile

CA_ROUTE = "/v1/agent/ca"
LOGIN_ROUTE = "/v1/login"
_CA_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def _url_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not a URL like https://corral.example:8443")
    return value.strip().rstrip("/")


def _ca_hash_callback(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    normalized = value.strip().lower()
    if not _CA_HASH_RE.match(normalized):
        raise click.BadParameter("must be sha256: followed by 64 hex digits")
    return normalized


def _profile_callback(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is not None and not PROFILE_NAME_RE.match(value):
        raise click.BadParameter(
            f"{value!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


@click.command()
@click.option(
    "--url",
    callback=_url_callback,
    help="The server's URL (default: the profile's, when it exists).",
)
@click.option(
    "--token",
    help="An operator token (crl_...); '-' reads stdin (default: the profile's, same URL).",
)
@click.option(
    "--ca-hash",
    callback=_ca_hash_callback,
    metavar="sha256:HEX",
    help="Fetch the server's CA and accept it only if its hash matches.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="Trust this CA certificate (PEM) instead.",
)
@click.option(
    "--profile",
    "profile_name",
    callback=_profile_callback,
    help="Profile to save or switch to (default: the global --profile, else the current "
    f"one when --url is not given, else '{DEFAULT_PROFILE}').",
)
@output_option
@pass_runtime
def login(
    rt: Runtime,
    url: str | None,
    token: str | None,
    ca_hash: str | None,
    ca_file: str | None,
    profile_name: str | None,
    output: str,
) -> None:
    """Log in to a server: pin its CA, check the token, save and select a profile.

    `corral login --profile NAME` alone checks that profile's saved token and switches to it.
    Any valid token may log in, whatever its policies: asking who you are needs no right."""
    if ca_hash is not None and ca_file is not None:
        raise click.UsageError("give one of --ca-hash and --ca-file, not both")
    if token == "-":
        token = sys.stdin.readline().strip()
        if not token:
            raise click.BadParameter("the token is empty", param_hint="'--token'")
    elif token is not None and not token.strip():
        raise click.BadParameter("the token is empty", param_hint="'--token'")
    config = rt.config_path

    from control_plane.cli.profiles import load_config

    saved = load_config(config)
    name = profile_name or rt.profile_name
    if name is None:
        name = (url is None and saved.current_profile) or DEFAULT_PROFILE
    if not PROFILE_NAME_RE.match(name):
        raise click.BadParameter(f"{name!r} is not a valid profile name", param_hint="'--profile'")
    url, token, ca_file = _complete(name, saved.profiles.get(name), url, token, ca_hash, ca_file)

    ca_pem = _fetch_pinned_ca(rt, url, ca_hash) if ca_hash else None
    identity = _check_token(rt, url, token, ca_file=ca_file, ca_data=ca_pem)

    from control_plane.cli.profiles import ca_path_for, save_profile, write_private

    if ca_pem is not None:
        saved_ca = ca_path_for(name, config)
        write_private(saved_ca, ca_pem.encode())
        ca_file = str(saved_ca.resolve())
    assert ca_file is not None
    path = save_profile(name, url=url, token=token, ca_file=ca_file, path=config)
    who = f" as {identity}" if identity else ""
    emit_message(
        f"Logged in to {url}{who}; profile '{name}' saved in {path} and selected.",
        {"profile": name, "url": url, "ca_file": ca_file, "config_file": str(Path(path))},
        output,
    )


def _complete(
    name: str,
    saved: Profile | None,
    url: str | None,
    token: str | None,
    ca_hash: str | None,
    ca_file: str | None,
) -> tuple[str, str, str | None]:
    """URL, token and CA file: what was given, the rest from the saved profile (its token
    and CA only for the same URL: they belong to that server)."""
    if url is None:
        if saved is None:
            raise click.UsageError(
                f"there is no profile {name!r} yet: give --url, --token and --ca-hash (or "
                "--ca-file)"
            )
        url = saved.url
    same_server = saved is not None and saved.url == url
    if token is None:
        if not same_server or saved is None:
            raise click.UsageError(f"give --token: profile {name!r} has none for {url}")
        token = saved.token
    if ca_hash is None and ca_file is None:
        if not same_server or saved is None or saved.ca_file is None:
            raise click.UsageError("give exactly one of --ca-hash and --ca-file")
        ca_file = saved.ca_file
    return url, token, ca_file


def _fetch_pinned_ca(rt: Runtime, url: str, expected: str) -> str:
    """The CA PEM served at /v1/agent/ca (fetched without verification), if its hash matches."""
    from control_plane.cli.client import ApiClient
    from control_plane.cli.tls import ca_hash

    with ApiClient(url, None, insecure=True, transport=rt.transport) as api:
        pem = api.get_text(CA_ROUTE)
    try:
        actual = ca_hash(pem.encode())
    except LoginRefused:
        raise LoginRefused(f"{url}{CA_ROUTE} did not serve a PEM certificate") from None
    if actual != expected:
        raise CaHashMismatch(
            f"CA hash mismatch: {url} serves a CA with {actual}, expected {expected}; "
            "refusing to log in"
        )
    return pem


def _check_token(
    rt: Runtime, url: str, token: str, *, ca_file: str | None, ca_data: str | None
) -> str | None:
    """``POST /v1/login`` (which the server audits); the token's name, if the answer has it."""
    from control_plane.cli.client import ApiClient

    with ApiClient(url, token, ca_file=ca_file, ca_data=ca_data, transport=rt.transport) as api:
        try:
            answer = api.post(LOGIN_ROUTE)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise LoginRefused(f"{url} refused the token: {exc.message}") from exc
            raise
    name = answer.get("name") if isinstance(answer, dict) else None
    if not isinstance(name, str):
        return None
    return one_line(name) or None
