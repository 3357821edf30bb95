"""deploy/prometheus and deploy/grafana: the rules pass ``promtool check rules``, each alert fires
under ``promtool test rules``, and every metric the alerts and the dashboard use is one a real
gateway exposes on its admin ``/metrics`` once it has carried traffic (and one the docs list)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.test_gateway_api import MESSAGES, GatewayRig, gateway_rig
from tests.support.procs import REPO_ROOT

ALERTS = REPO_ROOT / "deploy/prometheus/alerts.yml"
ALERTS_TEST = REPO_ROOT / "deploy/prometheus/alerts_test.yml"
DASHBOARD = REPO_ROOT / "deploy/grafana/llm-gateway.json"
OPERATIONS = REPO_ROOT / "docs/operations.md"

KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")  # CI: a failure (tests/conftest.py)
    return subprocess.run(
        ["promtool", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ALERTS.parent,
        check=False,
    )


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less label matchers, ranges,
    grouping labels, functions and keywords."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        if match.group(2) is None and match.group(1) not in KEYWORDS:
            names.add(match.group(1))
    return names


def alert_exprs(text: str) -> list[str]:
    """The ``expr`` of each rule in a rules file (one line, or a ``|`` block)."""
    exprs, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        key, _, rest = line.strip().partition(" ")
        if key != "expr:":
            continue
        if rest.strip() != "|":
            exprs.append(rest)
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        exprs.append("\n".join(block))
    return exprs


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def exposed_names(text: str) -> set[str]:
    """The sample names in an exposition text (series that exist, not just HELP lines)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_each_alert_fires_in_promtool_test_rules() -> None:
    done = promtool("test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"^\s*- alert: (\w+)", ALERTS.read_text(), re.MULTILINE))
    tested = ALERTS_TEST.read_text()
    firing = {
        name
        for name, expected in re.findall(
            r"alertname: (\w+)\n\s*exp_alerts:(.*?)(?=\n\s*- eval_time|\n\s*- name|\Z)",
            tested,
            re.DOTALL,
        )
        if expected.strip() != "[]"
    }
    assert len(alerts) == 7
    assert firing == alerts  # every alert has a case where it fires


def test_the_name_finder_finds_names_and_only_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(x_bucket{route!="a b"}[15m] offset 5m)))'
        " > 2 * y_total and absent(z) / on (instance) w"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "z", "w"}


async def exposed_after_traffic(rig: GatewayRig) -> str:
    """/metrics once the gateway has answered streamed and whole chats, an unknown path, and
    a PING (so that the labelled series exist)."""
    client = rig.client()
    stream = await client.chat.completions.create(
        model="qwen3-coder",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    async for _ in stream:
        pass
    await client.chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]
    async with rig.http() as http:
        await http.get(f"https://localhost:{rig.ports['public']}/v1/nothing-here")
    await rig.wait_access_lines(3)
    url = f"http://127.0.0.1:{rig.ports['admin']}/metrics"
    async with httpx.AsyncClient(timeout=10.0) as http:
        for _ in range(100):
            text = (await http.get(url)).text
            if "gateway_tunnel_rtt_seconds{" in text:
                return text
            await asyncio.sleep(0.1)
    raise AssertionError("no PING round trip on /metrics")


async def test_the_alerts_and_the_dashboard_use_only_metrics_the_gateway_exposes(
    tmp_path: Path,
) -> None:
    alerts = set().union(*(metric_names(e) for e in alert_exprs(ALERTS.read_text())))
    dashboard = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert len(alert_exprs(ALERTS.read_text())) == 7
    async with gateway_rig(tmp_path, tunnel_extra={"ping_interval_s": 0.3}) as rig:
        exposed = exposed_names(await exposed_after_traffic(rig))
    assert alerts - exposed == set()
    assert dashboard - exposed == set()
    assert "gateway_time_to_first_token_seconds_bucket" in alerts
    assert {
        "gateway_tunnel_rtt_seconds",
        "gateway_tunnel_disconnects_total",
        "gateway_output_tokens_per_second_bucket",
        "gateway_certificate_remaining_seconds",
        "gateway_crl_next_update_remaining_seconds",
    } <= dashboard
    # ...and each is in the docs' table of metrics (histograms by their base name)
    documented = OPERATIONS.read_text()
    for name in alerts | dashboard:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{base}" in documented, f"{name} is not in docs/operations.md"
