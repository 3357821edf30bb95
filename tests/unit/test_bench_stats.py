"""The benchmark's pure parts: statistics, targets, the upstream's parser and answers, report."""

from __future__ import annotations

import json

import pytest

from bench import stats, targets
from bench.fast_upstream import content_event, stream_controls, stream_start, stream_tail
from bench.http1 import Body, End, Head, ParseError, RequestParser
from bench.limits import limit_sentences
from bench.profiling import own_frames, top_frames
from bench.report import render_markdown, render_table
from bench.run import plan_from_env
from bench.workloads import QUICK, Plan, add_extra_delay, add_relative

# --------------------------------------------------------------------------- stats


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 50) == pytest.approx(2.5)
    assert stats.percentile([5.0], 99) == 5.0


def test_percentile_of_nothing_is_none_and_bad_q_is_refused() -> None:
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        stats.percentile([1.0], 101)


def test_p99_of_a_hundred_values_sees_the_tail() -> None:
    values = [1.0] * 98 + [50.0, 100.0]
    assert stats.percentile(values, 99) == pytest.approx(50.5)


def test_summaries_in_milliseconds() -> None:
    summary = stats.summarize_s([0.001, 0.002, 0.003])
    assert summary.count == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.max_ms == pytest.approx(3.0)
    assert stats.summarize_ms([]).p99_ms is None
    assert summary.as_dict()["mean_ms"] == pytest.approx(2.0)


def test_ratio_difference_rate_growth_handle_missing_values() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(3.0, 0.0) is None
    assert stats.ratio(None, 2.0) is None
    assert stats.difference(3.0, 1.0) == 2.0
    assert stats.difference(3.0, None) is None
    assert stats.rate(10, 2.0) == 5.0
    assert stats.rate(10, 0.0) is None
    assert stats.growth_pct(100.0, 104.0) == pytest.approx(4.0)
    assert stats.growth_pct(0.0, 1.0) is None
    assert stats.mb_per_s(50_000_000, 0.5) == pytest.approx(100.0)


def test_timestamps_and_chunk_delays() -> None:
    line = b'data: {"choices":[{"delta":{"content":"w3@t=123456789 "}}]}'
    assert stats.sent_timestamp_ns(line) == 123456789
    assert stats.sent_timestamp_ns(b"data: [DONE]") is None
    assert stats.chunk_delays_ms([(1_000_000, 3_000_000), (5_000_000, 5_500_000)]) == [2.0, 0.5]
    assert stats.inter_arrival_ms([0, 20_000_000, 41_000_000]) == [20.0, 21.0]


# --------------------------------------------------------------------------- targets


def _figures(gateway_rps: float, floor_rps: float, added_p50: float) -> targets.Figures:
    return {
        "a": {"gateway": {"added_p50_ms": added_p50, "p50_ms": 3.0}},
        "b64": {
            "gateway": {"rps": gateway_rps, "errors": 0},
            "floor": {"rps": floor_rps},
        },
    }


def test_targets_pass_fail_and_not_applicable() -> None:
    checks = {(c.target.key, c.path): c for c in targets.check_all(_figures(600.0, 1000.0, 2.5))}
    assert checks[("b.rps", "gateway")].verdict == "PASS"
    assert checks[("b.rps", "gateway")].bound == pytest.approx(500.0)
    assert checks[("a.p50", "gateway")].verdict == "FAIL"
    assert checks[("b.errors", "gateway")].verdict == "PASS"
    assert checks[("c.rate", "gateway")].verdict == "n/a"
    assert checks[("b.rps", "gateway+squid")].verdict == "n/a"
    assert ("g.failed", "gateway+squid") not in checks


def test_websocket_targets_are_relative_to_gateway() -> None:
    figures = {
        "a": {"gateway": {"p50_ms": 3.0}, "gateway+websocket": {"p50_ms": 3.8}},
        "b64": {"gateway": {"rps": 1000.0}, "gateway+websocket": {"rps": 650.0}},
    }
    checks = {(c.target.key, c.path): c for c in targets.check_all(figures)}
    assert checks[("ws.p50", "gateway+websocket")].verdict == "PASS"
    assert checks[("ws.p50", "gateway+websocket")].bound == pytest.approx(4.0)
    assert checks[("ws.rps", "gateway+websocket")].verdict == "FAIL"
    assert checks[("ws.rps", "gateway+websocket")].as_dict()["bound"] == pytest.approx(700.0)


def test_add_relative_subtracts_direct() -> None:
    figures: dict[str, dict[str, float | None]] = {
        "direct": {"p50_ms": 0.2},
        "gateway": {"p50_ms": 1.7},
        "floor": {"p50_ms": None},
    }
    add_relative(figures, (("p50_ms", "added_p50_ms"),))
    assert figures["gateway"]["added_p50_ms"] == pytest.approx(1.5)
    assert figures["direct"]["added_p50_ms"] == 0.0
    assert figures["floor"]["added_p50_ms"] is None


# --------------------------------------------------------------------------- the upstream's parser


def test_parser_content_length_and_keep_alive() -> None:
    parser = RequestParser()
    raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    raw += b"GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    events = parser.feed(raw)
    assert events[0] == Head("POST", "/v1/chat/completions", {"host": "x", "content-length": "5"})
    assert events[1:3] == [Body(b"hello"), End()]
    assert isinstance(events[3], Head)
    assert events[3].path == "/v1/models"
    assert events[3].query == "x=1"
    assert events[4] == End()


def test_parser_byte_by_byte_chunked_body() -> None:
    raw = b"POST /v1/bulk/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    parser = RequestParser()
    events = []
    for i in range(len(raw)):
        events += parser.feed(raw[i : i + 1])
    body = b"".join(e.data for e in events if isinstance(e, Body))
    assert body == b"abcde"
    assert events[-1] == End()
    assert sum(isinstance(e, End) for e in events) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
    ],
)
def test_parser_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(ParseError):
        RequestParser().feed(raw)


def test_parser_refuses_an_endless_head() -> None:
    with pytest.raises(ParseError, match="too large"):
        RequestParser().feed(b"GET / HTTP/1.1\r\n" + b"x" * 70000)


# --------------------------------------------------------------------------- the upstream's answers


def test_stream_controls_from_the_body() -> None:
    body = {"stream": True, "standin": {"chunks": 200, "pace_ms": 20}}
    assert stream_controls(json.dumps(body).encode()) == (200, 20.0, False)
    body["stream_options"] = {"include_usage": True}
    assert stream_controls(json.dumps(body).encode()) == (200, 20.0, True)
    assert stream_controls(b'{"stream": true}') == (5, 0.0, False)
    assert stream_controls(b'{"model": "x"}') is None
    assert stream_controls(b"not json") is None


def _sse_events(raw: bytes) -> list[dict[str, object] | str]:
    """Undo the HTTP/1.1 chunking, then parse the SSE data lines."""
    body = raw.split(b"\r\n\r\n", 1)[1] if raw.startswith(b"HTTP/") else raw
    out = bytearray()
    while body:
        size_line, body = body.split(b"\r\n", 1)
        size = int(size_line, 16)
        out += body[:size]
        body = body[size + 2 :]
    events: list[dict[str, object] | str] = []
    for block in bytes(out).split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:].decode()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_stream_is_openai_shaped_with_usage_and_timestamps() -> None:
    raw = stream_start(True) + content_event(0, True) + content_event(1, True)
    raw += stream_tail(2, True)
    events = _sse_events(raw)
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert isinstance(usage, dict)
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    first = events[1]
    assert isinstance(first, dict)
    content = first["choices"][0]["delta"]["content"]  # type: ignore[index]
    assert stats.sent_timestamp_ns(content.encode()) is not None


# --------------------------------------------------------------------------- plan and report


def test_plan_from_environment() -> None:
    assert plan_from_env({}) == (Plan(), False)
    plan, quick = plan_from_env({"BENCH_QUICK": "1", "BENCH_SOAK_S": "7.5"})
    assert quick
    assert plan.seq_count == QUICK.seq_count
    assert plan.soak_s == 7.5


def _results() -> dict[str, object]:
    figures = {
        "a": {
            "direct": {"p50_ms": 0.5, "p99_ms": 1.0, "added_p50_ms": 0.0},
            "floor": {"p50_ms": 1.0, "p99_ms": 2.0, "added_p50_ms": 0.5},
            "gateway": {"p50_ms": 2.0, "p99_ms": 4.0, "added_p50_ms": 1.5},
        },
        "b64": {"floor": {"rps": 1000.0, "front_cpu_pct": 99.0}, "gateway": {"rps": 400.0}},
    }
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu_model": "Test CPU",
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux",
        },
        "quick": False,
        "plan": {"soak_s": 120.0},
        "duration_s": 300.0,
        "figures": figures,
        "unavailable": {"gateway+websocket": "not available: no carrier"},
        "notes": {"f": "on the tunnel API"},
        "profiles": {"gateway": "bench/profiles/gateway.svg"},
        "checks": [c.as_dict() for c in targets.check_all(figures)],
    }


def test_table_shows_values_ratios_and_verdicts() -> None:
    table = render_table(_results())
    assert "(a) latency p50 ms" in table
    assert "2.00 (4.00xd 2.00xf)" in table
    assert "FAIL gateway" in table  # 400 req/s < 50% of 1000
    assert "PASS gateway" in table  # 1.5 ms added <= 2 ms
    assert "gateway+websocket: not available: no carrier" in table


def test_markdown_names_machine_date_ratios_and_limits() -> None:
    results = _results()
    text = render_markdown(results, limit_sentences(results))
    assert "2 cores, Test CPU" in text
    assert "2026-01-01" in text
    assert "| (a) latency p50 ms | 0.50 | 1.00 | 2.00 (4.00xd 2.00xf) |" in text
    assert "**(a) latency**: The full path adds 1.50 ms p50" in text
    assert "**(b) load**" in text
    assert "bench/profiles/gateway.svg" in text


def test_profile_summary_from_a_py_spy_svg() -> None:
    svg = (
        "<title>all (200 samples, 100%)</title>"
        "<title>main (gateway/cli.py:77) (200 samples, 100.00%)</title>"
        "<title>UsageLedger.record_sync (gateway/ledger.py:91) (120 samples, 60.00%)</title>"
        "<title>Queue.get (asyncio/queues.py:155) (1,000 samples, 0.20%)</title>"
        "<title>Session._guard (tunnel/session.py:416) (20 samples, 10.00%)</title>"
    )
    top = top_frames(svg, 2)
    assert top[0] == ("Queue.get (asyncio/queues.py:155)", 1000, 500.0)
    assert own_frames(svg) == [
        ("UsageLedger.record_sync (gateway/ledger.py:91)", 60.0),
        ("Session._guard (tunnel/session.py:416)", 10.0),
    ]


def test_extra_delay_is_measured_from_directs_typical_delay() -> None:
    figures: dict[str, dict[str, float | None]] = {
        "direct": {"delay_p50_ms": 0.1, "delay_p99_ms": 4.0, "single_delay_p50_ms": 0.05},
        "gateway": {"delay_p50_ms": 0.5, "delay_p99_ms": 1.6, "single_delay_p99_ms": 0.85},
    }
    add_extra_delay(figures)
    assert figures["gateway"]["extra_p50_ms"] == pytest.approx(0.4)
    assert figures["gateway"]["extra_p99_ms"] == pytest.approx(1.5)
    assert figures["direct"]["extra_p99_ms"] == pytest.approx(3.9)
    assert figures["gateway"]["extra_single_p99_ms"] == pytest.approx(0.8)
    assert figures["gateway"]["extra_single_p50_ms"] is None  # not measured: no figure
