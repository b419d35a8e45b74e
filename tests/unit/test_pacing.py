"""Jittered delays (``model_agent.pacing``): bounds, fresh draws, and the spread that keeps a
thousand agents from reconnecting in the same second, driven with seeded generators."""

from __future__ import annotations

import random

import pytest

from model_agent import pacing


@pytest.mark.parametrize("seed", range(5))
def test_the_relists_of_50_agents_after_one_drop_spread_over_more_than_10_seconds(seed):
    rng = random.Random(seed)
    delays = sorted(pacing.spread(30.0, rng) for _ in range(50))
    assert all(0.0 <= d < 30.0 for d in delays)
    assert delays[-1] - delays[0] >= 10.0
    busiest = max(sum(1 for d in delays if s <= d < s + 1) for s in range(30))
    assert busiest <= 10  # never most of them in one second


def test_a_zero_window_means_no_delay():
    assert pacing.spread(0.0) == 0.0


def test_resync_periods_drift_apart_within_20_percent():
    rng = random.Random(7)
    periods = [pacing.resync(600.0, rng) for _ in range(200)]
    assert all(480.0 <= p < 720.0 for p in periods)
    assert max(periods) - min(periods) > 120.0


def test_backoffs_are_sized_jittered_capped_and_drawn_afresh_each_iteration():
    backoffs = pacing.Backoffs(base=1.0, cap=8.0, count=6, rng=random.Random(3))
    assert len(backoffs) == 6
    first, second = list(backoffs), list(backoffs)
    assert len(first) == 6 and first != second
    for attempt, delay in enumerate(first):
        nominal = min(8.0, 2.0**attempt)
        assert nominal / 2 <= delay < nominal


def test_jittered_stays_within_half_to_full_delay():
    rng = random.Random(1)
    assert all(2.5 <= pacing.jittered(5.0, rng) < 5.0 for _ in range(100))
