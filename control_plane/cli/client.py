"""The HTTP client: the only module that imports httpx.

Import it lazily (inside the command that needs it): httpx costs a good part of the startup
budget.  Every failure leaves as an :mod:`errors` exception; httpx's never escape.

A ``429`` whose ``Retry-After`` is at most :data:`MAX_RETRY_AFTER` seconds is waited out and
the request sent again, up to :data:`RETRIES_ON_429` times (the server refused it before doing
anything, so a POST is safe to repeat).  A stream is retried only before its body starts.
"""

from __future__ import annotations

import email.utils
import re
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

# httpx's own CLI (click + rich + pygments) is slow to import and never needed here.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

from control_plane import __version__  # noqa: E402
from control_plane.cli.errors import (  # noqa: E402
    ApiError,
    BadResponse,
    ConfigError,
    ConnectionFailed,
)

if TYPE_CHECKING:
    from control_plane.cli.profiles import Profile

USER_AGENT = f"corral-cli/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")
MAX_RETRY_AFTER = 10.0
PAGE_LIMIT = 1000  # the server's largest page
RETRIES_ON_429 = 2


def ssl_context(ca_file: str | None = None, *, ca_data: str | None = None) -> ssl.SSLContext:
    """A context that trusts this one CA (a file, or PEM text) and nothing else."""
    if not ca_file and not ca_data:
        # create_default_context() would fall back to the system CAs: never do that.
        raise ConfigError("no CA file: set CORRAL_CA_FILE or run `corral login`")
    try:
        return ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    except FileNotFoundError:
        raise ConfigError(
            f"CA file {ca_file} not found: run `corral login` again or set CORRAL_CA_FILE"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        what = f"CA file {ca_file}" if ca_file else "the CA"
        raise ConfigError(f"{what} is not a usable PEM certificate: {exc}") from None


def describe(exc: httpx.HTTPError, timeout: float | None = None) -> str:
    """A short reason for a transport failure: refused, TLS, timeout, DNS ..."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS verification failed: {cause.verify_message}"
        cause = cause.__cause__ or cause.__context__
    reason = _ERRNO_PREFIX.sub("", str(exc)) or type(exc).__name__
    return reason


class ApiClient:
    """A synchronous JSON client for the control plane's operator API."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        ca_file: str | None = None,
        ca_data: str | None = None,
        transport: httpx.BaseTransport | None = None,
        insecure: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Trust only ``ca_file`` (or the PEM text ``ca_data``); ``insecure`` trusts anything.

        ``transport`` replaces the network (tests); TLS is then the transport's business.
        ``sleep`` waits out a ``Retry-After``.
        """
        self.url = url.rstrip("/")
        self._sleep = sleep
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = False
        if transport is None and not insecure and self.url.startswith("https:"):
            if not ca_file and not ca_data:
                raise ConfigError(
                    f"no CA file to verify {self.url}: set CORRAL_CA_FILE or run `corral login`"
                )
            verify = ssl_context(ca_file, ca_data=ca_data)
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            verify=verify,
            timeout=DEFAULT_TIMEOUT,
            transport=transport,
        )

    @classmethod
    def for_profile(
        cls, profile: Profile, *, transport: httpx.BaseTransport | None = None
    ) -> ApiClient:
        return cls(profile.url, profile.token, ca_file=profile.ca_file, transport=transport)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, *, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        return self.request("POST", path, body=body, timeout=timeout)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, body=body)

    def get_list(
        self, path: str, key: str, *, params: Any = None, max_items: int | None = None
    ) -> list[dict[str, Any]]:
        """The list under ``key`` of ``{key: [...], "next_token": ...}`` answers, every page
        followed (up to ``max_items``)."""
        return self.pages(path, key, params=params, max_items=max_items)[0]

    def pages(
        self, path: str, key: str, *, params: Any = None, max_items: int | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """(the items, whether more were left when ``max_items`` stopped the reading)."""
        query = dict(params or {})
        rows: list[dict[str, Any]] = []
        while True:
            want = PAGE_LIMIT if max_items is None else min(PAGE_LIMIT, max_items - len(rows))
            data = self.get(path, params={**query, "limit": want})
            page = data.get(key) if isinstance(data, dict) else None
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise BadResponse(f"{self.url} answered GET {path} without the {key!r} list")
            rows.extend(page)
            token = data.get("next_token")
            if not isinstance(token, str) or not token:
                return rows, False
            if max_items is not None and len(rows) >= max_items:
                return rows[:max_items], True
            if token == query.get("next_token"):
                raise BadResponse(f"{self.url} gave the same next_token twice for GET {path}")
            query["next_token"] = token

    def stream(self, path: str, *, params: Any = None) -> Iterator[bytes]:
        """A GET whose body is read in chunks as it arrives (output blobs, event streams)."""
        try:
            for attempt in range(RETRIES_ON_429 + 1):
                with self._http.stream(
                    "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
                ) as response:
                    if not response.is_success:
                        response.read()
                        delay = retry_delay(response) if attempt < RETRIES_ON_429 else None
                        if delay is None:
                            raise _api_error(response)
                    else:
                        # Once a byte is out, never again: the caller has already used it.
                        yield from response.iter_bytes()
                        return
                self._sleep(delay)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(self.url, describe(exc, None)) from exc

    def get_text(self, path: str) -> str:
        """A non-JSON GET (the CA certificate); errors are mapped like any other call."""
        return self._send("GET", path).text

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON body of a 2xx answer (None for an empty one)."""
        response = self._send(method, path, params=params, body=body, timeout=timeout)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BadResponse(
                f"{self.url} answered {method} {path} with HTTP {response.status_code} "
                "and a body that is not JSON; is this a Corral server?"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        request_timeout = DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout)
        for attempt in range(RETRIES_ON_429 + 1):
            try:
                response = self._http.request(
                    method, path, params=params, json=body, timeout=request_timeout
                )
            except httpx.HTTPError as exc:
                limit = timeout if timeout is not None else DEFAULT_TIMEOUT.read
                raise ConnectionFailed(self.url, describe(exc, limit)) from exc
            delay = retry_delay(response) if attempt < RETRIES_ON_429 else None
            if delay is None:
                break
            self._sleep(delay)
        if not response.is_success:
            raise _api_error(response)
        return response


def retry_delay(response: httpx.Response, now: float | None = None) -> float | None:
    """How long to wait before sending a rate-limited request again; None: do not.

    ``Retry-After`` is seconds or an HTTP date; a wait over :data:`MAX_RETRY_AFTER` is left
    to the user (the error says how long).
    """
    if response.status_code != 429:
        return None
    value = response.headers.get("retry-after", "").strip()
    try:
        delay = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        delay = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not 0 <= delay <= MAX_RETRY_AFTER:  # also refuses nan
        return None
    return delay


def _api_error(response: httpx.Response) -> ApiError:
    """``{"error": {"code", "message"}}`` if the server sent it, else the HTTP status."""
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str):
            wait = response.headers.get("retry-after", "").strip()
            if response.status_code == 429 and wait.isdigit():
                message = f"{message}; retry in {wait} s"
            return ApiError(response.status_code, code, message)
    except (ValueError, KeyError, TypeError):
        pass
    reason = response.reason_phrase or "error"
    return ApiError(
        response.status_code,
        f"http_{response.status_code}",
        f"HTTP {response.status_code} {reason}",
    )
