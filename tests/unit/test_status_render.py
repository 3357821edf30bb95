"""The status page's pure parts: the snapshot, its JSON, the HTML and SVG, ``gateway status``'s
text; and the CLI's bad input (one line, exit code 2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from gateway.certificates import CertificateFact
from gateway.cli import main
from gateway.ledger import UsageRow
from gateway.status.charts import line_chart, short_number
from gateway.status.cli import admin_url, status_text
from gateway.status.model import Snapshot, build_snapshot, snapshot_json
from gateway.status.queries import RANGES, LoggedRequest
from gateway.status.render import ago, render_fragment, render_page
from tunnel.api import Disconnect, PoolStatus, TunnelInfo

NOW = 1_800_000_000.0
DAY = datetime.fromtimestamp(NOW, UTC).date()
EVIL = '<script>alert("x")</script>'


def _snapshot() -> Snapshot:
    tunnel = TunnelInfo(
        connector="office-1", tunnel_id="office-1#2", carrier="websocket", remote="10.0.0.9:5",
        upstreams=("office-llm",), active_streams=2, draining=False, connected_s=90.0,
        connected_at=NOW - 90, rtt_s=0.0123, client_cert_not_after=NOW + 10 * 86400,
    )  # fmt: skip
    gone = Disconnect("office-1", "office-1#1", "tls", "10.0.0.9:4", NOW - 100, "ping_timeout",
                      "no PING answer within 10s")  # fmt: skip
    facts = [
        CertificateFact("connector:office-1", "office-1", NOW + 10 * 86400),
        CertificateFact("server", "gateway", NOW + 300 * 86400),
        CertificateFact("crl", "Home LLM CA", NOW + 6 * 86400),  # the CRL warns at 3 days
    ]
    today = [UsageRow(EVIL, DAY, "qwen", 3, 30, 60), UsageRow("bob", DAY, "qwen", 1, 5, 5)]
    logged = [
        LoggedRequest(NOW - 5, EVIL, "qwen", 200, 10, 20, 100, 1100, billed=True),
        LoggedRequest(NOW - 65, "bob", "qwen", 502, 0, 0, None, 50, billed=False),
    ]
    status = PoolStatus((tunnel,), recent_disconnects=(gone,))
    return build_snapshot(now=NOW, status=status, facts=facts, today=today, requests=logged,
                          rng=RANGES["hour"])  # fmt: skip


def test_snapshot_and_its_json() -> None:
    snap = _snapshot()
    assert snap.ready
    assert snap.today_total().requests == 4
    assert [(c.role, c.expiring) for c in snap.certificates] == [
        ("connector:office-1", True), ("server", False), ("crl", False),
    ]  # fmt: skip
    data = json.loads(json.dumps(snapshot_json(snap)))
    assert data["today"]["total"]["total_tokens"] == 100
    assert data["series"]["by_identity"]["bob"]["total"] == {
        "requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "errors": 1,
    }  # fmt: skip
    assert data["series"]["statuses"]["502"][-3] == 1  # 65 s before a minute boundary
    assert data["tunnels"][0]["rtt_s"] == 0.0123
    assert data["disconnects"][0]["reason"] == "ping_timeout"


def test_page_is_self_contained_escaped_and_for_phones() -> None:
    page = render_page(_snapshot())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert EVIL not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
    assert page.count("<script>") == 1
    assert "/status/fragment?range=" in page
    assert "<svg" in page
    assert "@media (max-width:600px)" in page


def test_fragment_sections() -> None:
    html = render_fragment(_snapshot())
    assert re.search(r'<tr data-role="connector:office-1"[^>]* class=warn data-warn=1>', html)
    assert '<tr data-role="server" data-subject="gateway">' in html
    assert '<td data-k="rtt" class="num">12.3 ms</td>' in html
    assert '<td data-k="carrier">websocket</td>' in html
    assert "(1m 30s ago)" in html
    assert '<td data-k="reason">ping_timeout</td>' in html
    assert 'data-total="1"><td>all</td><td>all</td><td data-k="requests" class="num">4</td>' in html
    assert re.search(
        r'data-identity="bob"><td>bob</td>.*?<td data-k="errors" class="num">1</td>', html
    )


def test_charts() -> None:
    empty = line_chart("Nothing", {"a": [None, None]}, start=0, bucket_s=60)
    assert "no data in this range" in empty
    assert "<svg" not in empty
    chart = line_chart("T", {"a": [1.0, 2.0, None, 4.0], "b": [None, 3.0, None, None]},
                       start=0, bucket_s=60, unit="ms")  # fmt: skip
    assert chart.count("<polyline") == 1
    assert chart.count("<circle") == 2
    assert "T (ms)" in chart
    assert chart.count('class="swatch"') == 2
    assert [short_number(v) for v in (0, 0.5, 1234, 2_500_000, 12.0)] == [
        "0",
        "0.5",
        "1.2k",
        "2.5M",
        "12",
    ]
    assert [ago(s) for s in (5, 61, 3700, 90000)] == ["5s", "1m 1s", "1h 1m", "1d 1h"]


def test_terminal_text() -> None:
    text = status_text(snapshot_json(_snapshot()), "http://127.0.0.1:9100")
    assert text.startswith("gateway http://127.0.0.1:9100: ready")
    assert re.search(r"office-1\s+websocket\s+10\.0\.0\.9:5\s+.*12\.3ms\s+2\s+office-llm", text)
    assert "ping_timeout" in text
    assert re.search(r"all\s+4\s+35\s+65\s+100", text)
    assert re.search(r"connector:office-1\s+office-1\s+\S+\s+10\s+RENEW SOON", text)


def test_status_cli_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status"], ["status", "--url", "ftp://x"], ["status", "-c", "/nonexistent.toml"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gateway status: error: "), err
        assert err.count("\n") == 1, err
    assert admin_url("http://h:1/", None) == "http://h:1"


def test_certificates_have_the_readyz_shape() -> None:
    fact = CertificateFact("connector:office-1", "office-1", NOW + 10 * 86400)
    assert snapshot_json(_snapshot())["certificates"][0] == fact.as_json(NOW)


def test_count_charts_draw_a_quiet_bucket_as_zero_not_a_gap() -> None:
    """Requests, tokens, errors and status codes are counts: a minute without traffic is 0, so
    traffic in two separate minutes draws one line that falls to the base between them (a lone
    dot per minute told nothing). Latency stays broken where no answer was timed."""
    html = render_fragment(_snapshot())
    usage = html.split('id="usage"', 1)[1].split("</section>", 1)[0]
    assert "<circle" not in usage
    assert usage.count("<polyline") >= 6  # one per count chart at least
    statuses = html.split("Status codes", 1)[1].split("</figure>", 1)[0]
    assert "<circle" not in statuses
