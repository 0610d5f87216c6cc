"""Rate limits: token buckets per key and the failed-authentication slow-down per IP, with a
clock the tests advance."""

from __future__ import annotations

import pytest

from control_plane.services.ratelimit import (
    AuthFailures,
    RateLimits,
    TokenBuckets,
    retry_after,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused_with_the_wait_for_one_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=4, clock=clock)
    assert [buckets.take("t") for _ in range(4)] == [0.0] * 4
    assert buckets.take("t") == pytest.approx(0.5)
    # A refusal takes nothing: the wait does not grow with retries.
    assert buckets.take("t") == pytest.approx(0.5)
    assert buckets.take("t", cost=3) == pytest.approx(1.5)


def test_refills_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=4, clock=clock)
    for _ in range(4):
        buckets.take("t")
    clock.now += 0.5
    assert buckets.take("t") == 0.0
    assert buckets.take("t") > 0
    clock.now += 3600
    assert [buckets.take("t") for _ in range(4)] == [0.0] * 4
    assert buckets.take("t") > 0


def test_coming_back_when_told_is_allowed() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=20.0, burst=100, clock=clock)
    for _ in range(100):
        assert buckets.take("t") == 0.0
    wait = buckets.take("t")
    assert wait > 0
    assert retry_after(wait) == 1
    clock.now += wait
    assert buckets.take("t") == 0.0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


def test_zero_rate_is_unlimited() -> None:
    buckets = TokenBuckets(rate=0, burst=0, clock=Clock())
    assert all(buckets.take("t") == 0.0 for _ in range(10_000))
    assert len(buckets) == 0


def test_keys_are_isolated() -> None:
    buckets = TokenBuckets(rate=1.0, burst=2, clock=Clock())
    buckets.take("a")
    buckets.take("a")
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_full_buckets_are_dropped_lazily() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10.0, burst=5, clock=clock)
    for i in range(1000):
        buckets.take(f"k{i}")
    assert len(buckets) == 1000
    clock.now += 0.1  # one token back: every bucket is full again
    buckets.take("new")
    assert len(buckets) == 1


def test_max_keys_bounds_memory_by_evicting_the_least_recently_used() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        buckets.take(key)
        buckets.take(key)
    buckets.take("a")  # refused, but "a" is now the most recently used
    buckets.take("d")
    assert len(buckets) == 3
    assert buckets.take("a") > 0  # kept, still empty
    assert buckets.take("c") > 0  # kept
    assert buckets.take("b") == 0.0  # evicted, so it starts full again
    assert len(buckets) == 3


def test_bad_settings_and_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(rate=1.0, burst=0, clock=Clock())
    with pytest.raises(ValueError, match="max_keys"):
        TokenBuckets(rate=1.0, burst=1, clock=Clock(), max_keys=0)
    buckets = TokenBuckets(rate=1.0, burst=2, clock=Clock())
    with pytest.raises(ValueError, match="cost"):
        buckets.take("t", cost=3)
    with pytest.raises(ValueError, match="cost"):
        buckets.take("t", cost=-1)


def test_a_clock_stepping_back_grants_nothing() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    buckets.take("t")
    clock.now -= 100
    assert buckets.take("t") == pytest.approx(1.0)


def fail(auth: AuthFailures, clock: Clock, ip: str) -> float:
    """Fail once, as soon as allowed; the delay imposed."""
    clock.now += auth.check(ip)
    assert auth.check(ip) == 0.0
    auth.failed(ip)
    return auth.check(ip)


def test_failed_authentication_delays_double_up_to_the_cap() -> None:
    clock = Clock()
    auth = AuthFailures(clock, base_delay=0.5, max_delay=30.0)
    assert auth.check("10.0.0.1") == 0.0
    delays = [fail(auth, clock, "10.0.0.1") for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_the_wait_counts_down() -> None:
    clock = Clock()
    auth = AuthFailures(clock)
    for _ in range(3):
        fail(auth, clock, "ip")
    assert auth.check("ip") == 2.0
    clock.now += 1.5
    assert auth.check("ip") == pytest.approx(0.5)
    clock.now += 0.5
    assert auth.check("ip") == 0.0


def test_only_time_forgets_failures_and_refusals_are_counted() -> None:
    """Another caller's success from the same address (a NAT) must not reset an attacker's
    count: there is nothing that resets it but a quiet period."""
    clock = Clock()
    auth = AuthFailures(clock)
    for _ in range(4):
        fail(auth, clock, "ip")
    assert not hasattr(auth, "succeeded")
    assert auth.check("ip") == 4.0
    for _ in range(3):
        auth.refused("ip")
    assert auth.take_refused("ip") == 3
    assert auth.take_refused("ip") == 0
    auth.refused("elsewhere")  # an address without failures keeps no entry for it
    assert auth.take_refused("elsewhere") == 0 and len(auth) == 1


def test_failures_are_forgotten_after_a_quiet_period() -> None:
    clock = Clock()
    auth = AuthFailures(clock, forget_after=900)
    for _ in range(5):
        fail(auth, clock, "ip")
    clock.now += 899
    assert fail(auth, clock, "ip") == 16.0  # still counting: the sixth failure
    clock.now += 900
    assert auth.check("ip") == 0.0
    assert len(auth) == 0
    assert fail(auth, clock, "ip") == 0.5


def test_ips_are_isolated() -> None:
    clock = Clock()
    auth = AuthFailures(clock)
    for _ in range(3):
        fail(auth, clock, "10.0.0.1")
    assert auth.check("10.0.0.2") == 0.0
    assert fail(auth, clock, "10.0.0.2") == 0.5


def test_max_keys_bounds_the_ips_remembered() -> None:
    clock = Clock()
    auth = AuthFailures(clock, max_keys=2)
    auth.failed("a")
    auth.failed("b")
    auth.failed("c")
    assert len(auth) == 2
    assert auth.check("a") == 0.0  # the oldest failure went
    assert auth.check("b") == 0.5
    assert auth.check("c") == 0.5


def test_many_failures_stay_finite() -> None:
    clock = Clock()
    auth = AuthFailures(clock, max_delay=30.0)
    for _ in range(5000):
        auth.failed("ip")
    assert auth.check("ip") == 30.0


def test_zero_base_delay_turns_the_slow_down_off() -> None:
    auth = AuthFailures(Clock(), base_delay=0)
    for _ in range(10):
        auth.failed("ip")
    assert auth.check("ip") == 0.0
    assert len(auth) == 0


def test_inconsistent_auth_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="forget_after"):
        AuthFailures(Clock(), max_delay=60, forget_after=30)
    with pytest.raises(ValueError, match="below base_delay"):
        AuthFailures(Clock(), base_delay=5, max_delay=1)


def test_rate_limits_defaults_and_separate_key_spaces() -> None:
    clock = Clock()
    limits = RateLimits(clock=clock)
    assert [limits.operator("tok") for _ in range(100)] == [0.0] * 100
    assert limits.operator("tok") == pytest.approx(1 / 20)
    # A node whose id equals a token id has its own bucket.
    assert [limits.node("tok") for _ in range(50)] == [0.0] * 50
    assert limits.node("tok") == pytest.approx(1 / 10)
    limits.auth.failed("10.0.0.1")
    assert limits.auth.check("10.0.0.1") == 0.5


def test_rate_limits_from_config_numbers() -> None:
    limits = RateLimits(operator_rate=0, node_rate=1, node_burst=1, clock=Clock())
    assert all(limits.operator("tok") == 0.0 for _ in range(1000))
    assert limits.node("mi-1") == 0.0
    assert limits.node("mi-1") == pytest.approx(1.0)
