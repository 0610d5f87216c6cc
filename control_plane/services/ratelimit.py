"""Request rate limits (issue 5, "Limits"): token buckets per operator token and per node, and
an exponential slow-down per source IP after failed authentication.

Pure bookkeeping with an injected clock; the API layer turns a non-zero wait into
``429`` with ``Retry-After: retry_after(wait)``.  Every call is O(1) amortized and never awaits,
so it is safe on one event loop without locks.  Memory is bounded: entries that no longer change
anything (a bucket full again, failures forgotten) are dropped lazily from the least recently
used end, and past ``max_keys`` the least recently used entry goes whatever its state.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from control_plane.services.clock import Clock

DEFAULT_OPERATOR_RATE = 20.0
DEFAULT_OPERATOR_BURST = 100
# Agents poll about once per 20 s and send small batches: this only stops a runaway node.
DEFAULT_NODE_RATE = 10.0
DEFAULT_NODE_BURST = 50
DEFAULT_AUTH_BASE_DELAY = 0.5
DEFAULT_AUTH_MAX_DELAY = 30.0
DEFAULT_AUTH_FORGET_AFTER = 900.0
DEFAULT_MAX_KEYS = 100_000

# A client that comes back exactly when told must not lose to float rounding.
_EPSILON = 1e-9


def retry_after(wait: float) -> int:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """One token bucket per key: ``burst`` tokens at most, refilled at ``rate`` per second.

    A rate of zero or less means unlimited.  A refused call takes nothing from the bucket.
    """

    def __init__(
        self, rate: float, burst: int, clock: Clock, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if rate > 0 and burst < 1:
            raise ValueError(f"burst must be at least 1 when rate is limited, not {burst}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else seconds until they are there."""
        if self.unlimited:
            return 0.0
        if not 0 <= cost <= self.burst:
            raise ValueError(f"cost must be between 0 and the burst {self.burst:g}, not {cost}")
        now = self._clock()
        self._drop_full(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._refill(bucket, now)
            self._buckets.move_to_end(key)
        if bucket.tokens + _EPSILON >= cost:
            bucket.tokens = max(0.0, bucket.tokens - cost)
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.stamp)  # a wall clock may step back
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.stamp = now

    def _drop_full(self, now: float) -> None:
        """Drop least recently used buckets that are full again: a new one would be the same."""
        while self._buckets:
            bucket = next(iter(self._buckets.values()))
            if bucket.tokens + (now - bucket.stamp) * self.rate < self.burst:
                return
            self._buckets.popitem(last=False)


class _Failures:
    __slots__ = ("count", "delay", "last", "refused", "until")

    def __init__(self) -> None:
        self.count = 0
        self.delay = 0.0
        self.last = 0.0
        self.until = 0.0
        self.refused = 0


class AuthFailures:
    """Failed authentication per source IP: the n-th failure makes the IP wait
    ``min(max_delay, base_delay * 2**(n-1))`` seconds before its next *unknown* credential is
    evaluated (a credential the server knows is never held back: see api/authz.py).

    Only ``forget_after`` seconds without a failure reset an IP: another caller's success
    from the same address (a NAT, a bastion) does not.  A base delay of zero or less turns
    the slow-down off.
    """

    def __init__(
        self,
        clock: Clock,
        base_delay: float = DEFAULT_AUTH_BASE_DELAY,
        max_delay: float = DEFAULT_AUTH_MAX_DELAY,
        forget_after: float = DEFAULT_AUTH_FORGET_AFTER,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if base_delay > 0 and max_delay < base_delay:
            raise ValueError(f"max_delay {max_delay:g} is below base_delay {base_delay:g}")
        if base_delay > 0 and forget_after < max_delay:
            raise ValueError(
                f"forget_after {forget_after:g} must be at least max_delay {max_delay:g}"
            )
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.forget_after = float(forget_after)
        self._clock = clock
        self._max_keys = max_keys
        # Ordered by last failure, oldest first, so expiry only ever looks at the front.
        self._ips: OrderedDict[str, _Failures] = OrderedDict()
        self.refused_total = 0  # attempts refused unevaluated, ever (for /metrics)

    @property
    def enabled(self) -> bool:
        return self.base_delay > 0

    def __len__(self) -> int:
        return len(self._ips)

    def check(self, ip: str) -> float:
        """Seconds ``ip`` must still wait before an attempt is evaluated; 0.0 if none."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        self._forget(now)
        entry = self._ips.get(ip)
        if entry is None:
            return 0.0
        # Bounded by the delay itself in case a wall clock stepped back.
        return max(0.0, min(entry.delay, entry.until - now))

    def failed(self, ip: str) -> None:
        """Record a failed authentication from ``ip``."""
        if not self.enabled:
            return
        now = self._clock()
        self._forget(now)
        entry = self._ips.get(ip)
        if entry is None:
            entry = _Failures()
            self._ips[ip] = entry
            if len(self._ips) > self._max_keys:
                self._ips.popitem(last=False)
        else:
            self._ips.move_to_end(ip)
        entry.count += 1
        # Capping the exponent keeps the float finite after any number of failures.
        entry.delay = min(self.max_delay, self.base_delay * 2.0 ** min(entry.count - 1, 64))
        entry.last = now
        entry.until = now + entry.delay

    def refused(self, ip: str) -> None:
        """Count an attempt refused unevaluated while ``ip`` waits."""
        self.refused_total += 1
        entry = self._ips.get(ip)
        if entry is not None:
            entry.refused += 1

    def take_refused(self, ip: str) -> int:
        """How many attempts were refused unevaluated since the last call (for the audit)."""
        entry = self._ips.get(ip)
        if entry is None:
            return 0
        count, entry.refused = entry.refused, 0
        return count

    def _forget(self, now: float) -> None:
        while self._ips:
            entry = next(iter(self._ips.values()))
            if now - entry.last < self.forget_after:
                return
            self._ips.popitem(last=False)


class RateLimits:
    """The server's limits: per operator token, per node, and failed authentication per IP.

    Built from plain numbers so the server config can feed it; the clock defaults to a
    monotonic one because only differences matter.
    """

    def __init__(
        self,
        *,
        operator_rate: float = DEFAULT_OPERATOR_RATE,
        operator_burst: int = DEFAULT_OPERATOR_BURST,
        node_rate: float = DEFAULT_NODE_RATE,
        node_burst: int = DEFAULT_NODE_BURST,
        auth_base_delay: float = DEFAULT_AUTH_BASE_DELAY,
        auth_max_delay: float = DEFAULT_AUTH_MAX_DELAY,
        auth_forget_after: float = DEFAULT_AUTH_FORGET_AFTER,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.operators = TokenBuckets(operator_rate, operator_burst, clock, max_keys)
        self.nodes = TokenBuckets(node_rate, node_burst, clock, max_keys)
        self.auth = AuthFailures(
            clock, auth_base_delay, auth_max_delay, auth_forget_after, max_keys
        )
        # Requests refused so far, by limit (``corral_rate_limited_total`` in /metrics).
        self.refusals = {"operator": 0, "node": 0}

    def operator(self, token_id: str) -> float:
        """Take one request for an operator token; the wait in seconds, 0.0 if allowed."""
        return self._counted("operator", self.operators.take(token_id))

    def node(self, node_id: str) -> float:
        """Take one request for a node; the wait in seconds, 0.0 if allowed."""
        return self._counted("node", self.nodes.take(node_id))

    def _counted(self, limit: str, wait: float) -> float:
        if wait > 0:
            self.refusals[limit] += 1
        return wait
