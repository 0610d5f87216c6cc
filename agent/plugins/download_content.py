"""``aws:downloadContent``: fetch a file over HTTPS, check its SHA-256, put it in place.

Only ``sourceType: HTTPS``; ``sourceInfo`` is ``{"url": "https://...", "sha256": "<hex>"}``
(an object or its JSON text), and the hash is required: content a node runs must be exactly
what the author meant.  Plain ``http://`` is refused, redirects included.  TLS is verified
against the system's trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured).  The file
is streamed to a temporary name beside the destination and renamed once its hash matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable, StopReason
from agent.plugins.output import CHUNK_BYTES

NAME = "aws:downloadContent"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
MAX_REDIRECTS = 5
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(Exception):
    pass


def source_info(inputs: dict[str, Any]) -> tuple[str, str]:
    kind = inputs.get("sourceType")
    if kind != "HTTPS":
        raise DownloadError(f"sourceType {kind!r} is not supported: only HTTPS")
    raw = inputs.get("sourceInfo")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise DownloadError("sourceInfo is not a JSON object") from None
    if not isinstance(raw, dict):
        raise DownloadError("sourceInfo must be an object with url and sha256")
    url, digest = raw.get("url"), raw.get("sha256")
    if not isinstance(url, str) or not url:
        raise DownloadError("sourceInfo.url is required")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise DownloadError("sourceInfo.sha256 is required: 64 hex digits of the file's SHA-256")
    _require_https(url)
    return url, digest.lower()


def _require_https(url: str) -> None:
    if urlsplit(url).scheme.lower() != "https":
        raise DownloadError(f"refusing {url}: only https:// URLs are allowed")


def destination(inputs: dict[str, Any], url: str, ctx: StepContext) -> Path:
    name = Path(unquote(urlsplit(url).path)).name or "download"
    given = str(inputs.get("destinationPath") or "")
    if not given:
        return ctx.work_dir / name
    path = Path(given)
    if not path.is_absolute():
        path = ctx.work_dir / path
    if given.endswith(("/", "\\")) or path.is_dir():
        return path / name
    return path


class DownloadContent(Stoppable):
    name = NAME

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        part: Path | None = None
        try:
            url, expected = source_info(inputs)
            dest = destination(inputs, url, ctx)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(f".{dest.name}.part")
            size, digest = self._fetch(url, part, ctx)
            if self._stopped is not None:
                return PluginResult(self._stopped.status, None, message=self._stopped.describe)
            if digest != expected:
                raise DownloadError(f"sha256 mismatch for {url}: expected {expected}, got {digest}")
            os.replace(part, dest)
            part = None
        except DownloadError as exc:
            return PluginResult.failed(str(exc))
        except OSError as exc:
            return PluginResult.failed(f"cannot write the download: {exc}")
        finally:
            if part is not None:
                with contextlib.suppress(OSError):
                    part.unlink()
        ctx.stdout.note(f"Downloaded {url} to {dest} ({size} bytes, sha256 {digest})")
        return PluginResult(wire.ST_SUCCESS, 0)

    def _fetch(self, url: str, part: Path, ctx: StepContext) -> tuple[int, str]:
        import httpx

        from agent.http import USER_AGENT, describe

        hasher = hashlib.sha256()
        size = 0
        remaining = max(ctx.deadline - time.monotonic(), 0.1)
        timeout = httpx.Timeout(min(30.0, remaining))
        try:
            with httpx.Client(
                verify=True, timeout=timeout, headers={"user-agent": USER_AGENT}, trust_env=True
            ) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    with client.stream("GET", url) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("location", ""))
                            _require_https(url)
                            continue
                        if response.status_code != 200:
                            raise DownloadError(f"GET {url}: HTTP {response.status_code}")
                        with part.open("wb") as out:
                            for chunk in response.iter_bytes(CHUNK_BYTES):
                                if self._stopped is None and time.monotonic() >= ctx.deadline:
                                    self._stopped = StopReason.TIMEOUT
                                if self._stopped is not None:
                                    break
                                out.write(chunk)
                                hasher.update(chunk)
                                size += len(chunk)
                        return size, hasher.hexdigest()
        except httpx.HTTPError as exc:
            raise DownloadError(f"GET {url}: {describe(exc)}") from None
        raise DownloadError(f"GET {url}: more than {MAX_REDIRECTS} redirects")
