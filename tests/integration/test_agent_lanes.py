"""The lane rules of the agent: retry or give up, backoff growth and jitter, and the bounded
download pool with its gauges.

Aspects: retryable errors retry until the attempt limit, honouring a longer Retry-After;
permanent errors and unexpected exceptions are judged by class; the backoff doubles, is
capped, and jitters within +-25 %; at most N downloads hold a slot and the queue-depth and
active-worker gauges follow.
"""

from __future__ import annotations

import asyncio

import pytest

from model_agent import agent_lanes, errors, metrics


@pytest.mark.parametrize(
    ("failure", "attempts", "give_up", "retry_in", "reason"),
    [
        (errors.NetworkError("reset"), 1, False, 2.0, "NetworkError"),
        (errors.RateLimitedError("429", retry_after=30.0), 1, False, 30.0, "RateLimited"),
        (errors.ServerError("500"), 5, True, 600.0, "ServerError"),
        (errors.NotFoundError("no repo"), 1, True, 600.0, "NotFound"),
        (errors.InvalidSpecError("spec.storage.path: bad"), 1, True, 600.0, "InvalidSpec"),
        (RuntimeError("bug"), 1, False, 2.0, "Error"),
        (RuntimeError("bug"), 5, True, 600.0, "Error"),
    ],
)
def test_failures_are_judged_by_class_and_attempt(failure, attempts, give_up, retry_in, reason):
    verdict = agent_lanes.judge(
        failure, attempts=attempts, max_attempts=5, delay=2.0, failed_retry=600.0
    )
    assert verdict.give_up is give_up
    assert verdict.retry_in == retry_in
    assert verdict.reason == reason
    assert verdict.message


def test_backoff_doubles_is_capped_and_jitters():
    for attempts, nominal in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)):
        samples = [agent_lanes.backoff(attempts, base=2.0, cap=60.0) for _ in range(200)]
        assert all(0.75 * nominal <= s <= 1.25 * nominal for s in samples)
        assert max(samples) - min(samples) > 0


async def test_download_slots_bound_concurrency_and_drive_the_gauges():
    recorder = metrics.Metrics()
    slots = agent_lanes.DownloadSlots(2, recorder)
    release = asyncio.Event()
    peak = 0

    async def download() -> None:
        nonlocal peak
        async with slots.slot():
            peak = max(peak, slots.active)
            await release.wait()

    tasks = [asyncio.create_task(download()) for _ in range(5)]
    for _ in range(10):  # a few loop turns let every task reach the semaphore
        await asyncio.sleep(0)
    assert (slots.active, slots.waiting) == (2, 3)
    assert recorder.registry.get_sample_value("model_agent_task_queue_depth") == 3
    assert recorder.registry.get_sample_value("model_agent_active_workers") == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert recorder.registry.get_sample_value("model_agent_active_workers") == 0
