"""A tiny OpenAI-compatible server on 127.0.0.1 for `llm-router demo`: the whole path, offline."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


def _reply_text(body: dict[str, Any]) -> str:
    user = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
    text = user[-1] if user and isinstance(user[-1], str) else "hello"
    return "echo: " + " ".join(reversed(text.split()))


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    text = _reply_text(body)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])) + 3
    return {
        "id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                  "total_tokens": prompt_tokens + len(text.split())},
    }


def _sse(body: dict[str, Any]) -> bytes:
    full = _completion(body)
    words = full["choices"][0]["message"]["content"].split(" ")
    events = []
    for i, word in enumerate(words):
        delta = {"content": (" " if i else "") + word}
        events.append({"id": "chatcmpl-demo", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({"id": "chatcmpl-demo", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"id": "chatcmpl-demo", "choices": [], "usage": full["usage"]})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            body = json.loads(raw or b"{}")
            if body.get("stream"):
                payload, content_type = _sse(body), "text/event-stream"
            else:
                payload, content_type = json.dumps(_completion(body)).encode(), "application/json"
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {len(payload)}\r\n\r\n".encode() + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def start_demo_server() -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"
