"""Each agent's run: its command line, its environment and the config files it reads.

Values may name `{key}` (its API key), `{ca}` (the deployment's CA file), `{base}` (the
gateway's URL, without /v1), `{home}` (its own empty home) and `{prompt}`. Config files are
copied from clients/ into the agent's home with the placeholder base URL made the deployment's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

NATIVE_ALIAS = "qwen3-coder"
TRANSLATE_ALIAS = "qwen3-coder-translate"
PROMPT = "Say hello to the home gateway."
#: the stand-in LLM's answer (tests/support/standin_llm: "Hello from the stand-in LLM.")
EXPECTED_TEXT = "stand-in LLM"

# Claude Code's own switches for what it sends besides the model calls (its docs: "Data usage")
CLAUDE_QUIET = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


@dataclass(frozen=True)
class Agent:
    name: str  # the client, as the table shows it
    mode: str  # which API and, for the Messages API, which messages_api mode
    key_name: str  # its own gateway key, so that the ledger shows its tokens alone
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: destination under the agent's home -> source under clients/
    files: Mapping[str, str] = field(default_factory=dict)
    #: without its switches: Claude Code as a user who set none runs; only where the network
    #: namespace keeps whatever it sends beyond the gateway from leaving the machine
    needs_isolation: bool = False


AGENTS: tuple[Agent, ...] = (
    Agent(
        "claude-code",
        "messages, native",
        "claude-code-native",
        ("claude", "-p", "{prompt}"),
        {"ANTHROPIC_AUTH_TOKEN": "{key}", "NODE_EXTRA_CA_CERTS": "{ca}"},
        {".claude/settings.json": "claude-code/settings.json"},
    ),
    Agent(
        "claude-code",
        "messages, translate",
        "claude-code-translate",
        ("claude", "-p", "{prompt}", "--settings", "{home}/.claude/settings.translate.json"),
        {"ANTHROPIC_AUTH_TOKEN": "{key}", "NODE_EXTRA_CA_CERTS": "{ca}"},
        {
            ".claude/settings.json": "claude-code/settings.json",
            ".claude/settings.translate.json": "claude-code/settings.translate.json",
        },
    ),
    Agent(
        "claude-code",
        "messages, native, x-api-key, no switches",
        "claude-code-plain",
        ("claude", "-p", "{prompt}"),
        {
            "ANTHROPIC_BASE_URL": "{base}",
            "ANTHROPIC_API_KEY": "{key}",
            "ANTHROPIC_MODEL": NATIVE_ALIAS,
            "NODE_EXTRA_CA_CERTS": "{ca}",
        },
        needs_isolation=True,
    ),
    Agent(
        "codex",
        "responses",
        "codex",
        ("codex", "exec", "--skip-git-repo-check", "{prompt}"),
        {
            "HOME_LLM_API_KEY": "{key}",
            "CODEX_CA_CERTIFICATE": "{ca}",
            "CODEX_HOME": "{home}/.codex",
        },
        {".codex/config.toml": "codex/config.toml"},
    ),
    Agent(
        "qwen-code",
        "chat completions",
        "qwen-code",
        ("qwen", "-p", "{prompt}"),
        {"HOME_LLM_API_KEY": "{key}", "NODE_EXTRA_CA_CERTS": "{ca}"},
        {".qwen/settings.json": "qwen-code/settings.json"},
    ),
    Agent(
        "continue-cli",
        "chat completions",
        "continue-cli",
        ("cn", "-p", "{prompt}", "--config", "{home}/.continue/config.yaml"),
        {
            "HOME_LLM_API_KEY": "{key}",
            "NODE_EXTRA_CA_CERTS": "{ca}",
            "CONTINUE_METRICS_ENABLED": "0",
        },
        {".continue/config.yaml": "continue/config.yaml"},
    ),
    Agent(
        "openai-node",
        "chat completions, stream",
        "openai-node",
        ("node", "{home}/chat.mjs", "{prompt}"),
        {"OPENAI_BASE_URL": "{base}/v1", "OPENAI_API_KEY": "{key}", "NODE_EXTRA_CA_CERTS": "{ca}"},
        {"chat.mjs": "openai-node/chat.mjs"},
    ),
)
