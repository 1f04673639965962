"""A chat reply in the canonical form: text, tool calls, reasoning, provider state, a normalised
finish reason, and the assistant message the next turn appends. Read whole from a reply, or
assembled from stream events (tool-call fragments joined by their index)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Extraction, Operation, StateBlock, ToolCallPaths
from ..paths import JSONPath
from ..types import ToolCall, ToolCallDelta, Usage
from .conversation import STATE_KEY
from .extract import text_of, usage_found

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


@dataclass(slots=True)
class Turn:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    state: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # normalised
    native_finish_reason: str | None = None
    message: dict[str, Any] | None = None


def joined(path: JSONPath | None, data: Any) -> str | None:
    """Every string the path finds, joined; None when it finds none."""
    if path is None:
        return None
    return joined_at(path, path.first(data)) if path.singular else _texts(path.all(data))


def joined_at(path: JSONPath | None, base: Any) -> str | None:
    """`joined`, given what the path's head found (`paths.heads`)."""
    if base is None or path is None:
        return None
    if path.singular:
        return base if isinstance(base, str) else None
    return _texts(path.all_at(base))


def _texts(values: list[Any]) -> str | None:
    texts = [v for v in values if isinstance(v, str)]
    return "".join(texts) if texts else None


def arguments_text(value: Any) -> str:
    """Arguments as JSON text: a string as the model wrote it, an object serialised (an object
    nested too deep to serialise is no arguments)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return ""


def parse_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None
    return value if isinstance(value, dict) else None


def _id(value: Any) -> str | None:
    """A call id or name as the reply gives it: a string or a number; anything else is none."""
    if isinstance(value, str):
        return value or None
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _key(value: Any) -> Any:
    """A stream's tool-call index: a string or a number; a list or an object (unhashable) is none."""
    return value if isinstance(value, (str, int, float)) else None


def new_call_id() -> str:
    return f"call_{os.urandom(12).hex()}"  # 96 random bits, as uuid4().hex[:24] gave, without importing uuid


def _items(paths: ToolCallPaths, data: Any) -> list[Any]:
    return paths.items.all(data) if paths.items is not None else [data]


def tool_calls_of(paths: ToolCallPaths | None, data: Any) -> list[ToolCall]:
    if paths is None:
        return []
    calls = []
    for item in _items(paths, data):
        name = paths.name.first(item) if paths.name is not None else None
        if not isinstance(name, str) or not name:
            continue
        call_id = _id(paths.id.first(item)) if paths.id is not None else None
        text = arguments_text(paths.arguments.first(item) if paths.arguments is not None else None) or "{}"
        calls.append(ToolCall(call_id or new_call_id(), name, text, parse_object(text)))
    return calls


def extras_of(paths: Mapping[str, JSONPath], data: Any) -> dict[str, Any]:
    found = {}
    for name, path in paths.items():
        value = path.first(data)
        if value is not None:
            found[name] = value
    return found


def normalise(operation: Operation, native: str | None, has_calls: bool) -> str | None:
    if native is None:
        return "tool_calls" if has_calls else None
    reason = operation.finish_reasons.get(native, native)
    return "tool_calls" if has_calls and reason == "stop" else reason


def finish_turn(turn: Turn, operation: Operation, structured_tool: str | None) -> Turn:
    """Normalise the finish reason, take a structured answer out of its forced tool, and build the message."""
    if structured_tool is not None:
        answer = next((c for c in turn.tool_calls if c.name == structured_tool), None)
        if answer is not None:
            turn.tool_calls = [c for c in turn.tool_calls if c is not answer]
            turn.content = answer.arguments
            turn.state = None  # the wire's record of a tool call that the next turn will not answer
    reason = normalise(operation, turn.native_finish_reason, bool(turn.tool_calls))
    if structured_tool is not None and reason == "tool_calls" and not turn.tool_calls:
        reason = "stop"
    turn.finish_reason = reason
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.tool_calls:
        message["tool_calls"] = [c.to_message() for c in turn.tool_calls]
    conversation = operation.conversation
    if turn.state is not None and conversation is not None:
        message[STATE_KEY] = {"wire": conversation.wire, "data": turn.state}
    turn.message = message
    return turn


def read_reply(spec: Extraction, operation: Operation, data: Any, structured_tool: str | None) -> tuple[Turn, Usage, str | None]:
    """A whole chat reply: its turn, its usage and its id. The heads of every path are walked once
    (`spec.heads`); a part whose head found nothing is not read further (most replies have no tool
    calls, reasoning or state)."""
    assert spec.heads is not None  # built with a chat operation's reply
    content_at, finish_at, id_at, tools_at, reasoning_at, state_at, *rest = spec.heads(data)
    extra = {}
    for (name, path), value in zip(spec.extra.items(), rest):  # noqa: B905  # the first of the rest are the extras'
        if value is not None and (value := path.first_at(value)) is not None:
            extra[name] = value
    turn = Turn(  # positional: a keyword argument costs ~0.1 µs in Python 3.11
        joined_at(spec.content, content_at),
        tool_calls_of(spec.tool_calls, data) if tools_at is not None else [],
        joined_at(spec.reasoning, reasoning_at),
        spec.state.first_at(state_at) if state_at is not None and spec.state is not None else None,
        extra,
        None,  # finish_reason: finish_turn normalises the native one
        text_of(spec.finish_reason.first_at(finish_at)) if finish_at is not None and spec.finish_reason is not None else None,
    )
    reply_id = text_of(spec.id.first_at(id_at)) if id_at is not None and spec.id is not None else None
    return finish_turn(turn, operation, structured_tool), usage_found(spec.usage, rest[len(spec.extra):]), reply_id


class StreamAssembler:
    """Joins a stream's events into a turn: text, tool calls by index, reasoning, state, extras."""

    __slots__ = ("_text", "_reasoning", "_calls", "_by_key", "_state", "_blocks", "_block_json", "extra",
                 "native_finish_reason")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[list[Any]] = []  # [id, name, argument fragments]
        self._by_key: dict[Any, int] = {}  # the provider's index → the call's place in this turn
        self._state: list[Any] = []
        self._blocks: dict[Any, dict[str, Any]] = {}  # state blocks by the provider's index, in the order they opened
        self._block_json: dict[tuple[Any, str], list[str]] = {}  # (index, field) → JSON text fragments
        self.extra: dict[str, Any] = {}
        self.native_finish_reason: str | None = None

    def text(self, delta: str) -> None:
        self._text.append(delta)

    def reasoning(self, delta: str) -> None:
        self._reasoning.append(delta)

    def state(self, value: Any) -> None:
        if isinstance(value, list):
            self._state.extend(value)
        else:
            self._state.append(value)

    def state_block(self, spec: StateBlock, data: Any) -> None:
        key = _key(spec.index.first(data))
        if key is None:
            return
        if spec.start is not None:
            opened = spec.start.first(data)
            if isinstance(opened, dict):
                self._blocks[key] = dict(opened)
        block = self._blocks.get(key)
        if block is None:
            return
        for name, path in spec.append.items():
            fragment = path.first(data)
            if isinstance(fragment, str):
                before = block.get(name)
                block[name] = (before if isinstance(before, str) else "") + fragment
        for name, path in spec.json.items():
            fragment = path.first(data)
            if isinstance(fragment, str):
                self._block_json.setdefault((key, name), []).append(fragment)

    def _assembled_state(self) -> Any:
        if not self._blocks:
            return self._state or None
        for (key, name), fragments in self._block_json.items():
            text = "".join(fragments)
            parsed = parse_object(text)
            self._blocks[key][name] = parsed if parsed is not None else text
        return list(self._blocks.values())

    def tool_fragments(self, paths: ToolCallPaths, data: Any) -> list[ToolCallDelta]:
        items = paths.items.all(data) if paths.items is not None else [data]  # _items(), inlined: on every event
        if not items:  # most events
            return []
        deltas = []
        for item in items:
            name = _id(paths.name.first(item)) if paths.name is not None else None
            call_id = _id(paths.id.first(item)) if paths.id is not None else None
            fragment = arguments_text(paths.arguments.first(item) if paths.arguments is not None else None)
            key = _key(paths.index.first(item)) if paths.index is not None else None
            place = self._by_key.get(key) if key is not None else None
            if place is None:
                if not name:  # a fragment of no call this stream has started: not a tool call (a text block's delta)
                    continue
                place = len(self._calls)
                self._calls.append([call_id or new_call_id(), name, []])
                if key is not None:
                    self._by_key[key] = place
                deltas.append(ToolCallDelta(place, self._calls[place][0], str(name), fragment))
            elif fragment:
                deltas.append(ToolCallDelta(place, None, None, fragment))
            if fragment:
                self._calls[place][2].append(fragment)
        return deltas

    def is_call(self, place: int, name: str) -> bool:
        return bool(self._calls[place][1] == name)

    def turn(self, operation: Operation, structured_tool: str | None) -> Turn:
        calls = []
        for call_id, name, fragments in self._calls:
            text = "".join(fragments) or "{}"  # a call without arguments
            calls.append(ToolCall(call_id, name, text, parse_object(text)))
        turn = Turn(
            content="".join(self._text) if self._text else None,
            tool_calls=calls,
            reasoning="".join(self._reasoning) if self._reasoning else None,
            state=self._assembled_state(),
            extra=self.extra,
            native_finish_reason=self.native_finish_reason,
        )
        return finish_turn(turn, operation, structured_tool)
