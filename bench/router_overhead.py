"""The router's own CPU per call, without a network: router.query through an in-memory transport
(the engine's seam, engine/transport.py) that answers at once, against the same transport called
directly with a JSON parse. The difference is what the router adds (templates, checks, extraction,
pricing, bookkeeping).

    python bench/router_overhead.py            # a plain chat call, a tool call, an Anthropic call with thinking

Then a 200-chunk stream (the mock's events, one chunk each) through `router.stream` against the
minimal SSE reader `run.py` times raw aiohttp with: CPU per event, the router's own work beside it.
Each figure is the minimum over rounds (CPU time), so other load on the machine shows less.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's llm_router
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mock_openai import sse_events

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.engine.request import PreparedRequest
from llm_router.engine.transport import ClientSettings, Reply

OPENAI = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {
    "role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()
ANTHROPIC = json.dumps({"id": "m", "type": "message", "role": "assistant", "content": [
    {"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 2}}).encode()
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}}}}]


EVENTS = sse_events(200)  # 200 content deltas, a finish event, a usage event and [DONE]


class Streamed:
    """A streamed reply whose chunks are the mock's SSE events, one event a chunk."""

    status = 200
    headers: ClassVar[dict[str, str]] = {"content-type": "text/event-stream"}

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for event in EVENTS:
            yield event

    async def read(self) -> bytes:
        return b"".join(EVENTS)


class Instant:
    """A seam transport for every provider that answers at once."""

    headers: ClassVar[dict[str, str]] = {"content-type": "application/json"}

    def __call__(self, settings: ClientSettings) -> Instant:
        return self

    async def send(self, request: PreparedRequest) -> Reply:
        return Reply(200, self.headers, ANTHROPIC if request.url.endswith("/messages") else OPENAI)

    @asynccontextmanager
    async def stream(self, request: PreparedRequest) -> AsyncIterator[Streamed]:
        yield Streamed()

    async def aclose(self) -> None:
        return None


async def per_call_us(call, count: int = 300, rounds: int = 40) -> float:
    for _ in range(200):
        await call()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            await call()
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


async def main() -> None:
    env = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}
    catalog, _ = load_catalog([catalog_dir()], env)
    instant = Instant()
    router = Router(catalog, env, transport=instant)
    payload = json.dumps({"model": "gpt-4.1", "messages": MESSAGES}).encode()
    request = PreparedRequest("POST", "https://api.openai.com/v1/chat/completions",
                              {"authorization": "Bearer k", "content-type": "application/json"}, {}, None, payload)

    async def raw() -> None:
        reply = await instant.send(request)
        json.loads(reply.body)["choices"][0]["message"]["content"]

    baseline = await per_call_us(raw)
    print(f"the transport alone + json          {baseline:7.1f} us")
    for label, call in [
        ("router.query openai/gpt-4.1", lambda: router.query("openai/gpt-4.1", MESSAGES)),
        ("router.query openai/gpt-4.1, tools", lambda: router.query("openai/gpt-4.1", MESSAGES, tools=TOOLS)),
        ("router.query claude, effort high", lambda: router.query("claude-sonnet-4-5", MESSAGES, reasoning_effort="high")),
    ]:
        us = await per_call_us(call)
        print(f"{label:<36}{us:7.1f} us   router's own work {us - baseline:6.1f} us")

    async def raw_stream() -> None:  # run.py's minimal SSE reader over the same chunks
        parts, tail = [], b""
        async for chunk in Streamed().chunks():
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    parts.append(choices[0]["delta"]["content"])

    async def routed_stream() -> None:
        async for _ in router.stream("openai/gpt-4.1", MESSAGES):
            pass

    events = len(EVENTS)
    raw_us = await per_call_us(raw_stream, 10, 40) / events
    routed_us = await per_call_us(routed_stream, 10, 40) / events
    print(f"{'a raw SSE read, per event':<36}{raw_us:7.2f} us")
    print(f"{'router.stream, per event':<36}{routed_us:7.2f} us   router's own work {routed_us - raw_us:6.2f} us"
          f"   (x raw {raw_us / routed_us:.2f})")
    await router.aclose()


if __name__ == "__main__":
    asyncio.run(main())
