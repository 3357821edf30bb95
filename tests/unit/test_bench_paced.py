"""(d)'s sentence: the concurrent and single-stream figures, and the CPU per relayed chunk."""

from __future__ import annotations

from typing import Any

from bench.limits import paced_sentence


def _results(d_gateway: dict[str, float], d_floor: dict[str, float]) -> dict[str, Any]:
    return {
        "plan": {"paced_concurrency": 8},
        "figures": {"d": {"gateway": d_gateway, "floor": d_floor}},
    }


def test_paced_sentence_names_the_cpu_queue() -> None:
    text = paced_sentence(
        _results(
            {
                "extra_p99_ms": 1.9,
                "extra_single_p99_ms": 0.8,
                "cpu_us_per_chunk_front": 110.0,
                "cpu_us_per_chunk_connector": 50.0,
            },
            {"cpu_us_per_chunk_front": 48.0},
        )
    )
    assert text.startswith("Paced chunks pick up 1.90 ms p99 with 8 streams at once, 0.80 ms")
    assert "the gateway spends 110 us and the connector 50 us on each relayed chunk" in text
    assert "(Hypercorn alone, on the floor, 48 us)" in text
    assert "the last of 8 waits for the 7 before it: about 0.77 ms in the gateway alone" in text
    assert "To stay within" not in text  # one stream's own delay unknown: no budget


def test_paced_sentence_says_what_one_chunk_may_cost() -> None:
    gateway = {
        "extra_p99_ms": 2.4,
        "extra_single_p50_ms": 0.69,
        "extra_single_p99_ms": 1.0,
        "cpu_us_per_chunk_front": 150.0,
        "cpu_us_per_chunk_connector": 75.0,
    }
    text = paced_sentence(_results(gateway, {"cpu_us_per_chunk_front": 50.0}))
    assert "the gateway could spend about 44 us per chunk (1 ms less the 0.69 ms one chunk" in text
    assert "less than Hypercorn alone spends, so not with these parts on this machine." in text
    gateway["extra_single_p50_ms"] = 0.2
    text = paced_sentence(_results(gateway, {"cpu_us_per_chunk_front": 50.0}))
    assert text.endswith("To stay within 1 ms the gateway could spend about 114 us per chunk.")


def test_paced_sentence_without_cpu_figures() -> None:
    text = paced_sentence(_results({"extra_p99_ms": 1.2}, {}))
    assert "1.20 ms p99" in text
    assert "relayed chunk" not in text
    assert paced_sentence({"figures": {}}) == "Not measured through the gateway in this run."
