"""CA pinning: ``sha256:<hex>`` of a certificate's DER encoding (what agents pin too)."""

from __future__ import annotations

from pathlib import Path

from control_plane.cli.errors import ConfigError, LoginRefused


def ca_hash(pem: bytes) -> str:
    """``sha256:<hex>`` of the first certificate in ``pem``; LoginRefused if it is not one."""
    from agent.wire import ca_pin

    try:
        return ca_pin(pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise LoginRefused("the CA is not a PEM certificate") from None


def ca_hash_of_file(path: str) -> str:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read CA file {path}: {exc.strerror}") from None
    try:
        return ca_hash(pem)
    except LoginRefused:
        raise ConfigError(f"CA file {path} is not a PEM certificate") from None
