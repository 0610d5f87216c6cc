"""TLS to the server: exactly its CA is trusted (pinned at registration)."""

from __future__ import annotations

import ssl
from pathlib import Path


def pinned_context(ca_file: Path) -> ssl.SSLContext:
    """Trust exactly the server's CA: no system roots are loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx
