"""Every command the docs show that can run on one machine is run here, as written.

The marker is the fenced block's info string (GitHub ignores the words after the language):

- ```` ```sh test ```` / ```` ```python test ````: runs with nothing else running, in a scratch
  directory; the blocks of one page run in order in one bash script (`set -euo pipefail`), so a
  later block sees the files and variables of the earlier ones. Install paths (/etc/llm-gateway,
  /var/lib/llm-gateway, /etc/llm-connector) are moved under the scratch directory.
- ```` ```console test ````: the same, for a transcript: its `$ ` lines run in order, and what
  they print together (standard output and error) must be exactly its other lines.
- A block whose prose says where it runs (pki.md: "check them with OpenSSL", in the CA
  directory) runs there, in a subshell (`RUN_IN`).
- ```` ```toml file=/etc/llm-gateway/gateway.toml ````: that file's content, written at that point
  of the script (same path moving). A `connector.toml` written so is also loaded with the
  connector's config loader.
- ```` ```toml same-as=clients/codex/config.toml ```` (any language): the block is that file of
  the repo, byte for byte: the config `make clients` runs that agent with (clients.md).
- ```` ```sh live ```` / ```` ```python live ````: needs a running gateway: each runs on its own
  against the demo's (`scripts/demo.py`), with `OPENAI_BASE_URL`, `OPENAI_API_KEY` set, the
  gateway's `ca.crt` in the current directory, 127.0.0.1:9100 (the admin listener) pointing at
  the demo's, and the demo's connector config as /etc/llm-connector/connector.toml (moved under
  the scratch directory), so that `connector doctor -c ...` checks the demo's tunnel for real.
  The docs' placeholder gateway URL (`PUBLIC_URL`) is the demo's, and a Python block's `KEY`
  (the key `gateway keys create` printed) is `$OPENAI_API_KEY`.

A page's `test` blocks may build on another page's: operations.md starts where quickstart.md ends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.demoproc import running_demo
from tests.support.procs import REPO_ROOT, base_env
from tunnel.config import ConnectorConfig

DOCS = REPO_ROOT / "docs"
INSTALL_PREFIXES = ("/etc/llm-gateway", "/var/lib/llm-gateway", "/etc/llm-connector")
MARKS = frozenset({"test", "live"})
RUNNABLE = frozenset({"sh", "python"})
TEST_ONLY = frozenset({"console"})  # runnable as `test` blocks only
FENCE = re.compile(r"^```(?P<info>[^`\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Pages whose `test` blocks run, each after the pages it builds on.
CHAINS = {
    "quickstart.md": ("quickstart.md",),
    "operations.md": ("quickstart.md", "operations.md"),
    "pki.md": ("pki.md",),
    "configuration.md": ("quickstart.md", "configuration.md"),
}
# (page, the block's first words) -> the directory the block runs in.
RUN_IN = {("pki.md", "openssl verify"): "$PKI_DIR"}
PUBLIC_URL = "https://minipc.example.org:8443/v1"
PYTHON_LIVE_PRELUDE = 'import os\nKEY = os.environ["OPENAI_API_KEY"]\n'


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    marks: frozenset[str]
    file: str | None
    body: str
    same_as: str | None = None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks_of(page: str) -> list[Block]:
    text = (DOCS / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if not words:
            continue
        files = [w.removeprefix("file=") for w in words[1:] if w.startswith("file=")]
        same = [w.removeprefix("same-as=") for w in words[1:] if w.startswith("same-as=")]
        marks = frozenset(w for w in words[1:] if not w.startswith(("file=", "same-as=")))
        line = text.count("\n", 0, match.start()) + 1
        file = files[0] if files else None
        body, same_as = match["body"], same[0] if same else None
        found.append(Block(page, line, words[0], marks, file, body, same_as))
    return found


def moved(text: str, root: Path) -> str:
    for prefix in INSTALL_PREFIXES:
        text = text.replace(prefix, f"{root}{prefix}")
    return text


def heredoc(command: str, body: str) -> str:
    assert "__DOC_END__" not in body
    return f"{command} <<'__DOC_END__'\n{body}__DOC_END__\n"


def transcript(body: str, where: str) -> str:
    """A `console` block as bash: run its `$ ` lines, compare their output with the rest."""
    commands = [line[2:] for line in body.splitlines() if line.startswith("$ ")]
    expected = "".join(line + "\n" for line in body.splitlines() if not line.startswith("$ "))
    run = "".join(command + "\n" for command in commands)
    return (
        f"{{\n{run}}} > .transcript 2>&1\n"
        + heredoc("cat > .expected", expected)
        + f"diff -u .expected .transcript || {{ echo '{where}: output differs' >&2; exit 1; }}\n"
    )


def in_dir(block: Block, body: str) -> str:
    for (page, start), directory in RUN_IN.items():
        if block.page == page and body.lstrip().startswith(start):
            return f'(\ncd "{directory}"\n{body})\n'
    return body


def script_for(pages: tuple[str, ...], root: Path) -> str:
    parts = ["set -euo pipefail\n"]
    for page in pages:
        for block in blocks_of(page):
            body = moved(block.body, root)
            if block.file is not None:
                path = moved(block.file, root)
                parts.append(f"# {block.where}\nmkdir -p \"$(dirname '{path}')\"\n")
                parts.append(heredoc(f"cat > '{path}'", body))
            elif "test" in block.marks and block.lang == "sh":
                parts.append(f"# {block.where}\n{in_dir(block, body)}")
            elif "test" in block.marks and block.lang == "console":
                parts.append(f"# {block.where}\n{transcript(body, block.where)}")
            elif "test" in block.marks and block.lang == "python":
                parts.append(f"# {block.where}\n" + heredoc("python3 -", body))
    return "".join(parts)


def venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = base_env(extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


# --------------------------------------------------------------------------- the markers


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_markers_are_known_and_runnable(page: str) -> None:
    """A misspelt marker would silently skip a command; refuse it."""
    for block in blocks_of(page):
        unknown = block.marks - MARKS
        assert not unknown, f"{block.where}: unknown marker {sorted(unknown)}"
        if block.marks:
            runnable = RUNNABLE | TEST_ONLY if block.marks == {"test"} else RUNNABLE
            assert block.lang in runnable, f"{block.where}: cannot run {block.lang!r} blocks"


@pytest.mark.parametrize(
    "page", ["quickstart.md", "clients.md", "operations.md", "pki.md", "api.md", "configuration.md"]
)
def test_the_guides_have_commands_that_run(page: str) -> None:
    assert any(block.marks for block in blocks_of(page)), f"docs/{page} has no tested command"


def same_as_blocks() -> list[Block]:
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    return [b for page in pages for b in blocks_of(page) if b.same_as is not None]


def test_clients_md_shows_every_config_that_make_clients_runs() -> None:
    shown = {b.same_as for b in same_as_blocks() if b.page == "clients.md"}
    configs = {
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "clients").rglob("*")
        if p.is_file()
        and p.suffix in {".json", ".toml", ".yaml", ".mjs"}
        and "package" not in p.name
    }
    assert shown == configs


@pytest.mark.parametrize("block", same_as_blocks(), ids=lambda b: b.where)
def test_a_same_as_block_is_the_file_it_names(block: Block) -> None:
    """A config shown in the docs is the one `make clients` runs, so the two cannot drift."""
    assert block.same_as is not None
    assert block.body == (REPO_ROOT / block.same_as).read_text(), block.where


# --------------------------------------------------------------------------- `test` blocks


@pytest.mark.parametrize("page", sorted(CHAINS))
def test_page_commands_run_on_one_machine(page: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/llm-gateway").mkdir(parents=True)  # systemd's StateDirectory= makes it
    work = tmp_path / "work"
    work.mkdir()
    script = script_for(CHAINS[page], root)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, (
        f"script:\n{script}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    for block in blocks_of(page):
        if block.file is not None and block.file.endswith("connector.toml"):
            ConnectorConfig.load(Path(moved(block.file, root)))


# --------------------------------------------------------------------------- `live` blocks


@dataclass(frozen=True)
class LiveGateway:
    base_url: str
    key: str
    ca: Path
    admin: str  # host:port of the admin listener
    connector_toml: Path  # the demo's connector config (its relative paths are to its directory)


def _field(output: str, pattern: str) -> str:
    match = re.search(pattern, output, re.MULTILINE)
    assert match, f"{pattern!r} not in the demo's output:\n{output}"
    return match[1]


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    work = tmp_path_factory.mktemp("docs-demo") / "demo"
    with running_demo(work) as (_demo, output):
        assert "press Ctrl-C" in output, output
        yield LiveGateway(
            base_url=_field(output, r"^Base URL : (\S+)$"),
            key=_field(output, r"^API key  : (\S+)$"),
            ca=Path(_field(output, r"^CA file  : (\S+)$")),
            admin=_field(output, r"metrics http://(127\.0\.0\.1:\d+)/metrics"),
            connector_toml=work / "connector.toml",
        )


def install_connector_toml(demo_toml: Path, root: Path) -> Path:
    """The demo's connector config at ROOT/etc/llm-connector/connector.toml, its relative paths
    made absolute (they are relative to the file, and the file moved)."""

    def absolute(match: re.Match[str]) -> str:
        return f'{match[1]} = "{demo_toml.parent / match[2]}"'

    text = re.sub(r'^(ca|cert|key) = "(?!/)([^"]*)"$', absolute, demo_toml.read_text(), flags=re.M)
    path = Path(moved("/etc/llm-connector/connector.toml", root))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_doctor_command_of_the_docs_is_run_live() -> None:
    """`connector doctor` used to be left out (a flaky TLS accept in the listener); no more."""
    doctor = [b for b in live_blocks() if "connector doctor -c" in b.body]
    assert any(b.page == "troubleshooting.md" for b in doctor), [b.where for b in doctor]


def live_blocks() -> list[Block]:
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    return [b for page in pages for b in blocks_of(page) if "live" in b.marks]


@pytest.mark.parametrize("block", live_blocks(), ids=lambda b: b.where)
def test_live_command_works_against_a_running_gateway(
    block: Block, live_gateway: LiveGateway, tmp_path: Path
) -> None:
    if re.search(r"\bnode\b", block.body) and shutil.which("node") is None:
        pytest.skip("node is not installed")
    shutil.copyfile(live_gateway.ca, tmp_path / "ca.crt")
    install_connector_toml(live_gateway.connector_toml, tmp_path)
    body = moved(block.body, tmp_path).replace("127.0.0.1:9100", live_gateway.admin)
    body = body.replace(PUBLIC_URL, live_gateway.base_url)
    argv = ["bash", "-euo", "pipefail", "-c", body]
    if block.lang == "python":
        argv = [sys.executable, "-c", PYTHON_LIVE_PRELUDE + body]
    env = venv_env({"OPENAI_BASE_URL": live_gateway.base_url, "OPENAI_API_KEY": live_gateway.key})
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{block.where}:\n{body}\nstdout:\n{done.stdout}\n{done.stderr}"
