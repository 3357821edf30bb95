"""Reconnect schedule (sans-IO): exponential with jitter, capped, reset after a healthy period."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next_delay()`` after each failure; ``up(now)`` / ``down(now)`` around each tunnel."""

    def __init__(
        self,
        *,
        base_s: float = 0.5,
        factor: float = 2.0,
        max_s: float = 30.0,
        jitter: float = 0.25,
        healthy_reset_s: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.factor = factor
        self.max_s = max_s
        self.jitter = jitter
        self.healthy_reset_s = healthy_reset_s
        self._rand = rand
        self._failures = 0
        self._up_since: float | None = None

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        raw = min(self.max_s, self.base_s * self.factor**self._failures)
        self._failures = min(self._failures + 1, 64)
        spread = 1.0 - self.jitter + 2.0 * self.jitter * self._rand()
        return min(self.max_s, raw * spread)

    def up(self, now: float) -> None:
        """The tunnel came up at ``now`` (monotonic seconds)."""
        self._up_since = now

    def down(self, now: float) -> None:
        """The tunnel went down; a tunnel that stayed up long enough resets the schedule."""
        if self._up_since is not None and now - self._up_since >= self.healthy_reset_s:
            self._failures = 0
        self._up_since = None

    def reset(self) -> None:
        self._failures = 0
