"""Canonical conversation → one wire format, as its `conversation:` block declares.

The canonical form is OpenAI Chat Completions' (messages with content parts, assistant
`tool_calls`, `tool` messages; `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`).
A wire format states role renames, where system text goes, a template per part kind, whether
turns of one role merge, its tool and tool_choice shapes; this module applies those declarations
with a few general operations (parse JSON, look a call's name up by its id, group consecutive
turns). Provider state on an assistant message is replayed verbatim to its own wire and dropped
for any other. Messages reach this module already checked by `inputs.check_tools`.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..config.model import CacheBreakpoints, Conversation
from ..errors import InvalidRequestError
from ..templating import DROP, CompiledTemplate, TemplateRenderError, system_text, text_of

STATE_KEY = "provider_state"
STRUCTURED_TOOL = "json_response"  # the forced tool's name when the schema has none

_DATA_URL = re.compile(r"data:(?P<mime>[\w/+.-]+);base64,(?P<data>.*)", re.S)


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What a chat call asks beyond its messages; every model of a chain gets the same."""

    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    prompt_cache: bool | Mapping[str, Any] | None = None  # True: cache breakpoints; a mapping also overrides the policy
    headers: Mapping[str, str] | None = None  # extra request headers (lower-case names), checked; never the key's


NO_OPTIONS = RequestOptions()


@dataclass(slots=True)
class WireRequest:
    """The template variables for one wire format, and the forced tool that carries a structured answer."""

    variables: dict[str, Any]
    structured_tool: str | None = None


def to_wire(spec: Conversation | None, messages: Any, options: RequestOptions, where: str,
            call_id_length: int | None = None, structured_output: str | None = None, reasoning: bool = False) -> WireRequest:
    """`structured_output`: the model's own choice for a json_schema answer (native | tool), if it has
    one; `reasoning`: the call asks the model to reason."""
    if call_id_length is not None and isinstance(messages, list):
        messages = _fit_call_ids(messages, call_id_length)
    if spec is None:
        return WireRequest({
            "messages": _without_state(messages), "system": None, "tools": options.tools,
            "tool_choice": options.tool_choice, "parallel_tool_calls": options.parallel_tool_calls,
            "response_format": options.response_format,
        })
    converter = _Converter(spec, where)
    system: Any = None  # the text, or one marked text block when it carries a cache breakpoint
    if messages is not None and spec.system == "separate":
        system = system_text(messages)
        messages = [m for m in messages if m.get("role") not in ("system", "developer")]
    tools, tool_choice, response_format, structured = _structured(spec, options, structured_output)
    if reasoning and spec.forced_tools_with_reasoning == "refuse" and _forces_a_tool(tool_choice):
        fix = ("a json_schema answer is a forced tool on this model: use a model with native structured output, "
               "or no reasoning" if structured else "use tool_choice 'auto', or no reasoning")
        raise InvalidRequestError(f"{where}: this wire format ({spec.wire}) cannot force a tool while the model reasons; {fix}")
    cache = _cache_places(spec.cache, options.prompt_cache)
    wire_tools = ([converter.render(spec.tool, {"tool": _tool_vars(t)}, "tool") for t in tools]
                  if tools and spec.tool is not None else tools)
    if cache is not None and cache.tools and wire_tools:
        wire_tools = [*wire_tools[:-1], {**wire_tools[-1], **cache.marker}]
    if cache is not None and cache.system and system:
        system = [{**converter.text_part(system), **cache.marker}]
    return WireRequest({
        "messages": converter.messages(messages, cache) if messages is not None else None,
        "system": system,
        "tools": wire_tools,
        "tool_choice": converter.tool_choice(tool_choice, options.parallel_tool_calls, bool(tools)),
        "parallel_tool_calls": options.parallel_tool_calls,
        "response_format": response_format,
    }, structured)


def _cache_places(policy: CacheBreakpoints | None, asked: Any) -> CacheBreakpoints | None:
    """The cache breakpoints this call gets: the wire's policy when the call asks (a mapping overrides
    its system, tools and last_turns), else none."""
    if policy is None or asked is None or asked is False:
        return None
    return replace(policy, **asked) if isinstance(asked, Mapping) else policy


def _fit_call_ids(messages: list[Any], length: int) -> list[Any]:
    """Tool call ids of letters and digits of `length`: an id that does not fit is replaced by one
    derived from it, so a call and its result still pair up (Mistral accepts only such ids)."""
    def fit(call_id: str) -> str:
        if len(call_id) == length and call_id.isascii() and call_id.isalnum():
            return call_id
        digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest(), "big")
        chars = []
        for _ in range(length):
            digest, i = divmod(digest, len(_ID_CHARS))
            chars.append(_ID_CHARS[i])
        return "".join(chars)

    fitted = []
    for message in messages:
        if message.get("tool_calls"):
            message = {**message, "tool_calls": [{**c, "id": fit(c["id"])} for c in message["tool_calls"]]}
        elif message.get("role") == "tool":
            message = {**message, "tool_call_id": fit(message["tool_call_id"])}
        fitted.append(message)
    return fitted


_ID_CHARS = string.ascii_letters + string.digits


def _without_state(messages: Any) -> Any:
    if isinstance(messages, list):
        for message in messages:  # a loop, not any(): most calls carry no state, and this runs on every one
            if STATE_KEY in message:
                return [{k: v for k, v in m.items() if k != STATE_KEY} if STATE_KEY in m else m for m in messages]
    return messages


def _structured(spec: Conversation, options: RequestOptions, model_mode: str | None) -> tuple[Any, Any, Any, str | None]:
    """(tools, tool_choice, response_format, forced tool name): a JSON answer becomes a forced
    single tool where the wire format (or, for json_schema, the model) says `tool`."""
    fmt = options.response_format
    kind = fmt.get("type") if fmt is not None else None
    mode = model_mode if model_mode is not None and kind == "json_schema" else spec.structured_output
    if fmt is None or mode != "tool" or kind not in ("json_schema", "json_object"):
        return options.tools, options.tool_choice, fmt, None
    schema_spec = fmt.get("json_schema") or {}
    name = schema_spec.get("name") or STRUCTURED_TOOL
    tool = {"type": "function", "function": {
        "name": name, "description": schema_spec.get("description") or "Give the answer as this tool's input.",
        "parameters": schema_spec.get("schema") or {"type": "object"},
    }}
    return [*(options.tools or ()), tool], {"type": "function", "function": {"name": name}}, None, name


def _forces_a_tool(choice: Any) -> bool:
    return choice == "required" or isinstance(choice, Mapping)


def _tool_vars(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    return {"name": function["name"], "description": function.get("description"),
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            "strict": function.get("strict")}


def _results_in_call_order(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tool results after an assistant turn, in the order of its calls: wire formats that pair
    results with calls by position (Gemini, for calls without ids) then pair them right."""
    ordered = list(messages)
    for i, message in enumerate(ordered):
        calls = message.get("tool_calls")
        if not calls:
            continue
        end = i + 1
        while end < len(ordered) and ordered[end].get("role") == "tool":
            end += 1
        place = {call["id"]: n for n, call in enumerate(calls)}
        ordered[i + 1:end] = sorted(ordered[i + 1:end], key=lambda m: place.get(m["tool_call_id"], len(place)))
    return ordered


def _strings_in(value: Any, depth: int = 0) -> frozenset[str]:
    """Every string in provider state (ids the provider issued appear there); depth-bounded."""
    if isinstance(value, str):
        return frozenset({value})
    if depth > 8:
        return frozenset()
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    found: set[str] = set()
    for item in items:
        found |= _strings_in(item, depth + 1)
    return frozenset(found)


class _Converter:
    def __init__(self, spec: Conversation, where: str) -> None:
        self.spec = spec
        self.where = where

    def render(self, template: CompiledTemplate | None, ctx: Mapping[str, Any], what: str) -> Any:
        if template is None:
            raise InvalidRequestError(f"{self.where}: this wire format ({self.spec.wire}) cannot take {what}")
        try:
            value = template.render(ctx)
        except TemplateRenderError as exc:
            raise InvalidRequestError(f"{self.where}: could not write {what}: {exc}") from None
        return None if value is DROP else value

    def tool_choice(self, choice: Any, parallel: bool | None, has_tools: bool) -> Any:
        table = self.spec.tool_choice
        if not table:
            return choice
        if choice is None:
            if parallel is None or not has_tools:
                return None
            choice = "auto"
        key, name = (choice, None) if isinstance(choice, str) else ("function", choice["function"]["name"])
        return self.render(table.get(key), {"name": name, "parallel": parallel}, f"tool_choice {key!r}")

    def messages(self, messages: Sequence[Mapping[str, Any]], cache: CacheBreakpoints | None = None) -> list[Any]:
        spec = self.spec
        calls: dict[str, tuple[str, bool]] = {}  # tool call id → (function name, whether this wire issued the id)
        turns: list[tuple[str, Any]] = []  # (wire role, parts list or a plain string)
        for message in _results_in_call_order(messages):
            role = message["role"]
            body = self._parts(message, calls)
            wire_role = spec.roles.get(role, role)
            if spec.merge_consecutive and turns and turns[-1][0] == wire_role:
                turns[-1] = (wire_role, self._as_list(turns[-1][1]) + self._as_list(body))
            else:
                turns.append((wire_role, body))
        if cache is not None and cache.last_turns:
            self._mark_latest(turns, spec.roles.get("user", "user"), cache)
        if spec.message is None:
            return [{"role": role, "content": parts} for role, parts in turns]
        return [self.render(spec.message, {"role": role, "parts": parts}, "a message") for role, parts in turns]

    def _mark_latest(self, turns: list[tuple[str, Any]], role: str, cache: CacheBreakpoints) -> None:
        """The cache marker on the last part of each of the latest `last_turns` turns of `role`."""
        left = cache.last_turns
        for i in reversed(range(len(turns))):
            wire_role, parts = turns[i]
            if left <= 0:
                break
            if wire_role != role or not parts:
                continue
            parts = self._as_list(parts)
            turns[i] = (wire_role, [*parts[:-1], {**parts[-1], **cache.marker}])
            left -= 1

    def _as_list(self, body: Any) -> list[Any]:
        return [self.text_part(body)] if isinstance(body, str) else body

    def text_part(self, text: str) -> Any:
        return self.render(self.spec.parts.text, {"part": {"type": "text", "text": text}}, "text parts")

    def _parts(self, message: Mapping[str, Any], known: dict[str, tuple[str, bool]]) -> Any:
        role = message["role"]
        content = message.get("content")
        if role == "tool":
            call_id = message["tool_call_id"]
            text = text_of(content)
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            name, native = known.get(call_id, (None, False))
            result = {"call_id": call_id, "native_id": call_id if native else None, "name": name, "content": text,
                      "json": parsed if isinstance(parsed, dict) else None}
            return [self.render(self.spec.parts.tool_result, {"result": result}, "tool results")]
        calls = message.get("tool_calls") or ()
        state = message.get(STATE_KEY)
        replayed = role == "assistant" and isinstance(state, Mapping) and state.get("wire") == self.spec.wire
        issued = _strings_in(state.get("data")) if replayed and calls else frozenset()  # type: ignore[union-attr]
        for call in calls:
            known[call["id"]] = (call["function"]["name"], call["id"] in issued)
        if replayed:
            return list(state.get("data") or ())  # type: ignore[union-attr]
        if isinstance(content, str) and not calls and self.spec.text_content == "string":
            return content
        parts = [self._part(p) for p in ([{"type": "text", "text": content}] if isinstance(content, str) else content or ())]
        parts = [p for p in parts if p is not None]
        for call in calls:
            function = call["function"]
            variables = {"id": call["id"], "name": function["name"], "arguments": json.loads(function["arguments"]),
                         "arguments_json": function["arguments"]}
            parts.append(self.render(self.spec.parts.tool_call, {"call": variables}, "tool calls"))
        return parts

    def _part(self, part: Mapping[str, Any]) -> Any:
        kind = part.get("type")
        templates = self.spec.parts
        if kind == "text":
            return self.text_part(part["text"]) if part["text"] else None  # empty text blocks are refused by some APIs
        if kind == "image_url":
            image = part["image_url"]
            url, detail = (image.get("url"), image.get("detail")) if isinstance(image, Mapping) else (image, None)
            match = _DATA_URL.match(url) if isinstance(url, str) else None
            if match:
                variables = {"media_type": match["mime"], "data": match["data"], "detail": detail}
                return self.render(templates.image_data, {"part": variables}, "inline images")
            return self.render(templates.image_url, {"part": {"url": url, "detail": detail}}, "images by URL")
        if kind == "file":
            file = part.get("file") or {}
            match = _DATA_URL.match(file.get("file_data") or "")
            variables = {"media_type": match["mime"] if match else None, "data": match["data"] if match else None,
                         "filename": file.get("filename"), "file_id": file.get("file_id")}
            return self.render(templates.file, {"part": variables}, "files")
        raise InvalidRequestError(f"{self.where}: this wire format ({self.spec.wire}) cannot take content parts of type {kind!r}")
