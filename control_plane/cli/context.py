"""What every command gets from the root group: options, the config file, and the transport.

The root group fills a :class:`Runtime` into ``ctx.obj``; a caller may pass one in first
(``CliRunner().invoke(cli, args, obj=Runtime(transport=httpx.MockTransport(handler)))``) to
put an in-process transport under every request the CLI makes.  Nothing else is global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import httpx

    from control_plane.cli.client import ApiClient
    from control_plane.cli.profiles import Profile

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Runtime:
    transport: httpx.BaseTransport | None = None
    profile_name: str | None = None
    debug: bool = False

    @property
    def config_path(self) -> Path:
        from control_plane.cli.profiles import config_path

        return config_path()

    def profile(self) -> Profile:
        from control_plane.cli.profiles import resolve

        return resolve(self.config_path, self.profile_name)

    def client(self, profile: Profile | None = None) -> ApiClient:
        profile = profile or self.profile()  # fails fast, before httpx is imported
        from control_plane.cli.client import ApiClient

        return ApiClient.for_profile(profile, transport=self.transport)


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)


def output_option(func: F) -> F:
    """``--output table|json`` (table by default), passed to the command as ``output``."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def max_items_option(func: F) -> F:
    """``--max-items N``: a list command follows every page unless told to stop after N."""
    return click.option(
        "--max-items",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Stop after N items (default: every page).",
    )(func)
