"""A loopback mock of the OpenAI Chat Completions wire format, fast enough not to be the bottleneck.

Raw asyncio protocol (stdlib only; uvloop is used when importable), HTTP/1.1 keep-alive, minimal
parsing: the request line, Content-Length, and whether the body asks for `"stream": true`.

    python bench/mock_openai.py [--port 0] [--chunks 200] [--hold] [--no-uvloop]

--hold: a stream sends its first delta and then nothing, until the client goes (idle open streams).

prints `READY http://127.0.0.1:PORT` on stdout once listening, then serves until killed (or, with
--until-stdin-closes, until its stdin pipe closes, so it never outlives the benchmark that
started it). Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys

CHAT_REPLY = json.dumps({
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello from the loopback mock: a short, ordinary answer.", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "system_fingerprint": "fp_bench",
}, separators=(",", ":")).encode()

MODELS_REPLY = json.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "bench"}]}).encode()

STREAM_RE = re.compile(rb'"stream"\s*:\s*true')


def sse_events(chunks: int) -> list[bytes]:
    """`chunks` content deltas, a finish event, a usage event and [DONE], each one SSE event."""
    def event(delta: dict[str, object], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [], "usage": usage}
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": f"tok{i} "}) for i in range(chunks)]
    events.append(event({}, "stop"))
    events.append(event({}, usage={"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}))
    events.append(b"data: [DONE]\n\n")
    return events


def response_head(status: str, ctype: bytes, length: int | None) -> bytes:
    head = b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + ctype + b"\r\nserver: bench-mock\r\n"
    head += b"transfer-encoding: chunked\r\n" if length is None else b"content-length: " + str(length).encode() + b"\r\n"
    return head + b"\r\n"


class MockProtocol(asyncio.Protocol):
    def __init__(self, events: list[bytes], hold: bool = False) -> None:
        self.events = events
        self.hold = hold
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a stream is being written; later pipelined requests wait in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        assert self.transport is not None
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                length = int(head[i + 17: j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4: total]
            self.buffer = self.buffer[total:]
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            method, _, rest = line.partition(b" ")
            path = rest.partition(b" ")[0]
            if method == b"POST" and path.endswith(b"/chat/completions"):
                if STREAM_RE.search(body):
                    self.busy = True
                    asyncio.get_running_loop().create_task(self.stream())
                    return
                self.transport.write(response_head("200 OK", b"application/json", len(CHAT_REPLY)) + CHAT_REPLY)
            elif method == b"GET" and path.endswith(b"/models"):
                self.transport.write(response_head("200 OK", b"application/json", len(MODELS_REPLY)) + MODELS_REPLY)
            else:
                msg = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
                self.transport.write(response_head("404 Not Found", b"application/json", len(msg)) + msg)

    async def stream(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(response_head("200 OK", b"text/event-stream", None))
        if self.hold:  # the role event and one delta, then silence: the connection stays open, busy
            for event in self.events[:2]:
                transport.write(b"%x\r\n%s\r\n" % (len(event), event))
            return
        for event in self.events:
            if transport.is_closing():
                return
            transport.write(b"%x\r\n%s\r\n" % (len(event), event))
            await asyncio.sleep(0)  # one event per loop turn, so the client sees a stream, not one blob
        transport.write(b"0\r\n\r\n")
        self.busy = False
        if self.buffer:
            self.process()


async def serve(port: int, chunks: int, until_stdin_closes: bool, hold: bool = False) -> None:
    loop = asyncio.get_running_loop()
    events = sse_events(chunks)
    server = await loop.create_server(lambda: MockProtocol(events, hold), "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{bound}", flush=True)
    stdin_closed = loop.create_future()

    def watch_stdin() -> None:
        if not sys.stdin.buffer.read1(1024) and not stdin_closed.done():  # type: ignore[attr-defined]
            stdin_closed.set_result(None)

    if until_stdin_closes:
        loop.add_reader(sys.stdin.fileno(), watch_stdin)
    async with server:
        await stdin_closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=200, help="content deltas in a streamed reply")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--until-stdin-closes", action="store_true")
    parser.add_argument("--hold", action="store_true", help="streams send one delta, then stay open and silent")
    args = parser.parse_args()
    runner = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.port, args.chunks, args.until_stdin_closes, args.hold))


if __name__ == "__main__":
    main()
