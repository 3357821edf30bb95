"""What makes an agent's run pass, as pure functions over what it left behind: its output, the
gateway's access-log lines written while it ran, and the usage ledger's rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: nginx's code, which the gateway logs for a client that closed before the answer's end: no
#: answer it was sent. Codex CLI closes as soon as it has read `response.completed`, so its
#: (complete) answer is logged so; a note in the table, not a failure.
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]
    requests: int  # access-log lines of its key
    tokens: int  # prompt + completion tokens of its key in the ledger
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems


def access_lines(text: str) -> list[dict[str, object]]:
    """The JSON lines of an access-log slice (a half-written last line is left out)."""
    lines = []
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def describe(line: dict[str, object]) -> str:
    """One access-log line in words: '404 HEAD /api/hello (claude-cli/2.1 ...)'."""
    where = line.get("path") or line.get("route")
    agent = f" ({line['user_agent']})" if line.get("user_agent") else ""
    return f"{line.get('status')} {where} key={line.get('identity')}{agent}"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def ledger_tokens(rows: Iterable[dict[str, object]], identity: str) -> int:
    """Prompt + completion tokens of IDENTITY in `gateway usage --json` rows."""
    return sum(
        _int(r.get("prompt_tokens")) + _int(r.get("completion_tokens"))
        for r in rows
        if r.get("identity") == identity
    )


def judge(
    output: str,
    expected: str,
    lines: Sequence[dict[str, object]],
    ledger_rows: Sequence[dict[str, object]],
    identity: str,
) -> Verdict:
    """Pass when the answer holds EXPECTED, every request seen while the agent ran was answered
    without a 4xx/5xx, its key made at least one, and the ledger holds its tokens: more than none,
    and as many as the access log counted (when no request of it was cut by the client: a 499's
    line estimates what the ledger may have settled from the upstream's usage)."""
    problems = []
    if expected not in output:
        problems.append(f"the answer lacks {expected!r}")
    statuses = [_int(line.get("status")) for line in lines]
    problems += [
        f"gateway answered {describe(line)}"
        for line, status in zip(lines, statuses, strict=True)
        if status >= 400 and status != CLIENT_CLOSED
    ]
    notes = tuple(
        f"client closed: {describe(line)}"
        for line, status in zip(lines, statuses, strict=True)
        if status == CLIENT_CLOSED
    )
    own = [line for line in lines if line.get("identity") == identity]
    if not own:
        problems.append(f"no request with key {identity!r} reached the gateway")
    logged = sum(
        _int(line.get("prompt_tokens")) + _int(line.get("completion_tokens")) for line in own
    )
    tokens = ledger_tokens(ledger_rows, identity)
    if tokens == 0:
        problems.append(f"no tokens for {identity!r} in the ledger")
    elif tokens != logged and not notes:
        problems.append(f"the ledger has {tokens} tokens for {identity!r}, the access log {logged}")
    return Verdict(tuple(problems), len(own), tokens, notes)


def table(rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, the first row its header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
