"""`gateway check` and `gateway serve` as processes: exit codes, one-line errors, SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

from tests.integration.test_gateway_api import gateway_toml
from tests.support.pki_fixtures import make_pki
from tests.support.procs import file_ready, our_command, run_command


def test_check_ok_and_mistakes(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    toml = gateway_toml(tmp_path, pki)
    ok = run_command("gateway", "check", "-c", str(toml))
    assert ok.returncode == 0, ok.stderr
    toml.write_text(toml.read_text().replace("[admin]", "[admin]\nlisen = 1"))
    bad = run_command("gateway", "check", "-c", str(toml))
    assert bad.returncode == 2
    assert bad.stderr == "gateway check: error: admin.lisen: unknown key\n"
    missing = run_command("gateway", "check", "-c", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    usage = run_command("gateway", "check")
    assert usage.returncode == 2
    assert usage.stderr.startswith("gateway check: error: ")
    assert "Traceback" not in usage.stderr


async def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    toml = gateway_toml(tmp_path, pki)
    ready = tmp_path / "ready.json"
    proc = our_command(
        "gateway", "serve", "-c", str(toml), "--ready-file", str(ready),
        work_dir=tmp_path, ready=file_ready(ready),
    )  # fmt: skip
    await proc.astart()
    try:
        assert set(json.loads(ready.read_text())) == {"public", "admin", "tunnel"}
        proc.send_signal(signal.SIGTERM)
        assert await proc.await_exit(10.0) == 0
        assert "shutting down" in proc.log_text()
        assert "Traceback" not in proc.log_text()
    finally:
        await proc.astop()


def test_serve_with_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        toml = gateway_toml(tmp_path, pki, listen=f"127.0.0.1:{port}")
        done = run_command("gateway", "serve", "-c", str(toml), timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("gateway serve: error: cannot serve:")


def test_a_config_that_is_not_utf8_is_one_line_everywhere(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    for command in (["check"], ["serve"], ["keys", "list"], ["usage"]):
        done = run_command("gateway", *command, "-c", str(binary), timeout=30)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.count("\n") == 1, (command, done.stderr)
        assert "not UTF-8 text" in done.stderr
        assert "Traceback" not in done.stderr


async def test_keys_db_folder_created_on_first_use_by_keys_and_serve(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    toml = gateway_toml(tmp_path, pki)
    toml.write_text(toml.read_text().replace('keys_db = "gateway.db"', 'keys_db = "state/gw.db"'))
    check = run_command("gateway", "check", "-c", str(toml))
    assert check.returncode == 0, check.stderr  # the missing folder is not a mistake
    ready = tmp_path / "ready.json"
    proc = our_command(
        "gateway", "serve", "-c", str(toml), "--ready-file", str(ready),
        work_dir=tmp_path, ready=file_ready(ready),
    )  # fmt: skip
    await proc.astart()
    try:
        assert (tmp_path / "state/gw.db").is_file()  # serve created it
    finally:
        await proc.astop()
    (tmp_path / "state/gw.db").unlink()
    (tmp_path / "state").rmdir()
    created = run_command("gateway", "keys", "create", "zoe", "-c", str(toml))
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "state/gw.db").is_file()  # and so does keys
    (tmp_path / "state").rename(tmp_path / "moved")
    (tmp_path / "state").write_text("a file where the folder should be")
    refused = run_command("gateway", "check", "-c", str(toml))
    assert refused.returncode == 2
    assert "auth.keys_db: not a folder" in refused.stderr
