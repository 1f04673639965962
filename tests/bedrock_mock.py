"""A loopback Amazon Bedrock Runtime: Converse and ConverseStream.

Every request's SigV4 signature is checked first (auth_mocks.SigV4Verifier, written from AWS's
documentation, not with botocore: 403 otherwise), then Converse's conversation rules (400), and only
then is the scripted reply served: a Converse JSON body, or a ConverseStream body of real
event-stream messages (application/vnd.amazon.eventstream, encoded by eventstream_codec, whose
encoder reproduces a real captured body byte for byte), sent in chunks as a network would."""

from __future__ import annotations

import re
from typing import Any

from auth_mocks import SigV4Verifier
from eventstream_codec import event
from mockserver import MockServer, Reply, Request

CONVERSE = re.compile(r"/model/(?P<model>[^/]+)/converse")
CONVERSE_STREAM = re.compile(r"/model/(?P<model>[^/]+)/converse-stream")
EVENTSTREAM = "application/vnd.amazon.eventstream"
BLOCK_KINDS = {"text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint"}
StreamEvents = list[tuple[str, Any]]  # (the `:event-type`, its JSON payload) in order


def converse_problem(body: dict) -> str | None:
    """Converse's documented rules: user first, roles alternate, content is a list of one-key blocks,
    tool results answer the previous assistant turn's tool uses, and toolConfig is sent when tools are used."""
    messages = body.get("messages")
    if not messages or messages[0]["role"] != "user":
        return "A conversation must start with a user message."
    for i, message in enumerate(messages):
        if message["role"] not in ("user", "assistant") or (i and message["role"] == messages[i - 1]["role"]):
            return "A conversation must alternate between user and assistant roles."
        blocks = message["content"]
        if not isinstance(blocks, list) or not blocks or any(len(b) != 1 or set(b) - BLOCK_KINDS for b in blocks):
            return f"messages.{i}.content: each block has exactly one of {sorted(BLOCK_KINDS)}"
        results = [b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b]
        if results:
            uses = [b["toolUse"]["toolUseId"] for b in messages[i - 1]["content"] if "toolUse" in b]
            if sorted(results) != sorted(uses):
                return "The number of toolResult blocks exceeds the number of toolUse blocks of the previous turn."
    used = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    if used and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    if "system" in body and not all(set(b) == {"text"} for b in body["system"]):
        return "system: a list of text blocks"
    return None


def converse_reply(content: list, stop: str = "end_turn", usage: dict | None = None) -> dict:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": usage or {"inputTokens": 30, "outputTokens": 10, "totalTokens": 40}, "metrics": {"latencyMs": 310}}


def converse_stream(events: StreamEvents | bytes, chunk_size: int = 0) -> Reply:
    """A 200 ConverseStream reply: the events as event-stream messages (or bytes as given), in chunks of
    `chunk_size` bytes (0: whole), each chunk split wherever it falls, even inside a message."""
    body = events if isinstance(events, bytes) else b"".join(event(name, payload) for name, payload in events)
    pieces = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)] if chunk_size else [body]
    return Reply(kind="sse", headers=(("content-type", EVENTSTREAM), ("x-amzn-requestid", "5d6f1f2e-0000-4c5e-9d1b-3b2f6f0a1c7e")),
                 events=tuple((0.0, p) for p in pieces))


class ConverseMock:
    """Converse and ConverseStream: signature first (403 otherwise), then the conversation rules (400),
    then the script, one reply per request in order (the last repeats). A reply is a Converse body (a
    dict), a ConverseStream body (a list of events, or event-stream bytes), or a Reply served as is; a
    Converse body asked for on converse-stream, or a stream on converse, fails the request (500)."""

    def __init__(self, srv: MockServer, verifier: SigV4Verifier, replies: list[Any], chunk_size: int = 0) -> None:
        self.verifier = verifier
        self.replies = replies
        self.chunk_size = chunk_size
        self.bodies: list[dict] = []
        srv.route("POST", CONVERSE, verifier.guard(self))
        srv.route("POST", CONVERSE_STREAM, verifier.guard(self))

    def __call__(self, req: Request) -> Reply:
        body = req.json()
        self.bodies.append(body)
        problem = converse_problem(body)
        if problem is not None:
            return Reply.json({"message": problem}, status=400, headers={"x-amzn-ErrorType": "ValidationException"})
        reply = self.replies[min(len(self.bodies), len(self.replies)) - 1]
        if isinstance(reply, Reply):
            return reply
        streaming = req.path.endswith("/converse-stream")
        if isinstance(reply, dict):
            assert not streaming, f"the script has a Converse body for a ConverseStream request ({req.path})"
            return Reply.json(reply)
        assert streaming, f"the script has a stream for a Converse request ({req.path})"
        return converse_stream(reply, self.chunk_size)
