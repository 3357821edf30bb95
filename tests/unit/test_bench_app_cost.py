"""The in-process measure of the gateway's own request handling, and its lines in the report."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import app_cost
from bench.report import render_markdown
from tests.unit.test_bench_cpu import _results


async def test_requests_really_pass_through_the_gateway_app() -> None:
    figures = await app_cost.measure_async(5, warmup=2)
    assert figures["requests"] == 5
    assert figures["us_per_request"] > 0
    assert math.isfinite(figures["us_per_request"])
    with pytest.raises(ValueError, match="positive"):
        await app_cost.measure_async(0)


async def test_a_refused_request_is_not_counted_as_handled() -> None:
    original = app_cost.BODY
    app_cost.BODY = b'{"model": "no-such-model", "messages": []}'
    try:
        with pytest.raises(RuntimeError, match="requests failed"):
            await app_cost.measure_async(3, warmup=0)
    finally:
        app_cost.BODY = original


def test_report_splits_the_gateway_process() -> None:
    results: dict[str, Any] = _results(with_h2=True)
    results["figures"]["app"] = {"us_per_request": 150.0, "requests": 3000.0}
    text = render_markdown(results, {})
    assert "Where the gateway process's 700 us per request go" in text
    assert "as the floor's server spends it, 200 us" in text
    assert "(`bench/app_cost.py`" in text
    assert "150 us; h2's client side 61 us; the rest, 289 us," in text
    del results["figures"]["app"]
    assert "Where the gateway process's" not in render_markdown(results, {})
