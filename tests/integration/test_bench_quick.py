"""`make bench` cannot rot: run the whole harness once on a tiny workload (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import ROWS, Row
from bench.stack import PATHS
from bench.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = ("a", "b16", "b64", "c", "d", "e", "f", "g", "h")


GATEWAY_PATHS = ("gateway", "gateway+squid", "gateway+websocket")
# Figures the harness reports as n/a by design, with the reason in results["notes"].
NOT_MEASURED = {("f", "gateway+websocket")}


def has_figure(row: Row, path: str) -> bool:
    """Whether the table's ROW must have a number on PATH."""
    if row.workload in ("g", "h"):  # the soaks run on one path only
        return False
    if row.metric.startswith("connector") and path not in GATEWAY_PATHS:
        return False  # no connector on direct/floor
    return (row.workload, path) not in NOT_MEASURED


@pytest.mark.timeout(300)
def test_bench_quick_produces_every_figure(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    docs = tmp_path / "performance.md"
    env = dict(os.environ, BENCH_QUICK="1", BENCH_SOAK_S="1", PYTHONUNBUFFERED="1")
    env.pop("PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--results-dir", str(results_dir), "--docs", str(docs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((results_dir / "latest.json").read_text())
    assert len(list(results_dir.glob("*.json"))) == 2  # <stamp>.json and latest.json

    figures = results["figures"]
    assert set(WORKLOADS) <= set(figures)
    # Every path runs here (squid is installed): a broken path must fail, not be reported n/a.
    assert results["unavailable"] == {}, results["unavailable"]
    for row in ROWS:  # every figure the table prints, on every path that has it
        for path in PATHS:
            if not has_figure(row, path):
                continue
            assert path in figures[row.workload], (row.workload, path)
            value = figures[row.workload][path].get(row.metric)
            assert value is not None, (row.workload, row.metric, path, figures[row.workload][path])
    for path, metrics in figures["a"].items():
        assert metrics["errors"] == 0, path
        assert metrics["p50_ms"] is not None, path
    assert figures["g"].get("gateway"), "the soak ran on the gateway path"
    cancel = figures["h"]["gateway"]
    assert cancel["requests"] > 0
    assert cancel["windows_full"] == 1, cancel  # every cancelled request gave its bytes back
    assert "WebSocket" in results["notes"]["f"]  # why NOT_MEASURED
    ledger = figures["ledger"]
    assert set(ledger) == {"1", "64"}
    assert all(f["wall_us"] > 0 and f["commits"] >= 1 for f in ledger.values()), ledger

    keys = {c["key"] for c in results["checks"]}
    assert keys == {t.key for t in TARGETS}
    assert results["machine"]["cores"] >= 1
    text = docs.read_text()
    assert "## What limits each figure" in text
    assert "(a) latency p50 ms" in text
    assert "## The durable usage ledger" in text
    assert "targets:" in done.stdout
    assert "bench: interrupted" not in done.stderr
