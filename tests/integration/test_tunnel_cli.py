"""`connector` on the command line: one-line errors with exit 2, a clean stop on SIGTERM."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import run_command


def test_missing_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_command("connector", "run", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "connector: error: nope.toml: cannot read: No such file or directory"
    )


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    path.write_text(
        '[gateway]\naddress = "gw:443"\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n'
        'ping_interval_s = -1\n\n[upstreams.office-llm]\nurl = "http://127.0.0.1:1"\n'
    )
    result = run_command("connector", "run", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        "connector: error: connector.toml: gateway.ping_interval_s: must be a positive number\n"
    )


def test_missing_certificate_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    path.write_text(
        '[gateway]\naddress = "gw:443"\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n\n'
        '[upstreams.office-llm]\nurl = "http://127.0.0.1:1"\n'
    )
    result = run_command("connector", "run", "-c", str(path))
    assert result.returncode == 2
    assert "ca.crt: no such file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    result = run_command("connector", "fly")
    assert result.returncode == 2
    assert result.stderr.startswith("connector: error: ")
