"""The CPU budget of workload (b): per-request arithmetic, the CPU-bound ceiling, the h2 cost
micro measurement, and how the report and the limits sentence show them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from bench import h2_cost, stats
from bench.limits import cpu_budget, load_sentence
from bench.report import render_markdown, render_table
from bench.sampler import Counted, CpuWindow
from bench.workloads import cpu_figures

# --------------------------------------------------------------------------- arithmetic


def test_per_request_us_and_share_of_cores() -> None:
    assert stats.per_request_us(2.0, 4000) == pytest.approx(500.0)
    assert stats.per_request_us(0.0, 10) == 0.0
    assert stats.per_request_us(None, 10) is None
    assert stats.per_request_us(1.0, 0) is None
    assert stats.share_of_cores_pct(8.0, 5.0, 2) == pytest.approx(80.0)
    assert stats.share_of_cores_pct(None, 5.0, 2) is None
    assert stats.share_of_cores_pct(1.0, 0.0, 2) is None


def test_busy_pct_from_cpu_times_deltas() -> None:
    before = {"user": 100.0, "system": 50.0, "idle": 800.0, "iowait": 50.0, "guest": 5.0}
    # +6 user, +2 system, +1 idle, +1 iowait: 8 busy of 10; guest is inside user already
    after = {"user": 106.0, "system": 52.0, "idle": 801.0, "iowait": 51.0, "guest": 9.0}
    assert stats.busy_pct(before, after) == pytest.approx(80.0)
    assert stats.busy_pct(before, before) is None


def _roles(client: float, upstream: float, front: float, connector: float) -> dict[str, float]:
    return {"client": client, "upstream": upstream, "front": front, "connector": connector,
            "proxy": 0.0}  # fmt: skip


def _metrics(roles: dict[str, float], rps: float | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {f"cpu_us_per_req_{k}": v for k, v in roles.items()}
    out["rps"] = rps
    return out


def test_rps_bound_one_process_or_all_cores() -> None:
    # 2 cores, 350 us in all: all cores allow 5714/s, the 200 us process one core 5000/s
    rps, limit = stats.rps_bound(_roles(150.0, 0.0, 200.0, 0.0), 2)
    assert rps == pytest.approx(5000.0)
    assert limit == "front"
    # 600 us in all: all cores allow 3333/s, below the busiest process's 1e6/260 = 3846/s
    rps, limit = stats.rps_bound(_roles(240.0, 100.0, 260.0, 0.0), 2)
    assert rps == pytest.approx(2e6 / 600)
    assert limit == "all cores"
    assert stats.rps_bound(_roles(0.0, 0.0, 0.0, 0.0), 2) == (None, "")


def test_cpu_ceiling_when_the_floor_is_capped_by_its_one_process() -> None:
    # floor path: client 150 + floor 200 = 350 us; gateway path: client 160, upstream 60,
    # gateway 700, connector 330 = 1250 us; 2 cores; the floor measured 5000 req/s
    floor = _metrics(_roles(150.0, 0.0, 200.0, 0.0), 5000.0)
    gateway = _metrics(_roles(160.0, 60.0, 700.0, 330.0), 1400.0)
    c = stats.cpu_ceiling(floor, gateway, cores=2)
    assert c is not None
    # the premise "both keep every core busy": 350 / 1250; 0.5x needs total <= 700 us, of
    # which client + upstream take 220
    assert c.ratio_ceiling == pytest.approx(0.28)
    assert c.budget_us == pytest.approx(480.0)
    assert c.spent_us == pytest.approx(1030.0)
    # with one core per process: floor 1e6/200 = 5000/s, gateway 1e6/700 = 1429/s
    assert c.floor_rps_model == pytest.approx(5000.0)
    assert c.gateway_rps_model == pytest.approx(1e6 / 700)
    assert c.floor_limit == c.gateway_limit == "front"
    assert c.model_ratio == pytest.approx(1e6 / 700 / 5000)
    # 0.5 of the measured 5000/s = 2500/s: 2 cores * 1e6 / 2500 = 800 us in all, 580 for
    # gateway + connector, and no process above 1e6 / 2500 = 400 us
    assert c.needed_rps == pytest.approx(2500.0)
    assert c.needed_total_us == pytest.approx(800.0)
    assert c.needed_budget_us == pytest.approx(580.0)
    assert c.process_cap_us == pytest.approx(400.0)
    assert c.gateway_process_us == 700.0


def test_cpu_ceiling_when_the_floor_keeps_every_core_busy() -> None:
    floor = _metrics(_roles(240.0, 100.0, 260.0, 0.0), 2e6 / 600)  # 2 cores / 600 us
    gateway = _metrics(_roles(160.0, 60.0, 700.0, 330.0), 1400.0)
    c = stats.cpu_ceiling(floor, gateway, cores=2, target=0.25)
    assert c is not None
    assert c.floor_limit == "all cores"
    assert c.budget_us == pytest.approx(600.0 / 0.25 - 220.0)
    assert c.needed_budget_us == pytest.approx(c.budget_us)  # the two premises agree


def test_cpu_ceiling_needs_every_figure() -> None:
    floor = _metrics(_roles(150.0, 0.0, 200.0, 0.0), None)  # no measured rate: the model's
    gateway = _metrics(_roles(160.0, 60.0, 700.0, 330.0), 1400.0)
    c = stats.cpu_ceiling(floor, gateway, cores=2)
    assert c is not None
    assert c.needed_rps == pytest.approx(2500.0)
    assert stats.cpu_ceiling(floor, {**gateway, "cpu_us_per_req_connector": None}, 2) is None
    assert stats.cpu_ceiling({}, gateway, 2) is None
    assert stats.cpu_ceiling(floor, gateway, 0) is None
    assert stats.cpu_ceiling(floor, gateway, 2, target=0.0) is None
    idle = _metrics(_roles(0.0, 0.0, 0.0, 0.0), 1.0)
    assert stats.cpu_ceiling(floor, idle, 2) is None


def test_cpu_figures_per_role_total_and_shares() -> None:
    window = CpuWindow(roles={})
    window.cpu_s = {"client": 0.4, "upstream": 0.1, "front": 1.0, "connector": 0.5, "proxy": 0.0}
    window.machine_pct = 97.0
    window.wall_s = 1.0
    out = cpu_figures(window, 1000)
    assert out["cpu_us_per_req_client"] == pytest.approx(400.0)
    assert out["cpu_us_per_req_front"] == pytest.approx(1000.0)
    assert out["cpu_us_per_req_proxy"] == 0.0
    assert out["cpu_us_per_req_total"] == pytest.approx(2000.0)
    assert out["machine_cpu_pct"] == 97.0
    cores = os.cpu_count() or 1
    assert out["path_cpu_pct"] == pytest.approx(2.0 / cores * 100)


def test_cpu_figures_total_unknown_when_a_process_vanished() -> None:
    window = CpuWindow(roles={})
    window.cpu_s = {"client": 0.4, "upstream": None, "front": 1.0, "connector": 0.0}
    out = cpu_figures(window, 1000)
    assert out["cpu_us_per_req_upstream"] is None
    assert out["cpu_us_per_req_total"] is None
    assert out["path_cpu_pct"] is None


# --------------------------------------------------------------------------- psutil counting


def test_window_counts_this_process_and_the_machine() -> None:
    window = CpuWindow(roles={"self": Counted(os.getpid(), children=False), "none": Counted(None)})
    window.start()
    end = time.process_time() + 0.05
    while time.process_time() < end:  # bounded busy loop: ~50 ms of CPU
        pass
    window.stop()
    assert (window.cpu_s["self"] or 0) >= 0.03
    assert window.cpu_s["none"] == 0.0
    assert window.wall_s > 0
    assert window.machine_pct is not None
    assert 0 < window.machine_pct <= 100


def test_a_process_that_ended_counts_as_unknown() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert Counted(child.pid).seconds() is None


# --------------------------------------------------------------------------- h2 cost


def test_h2_exchange_really_completes() -> None:
    out = h2_cost.run(3)
    assert out.exchanges == 3
    assert out.completed == 3
    head = dict(out.request_head)
    assert head[":method"] == "POST"
    assert head[":path"] == "/v1/chat/completions"
    assert head[":authority"] == "bench-direct"
    # the gateway's own filtering: the client's key never enters the tunnel
    assert "authorization" not in head
    assert head["user-agent"].startswith("Python/")
    assert head["content-type"] == "application/json"
    assert out.request_body == h2_cost.REQUEST_BODY
    assert dict(out.response_head)[":status"] == "200"
    assert dict(out.response_head)["content-length"] == str(len(h2_cost.RESPONSE_BODY))
    assert out.response_body == h2_cost.RESPONSE_BODY


def test_h2_measure_gives_positive_finite_figures() -> None:
    figures = h2_cost.measure(5)
    for key in ("client_us", "server_us", "total_us", "process_us"):
        assert math.isfinite(figures[key]), key
        assert figures[key] > 0, key
    assert figures["total_us"] == pytest.approx(figures["client_us"] + figures["server_us"])
    assert figures["exchanges"] == 5
    with pytest.raises(ValueError, match="positive"):
        h2_cost.measure(0)


# --------------------------------------------------------------------------- report


def _path(client: float, upstream: float, front: float, connector: float, rps: float) -> Any:
    return {
        "rps": rps,
        "front_cpu_pct": 95.0,
        "connector_cpu_pct": 40.0,
        "cpu_us_per_req_client": client,
        "cpu_us_per_req_upstream": upstream,
        "cpu_us_per_req_front": front,
        "cpu_us_per_req_connector": connector,
        "cpu_us_per_req_proxy": 0.0,
        "cpu_us_per_req_total": client + upstream + front + connector,
        "machine_cpu_pct": 98.0,
        "path_cpu_pct": 93.0,
    }


def _results(with_h2: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "b64": {
            "floor": _path(150.0, 0.0, 200.0, 0.0, 5000.0),
            "gateway": _path(160.0, 60.0, 700.0, 330.0, 1400.0),
        }
    }
    if with_h2:
        figures["h2"] = {"client_us": 61.0, "server_us": 59.0, "total_us": 120.0}
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu_model": "Test CPU",
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux",
        },
        "plan": {"soak_s": 120.0},
        "figures": figures,
        "checks": [],
    }


def test_table_has_the_cpu_rows() -> None:
    table = render_table(_results(with_h2=False))
    assert "(b) c=64 CPU us/req connector" in table
    assert "(b) c=64 machine CPU %" in table
    assert "1,250 (4.17xd 3.57xf)" not in table  # no direct path in these results
    assert "1,250 (3.57xf)" in table


def test_markdown_cpu_budget_section_from_the_figures() -> None:
    results = _results(with_h2=True)
    text = render_markdown(results, {"(b) load": load_sentence(results)})
    assert "## CPU budget at concurrency 64" in text
    assert "| connector | 0 | 330 |" in text
    assert "| all processes on the path | 350 | 1,250 |" in text
    assert "the floor path could reach 5,000 req/s (capped by its server at one core)" in text
    assert "gateway/floor **0.29** (measured 0.28)" in text
    assert "350 / 1250 = 0.28" in text
    assert "For 0.50 of the floor (2,500 req/s)" in text
    assert "**580 us** for the gateway and the connector together (they spend 1030 us now)" in text
    assert "more than **400 us** (the gateway spends 700 us now)" in text
    assert "out of reach" not in text
    assert "120 us per exchange, 12% of what gateway + connector spend" in text


def test_markdown_without_h2_or_cpu_figures() -> None:
    results = _results(with_h2=False)
    text = render_markdown(results, {})
    assert "## CPU budget at concurrency 64" in text
    assert "per exchange" not in text
    del results["figures"]["b64"]["gateway"]["cpu_us_per_req_connector"]
    assert cpu_budget(results) is None
    assert "CPU budget" not in render_markdown(results, {})


def test_load_sentence_quotes_this_runs_figures() -> None:
    sentence = load_sentence(_results(with_h2=False))
    assert "1250 us of CPU per request" in sentence
    assert "gateway 700 us, connector 330 us" in sentence
    assert "floor path's 350 us" in sentence
    assert "CPU allows gateway/floor about 0.29 (floor capped by its server at one core" in sentence
    assert "at 580 us per request or less (now 1030 us)" in sentence
    assert "gateway process at 400 us or less (now 700 us)" in sentence
    assert "The gateway's single event loop ran at 95%" in sentence


def test_markdown_says_when_client_and_upstream_alone_exceed_the_budget() -> None:
    results = _results(with_h2=False)
    gateway = results["figures"]["b64"]["gateway"]
    gateway.update(cpu_us_per_req_client=700.0, cpu_us_per_req_upstream=200.0)
    text = render_markdown(results, {})
    assert "**-100 us** for the gateway and the connector together" in text
    assert "the target is out of reach whatever the gateway costs" in text
