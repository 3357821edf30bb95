"""The in-process limit storage: the same admissions as limits' own, a cheap clean-up."""

from __future__ import annotations

import asyncio
import time

import pytest
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from gateway.limits.memory import SweptMemoryStorage


async def test_the_installed_limits_calls_our_clean_up_not_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_thread(*_: object, **__: object) -> None:
        raise AssertionError("the clean-up went to a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    storage = SweptMemoryStorage()
    window = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(1000)
    for _ in range(50):
        assert await window.hit(item, "k")
        await asyncio.sleep(0)  # let any clean-up task run
    assert storage.timer is None  # limits' own per-hit task was never started
    assert storage.sweeps == 1  # the first hit swept; the next sweep waits a second


@pytest.mark.parametrize("storage_class", [MemoryStorage, SweptMemoryStorage])
async def test_same_admissions_as_limits_own_storage(storage_class: type[MemoryStorage]) -> None:
    storage = storage_class()
    window = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(3)
    results = [await window.hit(item, "k") for _ in range(4)]
    assert results == [True, True, True, False]
    stats = await window.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert 55 < stats.reset_time - time.time() <= 60
    if isinstance(storage, SweptMemoryStorage):
        storage.sweep(time.time())  # nothing expired yet: nothing changes
        assert not await window.hit(item, "k")


async def test_the_sweep_drops_expired_entries_and_counters() -> None:
    storage = SweptMemoryStorage()
    window = MovingWindowRateLimiter(storage)
    counter = SlidingWindowCounterRateLimiter(storage)
    second = RateLimitItemPerSecond(5)
    for _ in range(3):
        assert await window.hit(second, "old")
    assert await window.hit(RateLimitItemPerMinute(5), "new")
    assert await counter.hit(second, "tokens", cost=2)
    storage.sweep(time.time() + 2.5)  # the per-second entries and counters are gone
    assert "old" not in storage.events
    assert len(next(iter(storage.events.values()))) == 1  # the per-minute entry stays
    assert not any("tokens" in key for key in storage.expirations)
    assert await window.hit(second, "old")  # and the key works as new


def test_no_second_error_wrapping_layer() -> None:
    for name in ("incr", "get", "acquire_entry", "get_moving_window", "get_sliding_window"):
        assert getattr(SweptMemoryStorage, name) is getattr(MemoryStorage, name), name
