"""The hypothesis settings every property test file shares: derandomized and without a database,
so a failure comes back the same on every run (CI included), no deadline (this 2-core machine is
shared), and a bounded number of examples per test so `make test` stays quick."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, settings

SLOW_OR_LARGE = (HealthCheck.too_slow, HealthCheck.data_too_large)


def fuzz_settings(max_examples: int, suppress: Sequence[HealthCheck] = SLOW_OR_LARGE) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(suppress),
    )
