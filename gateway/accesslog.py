"""One JSON line per request: who, which model, status, tokens, latency, time to first byte.

Never the key (only the identity's name) and never prompt text unless ``[log] log_prompts``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO

from gateway.metrics import RequestRecord


def access_line(record: RequestRecord, prompt: object = None) -> str:
    entry: dict[str, object] = {
        "ts": round(time.time(), 3),
        "request_id": record.request_id,
        "identity": record.identity,
        "model": record.model,
        "route": record.route,
        "status": record.status,
        "stream": record.stream,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": round(record.latency_s * 1000, 2),
        "ttfb_ms": None if record.ttfb_s is None else round(record.ttfb_s * 1000, 2),
        "remote": record.remote,
    }
    if record.path is not None:
        entry["path"] = record.path
        entry["user_agent"] = record.user_agent
    if prompt is not None:
        entry["prompt"] = prompt
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


class AccessLog:
    """Appends lines to a file (opened once) or writes them to standard error."""

    def __init__(self, path: Path | None, *, log_prompts: bool = False) -> None:
        self.log_prompts = log_prompts
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, record: RequestRecord, prompt: object = None) -> None:
        line = access_line(record, prompt if self.log_prompts else None)
        out = self._file if self._file is not None else sys.stderr
        out.write(line)
        out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
