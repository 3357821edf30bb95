"""`make bench` cannot rot: run the whole harness once on a tiny workload (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import ROWS
from bench.stack import PATHS
from bench.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = ("a", "b16", "b64", "c", "d", "e", "f", "g")


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
    for workload in ("a", "b16", "b64", "c", "d", "e", "f"):
        for path in PATHS:
            assert path in figures[workload] or path in results["unavailable"], (workload, path)
    for row in ROWS:  # every figure the table prints, on direct and floor at least
        for path in ("direct", "floor"):
            if row.workload in ("g",) or row.metric.startswith("connector"):
                continue
            assert row.metric in figures[row.workload][path], (row.metric, path)
    for path, metrics in figures["a"].items():
        assert metrics["errors"] == 0, path
        assert metrics["p50_ms"] is not None, path
    assert figures["g"], "the soak ran on some path"

    keys = {c["key"] for c in results["checks"]}
    assert keys == {t.key for t in TARGETS}
    assert results["machine"]["cores"] >= 1
    text = docs.read_text()
    assert "## What limits each figure" in text
    assert "(a) latency p50 ms" in text
    assert "targets:" in done.stdout
    assert "bench: interrupted" not in done.stderr
