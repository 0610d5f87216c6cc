"""Reconnect backoff: full jitter, U(0, min(cap, base * 2^n)), so a restarted control plane is
not hit by the whole fleet in the same second."""

from __future__ import annotations

import random

from agent.backoff import Backoff


class Extremes(random.Random):
    """Answers the upper (or lower) bound of every uniform() draw: the jitter's limits."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_ceiling_doubles_from_base_until_the_60s_cap() -> None:
    backoff = Backoff(rng=Extremes(top=True))
    ceilings = [backoff.next_delay() for _ in range(10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_the_lower_bound_is_zero() -> None:
    backoff = Backoff(rng=Extremes(top=False))
    assert [backoff.next_delay() for _ in range(8)] == [0.0] * 8


def test_cap_holds_after_very_many_failures() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=Extremes(top=True))
    delays = [backoff.next_delay() for _ in range(2000)]
    assert max(delays) == 60.0


def test_full_jitter_stays_within_bounds_and_spreads_out() -> None:
    base, cap = 0.5, 60.0
    backoff = Backoff(base=base, cap=cap, rng=random.Random(1234))
    for attempt in range(40):
        ceiling = min(cap, base * 2**attempt)
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
    # Many agents at the same attempt do not all pick the same delay.
    fleet = [Backoff(rng=random.Random(seed)) for seed in range(50)]
    for agent in fleet:
        for _ in range(7):
            agent.next_delay()
    seventh = {agent.next_delay() for agent in fleet}
    assert len(seventh) == 50
    assert all(0.0 <= d <= 60.0 for d in seventh)


def test_custom_base_and_cap() -> None:
    backoff = Backoff(base=0.2, cap=2.0, rng=Extremes(top=True))
    assert [round(backoff.next_delay(), 6) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(rng=Extremes(top=True))
    for _ in range(12):
        backoff.next_delay()
    assert backoff.next_delay() == 60.0
    backoff.reset()
    assert [backoff.next_delay() for _ in range(3)] == [1, 2, 4]
