"""The stand-in LLM's aiohttp server: the app, its lifecycle, the routes other than the
conversational ones (:mod:`.dialogues`), records over HTTP."""

from __future__ import annotations

import hashlib
import ssl
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.standin_llm.core import Answer, ErrorAnswerError
from tests.support.standin_llm.dialogues import DialogueRoutes
from tests.support.standin_llm.wire import (
    Json,
    RecordedRequest,
    bulk_chunks,
    chat_usage,
    embedding_inputs,
    embedding_vector,
    encode_base64_floats,
    prompt_tokens_for,
    response_object,
    response_usage,
    sse,
)

# --------------------------------------------------------------------------- server


class StandinLLM(DialogueRoutes):
    """The stand-in server: ``await start()`` in-process, or ``python -m`` this module."""

    # ---- lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        recorded = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/chat/completions"): self._handle_chat,
            ("POST", "/v1/completions"): self._handle_completions,
            ("POST", "/v1/embeddings"): self._handle_embeddings,
            ("POST", "/v1/responses"): self._handle_responses,
            ("POST", "/v1/bulk/upload"): self._upload,
            ("POST", "/v1/bulk/echo"): self._echo,
            ("GET", "/v1/bulk/download"): self._download,
        }
        if self.messages_api:
            recorded["POST", "/v1/messages"] = self._handle_messages
            recorded["POST", "/v1/messages/count_tokens"] = self._count_tokens
        if self.tokenize:
            recorded["POST", "/tokenize"] = self._tokenize
        for (method, path), handler in recorded.items():
            app.router.add_route(method, path, self._guarded(handler))
        app.router.add_get("/_standin/requests", self._list_records)
        app.router.add_post("/_standin/reset", self._reset)
        app.router.add_routes(self.extra_routes)
        app.router.add_route("*", "/{tail:.*}", self._guarded(self._not_found))
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Listen on ``host:port`` (0: any free port), over TLS when ``ssl_context`` is given."""
        # handler_cancellation: a client that goes away cancels the handler at once, so the
        # record says "disconnected" within milliseconds rather than at the next write.
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context is not None else "http"
        await site.start()
        address = self._runner.addresses[0]
        self.host, self.port = address[0], int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandinLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:41234``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI SDK takes as ``base_url``: ``http://127.0.0.1:41234/v1``."""
        return self.url + "/v1"

    # ---- routes

    async def _not_found(self, request: web.Request, _record: RecordedRequest) -> Answer:
        raise ErrorAnswerError(404, f"Invalid URL ({request.method} {request.path})")

    async def _models(self, _request: web.Request, _record: RecordedRequest) -> Answer:
        data = [
            {"id": m, "object": "model", "created": self.created, "owned_by": "standin"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _handle_completions(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "cmpl-" + uuid.uuid4().hex[:24]
        base = {
            "id": ident,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }

        def choice(text: str, finish: str | None) -> Json:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            usage = chat_usage(prompt, controls.count())
            record.usage, record.chunks_sent = usage, controls.count()
            return web.json_response({**base, "choices": [choice(text, "stop")], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        response = await self._open_sse(request)
        async for i in self._paced(controls, request):
            piece = controls.piece(i)
            await response.write(sse({**base, "choices": [choice(piece, None)], **extra}))
            record.chunks_sent = i + 1
        await response.write(sse({**base, "choices": [choice("", "stop")], **extra}))
        usage = chat_usage(prompt, controls.count())
        record.usage = usage
        if include_usage:
            await response.write(sse({**base, "choices": [], "usage": usage}))
        await response.write(sse("[DONE]"))
        await response.write_eof()
        return response

    async def _handle_embeddings(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        await self._sleep_ms(controls.first_delay_ms)
        dims = int(body.get("dimensions") or self.embedding_dims)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(embedding_inputs(body.get("input", ""))):
            vector = embedding_vector(text, dims)
            encoded: Any = encode_base64_floats(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        prompt = prompt_tokens_for(request.path, body)
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        record.usage = usage
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def _handle_responses(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "resp_" + uuid.uuid4().hex
        usage = response_usage(prompt, controls.count())
        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            record.usage, record.chunks_sent = usage, controls.count()
            return web.json_response(response_object(body, model, ident, "completed", text, usage))
        response = await self._open_sse(request)
        seq = 0

        async def event(kind: str, payload: Json) -> None:
            nonlocal seq
            await response.write(sse({"type": kind, "sequence_number": seq, **payload}, event=kind))
            seq += 1

        started = response_object(body, model, ident, "in_progress", "", None)
        item_id = "msg_" + ident[5:]
        item = {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        await event("response.created", {"response": started})
        await event("response.in_progress", {"response": started})
        await event("response.output_item.added", {"output_index": 0, "item": item})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await event("response.content_part.added", {**where, "part": part})
        text = ""
        async for i in self._paced(controls, request):
            piece = controls.piece(i)
            text += piece
            await event("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
            record.chunks_sent = i + 1
        await event("response.output_text.done", {**where, "text": text, "logprobs": []})
        await event("response.content_part.done", {**where, "part": {**part, "text": text}})
        done = response_object(body, model, ident, "completed", text, usage)
        await event("response.output_item.done", {"output_index": 0, "item": done["output"][0]})
        await event("response.completed", {"response": done})
        record.usage = usage
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request, record: RecordedRequest) -> Answer:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        record.body_size, record.body_sha256 = size, digest.hexdigest()
        return web.json_response({"bytes": size, "sha256": record.body_sha256})

    async def _echo(self, request: web.Request, record: RecordedRequest) -> Answer:
        """Streams the body back as it arrives (both directions at once, for flow control)."""
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            record.body_size += len(chunk)
            await response.write(chunk)
        record.body_sha256 = digest.hexdigest()
        await response.write_eof()
        return response

    async def _download(self, request: web.Request, record: RecordedRequest) -> Answer:
        try:
            n = int(request.query.get("bytes", "0"))
        except ValueError:
            raise ErrorAnswerError(400, "bytes must be an integer", "bytes") from None
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(n)}
        )
        await response.prepare(request)
        for chunk in bulk_chunks(n):
            await response.write(chunk)
            record.chunks_sent += 1
        await response.write_eof()
        return response

    async def _list_records(self, _request: web.Request) -> Answer:
        return web.json_response([r.as_dict() for r in self._records])

    async def _reset(self, _request: web.Request) -> Answer:
        self.reset()
        return web.json_response({"ok": True})


# --------------------------------------------------------------------------- out-of-process use


async def fetch_records(url: str) -> list[Json]:
    """The records of a stand-in running elsewhere (``url`` without ``/v1``)."""
    async with aiohttp.ClientSession() as session, session.get(url + "/_standin/requests") as resp:
        resp.raise_for_status()
        records: list[Json] = await resp.json()
        return records
