"""Router results as the JSON the openai SDKs parse: `chat.completion`, `chat.completion.chunk`
(with `delta.tool_calls` fragments by index), images, embeddings, models, and SSE framing."""

from __future__ import annotations

import array
import base64
import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from ..config.model import ModelConfig
from ..types import EmbeddingResponse, LLMResponse, StreamChunk, ToolCallDelta, Usage

DONE = b"data: [DONE]\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def usage_json(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens or 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
    }


def _text(content: Any) -> str | None:
    return content if content is None or isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def completion(response: LLMResponse, completion_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _text(response.content)}
    if response.tool_calls:
        message["tool_calls"] = [call.to_message() for call in response.tool_calls]
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": response.finish_reason or "stop", "logprobs": None}],
        "usage": usage_json(response.usage),
    }


def chunk_json(completion_id: str, created: int, model: str, delta: Mapping[str, Any],
               finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def usage_chunk_json(completion_id: str, created: int, model: str, usage: Usage | None) -> dict[str, Any]:
    """The extra last chunk `stream_options.include_usage` asks for: no choices, the usage."""
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_json(usage)}


def delta_json(chunk: StreamChunk, first: bool) -> dict[str, Any]:
    """A chunk's `delta`: the role on the first, then text, reasoning and tool-call fragments."""
    delta: dict[str, Any] = {"role": "assistant", "content": chunk.delta} if first else {}
    if chunk.delta and not first:
        delta["content"] = chunk.delta
    if chunk.reasoning_delta:
        delta["reasoning_content"] = chunk.reasoning_delta
    if chunk.tool_call_deltas:
        delta["tool_calls"] = [_tool_call_delta(d) for d in chunk.tool_call_deltas]
    return delta


def _tool_call_delta(d: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": d.index}
    function: dict[str, Any] = {"arguments": d.arguments}
    if d.id is not None:
        out["id"] = d.id
        out["type"] = "function"
    if d.name is not None:
        function["name"] = d.name
    out["function"] = function
    return out


def image(response: LLMResponse, created: int) -> dict[str, Any]:
    item = {"b64_json": response.content} if response.content_kind == "base64" else {"url": response.content}
    out: dict[str, Any] = {"created": created, "data": [item]}
    usage = response.usage
    if usage.input_tokens is not None or usage.output_tokens is not None:
        out["usage"] = {"input_tokens": usage.input_tokens or 0, "output_tokens": usage.output_tokens or 0,
                        "total_tokens": usage.total_tokens or 0}
    return out


def embedding_list(response: EmbeddingResponse, as_base64: bool) -> dict[str, Any]:
    """OpenAI's embeddings list; with `as_base64`, each vector as base64 of little-endian float32 values."""
    def vector(values: list[float]) -> Any:
        if not as_base64:
            return values
        floats = array.array("f", values)
        if sys.byteorder == "big":
            floats.byteswap()
        return base64.b64encode(floats.tobytes()).decode("ascii")

    tokens = response.usage.input_tokens or 0
    return {"object": "list", "model": response.model_name,
            "data": [{"object": "embedding", "index": i, "embedding": vector(v)} for i, v in enumerate(response.vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_json(model: ModelConfig, created: int) -> dict[str, Any]:
    """An OpenAI model object, with the catalog's kind, capabilities, params and prices as extra fields."""
    pricing = None
    if model.pricing is not None:
        pricing = {name: value for name, value in _plain(model.pricing).items() if value not in (None, "", {}, [])}
    return {
        "id": model.name,
        "object": "model",
        "created": created,
        "owned_by": model.provider,
        "kind": model.kind,
        "capabilities": sorted(model.capabilities),
        "params": sorted(model.params),
        "pricing": pricing,
    }


def _plain(value: Any) -> Any:
    """Config values (frozen dataclasses, read-only mappings, tuples) as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset):
        return [_plain(v) for v in value]
    return value
