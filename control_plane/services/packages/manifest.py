"""The signed manifest: what the server serves, with checksums (the shared contract).

``{"schema": 1, "key_id": "sha256:<hex of the raw public key>", "packages": [...]}`` as
canonical JSON (sorted keys, no spaces), signed with Ed25519 over exactly those bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from control_plane.services.packages.catalog import PackageFile

SCHEMA = 1


def manifest_bytes(key_id: str, files: Iterable[PackageFile]) -> bytes:
    doc = {"schema": SCHEMA, "key_id": key_id, "packages": [f.entry() for f in files]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
