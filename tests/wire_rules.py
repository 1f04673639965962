"""Strict request validators for the chat wire formats, tool-call reply builders, and a strict mock handler.

The validators enforce what each API documents (and answers with a 400 when broken), so a loopback mock
can refuse a request the real service would refuse. Each returns a list of human-readable violations,
empty when the body is valid:

    check_openai_chat(body)                               OpenAI Chat Completions (and OpenAI-compatible APIs)
    check_anthropic_messages(body, issued_thinking=None)  Anthropic Messages
    check_gemini_generate(body, expected_signatures=None) Gemini generateContent / streamGenerateContent

Reply builders answer with tool calls as the real services send them (non-stream bodies and SSE event
lists for `Reply.sse`, in the style of mockserver.py's fixtures). `strict_handler` (and the per-wire
`strict_openai` / `strict_anthropic` / `strict_gemini`) make a MockServer handler that validates each
request and answers 400 with the vendor's error body listing the violations, else the next scripted reply.

    srv.route("POST", "/v1/chat/completions", h := strict_openai([Reply.json(openai_tool_call_reply([call]))]))
    ... h.bodies: every request body seen; h.rejections: (body, violations) of the refused ones

Standard library only (plus mockserver).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mockserver import (
    Reply,
    Request,
    anthropic_error,
    anthropic_usage,
    gemini_error,
    gemini_usage,
    openai_error,
    openai_usage,
)

__all__ = [
    "StrictHandler",
    "anthropic_error_body",
    "anthropic_tool_use_reply",
    "anthropic_tool_use_sse",
    "check_anthropic_messages",
    "check_gemini_generate",
    "check_openai_chat",
    "gemini_error_body",
    "gemini_function_call_reply",
    "gemini_function_call_sse",
    "openai_error_body",
    "openai_tool_call_reply",
    "openai_tool_call_sse",
    "reply_payloads",
    "split_text",
    "strict_anthropic",
    "strict_gemini",
    "strict_handler",
    "strict_openai",
    "tool_call",
]


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_json_text(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _unknown_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str, out: list[str]) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        out.append(f"{where}: unknown key(s) {', '.join(repr(k) for k in extra)}")


def _object_schema(schema: Any, where: str, out: list[str], case_insensitive: bool = False) -> None:
    """A JSON object schema: a dict whose `type` is "object" (Gemini's Schema also spells it OBJECT)."""
    if not isinstance(schema, dict):
        out.append(f"{where}: must be a JSON schema object, got {_type(schema)}")
        return
    kind = schema.get("type")
    if isinstance(kind, str) and case_insensitive:
        kind = kind.lower()
    if kind != "object":
        out.append(f"{where}.type: must be \"object\", got {schema.get('type')!r}")


# =============================================================================================
# OpenAI Chat Completions
# =============================================================================================

OPENAI_TOP_KEYS = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "temperature",
    "max_tokens", "max_completion_tokens", "stream", "stream_options", "top_p", "stop", "seed",
    "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "n", "user",
    "metadata", "store", "reasoning_effort", "service_tier", "modalities", "audio", "prediction",
    "web_search_options", "verbosity", "safety_identifier", "prompt_cache_key", "functions", "function_call",
})
OPENAI_MESSAGE_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "tool_calls", "function_call", "audio"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),  # deprecated, still accepted
}
OPENAI_PART_TYPES = {
    "system": {"text"}, "developer": {"text"}, "tool": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
}
OPENAI_PART_KEYS = {
    "text": {"type", "text"}, "image_url": {"type", "image_url"}, "input_audio": {"type", "input_audio"},
    "file": {"type", "file"}, "refusal": {"type", "refusal"},
}
_OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def check_openai_chat(body: Any) -> list[str]:
    """Violations of the Chat Completions request rules (https://platform.openai.com/docs/api-reference/chat/create,
    https://platform.openai.com/docs/guides/function-calling):

    - only the documented top-level keys; `model` and a non-empty `messages` are required;
    - each message has the keys its role allows (no `provider_state` or other extras), content of the right
      shape (a string or typed parts; an assistant turn may have null content only beside tool calls);
    - assistant `tool_calls`: {id, type: "function", function: {name, arguments}} with `arguments` a string
      holding JSON text; every call answered by a `tool` message with its tool_call_id before the next
      non-tool message ("An assistant message with 'tool_calls' must be followed by tool messages responding
      to each 'tool_call_id'"), and no `tool` message without a preceding call;
    - tools: {type: "function", function: {name, description?, parameters? (object schema), strict?}};
      `tool_choice` and `parallel_tool_calls` only with tools; a named tool_choice names a declared tool;
    - response_format: text | json_object | json_schema {name, schema?, strict?, description?};
    - stream_options only with stream: true.
    """
    out: list[str] = []
    if not isinstance(body, dict):
        return [f"body: must be a JSON object, got {_type(body)}"]
    _unknown_keys(body, OPENAI_TOP_KEYS, "body", out)
    if not isinstance(body.get("model"), str) or not body.get("model"):
        out.append("model: required string")
    tool_names = _openai_tools(body, out)
    _openai_tool_choice(body, tool_names, out)
    _openai_response_format(body.get("response_format"), out)
    if "stream" in body and not isinstance(body["stream"], bool):
        out.append(f"stream: must be a boolean, got {_type(body['stream'])}")
    if "stream_options" in body and body.get("stream") is not True:
        out.append("stream_options: only allowed when stream is true")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        out.append("messages: required non-empty array")
        return out
    _openai_messages(messages, out)
    return out


def _openai_tools(body: dict[str, Any], out: list[str]) -> set[str]:
    names: set[str] = set()
    if "tools" not in body:
        return names
    tools = body["tools"]
    if not isinstance(tools, list) or not tools:
        out.append("tools: must be a non-empty array")
        return names
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            out.append(f"{where}: must be an object")
            continue
        _unknown_keys(tool, {"type", "function"}, where, out)
        if tool.get("type") != "function":
            out.append(f"{where}.type: must be \"function\", got {tool.get('type')!r}")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            out.append(f"{where}.function: required object")
            continue
        _unknown_keys(fn, {"name", "description", "parameters", "strict"}, f"{where}.function", out)
        name = fn.get("name")
        if not isinstance(name, str) or not _OPENAI_NAME.match(name):
            out.append(f"{where}.function.name: must match ^[a-zA-Z0-9_-]{{1,64}}$, got {name!r}")
        elif name in names:
            out.append(f"{where}.function.name: duplicate tool name {name!r}")
        else:
            names.add(name)
        if "description" in fn and not isinstance(fn["description"], str):
            out.append(f"{where}.function.description: must be a string")
        if "parameters" in fn:
            _object_schema(fn["parameters"], f"{where}.function.parameters", out)
        if "strict" in fn and not isinstance(fn["strict"], (bool, type(None))):
            out.append(f"{where}.function.strict: must be a boolean")
    return names


def _openai_tool_choice(body: dict[str, Any], tool_names: set[str], out: list[str]) -> None:
    if "parallel_tool_calls" in body:
        if not isinstance(body["parallel_tool_calls"], bool):
            out.append("parallel_tool_calls: must be a boolean")
        if "tools" not in body:
            out.append("parallel_tool_calls: only allowed when tools are specified")
    if "tool_choice" not in body:
        return
    choice = body["tool_choice"]
    if "tools" not in body and choice != "none":
        out.append("tool_choice: only allowed when tools are specified")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            out.append(f"tool_choice: must be none|auto|required or a function object, got {choice!r}")
        return
    if not isinstance(choice, dict):
        out.append(f"tool_choice: must be a string or an object, got {_type(choice)}")
        return
    _unknown_keys(choice, {"type", "function"}, "tool_choice", out)
    fn = choice.get("function")
    if choice.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        out.append("tool_choice: must be {type: \"function\", function: {name}}")
        return
    _unknown_keys(fn, {"name"}, "tool_choice.function", out)
    if tool_names and fn["name"] not in tool_names:
        out.append(f"tool_choice.function.name: {fn['name']!r} is not a declared tool")


def _openai_response_format(fmt: Any, out: list[str]) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        out.append(f"response_format: must be an object, got {_type(fmt)}")
        return
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        _unknown_keys(fmt, {"type"}, "response_format", out)
        return
    if kind != "json_schema":
        out.append(f"response_format.type: must be text|json_object|json_schema, got {kind!r}")
        return
    _unknown_keys(fmt, {"type", "json_schema"}, "response_format", out)
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        out.append("response_format.json_schema: required object")
        return
    _unknown_keys(spec, {"name", "description", "schema", "strict"}, "response_format.json_schema", out)
    if not isinstance(spec.get("name"), str) or not _OPENAI_NAME.match(spec["name"]):
        out.append(f"response_format.json_schema.name: must match ^[a-zA-Z0-9_-]{{1,64}}$, got {spec.get('name')!r}")
    if "schema" in spec and not isinstance(spec["schema"], dict):
        out.append("response_format.json_schema.schema: must be an object")


def _openai_content(role: str, content: Any, where: str, out: list[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        out.append(f"{where}.content: must be a string or a non-empty array of parts, got {_type(content)}")
        return
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            out.append(f"{pw}: must be an object")
            continue
        kind = part.get("type")
        if kind not in OPENAI_PART_TYPES[role]:
            out.append(f"{pw}.type: {kind!r} is not allowed in a {role} message")
            continue
        _unknown_keys(part, OPENAI_PART_KEYS[kind], pw, out)
        if kind == "text" and not isinstance(part.get("text"), str):
            out.append(f"{pw}.text: required string")
        if kind == "image_url" and not (isinstance(part.get("image_url"), dict)
                                        and isinstance(part["image_url"].get("url"), str)):
            out.append(f"{pw}.image_url: required {{url}}")


def _openai_tool_calls(calls: Any, where: str, out: list[str]) -> list[str]:
    ids: list[str] = []
    if not isinstance(calls, list) or not calls:
        out.append(f"{where}.tool_calls: must be a non-empty array")
        return ids
    for k, call in enumerate(calls):
        cw = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            out.append(f"{cw}: must be an object")
            continue
        _unknown_keys(call, {"id", "type", "function"}, cw, out)
        if not isinstance(call.get("id"), str) or not call.get("id"):
            out.append(f"{cw}.id: required non-empty string")
        elif call["id"] in ids:
            out.append(f"{cw}.id: duplicate tool call id {call['id']!r}")
        else:
            ids.append(call["id"])
        if call.get("type") != "function":
            out.append(f"{cw}.type: must be \"function\", got {call.get('type')!r}")
        fn = call.get("function")
        if not isinstance(fn, dict):
            out.append(f"{cw}.function: required object")
            continue
        _unknown_keys(fn, {"name", "arguments"}, f"{cw}.function", out)
        if not isinstance(fn.get("name"), str) or not fn.get("name"):
            out.append(f"{cw}.function.name: required string")
        args = fn.get("arguments")
        if not isinstance(args, str):
            out.append(f"{cw}.function.arguments: expected a string, but got {_type(args)} instead")
        elif not _is_json_text(args):
            out.append(f"{cw}.function.arguments: not JSON text: {args!r}")
    return ids


def _openai_messages(messages: list[Any], out: list[str]) -> None:
    pending: list[str] = []      # calls of the last assistant turn not yet answered
    answered: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            out.append(f"{where}: must be an object")
            continue
        role = msg.get("role")
        if role not in OPENAI_MESSAGE_KEYS:
            out.append(f"{where}.role: unknown role {role!r}")
            continue
        _unknown_keys(msg, OPENAI_MESSAGE_KEYS[role], where, out)
        if role != "tool" and pending:
            out.append(f"{where}: an assistant message with 'tool_calls' must be followed by tool messages "
                       f"responding to each 'tool_call_id'; not answered: {', '.join(pending)}")
            pending = []
        if role == "assistant":
            has_calls = "tool_calls" in msg
            content = msg.get("content")
            if content is None:
                if not has_calls and "function_call" not in msg:
                    out.append(f"{where}.content: required unless tool_calls is given")
            else:
                _openai_content(role, content, where, out)
            if has_calls:
                pending = _openai_tool_calls(msg["tool_calls"], where, out)
                answered = set()
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                out.append(f"{where}.tool_call_id: required string")
            elif call_id in pending:
                pending.remove(call_id)
                answered.add(call_id)
            elif call_id in answered:
                out.append(f"{where}: a second tool message for tool_call_id {call_id!r}")
            else:
                out.append(f"{where}: messages with role 'tool' must be a response to a preceding message "
                           f"with 'tool_calls' (no call {call_id!r})")
            if "content" not in msg:
                out.append(f"{where}.content: required")
            else:
                _openai_content(role, msg["content"], where, out)
        else:
            if "content" not in msg or msg["content"] is None:
                out.append(f"{where}.content: required")
            else:
                _openai_content(role, msg["content"], where, out)
    if pending:
        out.append("messages: an assistant message with 'tool_calls' must be followed by tool messages "
                   f"responding to each 'tool_call_id'; not answered: {', '.join(pending)}")


# =============================================================================================
# Anthropic Messages
# =============================================================================================

ANTHROPIC_TOP_KEYS = frozenset({
    "model", "messages", "max_tokens", "system", "tools", "tool_choice", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "thinking", "metadata", "service_tier", "output_config",
})
ANTHROPIC_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
ANTHROPIC_ASSISTANT_ONLY = {"tool_use", "thinking", "redacted_thinking"}
ANTHROPIC_USER_ONLY = {"tool_result", "image", "document"}
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_ANTHROPIC_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ANTHROPIC_SERVER_TOOL = re.compile(r"^[a-z_]+_\d{8}$")
_ANTHROPIC_MEDIA = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def check_anthropic_messages(body: Any, issued_thinking: Mapping[str, str] | None = None) -> list[str]:
    """Violations of the Messages API request rules.

    Sources: https://docs.anthropic.com/en/api/messages (request shape, content blocks, tools, tool_choice),
    https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use (tool_use / tool_result
    pairing: "each tool_use block must have a corresponding tool_result block in the next message"; tool_result
    blocks must come first in that user message) and
    https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking (thinking blocks carry a signature
    and must be passed back unmodified; with thinking on, the last assistant turn of a tool loop must start with
    its thinking block; thinking is incompatible with forced tool use, temperature and top_k).

    - top-level keys of the Messages API only; model, messages and max_tokens (>= 1) required;
    - roles user/assistant only, strictly alternating, starting with user; message keys role + content;
    - content a non-empty string or a non-empty list of blocks of known types, each with its own keys
      (text non-empty; tool_use.id matches ^[a-zA-Z0-9_-]+$ and tool_use.input is an object);
    - every tool_use of an assistant turn answered by a tool_result with that tool_use_id in the very next
      user turn, the tool_results first in it; no tool_result without a matching tool_use just before;
    - tools {name, description?, input_schema (type object)}; tool_choice {type: auto|any|none|tool (+name)}
      with optional disable_parallel_tool_use; a request with tool_use / tool_result blocks must define tools;
    - output_config.format {type: json_schema, schema (object)} (structured outputs);
    - thinking blocks carry a `signature`; `issued_thinking` (signature -> thinking text, the blocks this mock
      sent) makes any thinking block that is not one of them, verbatim, an "invalid signature".
    """
    out: list[str] = []
    if not isinstance(body, dict):
        return [f"body: must be a JSON object, got {_type(body)}"]
    _unknown_keys(body, ANTHROPIC_TOP_KEYS, "body", out)
    if not isinstance(body.get("model"), str) or not body.get("model"):
        out.append("model: required string")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        out.append(f"max_tokens: required integer >= 1, got {max_tokens!r}")
    _anthropic_system(body, out)
    tool_names = _anthropic_tools(body, out)
    _anthropic_tool_choice(body, tool_names, out)
    thinking_on = _anthropic_thinking_config(body, out)
    if "stop_sequences" in body and not (isinstance(body["stop_sequences"], list)
                                         and all(isinstance(s, str) for s in body["stop_sequences"])):
        out.append("stop_sequences: must be an array of strings")
    if "temperature" in body and not (isinstance(body["temperature"], (int, float)) and 0 <= body["temperature"] <= 1):
        out.append(f"temperature: must be a number in [0, 1], got {body['temperature']!r}")
    _anthropic_output_config(body, out)
    if "metadata" in body:
        if not isinstance(body["metadata"], dict):
            out.append("metadata: must be an object")
        else:
            _unknown_keys(body["metadata"], {"user_id"}, "metadata", out)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        out.append("messages: required non-empty array")
        return out
    _anthropic_messages(messages, out, issued_thinking)
    if not tool_names and _anthropic_has_tool_blocks(messages):
        out.append("tools: requests which include tool_use or tool_result blocks must define tools")
    if thinking_on:
        _anthropic_thinking_turn(messages, out)
    return out


def _anthropic_output_config(body: dict[str, Any], out: list[str]) -> None:
    """output_config {format: {type: json_schema, schema}, effort}: structured outputs
    (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs)."""
    if "output_config" not in body:
        return
    config = body["output_config"]
    if not isinstance(config, dict):
        out.append(f"output_config: must be an object, got {_type(config)}")
        return
    _unknown_keys(config, {"format", "effort"}, "output_config", out)
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        out.append(f"output_config.format: must be {{type: json_schema, schema}}, got {fmt!r}")
        return
    _unknown_keys(fmt, {"type", "schema"}, "output_config.format", out)
    _object_schema(fmt.get("schema"), "output_config.format.schema", out)


def _anthropic_system(body: dict[str, Any], out: list[str]) -> None:
    if "system" not in body:
        return
    system = body["system"]
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        out.append(f"system: must be a string or an array of text blocks, got {_type(system)}")
        return
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            out.append(f"system[{i}]: must be a text block")
        else:
            _unknown_keys(block, ANTHROPIC_BLOCK_KEYS["text"], f"system[{i}]", out)


def _anthropic_tools(body: dict[str, Any], out: list[str]) -> set[str]:
    names: set[str] = set()
    if "tools" not in body:
        return names
    tools = body["tools"]
    if not isinstance(tools, list):
        out.append("tools: must be an array")
        return names
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            out.append(f"{where}: must be an object")
            continue
        kind = tool.get("type")
        if isinstance(kind, str) and _ANTHROPIC_SERVER_TOOL.match(kind):   # web_search_20250305, bash_...: own shape
            names.add(str(tool.get("name")))
            continue
        if kind not in (None, "custom"):
            out.append(f"{where}.type: unknown tool type {kind!r} (custom tools: name, description, input_schema)")
        _unknown_keys(tool, {"type", "name", "description", "input_schema", "cache_control"}, where, out)
        name = tool.get("name")
        if not isinstance(name, str) or not _ANTHROPIC_TOOL_NAME.match(name):
            out.append(f"{where}.name: must match ^[a-zA-Z0-9_-]{{1,128}}$, got {name!r}")
        elif name in names:
            out.append(f"{where}.name: tool names must be unique ({name!r})")
        else:
            names.add(name)
        if "description" in tool and not isinstance(tool["description"], str):
            out.append(f"{where}.description: must be a string")
        if "input_schema" not in tool:
            out.append(f"{where}.input_schema: required")
        else:
            _object_schema(tool["input_schema"], f"{where}.input_schema", out)
    return names


def _anthropic_tool_choice(body: dict[str, Any], tool_names: set[str], out: list[str]) -> None:
    if "tool_choice" not in body:
        return
    choice = body["tool_choice"]
    if not isinstance(choice, dict):
        out.append(f"tool_choice: must be an object, got {_type(choice)}")
        return
    kind = choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        out.append(f"tool_choice.type: must be auto|any|tool|none, got {kind!r}")
        return
    allowed = {"type", "disable_parallel_tool_use"} if kind != "none" else {"type"}
    if kind == "tool":
        allowed.add("name")
        if not isinstance(choice.get("name"), str):
            out.append("tool_choice.name: required for type tool")
        elif choice["name"] not in tool_names:
            out.append(f"tool_choice.name: {choice['name']!r} is not a declared tool")
    _unknown_keys(choice, allowed, "tool_choice", out)
    if "disable_parallel_tool_use" in choice and not isinstance(choice["disable_parallel_tool_use"], bool):
        out.append("tool_choice.disable_parallel_tool_use: must be a boolean")
    if kind != "none" and not tool_names:
        out.append("tool_choice: requires tools")


def _anthropic_thinking_config(body: dict[str, Any], out: list[str]) -> bool:
    if "thinking" not in body:
        return False
    thinking = body["thinking"]
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        out.append(f"thinking: must be {{type: enabled, budget_tokens}} or {{type: disabled}}, got {thinking!r}")
        return False
    if thinking["type"] != "enabled":
        _unknown_keys(thinking, {"type"}, "thinking", out)
        return thinking["type"] == "adaptive"
    _unknown_keys(thinking, {"type", "budget_tokens"}, "thinking", out)
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        out.append(f"thinking.budget_tokens: required integer >= 1024, got {budget!r}")
    elif isinstance(body.get("max_tokens"), int) and budget >= body["max_tokens"]:
        out.append(f"thinking.budget_tokens: must be less than max_tokens ({budget} >= {body['max_tokens']})")
    if "temperature" in body and body["temperature"] != 1:
        out.append("temperature: may only be 1 when thinking is enabled")
    if "top_k" in body:
        out.append("top_k: not allowed when thinking is enabled")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        out.append("tool_choice: thinking may not be enabled when tool_choice forces tool use")
    return True


def _anthropic_block(block: Any, role: str, where: str, out: list[str],
                     issued_thinking: Mapping[str, str] | None) -> str | None:
    if not isinstance(block, dict):
        out.append(f"{where}: must be an object")
        return None
    kind = block.get("type")
    if kind not in ANTHROPIC_BLOCK_KEYS:
        out.append(f"{where}.type: unknown block type {kind!r}")
        return None
    _unknown_keys(block, ANTHROPIC_BLOCK_KEYS[kind], where, out)
    if role == "user" and kind in ANTHROPIC_ASSISTANT_ONLY:
        out.append(f"{where}: a {kind} block is only allowed in an assistant turn")
    if role == "assistant" and kind in ANTHROPIC_USER_ONLY:
        out.append(f"{where}: a {kind} block is only allowed in a user turn")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"].strip():
            out.append(f"{where}.text: text content blocks must contain non-whitespace text")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
            out.append(f"{where}.source: must be {{type: base64|url|file, ...}}")
        elif source["type"] == "base64" and (source.get("media_type") not in _ANTHROPIC_MEDIA
                                            or not isinstance(source.get("data"), str)):
            out.append(f"{where}.source: base64 needs media_type (jpeg/png/gif/webp) and data")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not _ANTHROPIC_ID.match(block["id"]):
            out.append(f"{where}.id: must match ^[a-zA-Z0-9_-]+$, got {block.get('id')!r}")
        if not isinstance(block.get("name"), str) or not block["name"]:
            out.append(f"{where}.name: required string")
        if not isinstance(block.get("input"), dict):
            out.append(f"{where}.input: must be an object, got {_type(block.get('input'))}")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str) or not _ANTHROPIC_ID.match(block["tool_use_id"]):
            out.append(f"{where}.tool_use_id: must match ^[a-zA-Z0-9_-]+$, got {block.get('tool_use_id')!r}")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                out.append(f"{where}.content: must be a string or an array of blocks")
            else:
                for k, inner in enumerate(content):
                    if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document", "search_result"):
                        out.append(f"{where}.content[{k}]: must be a text, image or document block")
                    else:
                        _anthropic_block(inner, "user", f"{where}.content[{k}]", out, issued_thinking)
        if "is_error" in block and not isinstance(block["is_error"], bool):
            out.append(f"{where}.is_error: must be a boolean")
    elif kind == "thinking":
        if not isinstance(block.get("thinking"), str):
            out.append(f"{where}.thinking: required string")
        signature = block.get("signature")
        if not isinstance(signature, str) or not signature:
            out.append(f"{where}.signature: a thinking block must carry its signature")
        elif issued_thinking is not None and issued_thinking.get(signature) != block.get("thinking"):
            out.append(f"{where}: invalid signature in thinking block (not a block this server sent, verbatim)")
    elif kind == "redacted_thinking" and (not isinstance(block.get("data"), str) or not block["data"]):
        out.append(f"{where}.data: required string")
    return kind


def _anthropic_messages(messages: list[Any], out: list[str], issued_thinking: Mapping[str, str] | None) -> None:
    previous_role: str | None = None
    pending: list[str] = []   # tool_use ids of the previous assistant turn
    last = len(messages) - 1
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            out.append(f"{where}: must be an object")
            continue
        _unknown_keys(msg, {"role", "content"}, where, out)
        role = msg.get("role")
        if role not in ("user", "assistant"):
            out.append(f"{where}.role: must be user or assistant, got {role!r}")
            continue
        if i == 0 and role != "user":
            out.append(f"{where}.role: the first message must use the user role")
        if role == previous_role:
            out.append(f"{where}.role: roles must alternate between user and assistant (two {role} turns in a row)")
        previous_role = role
        content = msg.get("content")
        final_assistant = role == "assistant" and i == last
        blocks: list[tuple[str | None, dict[str, Any]]] = []
        if isinstance(content, str):
            if not content.strip() and not final_assistant:
                out.append(f"{where}.content: must be non-empty")
        elif isinstance(content, list):
            if not content and not final_assistant:
                out.append(f"{where}.content: all messages must have non-empty content "
                           "except for the optional final assistant message")
            for j, block in enumerate(content):
                kind = _anthropic_block(block, role, f"{where}.content[{j}]", out, issued_thinking)
                blocks.append((kind, block if isinstance(block, dict) else {}))
        else:
            out.append(f"{where}.content: must be a string or an array of blocks, got {_type(content)}")
        results = [b.get("tool_use_id") for k, b in blocks if k == "tool_result"]
        if role == "user":
            kinds = [k for k, _ in blocks]
            if results and kinds[:len(results)] != ["tool_result"] * len(results):
                out.append(f"{where}.content: tool_result blocks must come first in the user message, "
                           "before any other content")
            missing = [t for t in pending if t not in results]
            if missing:
                out.append(f"{where}: tool_use ids were found without tool_result blocks immediately after: "
                           f"{', '.join(missing)}")
            unexpected = [r for r in results if r not in pending]
            if unexpected:
                out.append(f"{where}: unexpected tool_use_id found in tool_result blocks: "
                           f"{', '.join(map(str, unexpected))}; each tool_result must answer a tool_use in the "
                           "previous message")
            duplicates = [r for r, n in Counter(results).items() if n > 1]
            if duplicates:
                out.append(f"{where}: more than one tool_result for {', '.join(map(str, duplicates))}")
            pending = []
        else:
            if pending:
                out.append(f"{where}: tool_use ids were found without tool_result blocks immediately after: "
                           f"{', '.join(pending)}")
            ids = [b.get("id") for k, b in blocks if k == "tool_use"]
            dup = [t for t, n in Counter(ids).items() if n > 1]
            if dup:
                out.append(f"{where}: duplicate tool_use ids {', '.join(map(str, dup))}")
            pending = [t for t in ids if isinstance(t, str)]
    if pending:
        out.append(f"messages: tool_use ids were found without tool_result blocks immediately after: "
                   f"{', '.join(pending)}")


def _anthropic_has_tool_blocks(messages: list[Any]) -> bool:
    return any(isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result")
               for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list) for b in m["content"])


def _anthropic_thinking_turn(messages: list[Any], out: list[str]) -> None:
    """With thinking on, the last assistant turn that made tool calls (answered by the last user turn) starts
    with its thinking block."""
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        content = msg.get("content")
        if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
            return
        first = content[0].get("type") if isinstance(content[0], dict) else None
        if first not in ("thinking", "redacted_thinking"):
            out.append(f"messages[{i}].content[0].type: expected thinking or redacted_thinking, but found {first!r}: "
                       "when thinking is enabled, a final assistant message must start with a thinking block "
                       "(preceding the lastmost set of tool_use and tool_result blocks)")
        return


# =============================================================================================
# Gemini generateContent
# =============================================================================================

def _camel(name: str) -> str:
    if name.startswith("_") or "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _get(obj: Mapping[str, Any], name: str) -> Any:
    """A field by its lowerCamel name or its proto (snake_case) name: Google's JSON mapping accepts both."""
    if name in obj:
        return obj[name]
    return obj.get(_snake(name))


def _has(obj: Mapping[str, Any], name: str) -> bool:
    return name in obj or _snake(name) in obj


def _gemini_unknown(obj: Mapping[str, Any], allowed: Iterable[str], where: str, out: list[str]) -> None:
    allowed = set(allowed)
    extra = sorted(k for k in obj if _camel(k) not in allowed)
    if extra:
        out.append(f"{where}: unknown name(s) {', '.join(repr(k) for k in extra)}: cannot find field")
    both = sorted(k for k in obj if k != _camel(k) and _camel(k) in obj)
    if both:
        out.append(f"{where}: field(s) given twice (camelCase and snake_case): {', '.join(both)}")


GEMINI_TOP_KEYS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                             "safetySettings", "cachedContent"})
GEMINI_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
                      "executableCode", "codeExecutionResult")
GEMINI_PART_META = ("thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution")
GEMINI_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
GEMINI_GENERATION_KEYS = frozenset({
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
    "thinkingConfig", "imageConfig", "mediaResolution",
})
GEMINI_OTHER_TOOLS = frozenset({"googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext",
                                "computerUse", "fileSearch", "googleMaps"})
_GEMINI_FN_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


def check_gemini_generate(body: Any,
                          expected_signatures: Mapping[str, str] | Iterable[str] | None = None) -> list[str]:
    """Violations of the generateContent request rules.

    Sources: https://ai.google.dev/api/generate-content and https://ai.google.dev/api/caching#Content (shapes),
    https://ai.google.dev/gemini-api/docs/function-calling (declarations, functionCall / functionResponse turns),
    https://ai.google.dev/gemini-api/docs/thought-signatures (signatures sent back on the functionCall part that
    carried them; Gemini 3 answers 400 when one is missing).

    - keys contents, systemInstruction, tools, toolConfig, generationConfig, safetySettings (cachedContent);
      Google's JSON mapping also takes the snake_case spelling of a field, but not both at once;
    - contents: roles user/model only, non-empty parts; a part has exactly one data field (text, inlineData,
      fileData, functionCall, functionResponse, ...) with thought / thoughtSignature allowed beside it;
    - functionCall {name, args (object)}; functionResponse {name, response (object)};
    - a functionCall turn comes right after a user turn; it is answered in the very next user turn by as many
      functionResponse parts, with the same names (and ids, where the call had one); no functionResponse turn
      without a functionCall turn just before;
    - tools [{functionDeclarations: [{name, description, parameters | parametersJsonSchema}]}]; `parameters`
      (and generationConfig.responseSchema) is Gemini's OpenAPI subset: JSON Schema keywords such as
      additionalProperties, $schema or const are refused ("Unknown name ... Cannot find field"), the root is an
      OBJECT; parametersJsonSchema / responseJsonSchema take JSON Schema;
    - toolConfig.functionCallingConfig {mode: AUTO|ANY|NONE|VALIDATED, allowedFunctionNames (ANY/VALIDATED)};
    - generationConfig known keys; a response schema needs responseMimeType application/json;
    - `expected_signatures`: the thoughtSignatures the last reply put on functionCall parts (signature -> function
      name, or just the signatures): each must come back on a model-turn functionCall part (of that name), else
      "missing thought signature".
    """
    out: list[str] = []
    if not isinstance(body, dict):
        return [f"body: must be a JSON object, got {_type(body)}"]
    _gemini_unknown(body, GEMINI_TOP_KEYS, "body", out)
    if _has(body, "systemInstruction"):
        _gemini_content(_get(body, "systemInstruction"), "systemInstruction", out, system=True)
    declared = _gemini_tools(_get(body, "tools"), out) if _has(body, "tools") else {}
    if _has(body, "toolConfig"):
        _gemini_tool_config(_get(body, "toolConfig"), declared, out)
    if _has(body, "generationConfig"):
        _gemini_generation_config(_get(body, "generationConfig"), out)
    if _has(body, "safetySettings"):
        settings = _get(body, "safetySettings")
        if not isinstance(settings, list) or not all(isinstance(s, dict) and set(map(_camel, s)) <= {"category", "threshold", "method"}
                                                      for s in settings):
            out.append("safetySettings: must be an array of {category, threshold}")
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        out.append("contents: required non-empty array")
        return out
    for i, content in enumerate(contents):
        _gemini_content(content, f"contents[{i}]", out)
    _gemini_turns(contents, out)
    if expected_signatures is not None:
        _gemini_signatures(contents, expected_signatures, out)
    return out


def _gemini_content(content: Any, where: str, out: list[str], system: bool = False) -> None:
    if not isinstance(content, dict):
        out.append(f"{where}: must be an object")
        return
    _gemini_unknown(content, {"role", "parts"}, where, out)
    role = content.get("role")
    if system:
        if role not in (None, "user", "system"):
            out.append(f"{where}.role: unexpected role {role!r}")
    elif role not in ("user", "model"):
        out.append(f"{where}.role: must be user or model, got {role!r}")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        out.append(f"{where}.parts: must not be empty")
        return
    for j, part in enumerate(parts):
        _gemini_part(part, f"{where}.parts[{j}]", role, out, system)


def _gemini_part(part: Any, where: str, role: str | None, out: list[str], system: bool) -> None:
    if not isinstance(part, dict):
        out.append(f"{where}: must be an object")
        return
    _gemini_unknown(part, GEMINI_DATA_FIELDS + GEMINI_PART_META, where, out)
    data = [f for f in GEMINI_DATA_FIELDS if _has(part, f)]
    if len(data) != 1:
        out.append(f"{where}: a part must have exactly one of {'/'.join(GEMINI_DATA_FIELDS[:5])}, "
                   f"got {data or 'none'}")
        return
    (kind,) = data
    value = _get(part, kind)
    if system and kind != "text":
        out.append(f"{where}: systemInstruction takes text parts only")
    if _has(part, "thoughtSignature") and not isinstance(_get(part, "thoughtSignature"), str):
        out.append(f"{where}.thoughtSignature: must be a (base64) string")
    if _has(part, "thought") and not isinstance(_get(part, "thought"), bool):
        out.append(f"{where}.thought: must be a boolean")
    if kind == "text":
        if not isinstance(value, str):
            out.append(f"{where}.text: must be a string")
        elif not value and not _has(part, "thoughtSignature"):
            out.append(f"{where}.text: empty text part")
    elif kind == "inlineData":
        if not isinstance(value, dict) or not isinstance(_get(value, "mimeType"), str) or not isinstance(value.get("data"), str):
            out.append(f"{where}.inlineData: needs mimeType and data")
        else:
            _gemini_unknown(value, {"mimeType", "data"}, f"{where}.inlineData", out)
    elif kind == "fileData":
        if not isinstance(value, dict) or not isinstance(_get(value, "fileUri"), str):
            out.append(f"{where}.fileData: needs fileUri")
        else:
            _gemini_unknown(value, {"mimeType", "fileUri"}, f"{where}.fileData", out)
    elif kind == "functionCall":
        if role != "model":
            out.append(f"{where}: a functionCall part belongs in a model turn")
        if not isinstance(value, dict):
            out.append(f"{where}.functionCall: must be an object")
            return
        _gemini_unknown(value, {"id", "name", "args"}, f"{where}.functionCall", out)
        if not isinstance(value.get("name"), str) or not value.get("name"):
            out.append(f"{where}.functionCall.name: required")
        if "args" in value and not isinstance(value["args"], dict):
            out.append(f"{where}.functionCall.args: must be an object (a Struct), got {_type(value['args'])}")
    elif kind == "functionResponse":
        if role != "user":
            out.append(f"{where}: a functionResponse part belongs in a user turn")
        if not isinstance(value, dict):
            out.append(f"{where}.functionResponse: must be an object")
            return
        _gemini_unknown(value, {"id", "name", "response", "willContinue", "scheduling", "parts"},
                        f"{where}.functionResponse", out)
        if not isinstance(value.get("name"), str) or not value.get("name"):
            out.append(f"{where}.functionResponse.name: required (the function's name)")
        if not isinstance(value.get("response"), dict):
            out.append(f"{where}.functionResponse.response: must be an object (a Struct), "
                       f"got {_type(value.get('response'))}")


def _calls_and_responses(content: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    parts = parts if isinstance(parts, list) else []
    calls = [_get(p, "functionCall") for p in parts if isinstance(p, dict) and _has(p, "functionCall")]
    responses = [_get(p, "functionResponse") for p in parts if isinstance(p, dict) and _has(p, "functionResponse")]
    return ([c for c in calls if isinstance(c, dict)], [r for r in responses if isinstance(r, dict)], parts)


def _gemini_turns(contents: list[Any], out: list[str]) -> None:
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            continue
        calls, responses, _ = _calls_and_responses(content)
        previous = contents[i - 1] if i > 0 and isinstance(contents[i - 1], dict) else None
        if calls:
            if previous is None or previous.get("role") != "user":
                out.append(f"contents[{i}]: a function call turn must come immediately after a user turn "
                           "or after a function response turn")
            following = contents[i + 1] if i + 1 < len(contents) and isinstance(contents[i + 1], dict) else None
            if following is None:
                continue   # the model's own turn, last: nothing to answer yet
            answers = _calls_and_responses(following)[1] if following.get("role") == "user" else []
            if len(answers) != len(calls):
                out.append(f"contents[{i + 1}]: the number of function response parts ({len(answers)}) must equal "
                           f"the number of function call parts of the function call turn ({len(calls)})")
            called = Counter(str(c.get("name")) for c in calls)
            got = Counter(str(r.get("name")) for r in answers)
            if answers and called != got:
                out.append(f"contents[{i + 1}]: function response names {sorted(got.elements())} do not match "
                           f"the calls {sorted(called.elements())}")
            call_ids = [c["id"] for c in calls if isinstance(c.get("id"), str)]
            answer_ids = {r.get("id") for r in answers}
            for call_id in call_ids:
                if call_id not in answer_ids:
                    out.append(f"contents[{i + 1}]: no functionResponse with the id {call_id!r} of its functionCall")
        if responses and (previous is None or not _calls_and_responses(previous)[0]):
            out.append(f"contents[{i}]: a function response turn must come immediately after a function call turn")


def _gemini_signatures(contents: list[Any], expected: Mapping[str, str] | Iterable[str], out: list[str]) -> None:
    wanted: dict[str, str | None] = dict(expected) if isinstance(expected, Mapping) else dict.fromkeys(expected)
    found: dict[str, str] = {}
    for content in contents:
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        for part in _calls_and_responses(content)[2]:
            if isinstance(part, dict) and _has(part, "functionCall") and isinstance(_get(part, "thoughtSignature"), str):
                call = _get(part, "functionCall")
                found[_get(part, "thoughtSignature")] = call.get("name") if isinstance(call, dict) else None
    for signature, name in wanted.items():
        if signature not in found:
            out.append(f"missing thought signature: the functionCall part{f' for {name!r}' if name else ''} "
                       f"must be sent back with thoughtSignature {signature!r}")
        elif name is not None and found[signature] != name:
            out.append(f"thought signature {signature!r} is on a functionCall of {found[signature]!r}, "
                       f"not on the call of {name!r} it came with")


def _gemini_schema(schema: Any, where: str, out: list[str], root: bool = False) -> None:
    """Gemini's `Schema`: a subset of OpenAPI 3.0, not JSON Schema."""
    if not isinstance(schema, dict):
        out.append(f"{where}: must be a Schema object")
        return
    extra = sorted(k for k in schema if _camel(k) not in GEMINI_SCHEMA_KEYS)
    for key in extra:
        out.append(f"{where}: unknown name {key!r}: cannot find field (Schema is an OpenAPI subset; "
                   "use parametersJsonSchema / responseJsonSchema for JSON Schema)")
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in
                             {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "TYPE_UNSPECIFIED"}):
        out.append(f"{where}.type: not a Schema type: {kind!r}")
    if root and (not isinstance(kind, str) or kind.upper() != "OBJECT"):
        out.append(f"{where}.type: must be OBJECT, got {kind!r}")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            out.append(f"{where}.properties: must be an object")
        else:
            for name, sub in props.items():
                _gemini_schema(sub, f"{where}.properties.{name}", out)
    if "items" in schema:
        _gemini_schema(schema["items"], f"{where}.items", out)
    for key in ("anyOf", "any_of"):
        if key in schema:
            subs = schema[key]
            if not isinstance(subs, list):
                out.append(f"{where}.{key}: must be an array")
            else:
                for k, sub in enumerate(subs):
                    _gemini_schema(sub, f"{where}.{key}[{k}]", out)


def _gemini_tools(tools: Any, out: list[str]) -> dict[str, dict[str, Any]]:
    declared: dict[str, dict[str, Any]] = {}
    if not isinstance(tools, list):
        out.append("tools: must be an array of Tool objects")
        return declared
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not tool:
            out.append(f"{where}: must be a non-empty Tool object")
            continue
        _gemini_unknown(tool, {"functionDeclarations"} | GEMINI_OTHER_TOOLS, where, out)
        if not _has(tool, "functionDeclarations"):
            continue
        decls = _get(tool, "functionDeclarations")
        if not isinstance(decls, list) or not decls:
            out.append(f"{where}.functionDeclarations: must be a non-empty array")
            continue
        for j, decl in enumerate(decls):
            dw = f"{where}.functionDeclarations[{j}]"
            if not isinstance(decl, dict):
                out.append(f"{dw}: must be an object")
                continue
            _gemini_unknown(decl, {"name", "description", "parameters", "parametersJsonSchema", "response",
                                   "responseJsonSchema", "behavior"}, dw, out)
            name = decl.get("name")
            if not isinstance(name, str) or not _GEMINI_FN_NAME.match(name):
                out.append(f"{dw}.name: must start with a letter or underscore and use a-z, A-Z, 0-9, _ . : -"
                           f" (at most 64), got {name!r}")
            elif name in declared:
                out.append(f"{dw}.name: duplicate function name {name!r}")
            else:
                declared[name] = decl
            if "description" in decl and not isinstance(decl["description"], str):
                out.append(f"{dw}.description: must be a string")
            if _has(decl, "parameters") and _has(decl, "parametersJsonSchema"):
                out.append(f"{dw}: parameters and parametersJsonSchema are mutually exclusive")
            if _has(decl, "parameters"):
                _gemini_schema(_get(decl, "parameters"), f"{dw}.parameters", out, root=True)
            if _has(decl, "parametersJsonSchema"):
                _object_schema(_get(decl, "parametersJsonSchema"), f"{dw}.parametersJsonSchema", out)
    return declared


def _gemini_tool_config(config: Any, declared: Mapping[str, Any], out: list[str]) -> None:
    if not isinstance(config, dict):
        out.append("toolConfig: must be an object")
        return
    _gemini_unknown(config, {"functionCallingConfig", "retrievalConfig"}, "toolConfig", out)
    fcc = _get(config, "functionCallingConfig")
    if fcc is None:
        return
    if not isinstance(fcc, dict):
        out.append("toolConfig.functionCallingConfig: must be an object")
        return
    _gemini_unknown(fcc, {"mode", "allowedFunctionNames"}, "toolConfig.functionCallingConfig", out)
    mode = fcc.get("mode")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED", None):
        out.append(f"toolConfig.functionCallingConfig.mode: must be AUTO|ANY|NONE|VALIDATED, got {mode!r}")
    names = _get(fcc, "allowedFunctionNames")
    if names is not None:
        if mode not in ("ANY", "VALIDATED"):
            out.append("toolConfig.functionCallingConfig.allowedFunctionNames: only with mode ANY or VALIDATED")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            out.append("toolConfig.functionCallingConfig.allowedFunctionNames: must be an array of strings")
        else:
            for n in names:
                if n not in declared:
                    out.append(f"toolConfig.functionCallingConfig.allowedFunctionNames: {n!r} is not declared")
    if mode not in (None, "NONE", "MODE_UNSPECIFIED") and not declared:
        out.append("toolConfig.functionCallingConfig: a calling mode needs functionDeclarations")


def _gemini_generation_config(config: Any, out: list[str]) -> None:
    if not isinstance(config, dict):
        out.append("generationConfig: must be an object")
        return
    _gemini_unknown(config, GEMINI_GENERATION_KEYS | {"_responseJsonSchema"}, "generationConfig", out)
    has_schema = _has(config, "responseSchema")
    has_json_schema = _has(config, "responseJsonSchema") or "_responseJsonSchema" in config
    if has_schema and has_json_schema:
        out.append("generationConfig: responseSchema and responseJsonSchema are mutually exclusive")
    if has_schema:
        _gemini_schema(_get(config, "responseSchema"), "generationConfig.responseSchema", out)
    if has_json_schema:
        schema = _get(config, "responseJsonSchema") if _has(config, "responseJsonSchema") else config["_responseJsonSchema"]
        if not isinstance(schema, dict):
            out.append("generationConfig.responseJsonSchema: must be a JSON schema object")
    mime = _get(config, "responseMimeType")
    if (has_schema or has_json_schema) and mime not in ("application/json", "text/x.enum"):
        out.append(f"generationConfig.responseMimeType: a response schema needs application/json, got {mime!r}")
    thinking = _get(config, "thinkingConfig")
    if thinking is not None:
        if not isinstance(thinking, dict):
            out.append("generationConfig.thinkingConfig: must be an object")
        else:
            _gemini_unknown(thinking, {"includeThoughts", "thinkingBudget", "thinkingLevel"},
                            "generationConfig.thinkingConfig", out)


# =============================================================================================
# Reply builders
# =============================================================================================

_seq = itertools.count(1)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _token(n: int) -> str:
    raw = uuid.uuid4().int
    chars = []
    for _ in range(n):
        raw, k = divmod(raw, len(_ALNUM))
        chars.append(_ALNUM[k])
    return "".join(chars)


def tool_call(name: str, args: Mapping[str, Any] | str | None, id: str | None = None) -> dict[str, Any]:
    """One call a mock reply makes: `args` an object, or the JSON text exactly as the model wrote it
    (a str, which may be broken JSON), or None for a call without arguments (OpenAI "{}", Anthropic input {},
    Gemini no `args` at all). `id`: None lets each builder make one in its vendor's style (Gemini: none at
    all, as gemini-2.5 sends)."""
    return {"name": name, "args": args, "id": id}


def _args_text(call: Mapping[str, Any]) -> str:
    args = call["args"]
    if args is None:
        return "{}"
    return args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))


def _args_object(call: Mapping[str, Any]) -> Any:
    args = call["args"]
    if args is None:
        return {}
    return json.loads(args) if isinstance(args, str) else dict(args)


def split_text(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` consecutive fragments (as evenly as it goes; never empty unless text is)."""
    pieces = max(1, min(pieces, len(text))) if text else 1
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for k in range(pieces):
        end = start + size + (1 if k < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _openai_id(call: Mapping[str, Any]) -> str:
    return call["id"] or f"call_{_token(24)}"


def openai_tool_call_reply(calls: Sequence[Mapping[str, Any]], content: str | None = None, model: str = "gpt-4.1",
                           finish_reason: str = "tool_calls", prompt_tokens: int = 30,
                           completion_tokens: int = 12) -> dict[str, Any]:
    """A `chat.completion` whose message carries `tool_calls` (parallel when several), content null by default."""
    message = {
        "role": "assistant", "content": content, "refusal": None, "annotations": [],
        "tool_calls": [{"id": _openai_id(c), "type": "function",
                        "function": {"name": c["name"], "arguments": _args_text(c)}} for c in calls],
    }
    return {
        "id": f"chatcmpl-{_token(20)}{next(_seq)}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(prompt_tokens, completion_tokens),
        "service_tier": "default", "system_fingerprint": "fp_mock",
    }


def openai_tool_call_sse(calls: Sequence[Mapping[str, Any]], content_chunks: Sequence[str] = (), pieces: int = 3,
                         model: str = "gpt-4.1", finish_reason: str = "tool_calls",
                         prompt_tokens: int = 30) -> list[dict[str, Any]]:
    """`chat.completion.chunk` events for a tool-call turn (stream_options.include_usage), ending in [DONE].

    Each call's first fragment carries index, id, type, function.name and arguments ""; the later ones only
    index and function.arguments pieces. The first chunk carries the role (and the first call's opening
    fragment when there is no text), as OpenAI sends it.
    """
    cid, created = f"chatcmpl-{_token(20)}{next(_seq)}", int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {"data": {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "service_tier": "default", "system_fingerprint": "fp_mock", "choices": choices,
                         "usage": usage}}

    events: list[dict[str, Any]] = []
    first: dict[str, Any] = {"role": "assistant", "content": None if not content_chunks else "", "refusal": None}
    opened = False
    if content_chunks:
        events.append(chunk(first))
        events += [chunk({"content": t}) for t in content_chunks]
    for i, call in enumerate(calls):
        opening = {"index": i, "id": _openai_id(call), "type": "function",
                   "function": {"name": call["name"], "arguments": ""}}
        if not content_chunks and not opened:
            events.append(chunk({**first, "tool_calls": [opening]}))
            opened = True
        else:
            events.append(chunk({"tool_calls": [opening]}))
        for piece in split_text(_args_text(call), pieces):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    events.append(chunk({}, finish_reason))
    events.append(chunk(None, usage=openai_usage(prompt_tokens, 12)))
    events.append({"data": "[DONE]"})
    return events


def _anthropic_id(call: Mapping[str, Any]) -> str:
    return call["id"] or f"toolu_01{_token(22)}"


def _thinking_block(thinking: tuple[str, str] | Mapping[str, str]) -> dict[str, Any]:
    text, signature = (thinking["thinking"], thinking["signature"]) if isinstance(thinking, Mapping) else thinking
    return {"type": "thinking", "thinking": text, "signature": signature}


def anthropic_tool_use_reply(calls: Sequence[Mapping[str, Any]], text: str | None = None,
                             thinking: tuple[str, str] | Mapping[str, str] | None = None,
                             model: str = "claude-sonnet-4-5", stop_reason: str | None = None,
                             input_tokens: int = 30, output_tokens: int = 12) -> dict[str, Any]:
    """A Messages `message`: [thinking (text, signature)] [text] tool_use... ; stop_reason tool_use
    (end_turn when there are no calls)."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append(_thinking_block(thinking))
    if text is not None:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": _anthropic_id(c), "name": c["name"], "input": _args_object(c)} for c in calls]
    return {
        "id": f"msg_01{_token(22)}", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason or ("tool_use" if calls else "end_turn"), "stop_sequence": None,
        "usage": anthropic_usage(input_tokens, output_tokens),
    }


def anthropic_tool_use_sse(calls: Sequence[Mapping[str, Any]], text_chunks: Sequence[str] = (),
                           thinking: tuple[str, str] | Mapping[str, str] | None = None, pieces: int = 3,
                           model: str = "claude-sonnet-4-5", stop_reason: str | None = None,
                           input_tokens: int = 30, output_tokens: int = 12) -> list[dict[str, Any]]:
    """Messages streaming events of a tool-use turn: message_start, [thinking block: thinking_delta +
    signature_delta], [text block], per call content_block_start tool_use (input {}), input_json_delta
    partial_json fragments (the first one "", as the API sends), content_block_stop; message_delta
    stop_reason tool_use; message_stop."""
    start = anthropic_tool_use_reply([], None, None, model, None, input_tokens, 1)
    start.update(content=[], stop_reason=None)

    def ev(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"event": name, "data": {"type": name, **data}}

    events = [ev("message_start", {"message": start})]
    index = 0
    if thinking is not None:
        block = _thinking_block(thinking)
        events += [
            ev("content_block_start", {"index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            *(ev("content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": t}})
              for t in split_text(block["thinking"], 2)),
            ev("content_block_delta", {"index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}}),
            ev("content_block_stop", {"index": index}),
        ]
        index += 1
    if text_chunks:
        events += [
            ev("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}),
            ev("ping", {}),
            *(ev("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": t}}) for t in text_chunks),
            ev("content_block_stop", {"index": index}),
        ]
        index += 1
    for call in calls:
        events += [
            ev("content_block_start", {"index": index, "content_block": {"type": "tool_use", "id": _anthropic_id(call),
                                                                         "name": call["name"], "input": {}}}),
            ev("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            *(ev("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": p}})
              for p in split_text(_args_text(call), pieces)),
            ev("content_block_stop", {"index": index}),
        ]
        index += 1
    events += [
        ev("message_delta", {"delta": {"stop_reason": stop_reason or ("tool_use" if calls else "end_turn"),
                                       "stop_sequence": None}, "usage": {"output_tokens": output_tokens}}),
        ev("message_stop", {}),
    ]
    return events


def _gemini_parts(calls: Sequence[Mapping[str, Any]], text: str | None,
                  signature: str | Sequence[str | None] | None) -> list[dict[str, Any]]:
    signatures: list[str | None]
    if signature is None or isinstance(signature, str):
        signatures = [signature] + [None] * max(0, len(calls) - 1)   # parallel calls: only the first is signed
    else:
        signatures = list(signature) + [None] * max(0, len(calls) - len(signature))
    parts: list[dict[str, Any]] = [{"text": text}] if text is not None else []
    for call, sig in zip(calls, signatures, strict=False):
        fc: dict[str, Any] = {"name": call["name"]}
        if call["args"] is not None:
            fc["args"] = _args_object(call)
        if call["id"]:
            fc["id"] = call["id"]
        part: dict[str, Any] = {"functionCall": fc}
        if sig is not None:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _gemini_body(parts: list[dict[str, Any]], model: str, response_id: str, finish_reason: str | None,
                 usage: dict[str, Any] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = usage
    body.update(modelVersion=model, responseId=response_id)
    return body


def gemini_function_call_reply(calls: Sequence[Mapping[str, Any]], text: str | None = None,
                               signature: str | Sequence[str | None] | None = None,
                               model: str = "gemini-2.5-flash", finish_reason: str = "STOP",
                               prompt_tokens: int = 30, candidates_tokens: int = 12) -> dict[str, Any]:
    """A GenerateContentResponse whose candidate's parts are [text] functionCall {name, args}...; `signature`
    (one string: on the first call, as Gemini signs parallel calls; or one per call) goes in thoughtSignature.
    finishReason STOP: Gemini has no tool-call finish reason."""
    usage = gemini_usage(prompt_tokens, candidates_tokens)
    return _gemini_body(_gemini_parts(calls, text, signature), model, _token(20), finish_reason, usage)


def gemini_function_call_sse(calls: Sequence[Mapping[str, Any]], text_chunks: Sequence[str] = (),
                             signature: str | Sequence[str | None] | None = None, model: str = "gemini-2.5-flash",
                             finish_reason: str = "STOP", prompt_tokens: int = 30) -> list[dict[str, Any]]:
    """streamGenerateContent?alt=sse events: text chunks, then one event per functionCall part (Gemini sends
    each call whole), finishReason and usage on the last event; no [DONE]."""
    rid = _token(20)
    parts = _gemini_parts(calls, None, signature)
    bodies = [[{"text": t}] for t in text_chunks] + [[p] for p in parts]
    bodies = bodies or [[{"text": ""}]]
    usage = gemini_usage(prompt_tokens, 12)
    last = len(bodies) - 1
    return [{"data": _gemini_body(b, model, rid, finish_reason if i == last else None, usage if i == last else None)}
            for i, b in enumerate(bodies)]


# =============================================================================================
# Vendor error bodies and the strict handler
# =============================================================================================

def _message(violations: Sequence[str]) -> str:
    return "; ".join(violations)


def openai_error_body(violations: Sequence[str]) -> dict[str, Any]:
    return openai_error(_message(violations), "invalid_request_error")


def anthropic_error_body(violations: Sequence[str]) -> dict[str, Any]:
    return anthropic_error("invalid_request_error", _message(violations))


def gemini_error_body(violations: Sequence[str]) -> dict[str, Any]:
    return gemini_error(400, _message(violations), "INVALID_ARGUMENT")


def reply_payloads(reply: Reply) -> list[Any]:
    """The JSON documents a Reply carries: its body, or each SSE event's data (not [DONE])."""
    if reply.kind == "sse":
        docs = []
        for _, frame in reply.events:
            data = "\n".join(line[len("data: "):] for line in frame.decode().split("\n") if line.startswith("data: "))
            if data and data != "[DONE]":
                with contextlib.suppress(ValueError):
                    docs.append(json.loads(data))
        return docs
    try:
        return [json.loads(reply.body)] if reply.body else []
    except ValueError:
        return []


ReplySource = Sequence[Reply | Mapping[str, Any]] | Callable[[Any], Reply | Mapping[str, Any]]


class StrictHandler:
    """A MockServer handler: validate the request JSON with `check`, answer `status` (400) with
    `error_body(violations)` when it breaks a rule, else the next scripted reply (or `replies(body)` when
    `replies` is a callable). After the script: `then`, else a 500 "script exhausted". Records what it saw.

    `learn(reply)` runs after each scripted reply is chosen (the per-wire helpers use it to remember
    signatures the next request must bring back)."""

    def __init__(self, check: Callable[[Any], list[str]], replies: ReplySource,
                 error_body: Callable[[Sequence[str]], Any], status: int = 400,
                 learn: Callable[[Reply], None] | None = None,
                 then: Reply | Mapping[str, Any] | None = None) -> None:
        self.check = check
        self.error_body = error_body
        self.status = status
        self.learn = learn
        self.then = then
        self._factory = replies if callable(replies) else None
        self._script: deque[Reply | Mapping[str, Any]] = deque(() if callable(replies) else replies)
        self._lock = threading.Lock()
        self.bodies: list[Any] = []                        # every body received, valid or not
        self.rejections: list[tuple[Any, list[str]]] = []  # (body, violations) of the refused ones
        self.accepted: list[Any] = []                      # the bodies that passed

    @property
    def violations(self) -> list[str]:
        return [v for _, vs in self.rejections for v in vs]

    def __call__(self, req: Request) -> Reply:
        try:
            body = req.json()
        except ValueError as exc:
            body, problems = req.text, [f"body is not JSON: {exc}"]
        else:
            problems = list(self.check(body))
        with self._lock:
            self.bodies.append(body)
            if problems:
                self.rejections.append((body, problems))
                return Reply.json(self.error_body(problems), status=self.status)
            self.accepted.append(body)
            if self._factory is not None:
                reply = self._factory(body)
            elif self._script:
                reply = self._script.popleft()
            elif self.then is not None:
                reply = self.then
            else:
                return Reply.json({"error": {"message": "strict mock: script exhausted", "type": "mockserver"}},
                                  status=500)
            reply = reply if isinstance(reply, Reply) else Reply.json(reply)
            if self.learn is not None:
                self.learn(reply)
            return reply


def strict_handler(check: Callable[[Any], list[str]], reply_factory: ReplySource,
                   error_body_factory: Callable[[Sequence[str]], Any], **kwargs: Any) -> StrictHandler:
    """See StrictHandler."""
    return StrictHandler(check, reply_factory, error_body_factory, **kwargs)


def strict_openai(replies: ReplySource, **kwargs: Any) -> StrictHandler:
    """Chat Completions rules; OpenAI's error body."""
    return StrictHandler(check_openai_chat, replies, openai_error_body, **kwargs)


def strict_anthropic(replies: ReplySource, **kwargs: Any) -> StrictHandler:
    """Messages rules; any thinking block sent must be one this handler served, verbatim (see `issued`)."""
    issued: dict[str, str] = {}

    def learn(reply: Reply) -> None:
        blocks: dict[int, dict[str, str]] = {}
        for doc in reply_payloads(reply):
            if not isinstance(doc, dict):
                continue
            for block in doc.get("content", []) if doc.get("type") == "message" else []:
                if block.get("type") == "thinking":
                    issued[block["signature"]] = block["thinking"]
            if doc.get("type") == "content_block_start" and doc["content_block"].get("type") == "thinking":
                blocks[doc["index"]] = {"thinking": "", "signature": ""}
            if doc.get("type") == "content_block_delta" and doc["index"] in blocks:
                delta = doc["delta"]
                if delta.get("type") == "thinking_delta":
                    blocks[doc["index"]]["thinking"] += delta["thinking"]
                elif delta.get("type") == "signature_delta":
                    blocks[doc["index"]]["signature"] += delta["signature"]
        for block in blocks.values():
            issued[block["signature"]] = block["thinking"]

    handler = StrictHandler(lambda body: check_anthropic_messages(body, issued), replies, anthropic_error_body,
                            learn=learn, **kwargs)
    handler.issued = issued  # type: ignore[attr-defined]
    return handler


def strict_gemini(replies: ReplySource, **kwargs: Any) -> StrictHandler:
    """generateContent rules; the thoughtSignatures on functionCall parts of the last reply served must come
    back on the next request (see `expected`)."""
    expected: dict[str, str] = {}

    def learn(reply: Reply) -> None:
        expected.clear()
        for doc in reply_payloads(reply):
            for cand in doc.get("candidates", []) if isinstance(doc, dict) else []:
                for part in cand.get("content", {}).get("parts", []):
                    if "functionCall" in part and "thoughtSignature" in part:
                        expected[part["thoughtSignature"]] = part["functionCall"]["name"]

    handler = StrictHandler(lambda body: check_gemini_generate(body, dict(expected)), replies, gemini_error_body,
                            learn=learn, **kwargs)
    handler.expected = expected  # type: ignore[attr-defined]
    return handler
