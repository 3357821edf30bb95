"""scripts/clients/checks.py and agents.py: what makes an agent's run pass, without running one."""

from __future__ import annotations

import json
import os
import tomllib

from scripts.clients import isolation
from scripts.clients.__main__ import chosen, parse_args
from scripts.clients.agents import AGENTS, NATIVE_ALIAS, TRANSLATE_ALIAS
from scripts.clients.checks import access_lines, judge, ledger_tokens, table
from scripts.clients.runner import CONFIGS, PLACEHOLDER_BASE
from tests.support.standin_llm import DEFAULT_REPLY_WORDS


def line(
    identity: str, status: int = 200, prompt: int = 10, completion: int = 5, **extra: object
) -> dict[str, object]:
    return {
        "identity": identity,
        "route": "/v1/messages",
        "status": status,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        **extra,
    }


def row(identity: str, prompt: int, completion: int) -> dict[str, object]:
    return {"identity": identity, "prompt_tokens": prompt, "completion_tokens": completion}


ANSWER = " ".join(DEFAULT_REPLY_WORDS)


def test_a_clean_run_passes() -> None:
    verdict = judge(
        ANSWER, "stand-in LLM", [line("cc"), line("cc", prompt=20)], [row("cc", 30, 10)], "cc"
    )
    assert verdict.passed, verdict.problems
    assert (verdict.requests, verdict.tokens) == (2, 40)


def test_an_unserved_path_fails_the_run_naming_the_request() -> None:
    probe = line(
        "-", status=404, prompt=0, completion=0, path="HEAD /api/hello", user_agent="claude-cli/2.1"
    )
    verdict = judge(ANSWER, "stand-in LLM", [probe, line("cc")], [row("cc", 10, 5)], "cc")
    assert not verdict.passed
    assert verdict.problems == ("gateway answered 404 HEAD /api/hello key=- (claude-cli/2.1)",)


def test_a_wrong_answer_no_request_or_no_tokens_fail() -> None:
    assert judge("Hi", "stand-in LLM", [line("cc")], [row("cc", 10, 5)], "cc").problems == (
        "the answer lacks 'stand-in LLM'",
    )
    assert (
        "no request with key 'cc' reached the gateway"
        in judge(ANSWER, "stand-in LLM", [line("other")], [row("cc", 1, 1)], "cc").problems
    )
    assert (
        "no tokens for 'cc' in the ledger"
        in judge(ANSWER, "stand-in LLM", [line("cc")], [row("other", 10, 5)], "cc").problems
    )


def test_the_ledger_must_agree_with_the_access_log() -> None:
    verdict = judge(ANSWER, "stand-in LLM", [line("cc")], [row("cc", 10, 6)], "cc")
    assert verdict.problems == ("the ledger has 16 tokens for 'cc', the access log 15",)


def test_a_client_that_closed_after_its_answer_is_a_note_not_a_failure() -> None:
    verdict = judge(
        ANSWER,
        "stand-in LLM",
        [line("codex", status=499, completion=13)],
        [row("codex", 10, 5)],
        "codex",
    )
    assert verdict.passed
    assert verdict.notes == ("client closed: 499 /v1/messages key=codex",)


def test_access_lines_skip_a_half_written_line_and_the_ledger_sums_one_identity() -> None:
    text = json.dumps(line("a")) + "\n" + '{"identity": "a", "sta'
    assert access_lines(text) == [line("a")]
    assert ledger_tokens([row("a", 1, 2), row("b", 5, 5), row("a", 3, 4)], "a") == 10


def test_table_lines_up_its_columns() -> None:
    assert table([("client", "result"), ("codex", "ok")]).splitlines() == [
        "client  result",
        "------  ------",
        "codex   ok",
    ]


def test_every_agent_has_its_own_key_and_its_config_files_exist() -> None:
    names = [a.key_name for a in AGENTS]
    assert len(names) == len(set(names))
    for agent in AGENTS:
        for source in agent.files.values():
            assert (CONFIGS / source).is_file(), source


def test_the_configs_point_at_the_placeholder_gateway_and_parse() -> None:
    codex = tomllib.loads((CONFIGS / "codex/config.toml").read_text())
    assert codex["model_providers"]["home"]["wire_api"] == "responses"
    assert codex["model_providers"]["home"]["base_url"] == PLACEHOLDER_BASE + "/v1"
    claude = json.loads((CONFIGS / "claude-code/settings.json").read_text())["env"]
    assert claude["ANTHROPIC_BASE_URL"] == PLACEHOLDER_BASE
    assert claude["ANTHROPIC_MODEL"] == NATIVE_ALIAS
    assert claude["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    translate = json.loads((CONFIGS / "claude-code/settings.translate.json").read_text())["env"]
    assert set(translate.values()) == {TRANSLATE_ALIAS}
    qwen = json.loads((CONFIGS / "qwen-code/settings.json").read_text())
    assert qwen["modelProviders"]["openai"][0]["baseUrl"] == PLACEHOLDER_BASE + "/v1"
    assert qwen["privacy"]["usageStatisticsEnabled"] is False
    assert PLACEHOLDER_BASE + "/v1" in (CONFIGS / "continue/config.yaml").read_text()


def test_the_lock_pins_what_package_json_names() -> None:
    package = json.loads((CONFIGS / "package.json").read_text())
    lock = json.loads((CONFIGS / "package-lock.json").read_text())["packages"]
    for name, version in {**package["dependencies"], **package["optionalDependencies"]}.items():
        assert version[0].isdigit(), f"{name} is not pinned exactly: {version}"
        assert lock[f"node_modules/{name}"]["version"] == version


def test_the_run_reenters_itself_under_unshare_net() -> None:
    argv = isolation.unshare_argv(["--only", "codex"])
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    assert argv[1 : 3 + len(as_root)] == ["--net", *as_root, "--"]
    assert argv[-4:] == ["-m", "scripts.clients", "--only", "codex"]


def test_without_the_namespace_the_run_with_no_switches_is_left_out() -> None:
    args = parse_args(["--host-network"])
    assert all(not a.needs_isolation for a in chosen(args, isolated=False))
    assert any(a.needs_isolation for a in chosen(args, isolated=True))
    assert {a.name for a in chosen(parse_args(["--only", "codex"]), isolated=True)} == {"codex"}
