"""Issue 14: the status page in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium through /usr/bin/chromedriver; nothing downloaded).

A real deployment (gateway, two connectors, the stand-in LLM) gets known traffic from the OpenAI
SDK; the page must then show the ledger's and ``/metrics``' numbers, a connector killed and
restarted as a disconnect (by its own refresh, the page not reloaded), a connector certificate
issued with ``--days 10`` flagged, and it must demand the admin credential. The admin listener is
on 127.0.0.1 with ``[admin] auth = "required"``: the same code path as a non-loopback address
(the decision is taken from the configured address, see gateway/status/access.py), without
binding anything off loopback.

The screenshot goes to the test's tmp folder; with ``STATUS_PAGE_SCREENSHOT=1`` it is also copied
to docs/images/status-page.png (the one the docs show).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_gateway_api import MESSAGES, GatewayRig, connector_toml, gateway_rig
from tests.support.procs import our_command, run_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SHORT = "office-short"  # its certificate is issued with --days 10
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "status-page.png"

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


def _require_browser() -> None:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            pytest.skip(f"{program.name} is not installed (scripts/bootstrap-system.sh)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    _require_browser()
    from selenium import webdriver  # noqa: PLC0415 (after the check above)
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,2600")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _texts(driver: WebDriver, selector: str) -> dict[str, str]:
    """``data-k`` -> text of the cells in the first row matching ``selector``."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    row = driver.find_element(By.CSS_SELECTOR, selector)
    return {
        str(cell.get_attribute("data-k")): cell.text
        for cell in row.find_elements(By.CSS_SELECTOR, "td[data-k]")
    }


async def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _ledger(tmp: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    with sqlite3.connect(tmp / "gateway.db") as conn:
        rows = conn.execute(
            "SELECT identity, model, requests, prompt_tokens, completion_tokens FROM usage"
        ).fetchall()
    return {(i, m): (r, p, c) for i, m, r, p, c in rows}


def _start_short_connector(rig: GatewayRig) -> None:
    done = run_command(
        "pki", "issue", "client", SHORT, "--days", "10", "--dir", str(rig.pki.dir)
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    work = rig.tmp / SHORT
    work.mkdir()
    pki = dataclasses.replace(
        rig.pki, client_cert=rig.pki.cert(SHORT), client_key=rig.pki.key(SHORT)
    )
    toml = connector_toml(work, pki, rig.ports["tunnel"], rig.standin.url, 'transport = "tls"\n')
    proc = our_command("connector", "run", "-c", str(toml), work_dir=work)
    proc.launch()
    rig.processes.append(proc)


async def _tunnels_up(rig: GatewayRig, count: int, ops: str) -> None:
    """The admin /readyz lists the tunnels to an admin only (``auth = "required"`` here)."""
    url = f"http://127.0.0.1:{rig.ports['admin']}/readyz"
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ops}"}) as http:
        deadline = time.monotonic() + 20
        while len((await http.get(url)).json().get("tunnels", [])) < count:
            assert time.monotonic() < deadline, f"fewer than {count} tunnels came up"
            await asyncio.sleep(0.1)


async def _traffic(rig: GatewayRig, ops: str) -> None:
    """alice: 3 answers and 2 streams; bob: 2 answers and one the upstream fails (500)."""
    bob = rig.client(
        run_command("gateway", "keys", "create", "bob", "-c", str(rig.toml)).stdout.strip()
    )
    alice = rig.client()
    slow = {"standin": {"first_delay_ms": 30}}
    for _ in range(3):
        await alice.chat.completions.create(model="qwen3-coder", messages=MESSAGES, extra_body=slow)  # type: ignore[arg-type]
    for _ in range(2):
        stream = await alice.chat.completions.create(
            model="qwen3-coder", messages=MESSAGES, stream=True
        )  # type: ignore[arg-type]
        async for _chunk in stream:
            pass
    for _ in range(2):
        await bob.chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="500"):
        await bob.chat.completions.create(
            model="qwen3-coder",
            messages=MESSAGES,
            extra_body={"standin": {"status": 500}},  # type: ignore[arg-type]
        )
    assert ops  # the admin key makes no API traffic


async def _check_guard(admin: str, rig: GatewayRig, ops: str) -> None:
    """401 without a credential (with a Basic challenge), 403 for a key that is not an admin's;
    /metrics stays open, and /readyz answers a stranger ready or not only."""
    basic = base64.b64encode(f"owner:{ops}".encode()).decode()
    async with httpx.AsyncClient() as http:
        for path in ("/", "/status.json", "/status/fragment"):
            refused = await http.get(admin + path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic ")
            assert refused.json()["error"]["code"] == "invalid_api_key"
        not_admin = await http.get(admin + "/status.json", headers=rig.headers())
        assert not_admin.status_code == 403
        assert (
            await http.get(admin + "/status.json", headers={"authorization": f"Bearer {ops}"})
        ).status_code == 200
        assert (
            await http.get(admin + "/", headers={"authorization": f"Basic {basic}"})
        ).status_code == 200
        assert (await http.get(admin + "/metrics")).status_code == 200
        stranger = await http.get(admin + "/readyz")  # ready or not, nothing more
        assert (stranger.status_code, stranger.json()) == (200, {"ready": True})


def _check_numbers(driver: WebDriver, rig: GatewayRig, metrics: str) -> None:
    ledger = _ledger(rig.tmp)
    assert set(ledger) == {("alice", "qwen3-coder"), ("bob", "qwen3-coder")}
    for who in ("alice", "bob"):
        shown = _texts(driver, f'#today-table tr[data-identity="{who}"][data-model="qwen3-coder"]')
        requests, prompt, completion = ledger[who, "qwen3-coder"]
        assert shown["requests"] == str(requests)
        assert (shown["prompt"], shown["completion"]) == (str(prompt), str(completion))
        assert prompt == _metric(metrics, "gateway_prompt_tokens_total", identity=who)
        assert completion == _metric(metrics, "gateway_completion_tokens_total", identity=who)
        in_range = _texts(driver, f'#range-identity tr[data-identity="{who}"]')
        assert (in_range["requests"], in_range["prompt"]) == (str(requests), str(prompt))
    assert ledger["alice", "qwen3-coder"][0] == 5
    assert ledger["bob", "qwen3-coder"][0] == 2
    assert _texts(driver, '#range-identity tr[data-identity="bob"]')["errors"] == "1"
    ok = _metric(metrics, "gateway_requests_total", model="qwen3-coder", status="200")
    failed = _metric(metrics, "gateway_requests_total", model="qwen3-coder", status="500")
    per_model = _texts(driver, '#range-model tr[data-model="qwen3-coder"]')
    assert (per_model["requests"], per_model["errors"]) == (str(int(ok)), str(int(failed)))
    total = _texts(driver, "#today-table tr[data-total]")
    assert total["requests"] == str(sum(r for r, _, _ in ledger.values()))


async def _check_cli(admin: str, ops: str) -> None:
    """``gateway status``: the first screen from the same JSON; refused without the key."""
    refused = await asyncio.to_thread(run_command, "gateway", "status", "--url", admin)
    assert refused.returncode == 2
    assert refused.stderr.startswith("gateway status: error: ")
    assert "HTTP 401" in refused.stderr
    assert refused.stderr.count("\n") == 1
    env = {"GATEWAY_ADMIN_KEY": ops}
    done = await asyncio.to_thread(run_command, "gateway", "status", "--url", admin, env=env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^alice\s+qwen3-coder\s+5\s", done.stdout, re.MULTILINE), done.stdout
    assert re.search(
        rf"^connector:{SHORT}\s+{SHORT}\s+\S+\s+(9|10)\s+RENEW SOON", done.stdout, re.MULTILINE
    )
    assert re.search(r"^office-1\s+tls\s+127\.0\.0\.1:", done.stdout, re.MULTILINE)


async def test_status_page_in_chromium(tmp_path: Path, browser: WebDriver) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    tunnel = {"allowed_connectors": ["office-1", SHORT], "ping_interval_s": 1}
    admin_cfg = {"auth": "required", "keys": ["ops"]}
    async with gateway_rig(tmp_path, tunnel_extra=tunnel, admin_extra=admin_cfg) as rig:
        ops = run_command("gateway", "keys", "create", "ops", "-c", str(rig.toml)).stdout.strip()
        _start_short_connector(rig)
        await _tunnels_up(rig, 2, ops)
        await _traffic(rig, ops)
        admin = f"http://127.0.0.1:{rig.ports['admin']}"
        await _check_guard(admin, rig, ops)

        # the browser without a credential is asked for one (Basic) and shown nothing
        await asyncio.to_thread(browser.get, admin + "/")
        assert not browser.find_elements(By.ID, "live")  # a login prompt, not the page
        # then with one: Basic, as a browser sends what its login prompt was given
        browser.execute_cdp_cmd("Network.enable", {})
        header = {"Authorization": "Basic " + base64.b64encode(f"owner:{ops}".encode()).decode()}
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": header})
        await asyncio.to_thread(browser.get, admin + "/?range=hour")
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(admin + "/metrics")).text
        _check_numbers(browser, rig, metrics)

        short = browser.find_element(
            By.CSS_SELECTOR, f'#cert-table tr[data-role="connector:{SHORT}"]'
        )
        assert short.get_attribute("data-warn") == "1"
        assert int(_texts(browser, f'#cert-table tr[data-role="connector:{SHORT}"]')["days"]) in (
            9,
            10,
        )
        office = browser.find_element(
            By.CSS_SELECTOR, '#cert-table tr[data-role="connector:office-1"]'
        )
        assert office.get_attribute("data-warn") is None
        rtt = '#tunnel-table tr[data-connector="office-1"] td[data-k="rtt"]'
        await _until(lambda: "ms" in browser.find_element(By.CSS_SELECTOR, rtt).text, "a PING RTT")

        await _check_cli(admin, ops)

        # a connector killed and restarted: the page shows it by itself, never reloaded
        browser.execute_script("window.notReloaded = true")
        first = next(p for p in rig.processes if p.name == "connector")
        await first.akill()
        rig.start_connector()
        gone = '#disconnect-table tr[data-connector="office-1"]'
        await _until(lambda: bool(browser.find_elements(By.CSS_SELECTOR, gone)), "the disconnect")
        assert browser.execute_script("return window.notReloaded") is True
        assert _texts(browser, gone)["reason"]
        await _tunnels_up(rig, 2, ops)
        await _until(
            lambda: (
                len(
                    browser.find_elements(
                        By.CSS_SELECTOR, '#tunnel-table tr[data-connector="office-1"]'
                    )
                )
                == 1
            ),
            "office-1 back on the page",
        )

        # the whole page in one picture: the window's height is the page's plus its own frame
        height: Any = browser.execute_script(
            "return document.body.getBoundingClientRect().bottom + window.scrollY"
            " + window.outerHeight - window.innerHeight + 16"
        )
        browser.set_window_size(1280, int(height))
        shot = tmp_path / "status-page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("STATUS_PAGE_SCREENSHOT"):
            DOCS_IMAGE.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_IMAGE)

        # a phone: nothing wider than the screen but the tables' own scroll boxes
        browser.set_window_size(390, 844)
        await asyncio.to_thread(browser.get, admin + "/?range=day")
        width: Any = browser.execute_script("return document.documentElement.scrollWidth")
        assert int(width) <= 390 + 1
