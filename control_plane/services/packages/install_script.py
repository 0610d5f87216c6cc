"""Serving the install script (packaging/install.sh, shipped as control_plane/assets/install.sh):
the server writes the URL the script was fetched from as its default ``--server``, so the
pasted one-liner needs no ``--server``.

The URL comes from the request's Host header when it is a plain host[:port] (what the
operator typed in the curl line, so it names this server the way the node reaches it), else
from the configuration.  Only characters that are inert inside double quotes in sh pass.
"""

from __future__ import annotations

import re

from control_plane.config import ServerConfig, parse_listen, url_for

MARKER = 'SERVED_FROM=""'
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(:[0-9]{1,5})?$")


def server_url(host_header: str, config: ServerConfig) -> str:
    if _HOST.fullmatch(host_header):
        return f"https://{host_header}"
    host, port = parse_listen(config.listen)
    return url_for(config.hostnames[0] if config.hostnames else host, port)


def render(script: str, host_header: str, config: ServerConfig) -> str:
    """The script with its ``SERVED_FROM`` line filled in (the one line that starts so)."""
    url = server_url(host_header, config)
    lines = script.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(MARKER):
            lines[i] = f'SERVED_FROM="{url}"' + line[len(MARKER) :]
            break
    return "".join(lines)
