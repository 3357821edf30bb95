"""The in-process measure of the gateway's own request handling, and its lines in the report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import app_cost, run
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


def test_report_weighs_the_designs_parts_against_the_budget() -> None:
    results: dict[str, Any] = _results(with_h2=True)
    results["figures"]["app"] = {"us_per_request": 150.0, "requests": 3000.0}
    text = render_markdown(results, {})
    # test figures: floor server 200 us, h2 61 + 59 us; gateway 700 us; budgets 400 / 580 us
    assert "Hypercorn serving the client (at best what the floor's server spends, 200 us)" in text
    assert "Of the 400 us the gateway process may spend per request for 0.50 of the floor" in text
    assert "they take 261 us; of the 580 us gateway and connector may spend together, 320" in text
    assert "That leaves 139 us in the gateway process for its own handling" in text
    assert "costs 150 us measured in-process" in text
    assert "event loop (289 us now): 439 us would have to become 139 us, 3.2 times less" in text
    assert "We judge the target out of reach with these parts" in text
    results["figures"]["app"]["us_per_request"] = 0.0
    results["figures"]["b64"]["gateway"]["cpu_us_per_req_front"] = 400.0
    text = render_markdown(results, {})
    assert "(139 us now): 139 us would have to become 139 us, 1.0 times less" in text
    assert "That is work on the gateway's own code, not a limit of its parts." in text
    results["figures"]["h2"]["client_us"] = 250.0
    assert "cannot be reached with these parts on this machine" in render_markdown(results, {})


def test_render_only_rewrites_the_docs_from_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "run.json"
    results.write_text(json.dumps(_results(with_h2=True)))
    docs = tmp_path / "performance.md"
    assert run.main(["--render", str(results), "--docs", str(docs)]) == 0
    assert "## CPU budget at concurrency 64" in docs.read_text()
    assert "(b) c=64 CPU us/req connector" in capsys.readouterr().out
    results.write_text('{"not": "a run"}')
    assert run.main(["--render", str(results), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench: error: {results} is not a bench results file: it has no figures"
