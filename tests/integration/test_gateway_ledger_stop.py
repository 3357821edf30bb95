"""A graceful stop (SIGTERM) right after the answers: ``gateway usage`` agrees with the usage the
stand-in upstream reported (``kill -9``: test_gateway_ledger_kill.py)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.integration.test_gateway_api import MESSAGES, gateway_rig
from tests.support.procs import run_command

REQUESTS = 24


async def test_sigterm_writes_every_request_to_the_ledger(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        client = rig.client()

        async def one(i: int) -> None:
            if i % 2:
                stream = await client.chat.completions.create(
                    model="qwen3-coder",
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                )
                async for _ in stream:
                    pass
            else:
                await client.chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        rig.gateway.send_signal(signal.SIGTERM)
        code = await rig.gateway.await_exit(15.0)
        assert code == 0, rig.gateway.log_text()[-3000:]
        assert "Traceback" not in rig.gateway.log_text()

        chats = [r for r in rig.standin.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == REQUESTS
        assert all(r.usage for r in chats)
        prompt = sum(r.usage["prompt_tokens"] for r in chats if r.usage)
        completion = sum(r.usage["completion_tokens"] for r in chats if r.usage)

    done = run_command("gateway", "usage", "--json", "-c", str(rig.toml))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["identity"], r["model"]) for r in rows] == [("alice", "qwen3-coder")]
    assert (rows[0]["requests"], rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (
        REQUESTS,
        prompt,
        completion,
    )
