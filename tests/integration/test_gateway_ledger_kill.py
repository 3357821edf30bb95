"""Issue 11 (9): a request answered is a row in the ledger, even if the gateway is then killed
(``kill -9``, no chance to flush anything): the row is committed before the answer ends."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.integration.test_gateway_api import MESSAGES, gateway_rig

REQUESTS = 40


async def test_sigkill_right_after_the_answers_loses_no_usage_row(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        client = rig.client()

        async def one(i: int) -> None:
            if i % 2:
                stream = await client.chat.completions.create(
                    model="qwen3-coder",
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                )
                async for _ in stream:  # the SDK reads the stream to its end
                    pass
            else:
                await client.chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        await rig.gateway.akill()  # kill -9, at once
        chats = [r for r in rig.standin.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == REQUESTS

    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        found = conn.execute("SELECT identity, model, requests FROM usage").fetchall()
    assert found == [("alice", "qwen3-coder", REQUESTS)]
