"""A stand-in OpenAI-compatible LLM server (like vLLM, LiteLLM) for tests, the demo and the bench.

It speaks OpenAI's wire format closely enough for the official ``openai`` SDK to parse it all:
``GET /v1/models``, ``POST /v1/chat/completions`` (stream, ``stream_options.include_usage``),
``POST /v1/completions`` (stream too), ``POST /v1/embeddings`` (float and base64),
``POST /v1/messages`` and ``/v1/messages/count_tokens`` (Anthropic's), ``POST /tokenize`` (vLLM's),
``POST /v1/responses`` (stream too). Bulk paths move large bodies byte-exactly:
``POST /v1/bulk/upload`` (answers the size and sha256), ``POST /v1/bulk/echo`` (streams the body
back as it arrives) and ``GET /v1/bulk/download?bytes=N`` (``bulk_bytes(N)``, ``bulk_sha256(N)``).

Controls, per request, as headers or as a ``"standin"`` object in the JSON body (the body wins):

- ``x-standin-chunks`` / ``chunks``: number of content chunks (= completion tokens), default 5
- ``x-standin-pace-ms`` / ``pace_ms``: interval between chunks
- ``x-standin-first-delay-ms`` / ``first_delay_ms``: delay before the first chunk (or the answer)
- ``x-standin-status`` / ``status``: answer this status with an OpenAI-shaped error
- ``x-standin-fail-after`` / ``fail_after``: cut the connection after N content chunks
- ``x-standin-timestamps`` / ``timestamps``: each content piece reads ``w<i>@t=<monotonic ns> ``
- ``piece_bytes`` (body only): each content piece padded with ``x`` to this many characters
- ``head_delay_ms`` (body only): delay before the response head (a model that never answers)
- ``reply`` (body only): the answer's text, one chunk per space-separated word

The conversational routes (:mod:`.dialogues`) behave deterministically: chat completions calls a
tool (streamed as OpenAI and vLLM do: index, id and name, then argument fragments;
``finish_reason: "tool_calls"``) when the request offers ``tools``, does not say
``tool_choice: "none"`` and its last message is not a ``tool`` message; ``stop`` strings end the
text where they first appear (vLLM's ``stop_reason`` names the one). ``POST /v1/messages`` does
the same in Anthropic's shapes (``StandinLLM(messages_api=False)`` / ``--no-messages-api``: a
chat-only upstream), and ``POST /tokenize`` answers as vLLM's (``tokenize=False`` /
``--no-tokenize``: none, 404).

Every request is recorded (headers, JSON body or size, times, status, usage sent, whether the client
went away before the answer finished): ``GET /_standin/requests``, ``POST /_standin/reset``, or
``StandinLLM.requests`` in-process.
"""

from tests.support.standin_llm.server import StandinLLM, fetch_records
from tests.support.standin_llm.wire import (
    BULK_BLOCK,
    BULK_BLOCK_SIZE,
    DEFAULT_MODELS,
    DEFAULT_REPLY_WORDS,
    SSE_CONTENT_TYPE,
    Controls,
    Json,
    RecordedRequest,
    bulk_bytes,
    bulk_chunks,
    bulk_sha256,
    chat_usage,
    count_words,
    embedding_inputs,
    embedding_vector,
    encode_base64_floats,
    error_body,
    prompt_tokens_for,
    response_object,
    response_usage,
    sse,
)

__all__ = [
    "BULK_BLOCK",
    "BULK_BLOCK_SIZE",
    "DEFAULT_MODELS",
    "DEFAULT_REPLY_WORDS",
    "SSE_CONTENT_TYPE",
    "Controls",
    "Json",
    "RecordedRequest",
    "StandinLLM",
    "bulk_bytes",
    "bulk_chunks",
    "bulk_sha256",
    "chat_usage",
    "count_words",
    "embedding_inputs",
    "embedding_vector",
    "encode_base64_floats",
    "error_body",
    "fetch_records",
    "prompt_tokens_for",
    "response_object",
    "response_usage",
    "sse",
]
